"""The typed report an execgym env gives with every ``reset`` and ``step``, and the ``info`` key names, once.

Gymnasium's ``info`` is a plain dict, and it stays one: trainers, vector envs and recorders expect that. What
goes in it is fixed here. :class:`AgentEnv <execgym.core.env.AgentEnv>` builds a :class:`ResetReport`, a
:class:`StepReport` and, when the episode ends, a :class:`FinalReport`, and derives ``info`` from them with
``as_info()``. Everything that reads ``info`` (reward wrappers, rollouts, the trainer, the recorder, the viewer,
the CLI) reads it through the key constants below or through :func:`final_of`, never through string literals.

Grading speaks in :class:`Unit` s (one unit test, one check) and :class:`Criterion` s (one checklist item),
which have the same shape in every env: an env's own fields go under ``extra``.

Example:
    >>> report = StepReport(task_id="t1", turn=1, reward_components={"format": 1.0})
    >>> info = report.as_info()
    >>> info[REWARD_COMPONENTS], info[TURN]
    ({'format': 1.0}, 1)
    >>> final = FinalReport(outcome=1.0, units=[Unit("test_add", True)], submitted=True, turns=1)
    >>> info.update(final.as_info())
    >>> final_of(info).units[0].passed
    True
    >>> final_of(StepReport(task_id="t1", turn=1).as_info()) is None
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

__all__ = [
    "AGENT_ERROR",
    "BREAKDOWN",
    "CHECKLIST",
    "CHECKLIST_SO_FAR",
    "DIFFICULTY",
    "EXTRA",
    "GRADE_DETAILS",
    "HACK_FLAGS",
    "INFRA_ERROR",
    "MESSAGES",
    "NEW_MESSAGES",
    "OUTCOME",
    "REWARD_COMPONENTS",
    "REWARD_ISSUES",
    "SPLIT",
    "SUBMITTED",
    "SYSTEM_PROMPT",
    "TASK_ID",
    "TOOLS",
    "TOOL_CALLS",
    "TURN",
    "TURNS",
    "TURN_CHECKLIST",
    "UNITS",
    "USER_TURN",
    "CallRecord",
    "Criterion",
    "FinalReport",
    "Grade",
    "ResetReport",
    "StepReport",
    "Unit",
    "ended_info",
    "final_of",
]

# ------------------------------------------------------------------------------------------ key names
# At reset.
TASK_ID: Final = "task_id"
DIFFICULTY: Final = "difficulty"
SPLIT: Final = "split"
TOOLS: Final = "tools"
"""OpenAI function schemas of the episode's tools."""
SYSTEM_PROMPT: Final = "system_prompt"
MESSAGES: Final = "messages"
"""The chat so far in OpenAI message format (at reset: system and user)."""
EXTRA: Final = "extra"
"""An env's own fields (SQL's ``db_id``, ToolUse's ``turn_checklist``); at reset and at any step."""
# Fields under EXTRA that more than one layer reads (an env writes them, a reward wrapper reads them).
TURN_CHECKLIST: Final = "turn_checklist"
"""Mid-episode, under ``extra``: the criteria a user turn just decided (ToolUse; CM2 pays them)."""
USER_TURN: Final = "user_turn"
"""Under ``extra``, with ``turn_checklist``: which user turn (from 1) those criteria belong to."""
CHECKLIST_SO_FAR: Final = "checklist_so_far"
"""Mid-episode, under ``extra``: every criterion decided so far (``checklist`` itself appears only at the end)."""
# Every step.
TURN: Final = "turn"
REWARD_COMPONENTS: Final = "reward_components"
"""Named, checked reward components of this step (``format``, ``executed``, ``iou``, ...)."""
TOOL_CALLS: Final = "tool_calls"
"""This step's calls as :class:`CallRecord` dicts."""
NEW_MESSAGES: Final = "new_messages"
"""The messages this step added (the assistant's, then the tools' or the user's)."""
REWARD_ISSUES: Final = "reward_issues"
"""Numbers that were dropped because they were not real, finite and in range (see :mod:`execgym.core.finite`)."""
# When the episode ends.
OUTCOME: Final = "outcome"
UNITS: Final = "units"
CHECKLIST: Final = "checklist"
HACK_FLAGS: Final = "hack_flags"
INFRA_ERROR: Final = "infra_error"
SUBMITTED: Final = "submitted"
TURNS: Final = "turns"
GRADE_DETAILS: Final = "grade_details"
# Written above the env.
BREAKDOWN: Final = "reward_breakdown"
"""The parts of this step's reward, by name, as reward wrappers paid them (see :mod:`execgym.wrappers`)."""
AGENT_ERROR: Final = "agent_error"
"""Why an agent could not go on (a model server that cannot be reached, a timeout); in rollout results."""


# ------------------------------------------------------------------------------------------ typed parts
def _extra_of(value: Any, fields: tuple[str, ...], what: str) -> dict[str, Any]:
    """A mapping's keys other than ``fields``, with its own ``extra`` merged in: an env's fields, in one place.

    A grader's entry must say ``passed`` as a real bool (``"false"`` is no pass) and keep its ``extra`` a mapping:
    anything else is a ``ValueError`` (the env makes the episode an ``infra_error``).
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"a {what} must be a {what.title()} or a mapping, got {type(value).__name__}")
    if not isinstance(value.get("passed"), bool):
        raise ValueError(f"{what} {value.get('id')!r}: 'passed' must be true or false, got {value.get('passed')!r}")
    own = value.get(EXTRA)
    if own is not None and not isinstance(own, Mapping):
        raise ValueError(f"{what} {value.get('id')!r}: 'extra' must be a mapping, got {type(own).__name__}")
    extra = {str(k): v for k, v in value.items() if k not in fields and k != EXTRA}
    extra.update(own or {})
    return extra


@dataclass
class Unit:
    """One unit of grading: a unit test, a query check, a geometric check.

    Example:
        >>> Unit("test_add", False, "assert 1 == 2", extra={"duration_s": 0.01}).as_info()
        {'id': 'test_add', 'passed': False, 'evidence': 'assert 1 == 2', 'extra': {'duration_s': 0.01}}
        >>> Unit.coerce({"id": "q", "passed": True, "rows": 3})
        Unit(id='q', passed=True, evidence='', extra={'rows': 3})
    """

    id: str
    passed: bool
    evidence: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    _FIELDS: ClassVar[tuple[str, ...]] = ("id", "passed", "evidence")

    def as_info(self) -> dict[str, Any]:
        return {"id": self.id, "passed": self.passed, "evidence": self.evidence, EXTRA: dict(self.extra)}

    @classmethod
    def coerce(cls, value: Unit | Mapping[str, Any]) -> Unit:
        """``value`` as a Unit; a mapping's keys other than the unit's fields go under ``extra``."""
        if isinstance(value, cls):
            return value
        extra = _extra_of(value, cls._FIELDS, "unit")
        return cls(id=str(value.get("id", "")), passed=bool(value.get("passed", False)),
                   evidence=str(value.get("evidence") or ""), extra=extra)


@dataclass
class Criterion:
    """One checklist criterion, decided with the evidence for the decision.

    ``weight`` is its share in a checklist score; ``description`` says what it asks in words.

    Example:
        >>> Criterion("refund", True, "refund_order(O-1) was called", weight=2.0).as_info()["weight"]
        2.0
    """

    id: str
    passed: bool
    evidence: str = ""
    weight: float = 1.0
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    _FIELDS: ClassVar[tuple[str, ...]] = ("id", "passed", "evidence", "weight", "description")

    def as_info(self) -> dict[str, Any]:
        return {"id": self.id, "passed": self.passed, "evidence": self.evidence, "weight": self.weight,
                "description": self.description, EXTRA: dict(self.extra)}

    @classmethod
    def coerce(cls, value: Criterion | Mapping[str, Any]) -> Criterion:
        """``value`` as a Criterion; a mapping's keys other than the criterion's fields go under ``extra``."""
        if isinstance(value, cls):
            return value
        extra = _extra_of(value, cls._FIELDS, "criterion")
        weight = value.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"criterion {value.get('id')!r}: 'weight' must be a number, got {weight!r}")
        return cls(id=str(value.get("id", "")), passed=bool(value.get("passed", False)),
                   evidence=str(value.get("evidence") or ""), weight=float(weight),
                   description=str(value.get("description") or ""), extra=extra)


@dataclass
class Grade:
    """What an env's grader concluded about a finished episode (what ``AgentEnv._grade`` returns).

    Attributes:
        outcome: task success in 0..1 (the env's terminal reward).
        components: named reward components computed at grading (``schema_link``, ``iou``, ...).
        units: per unit test / per check results.
        checklist: per criterion results.
        hack_flags: what the grader saw that looks like gaming it.
        details: anything else worth logging (not used by rewards): ``info["grade_details"]``.

    Units and criteria may be given as mappings; the env turns them into :class:`Unit` / :class:`Criterion`.
    """

    outcome: float
    components: dict[str, float] = field(default_factory=dict)
    units: list[Unit] = field(default_factory=list)
    checklist: list[Criterion] = field(default_factory=list)
    hack_flags: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallRecord:
    """One tool call of a step: its name, arguments, the caller's call id, and whether it returned an error."""

    id: str
    name: str
    arguments: dict[str, Any]
    error: bool = False

    def as_info(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "error": self.error}


# ------------------------------------------------------------------------------------------ reports
@dataclass
class ResetReport:
    """What ``reset`` reports: the task and what the agent needs to start."""

    task_id: str
    difficulty: str | None
    split: str | None
    tools: list[dict[str, Any]]
    system_prompt: str
    messages: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def as_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {TASK_ID: self.task_id, DIFFICULTY: self.difficulty, SPLIT: self.split,
                                TOOLS: self.tools, SYSTEM_PROMPT: self.system_prompt, MESSAGES: list(self.messages)}
        if self.extra:
            info[EXTRA] = dict(self.extra)
        return info


@dataclass
class StepReport:
    """What one ``step`` reports.

    ``format_ok`` is what the ``format`` component says: False when the action could not be used (malformed, no
    tool call where one was needed) or only repeated calls that already returned the same result; hooks read it
    instead of looking for ``format == 0``. ``ended`` is set when the episode ended at this step.
    """

    task_id: str
    turn: int
    reward_components: dict[str, float] = field(default_factory=dict)
    tool_calls: list[CallRecord] = field(default_factory=list)
    new_messages: list[dict[str, Any]] = field(default_factory=list)
    reward_issues: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    format_ok: bool = True
    ended: bool = False

    def as_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            TASK_ID: self.task_id,
            TURN: self.turn,
            REWARD_COMPONENTS: dict(self.reward_components),
            TOOL_CALLS: [call.as_info() for call in self.tool_calls],
            NEW_MESSAGES: self.new_messages,
        }
        if self.reward_issues:
            info[REWARD_ISSUES] = list(self.reward_issues)
        if self.extra:
            info[EXTRA] = dict(self.extra)
        return info


@dataclass
class FinalReport:
    """What the last step of an episode adds: the grade, and whether the machinery failed.

    ``infra_error`` is set when a sandbox, daemon or grading worker failed: that sample says nothing about the
    policy and trainers drop it. ``submitted`` is False when the episode ended by truncation.
    """

    outcome: float
    units: list[Unit] = field(default_factory=list)
    checklist: list[Criterion] = field(default_factory=list)
    hack_flags: list[str] = field(default_factory=list)
    infra_error: str | None = None
    submitted: bool = False
    turns: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def as_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            OUTCOME: float(self.outcome),
            UNITS: [unit.as_info() for unit in self.units],
            CHECKLIST: [item.as_info() for item in self.checklist],
            HACK_FLAGS: list(self.hack_flags),
            INFRA_ERROR: self.infra_error,
            SUBMITTED: self.submitted,
            TURNS: self.turns,
        }
        if self.details:
            info[GRADE_DETAILS] = self.details
        return info

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> FinalReport:
        """The final report an ``info`` carries (missing or unusable fields take their defaults)."""
        outcome = info.get(OUTCOME, 0.0)
        turns = info.get(TURNS, 0)
        return cls(
            outcome=float(outcome) if isinstance(outcome, int | float) and not isinstance(outcome, bool) else 0.0,
            units=_readable(Unit, info.get(UNITS)),
            checklist=_readable(Criterion, info.get(CHECKLIST)),
            hack_flags=[str(flag) for flag in _list(info.get(HACK_FLAGS))],
            infra_error=None if info.get(INFRA_ERROR) is None else str(info.get(INFRA_ERROR)),
            submitted=bool(info.get(SUBMITTED, False)),
            turns=int(turns) if isinstance(turns, int) and not isinstance(turns, bool) else 0,
            details=dict(info.get(GRADE_DETAILS) or {}),
        )


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _readable(kind: Any, entries: Any) -> list[Any]:
    """The entries of a recorded list that read as ``kind`` (a reader never fails on what an info holds)."""
    out = []
    for entry in _list(entries):
        try:
            out.append(kind.coerce(entry))
        except (TypeError, ValueError):
            continue
    return out


def ended_info(info: Mapping[str, Any]) -> bool:
    """Whether ``info`` is the info of an episode's last step (it carries the final report)."""
    return OUTCOME in info


def final_of(info: Mapping[str, Any]) -> FinalReport | None:
    """The :class:`FinalReport` in a last step's ``info``, or None mid-episode."""
    return FinalReport.from_info(info) if ended_info(info) else None
