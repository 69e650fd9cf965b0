"""TRL adapter: train on any execgym env with ``trl.GRPOTrainer(environment_factory=...)``.

TRL's GRPOTrainer (TRL >= 1.x, transformers >= 5.2) plays one episode per rollout with an *environment*
object: a class with a no-argument constructor, ``reset(**row)`` returning the text that opens the episode,
and the tools as public methods with type hints and a Google-style docstring (TRL renders them with the chat
template, parses the model's tool calls and calls the methods). This module builds that class for an execgym
env id from the env's own tool schemas, so argument names, JSON types, enums and descriptions reach the model
as the env declares them:

* :func:`environment_factory` ``(env_id, wrappers=(), **env_kwargs)``: the class (pass it as
  ``environment_factory``); each instance owns one ``gym.make(env_id, **env_kwargs)`` env with the reward
  wrappers applied (:func:`execgym.wrappers.apply_wrappers`); one tool call of the model is one env step.
* :func:`execgym_reward`: the reward function to pass as ``reward_funcs``. When TRL's tool loop stops (the model
  answered without a tool call), it hands that answer to the env as the episode's last reply (ToolUse closes the
  user's turn with it; a SQL reply with a fenced query runs it), ends an unfinished episode by truncation, and
  returns the episode's return: the sum of the (wrapped) env's rewards, so the env's sparse outcome without
  wrappers. It is a reward function rather than TRL's ``get_reward()`` because that hook is called without the
  model's final answer.
* :func:`dataset` ``(env_id, split=..., seeds=...)``: a ``datasets.Dataset`` of rows ``prompt`` (the env's system
  prompt), ``task_id`` and ``seed``, which TRL passes to ``reset``: the task and the env's seed travel with each
  row, so a run is reproducible (every generation of a GRPO group plays the same task).
* :func:`environment_factories` and :func:`mixed_dataset`: the dict-of-factories form (several envs, or one env's
  domains, in one run): each row's ``environment`` column picks its factory, and only that env's tools are shown.

Infra errors (``info["infra_error"]``: a sandbox, daemon or grader failed; or the env raised) get the reward
``None``: TRL turns it into NaN, and a rollout with no reward from any function is "unscorable" (left out of the
group baseline and the logged means, advantage 0), which is TRL's way to drop a sample. Their count is logged as
the metric ``execgym/infra_errors`` and as a warning. Env tokens (the tool results) carry no loss: TRL masks
them itself (its ``tool_mask``).

Each instance keeps what happened in its episodes in the class's :attr:`ExecgymEnvironment.episodes`
(:class:`EpisodeRecord`: task id, seed, the reward given to TRL, outcome, infra error), so the rewards TRL logs
can be checked against the env's own records.

Example (the test trains the tiny model of ``execgym init-model`` this way):

    >>> from trl import GRPOConfig, GRPOTrainer                                    # doctest: +SKIP
    >>> from execgym.integrations import trl as execgym_trl
    >>> SQL = execgym_trl.environment_factory("execgym/TextToSQL-v0", split="train")
    >>> sorted(name for name, value in vars(SQL).items() if callable(value) and not name.startswith("_"))
    ['describe_table', 'execute_sql', 'list_tables', 'submit_sql']
    >>> import inspect; print(inspect.signature(SQL.execute_sql))
    (self, *, query: str) -> str
    >>> rows = execgym_trl.dataset("execgym/TextToSQL-v0", split="train", num_rows=2)  # doctest: +SKIP
    >>> sorted(rows.column_names)                                                   # doctest: +SKIP
    ['prompt', 'seed', 'task_id']
    >>> trainer = GRPOTrainer(model, reward_funcs=execgym_trl.execgym_reward, train_dataset=rows,
    ...                       environment_factory=SQL, args=GRPOConfig(...))      # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import itertools
import json
import keyword
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

import gymnasium as gym

from execgym.core import report as R
from execgym.core.report import final_of
from execgym.wrappers import apply_wrappers

__all__ = [
    "EpisodeRecord",
    "ExecgymEnvironment",
    "dataset",
    "environment_factories",
    "environment_factory",
    "execgym_reward",
    "mixed_dataset",
    "prepare_tokenizer",
]

logger = logging.getLogger(__name__)

EPISODES_KEPT = 10_000
"""How many :class:`EpisodeRecord` s a factory class keeps (the oldest go first): a long run must not grow."""
PROBE_SEEDS = 16
"""Seeds reset to collect the tools of an env whose tasks are generated (unlimited), when no rows are given."""
_MAX_CLOSING_STEPS = 10_000
_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool,
                               "null": type(None), "array": list, "object": dict}
# TRL's own hooks and the class's attributes: a tool of one of these names would shadow them.
_RESERVED = frozenset({"reset", "get_reward", "env_id", "env_kwargs", "wrapper_specs", "episodes"})


@dataclass(frozen=True)
class EpisodeRecord:
    """One finished episode of a TRL rollout, as execgym saw it.

    ``reward`` is what :func:`execgym_reward` gave TRL (the episode's return; None when ``infra_error`` is set);
    ``outcome`` is the grader's outcome from the final report.
    """

    task_id: str
    seed: int | None
    reward: float | None
    outcome: float
    infra_error: str | None
    submitted: bool
    turns: int


class ExecgymEnvironment:
    """The base of the classes :func:`environment_factory` builds: one execgym env, driven the way TRL drives it.

    TRL exposes every public function of the class as a tool, so everything here but ``reset`` is private; the
    tools are generated per env from its schemas.
    """

    env_id: ClassVar[str]
    env_kwargs: ClassVar[dict[str, Any]]
    wrapper_specs: ClassVar[tuple[Any, ...]]
    episodes: ClassVar[deque[EpisodeRecord]]

    def __init__(self) -> None:
        self._env = _make_env(self.env_id, self.wrapper_specs, self.env_kwargs)
        self._task_id = ""
        self._seed: int | None = None
        self._calls = 0
        self._return = 0.0
        self._over = True
        self._info: dict[str, Any] = {}
        self._error: str | None = None
        self._record: EpisodeRecord | None = None

    def reset(self, task_id: str | None = None, seed: int | None = None, **row: Any) -> str:
        """Start the episode of a dataset row (TRL passes the row's columns; ``prompt`` and the rest are unused).

        Returns the env's first observation (the task statement), which TRL appends to the row's user message.
        """
        self._seed = None if seed is None else int(seed)
        self._task_id = "" if task_id is None else str(task_id)
        self._calls, self._return, self._error, self._record, self._info = 0, 0.0, None, None, {}
        options = {R.TASK_ID: self._task_id} if task_id is not None else None
        try:
            observation, info = self._env.reset(seed=self._seed, options=options)
        except Exception as exc:  # a reset that fails is the machinery's: the rollout is dropped, not the run
            self._error = f"reset failed: {type(exc).__name__}: {exc}"
            self._over = True
            logger.warning("execgym: %s (task %r)", self._error, self._task_id)
            return f"Infrastructure error (not your fault): {self._error}"
        self._task_id = str(info.get(R.TASK_ID, self._task_id))
        self._over = False
        return str(observation)

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one tool call of the model as one env step; the observation is the tool's result."""
        if self._over:
            return "The episode is over: no more tools can be called. Answer without a tool call."
        self._calls += 1
        call = {"id": f"call_{self._calls}", "type": "function", "function": {"name": name, "arguments": arguments}}
        return self._step({"role": "assistant", "content": "", "tool_calls": [call]})

    def _step(self, action: Any) -> str:
        try:
            observation, reward, terminated, truncated, info = self._env.step(action)
        except Exception as exc:  # the env broke: its state is unknown, so the episode cannot be scored
            self._error = f"step failed: {type(exc).__name__}: {exc}"
            self._over = True
            logger.warning("execgym: %s (task %r)", self._error, self._task_id)
            return f"Infrastructure error (not your fault): {self._error}"
        self._return += float(reward)
        if terminated or truncated:
            self._over = True
            self._info = info
        return str(observation)

    def _close(self, final_reply: str | None) -> EpisodeRecord:
        """End the episode (with the model's last answer, then by truncation) and record it; once per episode."""
        if self._record is not None:
            return self._record
        if not self._over and final_reply:
            self._step(final_reply)
        # TRL's rollout is over; the env is not: the turns it still allows end unused ("" is a reply that does
        # nothing), so it truncates and grades as it would any episode that ran out of turns.
        for _ in range(_MAX_CLOSING_STEPS):
            if self._over:
                break
            self._step("")
        else:
            self._error = f"the env did not end within {_MAX_CLOSING_STEPS} empty steps"
        final = final_of(self._info)
        infra_error = self._error or (final.infra_error if final is not None else "the episode has no final report")
        self._record = EpisodeRecord(
            task_id=self._task_id,
            seed=self._seed,
            reward=None if infra_error else self._return,
            outcome=final.outcome if final is not None else 0.0,
            infra_error=infra_error,
            submitted=final.submitted if final is not None else False,
            turns=final.turns if final is not None else 0,
        )
        self.episodes.append(self._record)
        return self._record


def execgym_reward(completions: Sequence[Any], environments: Sequence[Any] | None = None,
                   log_metric: Callable[[str, float], None] | None = None,
                   log_extra: Callable[[str, list[Any]], None] | None = None, **_: Any) -> list[float | None]:
    """TRL reward function: each rollout's episode return, or None (dropped by TRL) after an infra error.

    Pass it as ``reward_funcs`` with an ``environment_factory`` from this module; TRL calls it with the rollouts'
    completions and environment instances. A rollout whose environment is not an execgym one gets None.
    """
    if environments is None:
        raise ValueError("execgym_reward needs TRL's environments: pass environment_factory=... to GRPOTrainer")
    records = [env._close(_final_reply(completion)) if isinstance(env, ExecgymEnvironment) else None
               for completion, env in zip(completions, environments, strict=True)]
    dropped = sum(1 for record in records if record is not None and record.infra_error)
    if dropped:
        logger.warning("execgym: %d of %d rollouts had an infra error; their reward is None (TRL drops them)",
                       dropped, len(records))
    if log_metric is not None:
        log_metric("execgym/infra_errors", float(dropped))
    if log_extra is not None:
        log_extra(R.TASK_ID, [record.task_id if record else None for record in records])
        log_extra(R.OUTCOME, [record.outcome if record else None for record in records])
    return [record.reward if record else None for record in records]


def _final_reply(completion: Any) -> str | None:
    """The model's last answer in a TRL completion (a message list, or text), when it called no tool."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion:
        last = completion[-1]
        if isinstance(last, Mapping) and last.get("role") == "assistant" and not last.get("tool_calls"):
            content = last.get("content")
            return content if isinstance(content, str) else None
    return None


# ---------------------------------------------------------------------------------------------- factories
def environment_factory(env_id: str, wrappers: Iterable[Any] = (), *, tool_rows: Iterable[Mapping[str, Any]] | None
                        = None, name: str | None = None, **env_kwargs: Any) -> type[ExecgymEnvironment]:
    """The TRL environment class for ``env_id`` (``gym.make(env_id, **env_kwargs)`` with ``wrappers`` applied).

    Its tools are the env's own schemas as typed methods. An env whose tools depend on the task (ToolUse's
    domains) shows the union of the tools of the episodes ``tool_rows`` start (rows with ``task_id`` / ``seed``;
    default: every task of a finite task set, or :data:`PROBE_SEEDS` seeds of a generated one); a call of a tool
    the episode does not have gets the env's own "unknown tool" reply. To show each domain only its own tools,
    give each its factory (:func:`environment_factories`).
    """
    specs = tuple(wrappers) if not isinstance(wrappers, str) else (wrappers,)
    env = _make_env(env_id, specs, env_kwargs)
    try:
        schemas = _tool_schemas(env, tool_rows)
    finally:
        env.close()
    methods: dict[str, Any] = {}
    for schema in schemas:
        method = _tool_method(schema)
        methods[method.__name__] = method
    class_name = name or re.sub(r"\W", "_", env_id.rpartition("/")[2])
    namespace = {"env_id": env_id, "env_kwargs": dict(env_kwargs), "wrapper_specs": specs,
                 "episodes": deque(maxlen=EPISODES_KEPT), "__doc__": f"{env_id} as a TRL environment.", **methods}
    return type(class_name, (ExecgymEnvironment,), namespace)


def environment_factories(envs: Mapping[str, str | Mapping[str, Any]]) -> dict[str, type[ExecgymEnvironment]]:
    """The dict form of ``environment_factory`` for several envs in one run: ``{name: class}``.

    Each value is an env id, or a mapping with ``env_id`` and :func:`environment_factory`'s other arguments
    (``wrappers``, ``tool_rows``, env kwargs). Rows pick their env by the ``environment`` column (see
    :func:`dataset` and :func:`mixed_dataset`).
    """
    out: dict[str, type[ExecgymEnvironment]] = {}
    for key, spec in envs.items():
        kwargs = {"env_id": spec} if isinstance(spec, str) else dict(spec)
        if "env_id" not in kwargs:
            raise ValueError(f"environment {key!r}: the spec needs an 'env_id'")
        out[key] = environment_factory(kwargs.pop("env_id"), kwargs.pop("wrappers", ()),
                                       name=kwargs.pop("name", re.sub(r"\W", "_", key)), **kwargs)
    return out


def dataset(env_id: str, *, split: str | None = None, seeds: Iterable[int] | None = None,
            num_rows: int | None = None, seed: int = 0, environment: str | None = None,
            **env_kwargs: Any) -> Any:
    """A ``datasets.Dataset`` of episodes for TRL: columns ``prompt``, ``task_id``, ``seed`` (and ``environment``).

    Without ``seeds``: one row per task of the env's finite task set (``split`` / ``dataset`` as in
    ``gym.make``), the first ``num_rows``, with the env seeds ``seed, seed + 1, ...``. With ``seeds`` (or for
    generated tasks, which need ``num_rows`` or ``seeds``): one row per seed, the task the env picks for it.
    ``prompt`` holds the env's system prompt and an empty user message that TRL fills with ``reset``'s
    observation. ``environment`` (the key of an :func:`environment_factories` dict) adds that column.
    """
    import datasets

    if split is not None:
        env_kwargs["split"] = split
    env = gym.make(env_id, **env_kwargs)
    try:
        tasks = env.unwrapped.tasks  # type: ignore[attr-defined]
        if seeds is None and not tasks.unlimited:
            ids = tasks.ids()[:num_rows]
            starts: list[dict[str, Any]] = [{"task_id": tid, "seed": seed + i} for i, tid in enumerate(ids)]
        else:
            if seeds is None:
                if num_rows is None:
                    raise ValueError(f"{env_id}'s tasks are generated: give num_rows or seeds")
                seeds = range(seed, seed + num_rows)
            starts = [{"task_id": None, "seed": int(s)} for s in itertools.islice(seeds, num_rows)]
        rows = []
        for start in starts:
            options = {R.TASK_ID: start["task_id"]} if start["task_id"] is not None else None
            _obs, info = env.reset(seed=start["seed"], options=options)
            row: dict[str, Any] = {
                "prompt": [{"role": "system", "content": info[R.SYSTEM_PROMPT]}, {"role": "user", "content": ""}],
                "task_id": info[R.TASK_ID], "seed": start["seed"],
            }
            if environment is not None:
                row["environment"] = environment
            rows.append(row)
    finally:
        env.close()
    return datasets.Dataset.from_list(rows)


def mixed_dataset(parts: Mapping[str, Any], *, shuffle_seed: int | None = 0) -> Any:
    """One dataset from ``{environment name: dataset}`` (each given its ``environment`` column), shuffled."""
    import datasets

    tagged = []
    for key, part in parts.items():
        if "environment" in part.column_names:
            part = part.remove_columns("environment")
        tagged.append(part.add_column("environment", [key] * len(part)))
    mixed = datasets.concatenate_datasets(tagged)
    return mixed.shuffle(seed=shuffle_seed) if shuffle_seed is not None else mixed


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give ``tokenizer`` the response parser TRL needs to read tool calls; returns it.

    execgym's ChatML tool template (``execgym init-model``'s tokenizers) writes Hermes ``<tool_call>`` blocks as
    Qwen does, so it gets TRL's Qwen parser; any other template is left to TRL's ``add_response_schema``.
    """
    from trl.chat_template_utils import add_response_schema, qwen3_template

    from execgym.agents.chat import CHATML_TOOLS_TEMPLATE

    if getattr(tokenizer, "chat_template", None) == CHATML_TOOLS_TEMPLATE:
        tokenizer.response_template = qwen3_template
        return tokenizer
    return add_response_schema(tokenizer)


# ---------------------------------------------------------------------------------------------- tools
def _make_env(env_id: str, wrappers: Sequence[Any], env_kwargs: Mapping[str, Any]) -> gym.Env[Any, Any]:
    env = gym.make(env_id, **env_kwargs)
    return apply_wrappers(env, wrappers) if wrappers else env


def _tool_schemas(env: gym.Env[Any, Any], rows: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The union of the tool schemas of the episodes ``rows`` start (one schema per tool name)."""
    if rows is None:
        tasks = env.unwrapped.tasks  # type: ignore[attr-defined]
        rows = ([{"seed": s} for s in range(PROBE_SEEDS)] if tasks.unlimited
                else [{"task_id": tid} for tid in tasks.ids()])
    by_name: dict[str, dict[str, Any]] = {}
    for row in rows:
        task_id = row.get("task_id")
        _obs, info = env.reset(seed=row.get("seed"), options={R.TASK_ID: task_id} if task_id is not None else None)
        for schema in info[R.TOOLS]:
            name = schema["function"]["name"]
            if by_name.setdefault(name, schema) != schema:
                raise ValueError(f"tool {name!r} has different schemas in different tasks: give each its factory "
                                 "(environment_factories) with tool_rows of one kind")
    if not by_name:
        raise ValueError("the env's episodes have no tools")
    return list(by_name.values())


def _tool_method(schema: Mapping[str, Any]) -> Callable[..., str]:
    """A method with the tool's signature, type hints and Google-style docstring (what TRL reads for a tool)."""
    function = schema["function"]
    name = str(function["name"])
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") or name in _RESERVED:
        raise ValueError(f"tool {name!r} cannot be a TRL environment method (a public Python name other than "
                         f"{', '.join(sorted(_RESERVED))})")
    parameters = function.get("parameters") or {}
    properties: Mapping[str, Any] = parameters.get("properties") or {}
    required = set(parameters.get("required") or ())
    signature = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    arg_docs = []
    # Required arguments first: a Python signature cannot have one after an argument with a default.
    defs = _Defs(parameters.get("$defs") or parameters.get("definitions") or {})
    for arg in sorted(properties, key=lambda a: a not in required):
        if not arg.isidentifier() or keyword.iskeyword(arg):
            raise ValueError(f"tool {name!r}: argument {arg!r} is not a Python name, so TRL cannot call it")
        prop = defs.resolve(properties[arg])
        annotations[arg] = _hint(prop, defs)
        default = inspect.Parameter.empty if arg in required else prop.get("default")
        signature.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, default=default,
                                           annotation=annotations[arg]))
        text = _one_line(prop.get("description")) or f"the {arg} argument."
        arg_docs.append(f"    {arg}: {text}{_fields_note(prop, defs)}")
    description = _one_line(function.get("description")) or f"Call the tool {name}."
    doc = description + ("\n\nArgs:\n" + "\n".join(arg_docs) if arg_docs else "")
    doc += "\n\nReturns:\n    The tool's result, as the env reports it."

    def tool(self: ExecgymEnvironment, **arguments: Any) -> str:
        # Only what the model sent goes to the env: it applies its own defaults and checks the arguments.
        return self._call(name, arguments)

    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = doc
    tool.__signature__ = inspect.Signature(signature, return_annotation=str)  # type: ignore[attr-defined]
    tool.__annotations__ = {**annotations, "return": str}
    return tool


class _Defs:
    """A schema's ``$defs``, to follow its local ``$ref`` s (pydantic writes nested models that way)."""

    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs

    def resolve(self, prop: Any, depth: int = 0) -> Mapping[str, Any]:
        if not isinstance(prop, Mapping):
            return {}
        ref = prop.get("$ref")
        if isinstance(ref, str) and depth < 32:
            target = self.defs.get(ref.rpartition("/")[2])
            return {**self.resolve(target, depth + 1), **{k: v for k, v in prop.items() if k != "$ref"}}
        return prop

    def inline(self, prop: Any, depth: int = 0) -> Any:
        """``prop`` with every ``$ref`` replaced by its definition (titles dropped: the names say it)."""
        if isinstance(prop, Mapping) and depth < 32:
            return {k: self.inline(v, depth + 1) for k, v in self.resolve(prop).items() if k != "title"}
        if isinstance(prop, list):
            return [self.inline(v, depth + 1) for v in prop]
        return prop


def _hint(prop: Mapping[str, Any], defs: _Defs) -> Any:
    """The Python type hint whose JSON schema (as transformers writes it) is ``prop``'s."""
    prop = defs.resolve(prop)
    enum = prop.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str | int | float | bool) or v is None for v in enum):
        return Literal[tuple(enum)]
    options = prop.get("anyOf") or prop.get("oneOf")
    if isinstance(options, list) and options:
        return _union([_hint(o, defs) for o in options if isinstance(o, Mapping)])
    kind = prop.get("type")
    if isinstance(kind, list):
        return _union([_hint({**prop, "type": k}, defs) for k in kind])
    if kind == "array":
        items = defs.resolve(prop.get("items"))
        return list[_hint(items, defs)] if items else list
    if kind == "object":
        values = defs.resolve(prop.get("additionalProperties"))
        return dict[str, _hint(values, defs)] if values else dict
    return _JSON_TYPES.get(kind, Any) if isinstance(kind, str) else Any


def _fields_note(prop: Mapping[str, Any], defs: _Defs) -> str:
    """The shape of an object argument (or of its items), which a Python hint (``dict``) cannot carry."""
    items = defs.resolve(prop.get("items")) if prop.get("type") == "array" else prop
    if items.get("type") != "object" or not isinstance(items.get("properties"), Mapping):
        return ""
    shape = {k: v for k, v in defs.inline(items).items() if k in ("properties", "required")}
    what = "Each item is an object" if items is not prop else "An object"
    return f" {what}: {json.dumps(shape, ensure_ascii=False, sort_keys=True)}"


def _union(hints: list[Any]) -> Any:
    unique = list(dict.fromkeys(hints))
    return Union[tuple(unique)] if len(unique) > 1 else (unique[0] if unique else Any)  # noqa: UP007


def _one_line(text: Any) -> str:
    return " ".join(str(text).split()) if text else ""

