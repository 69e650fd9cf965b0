"""AgentEnv: the multi-turn, tool-calling ``gymnasium.Env`` every env family derives from.

One episode is one task; one step is one agent turn. The env's own reward is the sparse outcome (0 until
the end, the task's success at the end); everything richer lives in ``info`` as data (see DESIGN.md):
``reward_components`` every step, and at the end ``outcome``, ``units``, ``checklist``, ``hack_flags`` and
``infra_error``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
from gymnasium.error import ResetNeeded

from execgym.core.actions import ParsedAction, ToolCall, parse_action, sanitize_text
from execgym.core.errors import InfraError
from execgym.core.finite import REWARD_ISSUES, flag_issue, number_problem
from execgym.core.spaces import UnicodeText
from execgym.core.tasks import Generator, Loader, Task, TaskSet, load_taskset
from execgym.core.tools import Tool, ToolError, ToolOutput, tool_schemas

__all__ = ["AgentEnv", "EpisodeSnapshot", "Grade", "render_transcript", "truncate_middle"]

def truncate_middle(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, keeping its head and tail and saying what was cut.

    Example:
        >>> truncate_middle("a" * 50 + "b" * 50, 60).count("truncated")
        1
        >>> len(truncate_middle("x" * 1000, 80)) <= 80
        True
    """
    if len(text) <= limit:
        return text
    note = f"\n[... {len(text) - limit} characters truncated ...]\n"
    if limit <= len(note) + 2:
        return text[:limit]
    # The marker itself takes room; recompute so the result fits exactly.
    keep = limit - len(f"\n[... {len(text)} characters truncated ...]\n")
    head = keep * 2 // 3
    tail = keep - head
    cut = len(text) - head - tail
    note = f"\n[... {cut} characters truncated ...]\n"
    return text[:head] + note + (text[-tail:] if tail > 0 else "")


@dataclass
class Grade:
    """What an env's grader concluded about a finished episode.

    Attributes:
        outcome: task success in 0..1 (the env's terminal reward).
        components: named reward components computed at grading (``schema_link``, ``iou``, ...).
        units: per unit test / per check results: ``{"id": ..., "passed": bool, ...}``.
        checklist: per criterion: ``{"id": ..., "passed": bool, "evidence": str, ...}``.
        hack_flags: what the grader saw that looks like gaming it.
        details: anything else worth logging (not used by rewards).
    """

    outcome: float
    components: dict[str, float] = field(default_factory=dict)
    units: list[dict[str, Any]] = field(default_factory=list)
    checklist: list[dict[str, Any]] = field(default_factory=list)
    hack_flags: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeSnapshot:
    """The full state of an episode at one step, as returned by :meth:`AgentEnv.snapshot`."""

    env_class: str
    task: Task
    turn: int
    over: bool
    messages: list[dict[str, Any]]
    final_info: dict[str, Any] | None
    np_random_state: dict[str, Any]
    state: Any
    seen_results: frozenset[str] = frozenset()


class AgentEnv(gym.Env[str, Any]):
    """Base class of every execgym env: turns, tools, truncation, reward components, rendering.

    Subclasses provide the tasks (``bundled_tasks`` / ``generate_task`` / ``loaders``) and the episode
    hooks ``_begin``, ``_tools``, ``_grade`` and optionally ``_system_prompt``, ``_on_reply``, ``_end``.

    Args:
        dataset: ``"bundled"``, ``"generated[:difficulty]"`` or ``"<format>:<path>"`` (see ``loaders``).
        split: the split to use (bundled: a filter; loaded datasets: which file).
        max_turns: the episode is truncated after this many steps.
        render_mode: ``"ansi"`` returns a text transcript from ``render()``.
        max_observation_chars: observations longer than this are cut in the middle.
        max_action_chars: a reply longer than this is rejected as malformed.
        tasks: a ready task set (overrides ``dataset``/``split``).

    Every argument is checked at construction; a wrong type or value is a one-line ``TypeError`` /
    ``ValueError`` naming the argument. ``reset`` accepts the option keys in ``reset_options`` (``task_id``).

    Reward components (from tools, replies and grading) are reported only when they are real, finite and in
    their range: ``component_ranges`` (name -> ``(low, high)``), else ``default_component_range`` (0..1).
    Any other value is dropped from ``reward_components`` and noted in ``info["reward_issues"]``; a grade
    whose outcome is not a number in 0..1 makes the episode an ``infra_error``.

    Example (the core tests define a small env; real ones are registered under ``execgym/``):
        >>> import gymnasium as gym, execgym
        >>> env = gym.make("execgym/TextToSQL-v0")                        # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)                                  # doctest: +SKIP
        >>> obs, reward, terminated, truncated, info = env.step(
        ...     '<tool_call>{"name": "list_tables", "arguments": {}}</tool_call>')  # doctest: +SKIP
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}
    description: ClassVar[str] = ""
    default_max_turns: ClassVar[int] = 20
    loaders: ClassVar[Mapping[str, Loader]] = {}
    reset_options: ClassVar[frozenset[str]] = frozenset({"task_id"})
    component_ranges: ClassVar[Mapping[str, tuple[float, float]]] = {}
    default_component_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __init__(
        self,
        *,
        dataset: str | None = None,
        split: str | None = None,
        max_turns: int | None = None,
        render_mode: str | None = None,
        max_observation_chars: int = 32_768,
        max_action_chars: int = 200_000,
        tasks: TaskSet | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} not in {self.metadata['render_modes']}")
        for name, value in (("dataset", dataset), ("split", split)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__} {value!r}")
        if tasks is not None and not isinstance(tasks, TaskSet):
            raise TypeError(f"tasks must be a TaskSet or None, got {type(tasks).__name__}")
        self.render_mode = render_mode
        self.max_turns = _positive_int("max_turns", max_turns if max_turns is not None else self.default_max_turns)
        self.max_observation_chars = _positive_int("max_observation_chars", max_observation_chars)
        self.max_action_chars = _positive_int("max_action_chars", max_action_chars)
        self.observation_space = UnicodeText(self.max_observation_chars)
        self.action_space = UnicodeText(self.max_action_chars)
        self.tasks = tasks if tasks is not None else self._load_tasks(dataset, split)
        self.task: Task | None = None
        self.messages: list[dict[str, Any]] = []
        self.turn = 0
        self._tools_by_name: dict[str, Tool] = {}
        self._over = True
        self._end_requested = False
        self._final_info: dict[str, Any] | None = None
        # Digests of (call, result) pairs seen this episode: a repeat that returns the same result earns no format.
        self._seen_results: set[str] = set()

    # ----------------------------------------------------------------- task sources (class-level)
    @classmethod
    def bundled_tasks(cls) -> Sequence[Task] | None:
        """The tasks shipped with the env, or None when it has none."""
        return None

    @classmethod
    def task_generator(cls) -> Generator | None:
        """A seeded generator ``(seed, difficulty) -> Task`` for unlimited tasks, or None."""
        return None

    def _load_tasks(self, dataset: str | None, split: str | None) -> TaskSet:
        bundled = type(self).bundled_tasks
        # Bound classmethods are new objects on every access: compare the functions behind them.
        has_bundled = bundled.__func__ is not AgentEnv.bundled_tasks.__func__
        generator = self.task_generator()
        if dataset is None:
            dataset = "bundled" if has_bundled else "generated"
        return load_taskset(
            dataset,
            split,
            bundled=bundled if has_bundled else None,
            generator=generator,
            loaders=self.loaders,
            env_name=type(self).__name__,
        )

    # ----------------------------------------------------------------- hooks for subclasses
    def _begin(self, task: Task) -> str:
        """Set up the episode for ``task``; return the first observation (the task statement)."""
        return task.prompt

    def _tools(self, task: Task) -> list[Tool]:
        """The tools the agent has in this episode."""
        raise NotImplementedError

    def _system_prompt(self, task: Task) -> str:
        return (
            "You are an agent solving a task by calling tools. Call a tool by writing "
            '<tool_call>{"name": <tool>, "arguments": {...}}</tool_call>; several blocks run in order.'
        )

    def _on_reply(self, text: str) -> ToolOutput | None:
        """Handle a reply that holds text and no tool call. None: it is a format error."""
        return None

    def _grade(self, submitted: bool) -> Grade:
        """Grade the episode. ``submitted`` is False when it ended by truncation."""
        raise NotImplementedError

    def _end(self) -> None:
        """Release the episode's resources (sandboxes, connections)."""

    def _snapshot_state(self) -> Any:
        """The env's own episode state (services, sandbox files, ...) as a value ``_restore_state`` accepts.

        The value must stay valid when the episode goes on (copy, don't alias) and, to restore into another
        instance of the same env id, hold no reference to this instance's resources.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support snapshot()")

    def _restore_state(self, state: Any) -> None:
        """Bring the env's own episode state back from ``_snapshot_state``'s value."""
        raise NotImplementedError(f"{type(self).__name__} does not support restore()")

    def end_episode(self) -> None:
        """Ask for the episode to terminate after this step (for ``_on_reply`` and tools)."""
        self._end_requested = True

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        options = self._check_options(options)
        super().reset(seed=seed)
        if self.task is not None:
            self._end()
        task_id = options.get("task_id")
        self.task = self.tasks.get(str(task_id)) if task_id is not None else self.tasks.sample(self.np_random)
        self.turn = 0
        self._over = False
        self._end_requested = False
        self._final_info = None
        self._seen_results = set()
        try:
            statement = self._begin(self.task)
        except InfraError:
            # One retry: a crashed sandbox or daemon hiccup should not cost the caller the reset.
            self._end()
            statement = self._begin(self.task)
        tools = self._tools(self.task)
        self._tools_by_name = {t.name: t for t in tools}
        schemas = tool_schemas(tools)
        statement = truncate_middle(sanitize_text(statement), self.max_observation_chars)
        system = self._system_prompt(self.task)
        self.messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": statement},
        ]
        info = {
            "task_id": self.task.id,
            "difficulty": self.task.difficulty,
            "split": self.task.split,
            "tools": schemas,
            "system_prompt": system,
            "messages": list(self.messages),
        }
        return statement, info

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if self.task is None:
            raise ResetNeeded("Cannot call env.step() before calling env.reset()")
        if self._over:
            raise ResetNeeded("The episode is over (terminated or truncated): call env.reset() before step()")
        self.turn += 1
        components: dict[str, float] = {}
        issues: dict[str, Any] = {}
        infra_error: str | None = None
        new_messages: list[dict[str, Any]] = []
        call_log: list[dict[str, Any]] = []

        parsed = self._parse(action)
        assistant: dict[str, Any] = {"role": "assistant", "content": parsed.text}
        if isinstance(action, str):
            assistant["content"] = sanitize_text(action)[: self.max_action_chars]
        if parsed.calls:
            assistant["tool_calls"] = [c.to_openai() for c in parsed.calls]
        new_messages.append(assistant)

        terminal = False
        if parsed.errors:
            components["format"] = 0.0
            observation = "Your reply could not be used:\n" + "\n".join(f"- {e}" for e in parsed.errors)
            observation += "\nAvailable tools: " + ", ".join(self._tools_by_name)
            new_messages.append({"role": "user", "content": observation})
        elif not parsed.calls:
            reply = self._on_reply(parsed.text)
            if reply is None:
                components["format"] = 0.0
                observation = (
                    "No tool call found in your reply. Call a tool with "
                    '<tool_call>{"name": ..., "arguments": {...}}</tool_call>. Available tools: '
                    + ", ".join(self._tools_by_name)
                )
            else:
                observation = reply.content
                new = self._remember_result("reply", parsed.text, sanitize_text(str(observation)))
                components.update(self._checked_components(reply.components, "reply", issues))
                components["format"] = 1.0 if new else 0.0  # the core's own component: a tool cannot set it
            new_messages.append({"role": "user", "content": observation})
        else:
            fresh = False
            outputs: list[str] = []
            gathered: dict[str, list[float]] = {}
            for call in parsed.calls:
                tool = self._tools_by_name[call.name]
                try:
                    out = self._run_tool(tool, call)
                except InfraError as exc:
                    infra_error = f"{type(exc).__name__}: {exc}"
                    out = ToolOutput(f"Infrastructure error (not your fault): {exc}", is_error=True)
                call_log.append({"name": call.name, "arguments": call.arguments, "error": out.is_error})
                for key, value in self._checked_components(out.components, f"tool {call.name}", issues).items():
                    gathered.setdefault(key, []).append(value)
                content = truncate_middle(sanitize_text(str(out.content)), self.max_observation_chars)
                fresh = self._remember_result(call.name, call.arguments, content) or fresh
                new_messages.append(
                    {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}
                )
                outputs.append(content)
                if infra_error:
                    break
                if tool.terminal:
                    terminal = True
                    break
            # Well-formed, and not only repeats of calls that already returned the same result this episode.
            components.update({k: math.fsum(v) / len(v) for k, v in gathered.items()})
            components["format"] = 1.0 if fresh or infra_error else 0.0
            if len(outputs) == 1 and len(parsed.calls) == 1:
                observation = outputs[0]
            else:
                parts = [f"[{i}] {log['name']}:\n{text}" for i, (log, text) in enumerate(zip(call_log, outputs), 1)]
                skipped = len(parsed.calls) - len(call_log)
                if skipped and not infra_error:
                    parts.append(f"({skipped} later call(s) were not run: {call_log[-1]['name']} ended the episode)")
                observation = "\n\n".join(parts)
        self.messages.extend(new_messages)

        terminated = (terminal or self._end_requested) and infra_error is None
        truncated = infra_error is not None or (not terminated and self.turn >= self.max_turns)
        info: dict[str, Any] = {
            "task_id": self.task.id,
            "turn": self.turn,
            "reward_components": components,
            "tool_calls": call_log,
            "new_messages": new_messages,
        }
        reward = 0.0
        if terminated or truncated:
            self._over = True
            final, grade_components = self._finish(submitted=terminated, infra_error=infra_error, issues=issues)
            info.update(final)
            # Grading components win over this step's components of the same name (SQL's `executed`).
            info["reward_components"] = {**components, **grade_components}
            reward = final["outcome"]
        if issues:
            info[REWARD_ISSUES] = list(issues[REWARD_ISSUES])
        observation = truncate_middle(observation, self.max_observation_chars)
        return observation, reward, terminated, truncated, info

    def _check_options(self, options: Any) -> dict[str, Any]:
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise TypeError(f"reset options must be a dict, got {type(options).__name__}")
        known = sorted(self.reset_options)
        unknown = sorted(repr(k) for k in options if k not in self.reset_options)
        if unknown:
            raise ValueError(f"unknown reset option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        task_id = options.get("task_id")
        if task_id is not None and (isinstance(task_id, bool) or not isinstance(task_id, str | int)):
            raise TypeError(f"reset option task_id must be a str, got {type(task_id).__name__}")
        return dict(options)

    def _checked_components(self, raw: Any, where: str, issues: dict[str, Any]) -> dict[str, float]:
        """The components of ``raw`` that are real, finite numbers in their range; the rest are noted."""
        if not isinstance(raw, Mapping):
            if raw:
                flag_issue(issues, type(self).__name__, f"{where} components", raw, "are not a mapping")
            return {}
        out: dict[str, float] = {}
        for key, value in raw.items():
            name = str(key)
            low, high = self.component_ranges.get(name, self.default_component_range)
            problem = number_problem(value, low=low, high=high)
            if problem:
                flag_issue(issues, type(self).__name__, f"{where} component {name!r}", value, problem)
                continue
            out[name] = float(value)
        return out

    def _remember_result(self, name: str, arguments: Any, result: str) -> bool:
        """Note a call and its result; True when this pair was not seen before in the episode."""
        key = json.dumps([name, arguments, result], sort_keys=True, ensure_ascii=True, default=repr)
        digest = hashlib.blake2b(key.encode("ascii", "backslashreplace"), digest_size=16).hexdigest()
        if digest in self._seen_results:
            return False
        self._seen_results.add(digest)
        return True

    def _parse(self, action: Any) -> ParsedAction:
        if isinstance(action, str) and len(action) > self.max_action_chars:
            return ParsedAction(
                errors=[f"the reply is {len(action):,} characters long, over the limit of {self.max_action_chars:,}"]
            )
        if isinstance(action, str) and not action.strip():
            return ParsedAction(errors=["the reply is empty: write a tool call or an answer"])
        try:
            return parse_action(action, self._tools_by_name, call_id_prefix=f"call_{self.turn}")
        except RecursionError:
            return ParsedAction(errors=["the action is nested too deeply to parse"])

    def _run_tool(self, tool: Tool, call: ToolCall) -> ToolOutput:
        try:
            value = tool(**call.arguments)
        except ToolError as exc:
            return ToolOutput(f"Error: {exc}", is_error=True)
        except InfraError:
            raise
        except Exception as exc:  # a tool bug must not crash a training loop; the agent sees what failed
            return ToolOutput(f"Error: {call.name} failed: {type(exc).__name__}: {exc}", is_error=True)
        if isinstance(value, ToolOutput):
            return value
        if isinstance(value, str):
            return ToolOutput(value)
        return ToolOutput(json.dumps(value, ensure_ascii=False, default=str))

    def _finish(
        self, *, submitted: bool, infra_error: str | None, issues: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, float]]:
        if infra_error is not None:
            grade = Grade(outcome=0.0)
        else:
            try:
                grade = self._grade(submitted)
            except InfraError as exc:
                infra_error = f"{type(exc).__name__}: {exc}"
                grade = Grade(outcome=0.0)
        problem = number_problem(grade.outcome, low=0.0, high=1.0)
        if problem:
            # A grader that cannot say how well the episode went failed; its sample must not look like a 0.
            infra_error = f"the grader's outcome {grade.outcome!r} {problem}"
            flag_issue(issues, type(self).__name__, "outcome", grade.outcome, problem)
            grade = Grade(outcome=0.0, details=grade.details)
        final = {
            "outcome": float(grade.outcome),
            "units": grade.units,
            "checklist": grade.checklist,
            "hack_flags": list(grade.hack_flags),
            "infra_error": infra_error,
            "submitted": submitted,
            "turns": self.turn,
        }
        if grade.details:
            final["grade_details"] = grade.details
        self._final_info = final
        return final, self._checked_components(grade.components, "grade", issues)

    def snapshot(self) -> EpisodeSnapshot:
        """A handle to the episode's full state, to continue from later with :meth:`restore`.

        Restoring continues the episode in this env or in another instance of the same env id, so a trainer
        can branch a GRPO group or a search tree from one intermediate state without replaying the prefix.
        """
        if self.task is None:
            raise ResetNeeded("Cannot snapshot before reset()")
        return EpisodeSnapshot(
            env_class=f"{type(self).__module__}:{type(self).__qualname__}",
            task=self.task,
            turn=self.turn,
            over=self._over,
            messages=copy.deepcopy(self.messages),
            final_info=copy.deepcopy(self._final_info),
            np_random_state=copy.deepcopy(self.np_random.bit_generator.state),
            state=self._snapshot_state(),
            seen_results=frozenset(self._seen_results),
        )

    def restore(self, snapshot: EpisodeSnapshot) -> None:
        """Continue from a :meth:`snapshot` (taken in this env or another instance of the same class).

        No ``reset()`` is needed first: a fresh env (``gym.make``) can take a snapshot and step on.
        """
        if not isinstance(snapshot, EpisodeSnapshot):
            raise TypeError(f"restore() takes an EpisodeSnapshot from snapshot(), got {type(snapshot).__name__}")
        own = f"{type(self).__module__}:{type(self).__qualname__}"
        if snapshot.env_class != own:
            raise ValueError(f"snapshot of {snapshot.env_class} cannot be restored into {own}")
        if self.task is not None:
            self._end()
        self.task = snapshot.task
        self.turn = snapshot.turn
        self._over = snapshot.over
        self._end_requested = False
        self.messages = copy.deepcopy(snapshot.messages)
        self._final_info = copy.deepcopy(snapshot.final_info)
        self._seen_results = set(snapshot.seen_results)
        self.np_random.bit_generator.state = copy.deepcopy(snapshot.np_random_state)
        self._restore_state(snapshot.state)
        self._tools_by_name = {t.name: t for t in self._tools(self.task)}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return render_transcript(self.messages, task_id=self.task.id if self.task else None,
                                 final=self._final_info)

    def close(self) -> None:
        if self.task is not None:
            self._end()
        self.task = None
        super().close()


def _positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a one-line error naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def render_transcript(
    messages: Sequence[Mapping[str, Any]], *, task_id: str | None = None, final: Mapping[str, Any] | None = None
) -> str:
    """A readable text transcript of a chat in OpenAI message format."""
    lines = [f"=== task {task_id} ===" if task_id else "=== episode ==="]
    for msg in messages:
        role = msg.get("role", "?")
        content = msg.get("content") or ""
        if role == "tool":
            lines.append(f"--- tool {msg.get('name', '')} ---\n{content}")
        else:
            lines.append(f"--- {role} ---\n{content}" if content else f"--- {role} ---")
        for call in msg.get("tool_calls") or []:
            fn = call["function"]
            lines.append(f"  -> {fn['name']}({fn['arguments']})")
    if final:
        lines.append(
            f"=== outcome {final.get('outcome')} after {final.get('turns')} turn(s)"
            + (f", hack flags: {final['hack_flags']}" if final.get("hack_flags") else "")
            + (f", infra error: {final['infra_error']}" if final.get("infra_error") else "")
            + " ==="
        )
    return "\n".join(lines) + "\n"
