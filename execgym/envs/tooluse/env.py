"""ToolUseEnv: multi-turn conversations with a user over stateful services (shop, calendar + mail, files).

An episode is a conversation. The agent sees the user's first message and calls tools (several calls in one
reply run as parallel calls); when it answers in plain text, that answer closes the user's turn and the
next observation is the user's follow-up message. After the last message is answered the episode
terminates; ``max_turns`` (agent steps) still truncates.

Rewards are data (see :mod:`execgym.core.report`). The env's reward is the outcome at the end: 1 when every unit passes:

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
* at the end of each user turn, in ``info["extra"]``: ``turn_checklist`` (that turn's criteria, CM2:
  ``id``, ``passed``, ``evidence``, ``weight``, ``description``, and under ``extra`` the ``turn``, ``kind``
  and ``guard``) and ``user_turn``; mid-episode also ``checklist_so_far``, every criterion decided so far,
  so a reward wrapper can pay at turn end (``info["checklist"]`` comes only at the end and holds all
  criteria). A guard is a criterion that doing nothing already meets ("never called cancel_order", "the
  other file still exists"): it is passed only in a turn where something the turn asked for was achieved,
  so an idle turn earns no item;
* at the end, ``outcome``, ``checklist`` (all criteria), ``units`` and the components ``state_match``
  (the final state equals gold; on a task that asks for no change, only once some criterion that is not a
  guard passed), ``outputs_found`` (share of the required information stated and grounded as above),
  ``checklist`` (weighted share of criteria passed, guards as above: 0 for doing nothing) and
  ``efficiency`` (HDPO: gold calls / calls made, counted only when the outcome is 1).

BFCL's single-turn entries are their own env, ``execgym/BFCL-v0`` (:mod:`execgym.envs.bfcl`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cachetools import LRUCache

from execgym.core.env import Grade
from execgym.core.report import CHECKLIST_SO_FAR, TURN_CHECKLIST, USER_TURN, Criterion, StepReport, Unit
from execgym.core.tasks import Generator, Loader, Task
from execgym.core.tools import Tool, ToolError, ToolOutput
from execgym.envs.tooluse import tasks as tooluse_tasks
from execgym.envs.tooluse.gold import must_be_looked_up, replay_gold
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
from execgym.envs.tooluse.toolrl import ToolCallingEnv, copy_plain

__all__ = ["CHECKLIST_SO_FAR", "MAX_CALLS_PER_EPISODE", "MAX_CALLS_PER_STEP", "TURN_CHECKLIST", "USER_TURN",
           "ToolUseEnv"]

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
_STUFFED_CHARS = 1500
_STUFFED_NUMBERS = 25
_PLANS = 1024
"""Grading plans kept per env (one per task played recently; a plan holds the task's gold end state)."""
MAX_CALLS_PER_STEP = 32
"""Calls of one reply that run; the rest get an error (no task needs more than a handful)."""
MAX_CALLS_PER_EPISODE = 256
"""Calls of one episode that run; grading work grows with them, so a flood of calls cannot stall it."""


def _criterion(item: Mapping[str, Any]) -> Criterion:
    """A decided criterion (as :func:`evaluate_criterion` gives it, with its guard) in the shared shape."""
    return Criterion(item["id"], item["passed"], item["evidence"], weight=item["weight"],
                     description=item["description"],
                     extra={"turn": item["turn"], "kind": item["kind"], "guard": item["guard"]})


def _criteria_info(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [_criterion(item).as_info() for item in items]


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
    services = replay_gold(data, ran)
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
            # Unless the task says otherwise, the rule of Scenario.reply (scenario.py).
            c["grounded"] = must_be_looked_up(str(c["text"]), ran, c["turn"])
    criteria.sort(key=lambda c: c["turn"])
    view = {name: s.view() for name, s in initial.items()}
    guards = frozenset(c["id"] for c in criteria if evaluate_criterion(c, [], "", view)["passed"])
    gold = {name: s.comparable_state() for name, s in services.items()}
    return _Plan(gold_raw={name: s.state() for name, s in services.items()}, gold=gold, criteria=criteria,
                 guards=guards, changes_state=gold != {name: s.comparable_state() for name, s in initial.items()})


class ToolUseEnv(ToolCallingEnv):
    """Multi-turn tool use over a shop, a calendar with e-mail, and a file system.

    Args:
        dataset: ``"bundled"`` (156 tasks, splits ``train`` / ``test``), ``"generated[:difficulty]"``
            (unlimited, seeded) or ``"jsonl:FILE"`` (tasks in the bundled row format, see
            :mod:`execgym.envs.tooluse.loading`). BFCL entries are ``execgym/BFCL-v0``'s.
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
        "grading, CM2 checklists, ToolRL components)."
    )
    loaders: ClassVar[dict[str, Loader]] = {"jsonl": load_tooluse_jsonl}

    def __init__(self, **kwargs: Any) -> None:
        dataset = kwargs.get("dataset")
        if isinstance(dataset, str) and dataset.partition(":")[0].strip().lower() == "bfcl":
            raise ValueError(f"ToolUseEnv does not read BFCL entries: use gym.make(\"execgym/BFCL-v0\", "
                             f"dataset={dataset!r}, split=<category>)")
        self._services: dict[str, Service] = {name: cls() for name, cls in SERVICES.items()}
        self._user_turn = 0
        self._step_user_turn = 0
        self._calls: list[list[dict[str, Any]]] = [[]]
        self._replies: list[str] = []
        self._decided: list[dict[str, Any]] = []
        self._turn_report: list[dict[str, Any]] | None = None
        self._gold_left: list[list[list[dict[str, Any]]]] = []
        self._gold_unmet: list[list[int]] = []
        self._plans: LRUCache[tuple[str, str], _Plan] = LRUCache(_PLANS)
        self._step_calls = 0
        super().__init__(**kwargs)

    # ------------------------------------------------------------------------------------- task sources
    def bundled_tasks(self) -> list[Task]:
        return tooluse_tasks.bundled_tasks()

    def task_generator(self) -> Generator | None:
        return tooluse_tasks.generate_task

    # -------------------------------------------------------------------------------------------- hooks
    def _begin(self, task: Task) -> str:
        self._user_turn = 0
        self._calls = [[]]
        self._replies = []
        self._decided = []
        self._turn_report = None
        for name in task.data["services"]:
            self._services[name].load(task.data["world"].get(name, {}))
        self._gold_left = [[list(step) for step in turn["gold"]] for turn in task.data["turns"]]
        self._gold_unmet = [list(range(len(turn["gold"]))) for turn in task.data["turns"]]
        return task.prompt

    def _tools_key(self, task: Task) -> Hashable:
        return tuple(task.data["services"])  # the tools are the services' own: the same for tasks of one domain

    def _tools(self, task: Task) -> list[Tool]:
        # Built once per set of services: each tool calls this env's services, loaded for the episode.
        tools = [tool for name in task.data["services"] for tool in self._services[name].tools()]
        for tool in tools:
            tool.fn = self._recorded(tool.name, tool.fn)
        return tools

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

    def _system_prompt(self, task: Task) -> str:
        intro = _DOMAIN_PROMPTS.get(task.data.get("domain", ""), "You are an assistant with tools.")
        return (f"{intro} {_CALL_SYNTAX} When the request is done, answer the user in plain text with no tool "
                "call; the user may then ask something else.")

    def _on_reply(self, text: str) -> ToolOutput | None:
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
    _EPISODE_FIELDS = ("_user_turn", "_calls", "_replies", "_decided", "_turn_report", "_gold_left", "_gold_unmet")

    def _snapshot_state(self) -> dict[str, Any]:
        assert self.task is not None
        services = {name: self._services[name].state() for name in self.task.data["services"]}
        fields = copy_plain({name: getattr(self, name) for name in self._EPISODE_FIELDS})
        return {"services": services, "fields": fields}

    def _restore_state(self, state: dict[str, Any]) -> None:
        for name, value in copy_plain(state["fields"]).items():
            setattr(self, name, value)
        for name, data in state["services"].items():
            self._services[name].load(data)

    # -------------------------------------------------------------------------------------------- steps
    def _before_step(self) -> None:
        self._step_calls = 0
        self._step_user_turn = self._user_turn  # a text answer moves the user turn on; this step scores against it

    def _step_extra(self, step: StepReport) -> Mapping[str, Any]:
        """The criteria decided at this step when it ended a user turn (or the episode)."""
        if self._turn_report is None:
            return {}
        extra: dict[str, Any] = {TURN_CHECKLIST: _criteria_info(self._turn_report),
                                 USER_TURN: self._step_user_turn + 1}
        if not step.ended:
            extra[CHECKLIST_SO_FAR] = _criteria_info(self._decided)
        self._turn_report = None
        return extra

    def _toolrl_scores(self, calls: list[dict[str, Any]]) -> dict[str, float]:
        user_turn = self._step_user_turn
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
            plan = self._plans[key] = _make_plan(task.data)
        return plan

    def _grade(self, submitted: bool) -> Grade:
        assert self.task is not None
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
        units = [Unit("state", state_match, "; ".join(diff) or "final state equals gold")]
        units += [Unit(c["id"], decided[c["id"]]["passed"], decided[c["id"]]["evidence"])
                  for c in plan.criteria if c["id"] in required]
        outcome = float(all(unit.passed for unit in units))
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
            checklist=[_criterion(item) for item in self._decided],
            hack_flags=hack_flags,
            details={"calls": n_calls, "gold_calls": gold_calls, "failed_calls": sum(
                1 for turn in self._calls for c in turn if not c["ok"]), "state_diff": diff,
                "user_turns_answered": len(self._replies), "user_turns": len(turns)},
        )
