"""ToolUseEnv: multi-turn conversations with a user over stateful services, and BFCL's single-turn entries.

An episode is a conversation. The agent sees the user's first message and calls tools (several calls in one
reply run as parallel calls); when it answers in plain text, that answer closes the user's turn and the
next observation is the user's follow-up message. After the last message is answered the episode
terminates; ``max_turns`` (agent steps) still truncates.

Rewards are data (see DESIGN.md). The env's reward is the outcome at the end: 1 when every unit passes:

* ``state``: the services' final state equals the state the task's gold calls produce on a fresh copy of
  the world (tau-bench; ids the API hands out and free-text case/spacing do not count);
* every required checklist criterion (all but the ``required: false`` shaping ones, such as "looked up
  the order"), so each part of the ask is part of the outcome: each required piece of information stated
  in the reply of the turn that asked for it, and, when the solution reads it from a tool, found in what
  the agent's calls showed (results and errors, less the text the agent itself sent: a guess, a blanket
  answer, an answer after an irrelevant call or a value smuggled into an argument does not count); the
  content the user dictated (an e-mail that says the fact, to the right person); and the rules the task
  sets (never cancel another order).

What earns each component (the cheapest action that earns it, and why that is what it claims to measure):

* every step, ``format``: any well-formed reply (a parseable call of a known tool, or plain text); it
  measures only that. ``tool_name`` / ``param_names`` / ``param_values`` (ToolRL): this step's calls
  against the gold step of the current turn they best match (name Jaccard, argument-name Jaccard, share of
  gold argument values); a text answer earns them only when every gold step of the turn was really made
  (same tool on the same identifying arguments), so name-matching calls with garbage arguments followed
  by "Done." earn nothing for the answer. ``calls``: a count of this step's calls, not a reward;
* at the end of each user turn, ``turn_checklist`` (that turn's criteria, CM2: ``id``, ``turn``,
  ``passed``, ``evidence``, ``weight``, ``guard``) and ``user_turn``; mid-episode, ``checklist`` holds
  every criterion decided so far, so a reward wrapper can pay at turn end. A guard is a criterion that
  doing nothing already meets ("never called cancel_order", "the other file still exists"): it is passed
  only in a turn where something the turn asked for was achieved, so an idle turn earns no item;
* at the end, ``outcome``, ``checklist`` (all criteria), ``units`` and the components ``state_match``
  (the final state equals gold; on a task that asks for no change, only once some criterion that is not a
  guard passed), ``outputs_found`` (share of the required information stated and grounded as above),
  ``checklist`` (weighted share of criteria passed, guards as above: 0 for doing nothing) and
  ``efficiency`` (HDPO: gold calls / calls made, counted only when the outcome is 1).

With ``dataset="bfcl:DIR"`` the tasks are BFCL entries (see :mod:`execgym.envs.tooluse.bfcl`): the episode
is the agent's first reply, graded by BFCL's AST rules.
"""

from __future__ import annotations

import functools
import json
import marshal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, SupportsFloat

from execgym.core.env import AgentEnv, Grade
from execgym.core.tasks import Generator, Loader, Task
from execgym.core.tools import Tool, ToolError, ToolOutput
from execgym.envs.tooluse import tasks as tooluse_tasks
from execgym.envs.tooluse.bfcl import bfcl_tools, check_bfcl, load_bfcl, step_scores
from execgym.envs.tooluse.grading import (
    args_match,
    count_numbers,
    describe_criterion,
    diff_paths,
    evaluate_criterion,
    identifying_args,
    multiset_jaccard,
    normalize_text,
    result_text,
    shown_texts,
    toolrl_scores,
)
from execgym.envs.tooluse.loading import load_tooluse_jsonl
from execgym.envs.tooluse.services import SERVICES, Service

__all__ = ["ToolUseEnv"]

_CALL_SYNTAX = (
    'Call a tool by writing <tool_call>{"name": <tool>, "arguments": {...}}</tool_call>; several blocks in one '
    "reply run as parallel calls."
)
_DOMAIN_PROMPTS = {
    "shop": "You are a customer-support agent of an online shop, with tools over its orders, products and "
            "customers. Act only on what the customer asks: never cancel, refund or change anything they did "
            "not ask for. Today is 2025-03-10.",
    "office": "You are the user's personal assistant, with tools over their calendar and e-mail. Today is "
              "Monday 2025-03-10; the user's working hours are 09:00-17:00.",
    "files": "You are an assistant working in the user's file system. Never delete or overwrite anything the "
             "user did not ask you to.",
}
_BFCL_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. "
    "Based on the question, make one or more function calls to achieve the purpose, in a single reply. If "
    "none of the functions can be used, say so in plain text and call nothing. " + _CALL_SYNTAX
)
_STUFFED_CHARS = 1500
_STUFFED_NUMBERS = 25
MAX_CALLS_PER_STEP = 32
"""Calls of one reply that run; the rest get an error (no task needs more than a handful)."""
MAX_CALLS_PER_EPISODE = 256
"""Calls of one episode that run; grading work grows with them, so a flood of calls cannot stall it."""


def _copy(value: Any) -> Any:
    """A deep copy of plain data that does not recurse in Python (a BFCL call's arguments may nest 900 deep)."""
    return marshal.loads(marshal.dumps(value))


def _bounded(value: Any, depth: int = 32) -> Any:
    """``value`` with anything nested deeper than ``depth`` replaced by the start of its JSON text.

    The final info is deep-copied and serialised by callers (snapshots, trajectories); an agent's BFCL
    arguments may nest hundreds of levels, which Python's recursive copies cannot take.

    Example:
        >>> _bounded({"a": [[[1]]]}, depth=2)
        {'a': ['[[1]]']}
    """
    if isinstance(value, dict | list) and depth <= 0:
        try:
            return json.dumps(value)[:200]
        except (RecursionError, ValueError):
            return "<nested too deeply to show>"
    if isinstance(value, dict):
        return {k: _bounded(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded(v, depth - 1) for v in value]
    return value


@dataclass(frozen=True)
class _Plan:
    """A task's grading plan: the gold end state (raw and comparable), every criterion, which are guards."""

    gold_raw: dict[str, Any]
    gold: dict[str, Any]
    criteria: list[dict[str, Any]]
    guards: frozenset[str]
    changes_state: bool


def _make_plan(data: Mapping[str, Any]) -> _Plan:
    ran: list[dict[str, Any]] = []
    services = tooluse_tasks.replay_gold(dict(data), ran)
    initial = {name: SERVICES[name](data["world"].get(name, {})) for name in data["services"]}
    criteria = [dict(c) for c in data.get("checklist", [])]
    for number, turn in enumerate(data["turns"], 1):
        # Every required output is a criterion, even in a task file that lists it only under "outputs".
        stated = {normalize_text(str(c["text"])) for c in criteria if c["kind"] == "said" and c["turn"] == number}
        for k, output in enumerate(turn.get("outputs") or [], 1):
            if normalize_text(str(output)) not in stated:
                criteria.append({"id": f"t{number}-output-{k}", "turn": number, "kind": "said", "text": str(output)})
    for c in criteria:
        if c["kind"] == "said" and "grounded" not in c:
            # Unless the task says otherwise, the rule of Scenario.reply (tasks.py).
            c["grounded"] = tooluse_tasks.must_be_looked_up(str(c["text"]), ran, c["turn"])
    criteria.sort(key=lambda c: c["turn"])
    view = {name: s.view() for name, s in initial.items()}
    guards = frozenset(c["id"] for c in criteria if evaluate_criterion(c, [], "", view)["passed"])
    gold = {name: s.comparable_state() for name, s in services.items()}
    return _Plan(gold_raw={name: s.state() for name, s in services.items()}, gold=gold, criteria=criteria,
                 guards=guards, changes_state=gold != {name: s.comparable_state() for name, s in initial.items()})


class ToolUseEnv(AgentEnv):
    """Multi-turn tool use over a shop, a calendar with e-mail, and a file system; or BFCL entries.

    Args:
        dataset: ``"bundled"`` (156 tasks, splits ``train`` / ``test``), ``"generated[:difficulty]"``
            (unlimited, seeded), ``"jsonl:FILE"`` (tasks in the bundled row format, see
            :mod:`execgym.envs.tooluse.loading`) or ``"bfcl:DIR"`` with ``split=<category>``.
        bfcl_underscore_names: show BFCL functions named ``a.b`` as ``a_b`` (for APIs that refuse dots).
        skip_invalid_rows: leave malformed rows of a loaded file out (one warning counts them) instead of
            refusing the file.
        split, max_turns, render_mode, ...: as :class:`~execgym.core.env.AgentEnv`.

    Example:
        >>> env = ToolUseEnv()
        >>> obs, info = env.reset(options={"task_id": "shop-status-00"})
        >>> [t["function"]["name"] for t in info["tools"]][:3]
        ['find_customer', 'list_orders', 'get_order']
        >>> for action in env.task.oracle:
        ...     obs, reward, terminated, truncated, info = env.step(action)
        >>> reward, terminated, all(item["passed"] for item in info["checklist"])
        (1.0, True, True)
    """

    description: ClassVar[str] = (
        "Multi-turn tool use over stateful services (shop, calendar + mail, files; tau-bench-style state "
        "grading, CM2 checklists, ToolRL components) and BFCL's single-turn categories."
    )
    default_max_turns: ClassVar[int] = 20
    loaders: ClassVar[dict[str, Loader]] = {"bfcl": load_bfcl, "jsonl": load_tooluse_jsonl}

    def __init__(self, *, bfcl_underscore_names: bool = False, skip_invalid_rows: bool = False,
                 **kwargs: Any) -> None:
        self.bfcl_underscore_names = bool(bfcl_underscore_names)
        if skip_invalid_rows:  # the instance's loaders leave malformed rows out, with a warning that counts them
            self.loaders = {name: functools.partial(fn, skip_invalid=True) for name, fn in type(self).loaders.items()}
        self._services: dict[str, Service] = {name: cls() for name, cls in SERVICES.items()}
        self._service_tools: dict[str, list[Tool]] = {}
        self._bfcl_tool_cache: dict[tuple[str, str], list[Tool]] = {}
        self._bfcl: dict[str, Any] | None = None
        self._user_turn = 0
        self._calls: list[list[dict[str, Any]]] = [[]]
        self._replies: list[str] = []
        self._decided: list[dict[str, Any]] = []
        self._turn_report: list[dict[str, Any]] | None = None
        self._gold_left: list[list[list[dict[str, Any]]]] = []
        self._gold_unmet: list[list[int]] = []
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._bfcl_calls: list[dict[str, Any]] = []
        self._bfcl_answered = False
        self._step_calls = 0
        super().__init__(**kwargs)

    # ------------------------------------------------------------------------------------- task sources
    @classmethod
    def bundled_tasks(cls) -> list[Task]:
        return tooluse_tasks.bundled_tasks()

    @classmethod
    def task_generator(cls) -> Generator | None:
        return tooluse_tasks.generate_task

    # -------------------------------------------------------------------------------------------- hooks
    def _begin(self, task: Task) -> str:
        self._bfcl = task.data.get("bfcl")
        self._user_turn = 0
        self._calls = [[]]
        self._replies = []
        self._decided = []
        self._turn_report = None
        self._bfcl_calls = []
        self._bfcl_answered = False
        if self._bfcl is not None:
            return task.prompt
        for name in task.data["services"]:
            self._services[name].load(task.data["world"].get(name, {}))
        self._gold_left = [[list(step) for step in turn["gold"]] for turn in task.data["turns"]]
        self._gold_unmet = [list(range(len(turn["gold"]))) for turn in task.data["turns"]]
        return task.prompt

    def _tools(self, task: Task) -> list[Tool]:
        if self._bfcl is not None:
            key = (task.source, task.id)
            if key not in self._bfcl_tool_cache:
                self._bfcl_tool_cache[key] = bfcl_tools(self._bfcl["functions"], self._record_bfcl,
                                                        underscore_names=self.bfcl_underscore_names)
            return self._bfcl_tool_cache[key]
        return [tool for name in task.data["services"] for tool in self._tools_of(name)]

    def _tools_of(self, service: str) -> list[Tool]:
        # Built once per env: pydantic schema generation costs milliseconds, a reset should not.
        if service not in self._service_tools:
            tools = self._services[service].tools()
            for tool in tools:
                tool.fn = self._recorded(tool.name, tool.fn)
            self._service_tools[service] = tools
        return self._service_tools[service]

    def _recorded(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(**arguments: Any) -> ToolOutput:
            self._step_calls += 1
            if self._step_calls > MAX_CALLS_PER_STEP:
                raise ToolError(f"not run: a reply may make at most {MAX_CALLS_PER_STEP} calls")
            if sum(len(turn) for turn in self._calls) >= MAX_CALLS_PER_EPISODE:
                raise ToolError(f"not run: an episode may make at most {MAX_CALLS_PER_EPISODE} calls")
            record: dict[str, Any] = {"name": name, "arguments": arguments, "ok": False, "step": self.turn}
            self._calls[self._user_turn].append(record)
            try:
                result = fn(**arguments)
            except ToolError as exc:  # an error the agent reads ("conflicts with E-4 'Budget Review'") tells too
                record["text"] = f"Error: {exc}"
                raise
            # What the agent read is what a grounded answer rests on (less what it sent: see shown_texts).
            # Grounding reads the values returned, not the JSON text (see result_text).
            record["ok"], record["text"] = True, result_text(result)
            return ToolOutput(result if isinstance(result, str) else json.dumps(result, ensure_ascii=False,
                                                                                default=str))

        return call

    def _record_bfcl(self, name: str, arguments: dict[str, Any]) -> str:
        self._bfcl_calls.append({"name": name, "arguments": arguments})
        return f"{name} was called. (BFCL episodes end after this reply.)"

    def _system_prompt(self, task: Task) -> str:
        if self._bfcl is not None:
            extra = self._bfcl.get("system") or ""
            return _BFCL_PROMPT + (f"\n\n{extra}" if extra else "")
        intro = _DOMAIN_PROMPTS.get(task.data.get("domain", ""), "You are an assistant with tools.")
        return (f"{intro} {_CALL_SYNTAX} When the request is done, answer the user in plain text with no tool "
                "call; the user may then ask something else.")

    def _on_reply(self, text: str) -> ToolOutput | None:
        if self._bfcl is not None:
            self._bfcl_answered = True
            self.end_episode()
            return ToolOutput("Answer recorded.")
        assert self.task is not None
        turns = self.task.data["turns"]
        self._replies.append(text)
        self._close_turn(text)
        self._user_turn += 1
        if self._user_turn < len(turns):
            self._calls.append([])
            return ToolOutput(turns[self._user_turn]["user"])
        self.end_episode()
        return ToolOutput("The user has no further requests; the conversation is over.")

    def _world_view(self) -> dict[str, Any]:
        assert self.task is not None
        return {name: self._services[name].view() for name in self.task.data["services"]}

    def _close_turn(self, reply: str | None) -> None:
        """Decide the criteria of the current user turn (its calls, its answer, the state now).

        A guard (a criterion that doing nothing already satisfies: "never cancelled another order", "the
        other file still exists") is passed only when something the turn asked for was also achieved, so
        that an idle turn earns no checklist credit.
        """
        assert self.task is not None
        plan = self._plan(self.task)
        number = self._user_turn + 1
        criteria = [c for c in plan.criteria if c["turn"] == number]
        state = self._world_view() if any(c["kind"] == "state" for c in criteria) else {}
        results = shown_texts([c for turn in self._calls[: number] for c in turn])
        items = [evaluate_criterion(c, self._calls[self._user_turn], reply, state, results=results)
                 for c in criteria]
        achieved = any(item["passed"] for item in items if item["id"] not in plan.guards)
        has_goals = any(item["id"] not in plan.guards for item in items)
        for item in items:
            item["guard"] = item["id"] in plan.guards
            if item["guard"] and item["passed"] and has_goals and not achieved:
                item["passed"] = False
                item["evidence"] += " (not credited: nothing this turn asked for was done)"
        self._decided.extend(items)
        self._turn_report = (self._turn_report or []) + items

    # ----------------------------------------------------------------------------------------- branching
    _EPISODE_FIELDS = ("_bfcl", "_user_turn", "_calls", "_replies", "_decided", "_turn_report", "_gold_left",
                       "_gold_unmet", "_bfcl_calls", "_bfcl_answered")

    def _snapshot_state(self) -> dict[str, Any]:
        assert self.task is not None
        services = {} if self._bfcl is not None else {
            name: self._services[name].state() for name in self.task.data["services"]}
        fields = _copy({name: getattr(self, name) for name in self._EPISODE_FIELDS})
        return {"services": services, "fields": fields}

    def _restore_state(self, state: dict[str, Any]) -> None:
        for name, value in _copy(state["fields"]).items():
            setattr(self, name, value)
        for name, data in state["services"].items():
            self._services[name].load(data)

    # -------------------------------------------------------------------------------------------- steps
    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """One agent step; adds ToolRL components every step and the turn's checklist when a turn ends."""
        bfcl = self.task is not None and self._bfcl is not None
        if bfcl:
            self.end_episode()  # in BFCL the agent's first reply is the whole answer
        user_turn = self._user_turn
        self._step_calls = 0
        observation, reward, terminated, truncated, info = super().step(action)
        components = info["reward_components"]
        calls = [{"name": c["name"], "arguments": c["arguments"]} for c in info["tool_calls"]]
        if components.get("format", 1.0) == 0.0:
            scores = {"tool_name": 0.0, "param_names": 0.0, "param_values": 0.0}
        elif bfcl:
            assert self._bfcl is not None
            # The recorded calls carry BFCL's own names (tools may show them with underscores).
            scores = step_scores(self._bfcl["functions"], self._bfcl_calls, self._bfcl["ground_truth"])
        else:
            scores = self._step_scores(user_turn, calls)
        components.update(scores)
        components["calls"] = float(len(calls))
        if self._turn_report is not None:
            info["turn_checklist"] = self._turn_report
            info["user_turn"] = user_turn + 1
            if not (terminated or truncated):
                info["checklist"] = list(self._decided)
            self._turn_report = None
        return observation, reward, terminated, truncated, info

    def _step_scores(self, user_turn: int, calls: list[dict[str, Any]]) -> dict[str, float]:
        if user_turn >= len(self._gold_left):
            return toolrl_scores(calls, [])
        assert self.task is not None
        gold = self.task.data["turns"][user_turn]["gold"]
        left, unmet = self._gold_left[user_turn], self._gold_unmet[user_turn]
        if not calls:  # a text answer: right when every gold step of the turn was really made
            return toolrl_scores([], [c for k in unmet for c in gold[k]])
        names = [c["name"] for c in calls]
        overlap = [multiset_jaccard(names, [c["name"] for c in step]) for step in left]
        if overlap and max(overlap) > 0:
            step = left.pop(overlap.index(max(overlap)))
            # The gold step counts as made only when each of its calls was made on the same thing (the same
            # identifying arguments; for a search with only free-text arguments, the same arguments).
            if all(any(p["name"] == g["name"] and args_match(identifying_args(g) or g["arguments"], p["arguments"])
                       for p in calls) for g in step):
                index = next((k for k in unmet if gold[k] == step), None)
                if index is not None:
                    unmet.remove(index)
            return toolrl_scores(calls, step)
        return toolrl_scores(calls, left[0] if left else [])

    # ------------------------------------------------------------------------------------------ grading
    def _plan(self, task: Task) -> _Plan:
        """What grading needs of a task, worked out once per task: the gold state, the guards, every criterion."""
        key = (task.source, task.id)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 4096:
                self._plans.clear()
            plan = _make_plan(task.data)
            self._plans[key] = plan
        return plan

    def _grade(self, submitted: bool) -> Grade:
        assert self.task is not None
        if self._bfcl is not None:
            return self._grade_bfcl()
        data = self.task.data
        turns = data["turns"]
        plan = self._plan(self.task)
        if self._user_turn < len(turns):  # truncated: decide the open turn and fail the ones never reached
            self._close_turn(None)
            unreached = [c for c in plan.criteria if c["turn"] > self._user_turn + 1]
            items = [{"id": c["id"], "turn": c["turn"], "kind": c["kind"], "description": describe_criterion(c),
                      "passed": False, "evidence": f"the episode ended before turn {c['turn']}",
                      "weight": float(c.get("weight", 1.0)), "guard": c["id"] in plan.guards} for c in unreached]
            self._decided.extend(items)
            self._turn_report = (self._turn_report or []) + items
        # Equal raw states have equal comparable states; folding every string is the slow path.
        state_match = all(self._services[name].view() == plan.gold_raw[name] for name in data["services"])
        world = plan.gold if state_match else {
            name: self._services[name].comparable_state() for name in data["services"]}
        state_match = state_match or world == plan.gold
        required = {c["id"] for c in plan.criteria if c.get("required", True)}
        decided = {item["id"]: item for item in self._decided}
        diff = [] if state_match else diff_paths(plan.gold, world)
        units = [{"id": "state", "passed": state_match, "evidence": "; ".join(diff) or "final state equals gold"}]
        units += [{"id": c["id"], "passed": decided[c["id"]]["passed"], "evidence": decided[c["id"]]["evidence"]}
                  for c in plan.criteria if c["id"] in required]
        outcome = float(all(unit["passed"] for unit in units))
        weights = sum(item["weight"] for item in self._decided)
        checklist_score = (sum(item["weight"] for item in self._decided if item["passed"]) / weights if weights
                           else float(outcome))
        said = [item for item in self._decided if item["kind"] == "said"]
        achieved = any(item["passed"] and not item["guard"] for item in self._decided)
        n_calls = sum(len(c) for c in self._calls)
        gold_calls = sum(len(step) for turn in turns for step in turn["gold"])
        efficiency = min(1.0, gold_calls / n_calls) if n_calls else 1.0
        hack_flags = []
        for i, reply in enumerate(self._replies, 1):
            numbers = count_numbers(reply)
            if len(reply) > _STUFFED_CHARS or numbers >= _STUFFED_NUMBERS:
                hack_flags.append(f"answer {i} looks stuffed ({len(reply)} chars, {numbers} numbers): substring "
                                  "checks of required information may be gamed")
        return Grade(
            outcome=outcome,
            components={
                # A task that asks for no change is matched by doing nothing: that pays only with some goal met.
                "state_match": float(state_match and (plan.changes_state or achieved)),
                "outputs_found": sum(item["passed"] for item in said) / len(said) if said else float(outcome),
                "checklist": checklist_score,
                "efficiency": efficiency if outcome == 1.0 else 0.0,
            },
            units=units,
            checklist=list(self._decided),
            hack_flags=hack_flags,
            details={"calls": n_calls, "gold_calls": gold_calls, "failed_calls": sum(
                1 for turn in self._calls for c in turn if not c["ok"]), "state_diff": diff,
                "user_turns_answered": len(self._replies), "user_turns": len(turns)},
        )

    def _grade_bfcl(self) -> Grade:
        assert self._bfcl is not None
        answered = self._bfcl_answered or bool(self._bfcl_calls)
        verdict = check_bfcl(self._bfcl["category"], self._bfcl["functions"], self._bfcl_calls,
                             self._bfcl["ground_truth"], answered=answered)
        return Grade(
            outcome=float(verdict["valid"]),
            units=[{"id": "ast", "passed": verdict["valid"], "error": verdict["error"],
                    "error_type": verdict["error_type"]}],
            details={"bfcl_category": self._bfcl["category"], "calls": _bounded(self._bfcl_calls)},
        )
