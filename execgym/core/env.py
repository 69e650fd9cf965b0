"""AgentEnv: the multi-turn, tool-calling ``gymnasium.Env`` every env family derives from.

One episode is one task; one step is one agent turn. The env's own reward is the sparse outcome (0 until
the end, the task's success at the end); everything richer lives in ``info`` as data, built from the typed
reports of :mod:`execgym.core.report`: ``reward_components`` every step, and at the end ``outcome``, ``units``,
``checklist``, ``hack_flags`` and ``infra_error`` (the README's "contract" section shows the whole report).

``reset`` and ``step`` are a fixed pipeline that no env overrides; envs implement the hooks listed on
:class:`AgentEnv`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
from cachetools import LRUCache
from gymnasium.error import ResetNeeded

from execgym.core import report as R
from execgym.core.actions import ParsedAction, ToolCall, parse_action, sanitize_text
from execgym.core.errors import InfraError
from execgym.core.finite import flag_issue, number_problem
from execgym.core.report import CallRecord, Criterion, FinalReport, Grade, ResetReport, StepReport, Unit
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

    ``reset`` and ``step`` are a fixed pipeline; an env implements hooks only:

    * task sources (instance methods, so they may use the env's executor): ``bundled_tasks``,
      ``task_generator``, ``task_loaders`` (default: the class's ``loaders``);
    * the episode: ``_begin`` (set up; the first observation), ``_tools`` (called once per task: the tools
      and their schemas are cached, so a tool reads the episode's state from ``self`` when called),
      ``_system_prompt``, ``_reset_extra`` (the env's own reset fields, under ``info["extra"]``);
    * each step: ``_before_step``, ``_on_reply`` (a reply with no tool call), ``_step_components`` and
      ``_step_extra`` (per-step components and fields, given the :class:`~execgym.core.report.StepReport`);
    * the end: ``_grade`` (all grading), ``_final_observation``, ``_end``;
    * branching: ``_snapshot_state`` / ``_restore_state``.

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
    reset_options: ClassVar[frozenset[str]] = frozenset({R.TASK_ID})
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
        # A task's tools and schemas, built once (pydantic schema generation costs milliseconds; a reset should not).
        self._tool_cache: LRUCache[Hashable, tuple[dict[str, Tool], list[dict[str, Any]]]] = LRUCache(256)
        self._over = True
        self._end_requested = False
        self._final_info: dict[str, Any] | None = None
        # Digests of (call, result) pairs seen this episode: a repeat that returns the same result earns no format.
        self._seen_results: set[str] = set()

    # ----------------------------------------------------------------- task sources
    def bundled_tasks(self) -> Sequence[Task] | None:
        """The tasks shipped with the env, or None when it has none."""
        return None

    def task_generator(self) -> Generator | None:
        """A seeded generator ``(seed, difficulty) -> Task`` for unlimited tasks, or None."""
        return None

    def task_loaders(self) -> Mapping[str, Loader]:
        """The dataset formats this env loads (``"<format>:<path>"``), bound to the instance's options."""
        return self.loaders

    def _load_tasks(self, dataset: str | None, split: str | None) -> TaskSet:
        # The base's own method is the "no bundled tasks" marker; an env that ships tasks overrides it.
        has_bundled = _function(type(self).bundled_tasks) is not _function(AgentEnv.bundled_tasks)
        if dataset is None:
            dataset = "bundled" if has_bundled else "generated"
        return load_taskset(
            dataset,
            split,
            bundled=self.bundled_tasks if has_bundled else None,
            generator=self.task_generator(),
            loaders=self.task_loaders(),
            env_name=type(self).__name__,
        )

    # ----------------------------------------------------------------- hooks for subclasses
    def _begin(self, task: Task) -> str:
        """Set up the episode for ``task``; return the first observation (the task statement)."""
        return task.prompt

    def _tools(self, task: Task) -> list[Tool]:
        """The tools the agent has in this episode."""
        raise NotImplementedError

    def _tools_key(self, task: Task) -> Hashable:
        """What ``_tools(task)`` depends on: its tools and schemas are cached under this key (default: the task).

        An env whose tools are the same for every task returns a constant, so a new task costs no schema work.
        """
        return (task.source, task.id)

    def _system_prompt(self, task: Task) -> str:
        return (
            "You are an agent solving a task by calling tools. Call a tool by writing "
            '<tool_call>{"name": <tool>, "arguments": {...}}</tool_call>; several blocks run in order.'
        )

    def _reset_extra(self, task: Task) -> Mapping[str, Any]:
        """The env's own fields of the reset info (``info["extra"]``), such as SQL's ``db_id``."""
        return {}

    def _on_reply(self, text: str) -> ToolOutput | None:
        """Handle a reply that holds text and no tool call. None: it is a format error."""
        return None

    def _before_step(self) -> None:
        """Called first in every step, before the action is parsed (per-step counters, say)."""

    def _step_components(self, step: StepReport) -> Mapping[str, float]:
        """Components this step adds, after its tools ran (and, on the last step, after grading).

        ``step.format_ok`` says whether the action was usable and ``step.tool_calls`` what was called. The
        values are checked like every component (real, finite, in range).
        """
        return {}

    def _step_extra(self, step: StepReport) -> Mapping[str, Any]:
        """The env's own fields of this step's info (``info["extra"]``), such as a turn's checklist."""
        return {}

    def _grade(self, submitted: bool) -> Grade:
        """Grade the episode (all grading happens here). ``submitted`` is False when it ended by truncation."""
        raise NotImplementedError

    def _final_observation(self, observation: str, final: FinalReport) -> str:
        """The last step's observation, given the final report (CAD adds the grade to its submit's reply)."""
        return observation

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
        task_id = options.get(R.TASK_ID)
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
        schemas = self._use_tools(self.task)
        statement = truncate_middle(sanitize_text(statement), self.max_observation_chars)
        system = self._system_prompt(self.task)
        self.messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": statement},
        ]
        report = ResetReport(
            task_id=self.task.id,
            difficulty=self.task.difficulty,
            split=self.task.split,
            tools=schemas,
            system_prompt=system,
            messages=self.messages,
            extra=dict(self._reset_extra(self.task)),
        )
        return statement, report.as_info()

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if self.task is None:
            raise ResetNeeded("Cannot call env.step() before calling env.reset()")
        if self._over:
            raise ResetNeeded("The episode is over (terminated or truncated): call env.reset() before step()")
        self.turn += 1
        self._before_step()
        step = StepReport(task_id=self.task.id, turn=self.turn)
        issues: dict[str, Any] = {}
        observation, terminal, infra_error = self._act(self._parse(action), action, step, issues)
        self.messages.extend(step.new_messages)

        terminated = (terminal or self._end_requested) and infra_error is None
        truncated = infra_error is not None or (not terminated and self.turn >= self.max_turns)
        step.ended = terminated or truncated
        reward = 0.0
        final: FinalReport | None = None
        grade_components: dict[str, float] = {}
        if step.ended:
            self._over = True
            final, grade_components = self._finish(submitted=terminated, infra_error=infra_error, issues=issues)
            if final.infra_error is not None and terminated:  # grading itself failed: as for a tool, truncation
                terminated, truncated = False, True
            reward = final.outcome
        step.reward_components.update(self._checked_components(self._step_components(step), "step", issues))
        # Grading components win over this step's components of the same name (SQL's `executed`).
        step.reward_components.update(grade_components)
        step.extra.update(self._step_extra(step))
        step.reward_issues = list(issues.get(R.REWARD_ISSUES, ()))
        info = step.as_info()
        if final is not None:
            info.update(final.as_info())
            closing = self._final_observation(observation, final)
            if closing != observation and step.new_messages[-1]["role"] != "assistant":
                # The transcript (messages, recordings, the viewer, SFT data) shows what the agent was shown.
                step.new_messages[-1]["content"] = truncate_middle(closing, self.max_observation_chars)
            observation = closing
        observation = truncate_middle(observation, self.max_observation_chars)
        return observation, reward, terminated, truncated, info

    def _act(
        self, parsed: ParsedAction, action: Any, step: StepReport, issues: dict[str, Any]
    ) -> tuple[str, bool, str | None]:
        """Carry out a parsed action: ``(observation, a terminal tool ran, infra error)``; fills ``step``."""
        components = step.reward_components
        assistant: dict[str, Any] = {"role": "assistant", "content": parsed.text}
        if isinstance(action, str):
            assistant["content"] = sanitize_text(action)[: self.max_action_chars]
        if parsed.calls:
            assistant["tool_calls"] = [c.to_openai() for c in parsed.calls]
        step.new_messages.append(assistant)
        available = ", ".join(self._tools_by_name)
        if parsed.errors:
            step.format_ok = False
            components["format"] = 0.0
            observation = "Your reply could not be used:\n" + "\n".join(f"- {e}" for e in parsed.errors)
            observation += "\nAvailable tools: " + available
            step.new_messages.append({"role": "user", "content": observation})
            return observation, False, None
        if not parsed.calls:
            reply = self._on_reply(parsed.text)
            if reply is None:
                step.format_ok = False
                components["format"] = 0.0
                observation = (
                    "No tool call found in your reply. Call a tool with "
                    '<tool_call>{"name": ..., "arguments": {...}}</tool_call>. Available tools: ' + available
                )
            else:
                observation = reply.content
                new = self._remember_result("reply", parsed.text, sanitize_text(str(observation)))
                components.update(self._checked_components(reply.components, "reply", issues))
                components["format"] = 1.0 if new else 0.0  # the core's own component: a tool cannot set it
                step.format_ok = new
            step.new_messages.append({"role": "user", "content": observation})
            return observation, False, None
        fresh = terminal = False
        infra_error: str | None = None
        outputs: list[str] = []
        gathered: dict[str, list[float]] = {}
        for call in parsed.calls:
            tool = self._tools_by_name[call.name]
            try:
                out = self._run_tool(tool, call)
            except InfraError as exc:
                infra_error = f"{type(exc).__name__}: {exc}"
                out = ToolOutput(f"Infrastructure error (not your fault): {exc}", is_error=True)
            step.tool_calls.append(CallRecord(call.id, call.name, call.arguments, out.is_error))
            for key, value in self._checked_components(out.components, f"tool {call.name}", issues).items():
                gathered.setdefault(key, []).append(value)
            content = truncate_middle(sanitize_text(str(out.content)), self.max_observation_chars)
            fresh = self._remember_result(call.name, call.arguments, content) or fresh
            step.new_messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content})
            outputs.append(content)
            if infra_error:
                break
            if tool.terminal:
                terminal = True
                break
        # Well-formed, and not only repeats of calls that already returned the same result this episode.
        components.update({k: math.fsum(v) / len(v) for k, v in gathered.items()})
        components["format"] = 1.0 if fresh or infra_error else 0.0
        step.format_ok = bool(fresh or infra_error)
        if len(outputs) == 1 and len(parsed.calls) == 1:
            return outputs[0], terminal, infra_error
        made = step.tool_calls
        parts = [f"[{i}] {record.name}:\n{text}" for i, (record, text) in enumerate(zip(made, outputs), 1)]
        skipped = len(parsed.calls) - len(made)
        if skipped and not infra_error:
            parts.append(f"({skipped} later call(s) were not run: {made[-1].name} ended the episode)")
        return "\n\n".join(parts), terminal, infra_error

    def _use_tools(self, task: Task) -> list[dict[str, Any]]:
        """Make ``task``'s tools current and return their schemas (built once per ``_tools_key``, then cached)."""
        key = self._tools_key(task)
        cached = self._tool_cache.get(key)
        if cached is None:
            tools = self._tools(task)
            cached = self._tool_cache[key] = ({t.name: t for t in tools}, tool_schemas(tools))
        self._tools_by_name = cached[0]
        return cached[1]

    def _check_options(self, options: Any) -> dict[str, Any]:
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise TypeError(f"reset options must be a dict, got {type(options).__name__}")
        known = sorted(self.reset_options)
        unknown = sorted(repr(k) for k in options if k not in self.reset_options)
        if unknown:
            raise ValueError(f"unknown reset option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        task_id = options.get(R.TASK_ID)
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
        hasher = hashlib.blake2b(digest_size=16)
        for part in (name, json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=repr), result):
            data = str(part).encode("utf-8", "surrogatepass")
            hasher.update(len(data).to_bytes(8, "little"))  # length-prefixed: no two splits hash alike
            hasher.update(data)
        digest = hasher.hexdigest()
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
    ) -> tuple[FinalReport, dict[str, float]]:
        if infra_error is not None:
            grade = Grade(outcome=0.0)
        else:
            try:
                grade = self._grade(submitted)
            except InfraError as exc:
                infra_error = f"{type(exc).__name__}: {exc}"
                grade = Grade(outcome=0.0)
            except Exception as exc:  # a grader bug is the machinery's failure: never a policy's 0, never a crash
                infra_error = f"the grader failed: {type(exc).__name__}: {exc}"
                grade = Grade(outcome=0.0)
        problem = number_problem(grade.outcome, low=0.0, high=1.0)
        if problem:
            # A grader that cannot say how well the episode went failed; its sample must not look like a 0.
            infra_error = f"the grader's outcome {grade.outcome!r} {problem}"
            flag_issue(issues, type(self).__name__, R.OUTCOME, grade.outcome, problem)
            grade = Grade(outcome=0.0, details=grade.details)
        try:
            units = [Unit.coerce(unit) for unit in grade.units]
            checklist = [Criterion.coerce(item) for item in grade.checklist]
        except (TypeError, ValueError) as exc:  # a grade whose entries cannot be read says nothing about the policy
            infra_error = infra_error or f"the grader's report is unusable: {exc}"
            grade, units, checklist = Grade(outcome=0.0, details=grade.details), [], []
        final = FinalReport(
            outcome=float(grade.outcome),
            units=units,
            checklist=checklist,
            hack_flags=list(grade.hack_flags),
            infra_error=infra_error,
            submitted=submitted,
            turns=self.turn,
            details=grade.details,
        )
        self._final_info = final.as_info()
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
        self._use_tools(self.task)

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


def _function(method: Any) -> Any:
    """The function behind a method, classmethod or staticmethod (bound classmethods are new each access)."""
    return getattr(method, "__func__", method)


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
            f"=== outcome {final.get(R.OUTCOME)} after {final.get(R.TURNS)} turn(s)"
            + (f", hack flags: {final[R.HACK_FLAGS]}" if final.get(R.HACK_FLAGS) else "")
            + (f", infra error: {final[R.INFRA_ERROR]}" if final.get(R.INFRA_ERROR) else "")
            + " ==="
        )
    return "\n".join(lines) + "\n"
