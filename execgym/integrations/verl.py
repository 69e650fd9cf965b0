"""verl: an agent loop, registered with verl's agent-loop registry as ``"execgym"``, that plays an execgym env.

verl's rollout worker (``AgentLoopWorker``) runs one agent loop per dataset row. This one resets the execgym env
the row names, renders its first chat (system prompt, task, tools) with the policy's chat template, and then, turn
by turn, asks verl's server manager for tokens (``server_manager.generate(prompt_ids=...)``), steps the env with
the decoded reply, and appends the env's messages (tool results, user turns) as tokens. Everything is token ids
from the start: the policy's own tokens are never re-tokenised, and the junctions between the policy's and the
env's tokens are verl's own Continuous Token builder's (the ``ct_*`` methods of ``AgentLoopBase``).

It returns verl's ``AgentLoopOutput``: ``prompt_ids`` (the first chat), ``response_ids`` (every later token),
``response_mask`` (1 on the policy's tokens, 0 on the env's and on the template's boundary tokens, so env tokens
never carry loss), ``response_logprobs`` (the server's, 0.0 on env tokens), ``reward_score`` (the episode's
return, after the reward wrappers) and ``num_turns`` (the first chat, each reply, each env answer). When the
response budget (``rollout.response_length``) runs out before the env ends the episode, the loop stops there: the
reward is the return so far and ``reward_extra_info["execgym_ended"]`` is 0.0 (give the env a ``max_turns`` that
fits the budget, so that it grades every episode).

A row says which episode to play under ``extra_info["execgym"]`` (a mapping or its JSON, see :func:`episode_of`):
``env_id``, ``seed`` and ``task_id`` (given to ``reset``, so a run is reproducible), ``env_kwargs`` and
``wrappers`` (:func:`execgym.wrappers.apply_wrappers` specs); :func:`dataset_rows` writes such rows, and the loop's
own config (``agent_loop_config_path`` entries) may set defaults for all rows. Use it with::

    import pandas as pd
    from execgym.integrations.verl import dataset_rows
    pd.DataFrame(dataset_rows("execgym/ToolUse-v0", 256, wrappers=["HackPenalty"])).to_parquet("train.parquet")

and, since verl's rollout workers are Ray actors that import the loop by its class path, name it in an
``agent_loop_config_path`` file (its other keys are the defaults for the rows)::

    # execgym_loops.yaml
    - name: execgym
      _target_: execgym.integrations.verl.ExecgymAgentLoop
      env_kwargs: {max_turns: 8}

    python -m verl.trainer.main_ppo data.train_files=train.parquet \
        actor_rollout_ref.rollout.agent.agent_loop_config_path=execgym_loops.yaml ...

verl has no way for an agent loop to drop a sample (the worker returns one output per row), so an episode whose
machinery failed (``infra_error``, or a reward that was not a finite number) is masked instead: its
``response_mask`` is all 0 (none of its tokens carries loss), its ``reward_score`` is 0.0,
``extra_fields["execgym_error"]`` says why, ``reward_extra_info["execgym_infra_error"]`` is 1.0 (verl logs it
with the batch), and the loop logs it with a running count (:func:`infra_error_count`). The sample still counts in
its GRPO group's mean and spread; filter on ``execgym_infra_error`` where that matters.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from omegaconf import DictConfig, ListConfig, OmegaConf
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer
from verl.workers.rollout.replica import TokenOutput

import execgym  # noqa: F401  (registers the envs for gym.make)
from execgym.core import report as R
from execgym.rollout.episode import EpisodeAccumulator, EpisodeSpec, episode_specs, make_wrapped_env

__all__ = ["AGENT_NAME", "ROW_KEY", "ExecgymAgentLoop", "VerlEpisode", "dataset_rows", "episode_of",
           "infra_error_count"]

logger = logging.getLogger(__name__)

AGENT_NAME = "execgym"
"""The name the loop is registered under (a row's ``agent_name``, or ``rollout.agent.default_agent_loop``)."""
ROW_KEY = "execgym"
"""The key under a row's ``extra_info`` that says which episode to play."""

_infra_errors = 0
_infra_lock = threading.Lock()  # one worker runs many loops; counts from any thread stay exact


def infra_error_count() -> int:
    """How many episodes this process masked because their machinery failed."""
    return _infra_errors


@dataclass(frozen=True)
class VerlEpisode:
    """Which episode a row plays: the env, how to build it, and what ``reset`` gets."""

    env_id: str
    seed: int | None = None
    task_id: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    wrappers: list[Any] = field(default_factory=list)

    def to_json(self) -> str:
        """The row field: JSON, so rows of different envs share one parquet column type (fields left unset are
        left out, so the loop's config fills them in)."""
        fields = {"env_id": self.env_id, "seed": self.seed, "task_id": self.task_id, "env_kwargs": self.env_kwargs,
                  "wrappers": self.wrappers}
        return json.dumps({k: v for k, v in fields.items() if v not in (None, {}, [])})

    @property
    def options(self) -> dict[str, Any] | None:
        return None if self.task_id is None else {R.TASK_ID: self.task_id}


def episode_of(extra_info: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None) -> VerlEpisode:
    """The episode a row's ``extra_info`` names; the row's fields override ``defaults`` (the loop's config), and
    its ``env_kwargs`` are added to the defaults' ones.

    Example:
        >>> episode_of({"execgym": '{"env_id": "execgym/ToolUse-v0", "seed": 3}'}).seed
        3
        >>> episode_of({}, {"env_id": "execgym/TextToSQL-v0", "task_id": "q1"}).options
        {'task_id': 'q1'}
    """
    fields: dict[str, Any] = dict(defaults or {})
    own = (extra_info or {}).get(ROW_KEY)
    if isinstance(own, str):
        own = json.loads(own)
    if own is not None and not isinstance(own, Mapping):
        raise TypeError(f"extra_info[{ROW_KEY!r}] must be a mapping or its JSON, got {type(own).__name__}")
    own = {k: v for k, v in (own or {}).items() if v is not None}
    env_kwargs = {**dict(fields.get("env_kwargs") or {}), **dict(own.pop("env_kwargs", None) or {})}
    fields.update(own, env_kwargs=env_kwargs)
    if not fields.get("env_id"):
        raise ValueError(f"no env_id: set extra_info[{ROW_KEY!r}]['env_id'] in the row or env_id in the loop's config")
    seed, task_id = fields.get("seed"), fields.get("task_id")
    return VerlEpisode(env_id=str(fields["env_id"]), seed=None if seed is None else int(seed),
                       task_id=None if task_id is None else str(task_id),
                       env_kwargs=env_kwargs, wrappers=list(fields.get("wrappers") or []))


def dataset_rows(env_id: str, episodes: int | Iterable[EpisodeSpec] = 1, *, seed: int = 0,
                 env_kwargs: Mapping[str, Any] | None = None, wrappers: Sequence[Any] = (),
                 agent_name: str = AGENT_NAME) -> Iterator[dict[str, Any]]:
    """verl dataset rows (``RLHFDataset`` columns) for ``episodes``: an int ``n`` means seeds ``seed..seed+n-1``,
    or give :class:`~execgym.rollout.episode.EpisodeSpec` s with ``{"task_id": ...}`` options.

    Each row has the env's first chat as ``prompt`` (verl filters over-long prompts on it), ``agent_name`` (the
    loop's name, or the ``name`` of its entry in ``agent_loop_config_path``), and under ``extra_info`` the row's
    ``index`` and the episode (the ``task_id`` its spec picked and its ``seed``).
    """
    env = make_wrapped_env(env_id, env_kwargs, wrappers)
    try:
        for index, spec in enumerate(episode_specs(episodes, seed=seed)):
            _observation, info = env.reset(seed=spec.seed, options=spec.options)
            episode = VerlEpisode(env_id=env_id, seed=spec.seed, task_id=str(info[R.TASK_ID]),
                                  env_kwargs=dict(env_kwargs or {}), wrappers=list(wrappers))
            yield {"data_source": env_id, "prompt": list(info[R.MESSAGES]), "agent_name": agent_name,
                   "extra_info": {"index": index, ROW_KEY: episode.to_json()}}
    finally:
        env.close()


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


@register(AGENT_NAME)
class ExecgymAgentLoop(AgentLoopBase):
    """Plays one execgym episode per call of :meth:`run`, in token ids, through verl's server manager.

    ``env_id``, ``env_kwargs``, ``wrappers``, ``seed`` and ``task_id`` given here (from the loop's entry in
    ``agent_loop_config_path``) are defaults for rows that do not set them.
    """

    def __init__(self, *args: Any, env_id: str | None = None, env_kwargs: Mapping[str, Any] | None = None,
                 wrappers: Sequence[Any] | None = None, seed: int | None = None, task_id: str | None = None,
                 **kwargs: Any) -> None:
        kwargs.pop("tools", None)  # verl's own tool list: an execgym env brings its tools
        kwargs.pop("name", None)  # the name of the loop's entry in agent_loop_config_path, which hydra passes on
        super().__init__(*args, **kwargs)
        # hydra hands over the entry's mappings as DictConfig: plain data, as gym.make and the wrappers expect.
        self.defaults = {"env_id": env_id, "env_kwargs": _plain(env_kwargs) or {}, "wrappers": _plain(wrappers) or [],
                         "seed": seed, "task_id": task_id}
        self.response_length = int(self.rollout_config.response_length)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        """Play the row's episode; ``kwargs`` are the row's fields (``extra_info``, ``priority``, ...)."""
        episode = episode_of(kwargs.get("extra_info"), self.defaults)
        env = await self.loop.run_in_executor(
            None, lambda: make_wrapped_env(episode.env_id, episode.env_kwargs, episode.wrappers))
        try:
            return await self._play(env, episode, sampling_params, int(kwargs.get("priority", 0)))
        finally:
            await self.loop.run_in_executor(None, env.close)

    async def _play(self, env: Any, episode: VerlEpisode, sampling_params: dict[str, Any],
                    priority: int) -> AgentLoopOutput:
        metrics: dict[str, Any] = {}
        acc = EpisodeAccumulator(episode.seed, trace=True)
        with simple_timer("tool_calls", metrics):
            observation, info = await self.loop.run_in_executor(
                None, lambda: env.reset(seed=episode.seed, options=episode.options))
        acc.begin(observation, info)
        messages: list[dict[str, Any]] = list(info[R.MESSAGES])
        tools: list[dict[str, Any]] = list(info[R.TOOLS])
        tokens = await self.ct_build_initial_tokens(messages, tools=tools)
        mask: list[int] = []
        logprobs: list[float] | None = None
        extra_fields: dict[str, Any] = {}
        request_id = f"det-{priority}" if getattr(self.rollout_config, "full_determinism", False) else uuid4().hex
        replies = answers = 0
        while not acc.over and len(mask) < self.response_length:
            params = dict(sampling_params)
            # The server never generates past the response budget (verl cuts the response there anyway).
            params["max_tokens"] = min(int(params.get("max_tokens") or self.response_length),
                                       self.response_length - len(mask))
            with simple_timer("generate_sequences", metrics):
                output: TokenOutput = await self.server_manager.generate(
                    request_id=request_id, prompt_ids=tokens, sampling_params=params, priority=priority)
            # As verl's own loops count it: -1 while the server reports nothing.
            if "num_preempted" not in metrics:
                metrics["num_preempted"] = -1 if output.num_preempted is None else output.num_preempted
            elif output.num_preempted is not None:
                metrics["num_preempted"] = max(metrics["num_preempted"], 0) + output.num_preempted
            if not extra_fields:
                extra_fields.update(output.extra_fields)
            if output.log_probs and logprobs is None:
                logprobs = [0.0] * len(mask)  # env tokens before the first scored reply carry no log-prob
            merged, mask, logprobs = await self.ct_merge_assistant_token(
                tokens, output.token_ids, mask, logprobs, assistant_logprobs=output.log_probs or None)
            tokens = merged.token_ids
            replies += 1
            reply = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
            with simple_timer("tool_calls", metrics):
                step = await self.loop.run_in_executor(None, env.step, reply)
            acc.add_step(reply, *step)
            if acc.over:
                break
            new_messages = list(acc.info.get(R.NEW_MESSAGES) or [])
            if len(new_messages) < 2:  # an env that answered nothing: nothing to append
                continue
            # The env's own assistant message stands for the reply (its tokens are already in place); only the
            # messages after it are rendered, as context tokens with mask 0.
            before = [*messages, new_messages[0]]
            messages = [*before, *new_messages[1:]]
            merged, mask, logprobs = await self.ct_merge_context_msg(before, messages, tokens, mask, logprobs,
                                                                      tools=tools)
            tokens = merged.token_ids
            answers += 1
        return self._output(acc, tokens, mask, logprobs, replies + answers + 1, metrics, extra_fields, episode)

    def _output(self, acc: EpisodeAccumulator, tokens: list[int], mask: list[int],
                logprobs: list[float] | None, num_turns: int, metrics: dict[str, Any], extra_fields: dict[str, Any],
                episode: VerlEpisode) -> AgentLoopOutput:
        result = acc.result()
        error = result.infra_error or result.reward_error
        reward = result.total_reward
        if error is not None:
            global _infra_errors
            with _infra_lock:
                _infra_errors += 1
                count = _infra_errors
            logger.warning("execgym episode %s (task %s) masked: %s (%d masked so far)", episode.env_id,
                           result.task_id, error, count)
            mask, reward = [0] * len(mask), 0.0
        cut = self.response_length
        start = len(tokens) - len(mask)  # as verl's loops split: the mask covers exactly the response
        final = R.final_of(acc.info)
        extra_fields.update({
            "turn_scores": [] if error else list(acc.trace.rewards if acc.trace else []),
            "tool_rewards": [],
            "execgym_task_id": result.task_id,
            "execgym_seed": episode.seed,
            "execgym_error": error,
            "execgym_components": result.reward_components,
            "execgym_final": None if final is None else final.as_info(),
            # verl puts these in the batch and logs them: the same keys for every execgym row.
            "reward_extra_info": {"execgym_outcome": result.outcome, "execgym_infra_error": float(error is not None),
                                  "execgym_ended": float(acc.over)},
        })
        return AgentLoopOutput(
            prompt_ids=tokens[:start],
            response_ids=tokens[start:][:cut],
            response_mask=mask[:cut],
            response_logprobs=None if logprobs is None else logprobs[:cut],
            reward_score=reward,
            num_turns=num_turns,
            metrics=metrics,
            extra_fields=extra_fields,
        )
