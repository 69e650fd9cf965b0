"""ChecklistReward (CM2): the weighted fraction of satisfied checklist criteria, per user turn or per episode."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.core import report as R
from execgym.core.finite import flag_issue, number_problem
from execgym.wrappers._parts import BASE_PART
from execgym.wrappers.base import RewardScheme

__all__ = ["CRITERION_TURN", "ChecklistReward", "entry_field", "weighted_fraction"]

CRITERION_TURN: Final = "turn"
"""The field (under a criterion's ``extra``) that says which user turn the criterion belongs to."""

_Key = tuple[str, str]


def entry_field(entry: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A unit's or criterion's field: its own (``weight``) or, for env-specific ones (``turn``), under ``extra``.

    Example:
        >>> entry_field({"id": "a", "extra": {"turn": 2}}, "turn"), entry_field({"id": "a"}, "weight", 1.0)
        (2, 1.0)
    """
    if name in entry:
        return entry[name]
    extra = entry.get(R.EXTRA)
    return extra.get(name, default) if isinstance(extra, Mapping) else default


def _turn(criterion: Mapping[str, Any]) -> str:
    return str(entry_field(criterion, CRITERION_TURN, ""))


def _key(criterion: Mapping[str, Any], index: int) -> _Key:
    return _turn(criterion), str(criterion.get("id", index))


def weighted_fraction(criteria: Sequence[Mapping[str, Any]]) -> float:
    """``sum(weight * passed) / sum(weight)`` (weight defaults to 1); 0 for no criteria.

    Example:
        >>> weighted_fraction([{"passed": True, "weight": 3}, {"passed": False}])
        0.75
    """
    total = math.fsum(float(entry_field(c, "weight", 1.0)) for c in criteria)
    if total <= 0:
        return 0.0
    return math.fsum(float(entry_field(c, "weight", 1.0)) for c in criteria if c.get("passed")) / total


class ChecklistReward(RewardScheme[ObsType, ActType]):
    """The reward is the weighted fraction of satisfied checklist criteria (CM2: sparse rewards, dense criteria).

    Criteria (``{"id", "passed", "evidence", "weight", "description", "extra"}``, the user turn they belong to
    in ``extra["turn"]``) come from ``info["checklist"]``, which an env reports at the end of the episode, and
    from ``info["extra"]["turn_checklist"]``, where an env reports mid-episode the criteria a user turn decided
    when that turn ends (the tool-use env does). Each criterion, identified by its ``(turn, id)``, is paid
    once, on the step where it first appears.

    * ``assign="turn"`` (default): on each step that reports new criteria, pay the weighted fraction of
      each user turn's new criteria (part ``checklist``). The episode's return is the sum over its user
      turns of each turn's weighted fraction, whether the env reports a turn's criteria when the turn ends
      or only at the end of the episode.
    * ``assign="episode"``: pay once, at the end, the weighted fraction over every criterion the episode
      reported.

    The checklist reward replaces the outcome (the incoming part ``outcome`` is dropped at the end of any
    episode that reported criteria) unless ``keep_outcome`` is True; an episode without any criterion keeps
    its reward unchanged. ``info["checklist_reward"]`` carries the criteria paid this step with their
    evidence (``paid``: ``id``, ``turn``, ``passed``, ``weight``, ``evidence``, ``description``). A criterion
    that is not a mapping, or whose ``weight`` is not a finite number >= 0, is dropped and noted in
    ``info["reward_issues"]``.

    Args:
        env: the env to wrap.
        assign: ``"turn"`` or ``"episode"``.
        keep_outcome: also keep paying the outcome.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = ChecklistReward(ScriptedEnv())
        >>> _ = env.reset()
        >>> turn1 = [{"id": "looked_up", "passed": True, "evidence": "step 1: get_order(id=7)", "extra": {"turn": 1}},
        ...          {"id": "refunded", "passed": False, "evidence": "refund was not called", "weight": 3.0,
        ...           "extra": {"turn": 1}}]
        >>> obs, reward, *_, info = env.step({"extra": {"turn_checklist": turn1}})    # user turn 1 ends
        >>> reward, info["checklist_reward"]["paid"][1]["evidence"]
        (0.25, 'refund was not called')
        >>> turn2 = [{"id": "said_total", "passed": True, "evidence": "'$12'", "extra": {"turn": 2}}]
        >>> env.step({"outcome": 0.0, "checklist": turn1 + turn2})[1]    # the final list repeats turn 1
        1.0
    """

    info_key = "checklist_reward"
    part = R.CHECKLIST  # the part is named after what it pays for

    def __init__(
        self,
        env: gym.Env[ObsType, ActType],
        *,
        assign: Literal["turn", "episode"] = "turn",
        keep_outcome: bool = False,
    ) -> None:
        if assign not in ("turn", "episode"):
            raise ValueError(f"assign must be 'turn' or 'episode', got {assign!r}")
        gym.utils.RecordConstructorArgs.__init__(self, assign=assign, keep_outcome=keep_outcome)
        super().__init__(env)
        self.assign = assign
        self.keep_outcome = keep_outcome
        self._seen: dict[_Key, Mapping[str, Any]] = {}
        self._paid: set[_Key] = set()

    def begin_episode(self) -> None:
        self._seen = {}
        self._paid = set()

    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        owner = type(self).__name__
        extra = info.get(R.EXTRA)
        decided = extra.get(R.TURN_CHECKLIST) if isinstance(extra, Mapping) else None
        reported = (usable_criteria(info, owner, decided, R.TURN_CHECKLIST)
                    + usable_criteria(info, owner, info.get(R.CHECKLIST)))
        # The last step may report a closed turn's criteria twice (its own and in the final list): once each.
        fresh = {_key(criterion, i): criterion for i, criterion in enumerate(reported)}
        self._seen.update(fresh)

        paying: list[Mapping[str, Any]] = []
        if self.assign == "turn":
            paying = [c for k, c in fresh.items() if k not in self._paid]
            self._paid.update(fresh)
        elif ended:
            paying = list(self._seen.values())

        report: dict[str, Any] = {"paid": [_summary(c) for c in paying]}
        if paying:
            by_turn: dict[str, list[Mapping[str, Any]]] = {}
            for c in paying:
                by_turn.setdefault(_turn(c), []).append(c)
            if self.assign == "turn":
                fractions = {turn: weighted_fraction(cs) for turn, cs in by_turn.items()}
                report["fractions"] = fractions
                parts[self.part] = math.fsum(fractions.values())
            else:
                parts[self.part] = report["fraction"] = weighted_fraction(paying)
        if ended and self._seen and not self.keep_outcome:
            parts.pop(BASE_PART, None)
        if ended:
            report["criteria"] = len(self._seen)
            report["satisfied"] = sum(1 for c in self._seen.values() if c.get("passed"))
        self.report(info, report)
        return parts


def usable_criteria(info: dict[str, Any], owner: str, entries: Any, what: str = R.CHECKLIST
                    ) -> list[Mapping[str, Any]]:
    """The entries of a checklist (or units) list that are mappings with a usable weight; the rest are flagged."""
    if not entries:
        return []
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        flag_issue(info, owner, what, entries, "is not a list")
        return []
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            flag_issue(info, owner, f"entry {i}", entry, "is not a mapping")
            continue
        weight = entry_field(entry, "weight", 1.0)
        problem = number_problem(weight, low=0.0)
        if problem:
            flag_issue(info, owner, f"weight of {entry.get('id', i)!r}", weight, problem)
            continue
        out.append(entry)
    return out


def _summary(criterion: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("id", CRITERION_TURN, "passed", "weight", "evidence", "description")
    return {k: value for k in keep if (value := entry_field(criterion, k)) is not None}
