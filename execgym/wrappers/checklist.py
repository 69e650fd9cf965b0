"""ChecklistReward (CM2): the weighted fraction of satisfied checklist criteria, per user turn or per episode."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.core.finite import flag_issue, number_problem
from execgym.wrappers._parts import BASE_PART
from execgym.wrappers.base import RewardScheme

__all__ = ["ChecklistReward", "weighted_fraction"]

_Key = tuple[str, str]


def _key(criterion: Mapping[str, Any], index: int) -> _Key:
    return str(criterion.get("turn", "")), str(criterion.get("id", index))


def weighted_fraction(criteria: Sequence[Mapping[str, Any]]) -> float:
    """``sum(weight * passed) / sum(weight)`` (weight defaults to 1); 0 for no criteria.

    Example:
        >>> weighted_fraction([{"passed": True, "weight": 3}, {"passed": False}])
        0.75
    """
    total = math.fsum(float(c.get("weight", 1.0)) for c in criteria)
    if total <= 0:
        return 0.0
    return math.fsum(float(c.get("weight", 1.0)) for c in criteria if c.get("passed")) / total


class ChecklistReward(RewardScheme[ObsType, ActType]):
    """The reward is the weighted fraction of satisfied checklist criteria (CM2: sparse rewards, dense criteria).

    Criteria come from ``info["checklist"]`` (``{"id", "passed", "evidence", "weight"?, "turn"?}``), which an
    env reports at the end of the episode and may also report mid-episode, when a user turn ends (the
    tool-use env does). Each criterion, identified by its ``(turn, id)``, is paid once, on the step where it
    first appears.

    * ``assign="turn"`` (default): on each step that reports new criteria, pay the weighted fraction of
      each user turn's new criteria (part ``checklist``). The episode's return is the sum over its user
      turns of each turn's weighted fraction, whether the env reports a turn's criteria when the turn ends
      or only at the end of the episode.
    * ``assign="episode"``: pay once, at the end, the weighted fraction over every criterion the episode
      reported.

    The checklist reward replaces the outcome (the incoming part ``outcome`` is dropped at the end of any
    episode that reported criteria) unless ``keep_outcome`` is True; an episode without any criterion keeps
    its reward unchanged. ``info["checklist_reward"]`` carries the criteria paid this step with their
    evidence. A criterion that is not a mapping, or whose ``weight`` is not a finite number >= 0, is dropped
    and noted in ``info["reward_issues"]``.

    Args:
        env: the env to wrap.
        assign: ``"turn"`` or ``"episode"``.
        keep_outcome: also keep paying the outcome.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = ChecklistReward(ScriptedEnv())
        >>> _ = env.reset()
        >>> turn1 = [{"id": "looked_up", "turn": 1, "passed": True, "evidence": "step 1: get_order(id=7)"},
        ...          {"id": "refunded", "turn": 1, "passed": False, "evidence": "refund was not called",
        ...           "weight": 3.0}]
        >>> obs, reward, *_, info = env.step({"checklist": turn1})      # user turn 1 ends
        >>> reward, info["checklist_reward"]["paid"][1]["evidence"]
        (0.25, 'refund was not called')
        >>> turn2 = [{"id": "said_total", "turn": 2, "passed": True, "evidence": "'$12'"}]
        >>> env.step({"outcome": 0.0, "checklist": turn1 + turn2})[1]    # the final list repeats turn 1
        1.0
    """

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
        reported = usable_criteria(info, type(self).__name__, info.get("checklist"))
        for i, criterion in enumerate(reported):
            self._seen[_key(criterion, i)] = criterion

        paying: list[Mapping[str, Any]] = []
        if self.assign == "turn":
            keys = [_key(c, i) for i, c in enumerate(reported)]
            paying = [c for k, c in zip(keys, reported) if k not in self._paid]
            self._paid.update(keys)
        elif ended:
            paying = list(self._seen.values())

        report: dict[str, Any] = {"paid": [_summary(c) for c in paying]}
        if paying:
            by_turn: dict[str, list[Mapping[str, Any]]] = {}
            for c in paying:
                by_turn.setdefault(str(c.get("turn", "")), []).append(c)
            if self.assign == "turn":
                fractions = {turn: weighted_fraction(cs) for turn, cs in by_turn.items()}
                report["fractions"] = fractions
                parts["checklist"] = math.fsum(fractions.values())
            else:
                parts["checklist"] = report["fraction"] = weighted_fraction(paying)
        if ended and self._seen and not self.keep_outcome:
            parts.pop(BASE_PART, None)
        if ended:
            report["criteria"] = len(self._seen)
            report["satisfied"] = sum(1 for c in self._seen.values() if c.get("passed"))
        info["checklist_reward"] = report
        return parts


def usable_criteria(info: dict[str, Any], owner: str, entries: Any) -> list[Mapping[str, Any]]:
    """The entries of a checklist (or units) list that are mappings with a usable weight; the rest are flagged."""
    if not entries:
        return []
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        flag_issue(info, owner, "checklist", entries, "is not a list")
        return []
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            flag_issue(info, owner, f"entry {i}", entry, "is not a mapping")
            continue
        problem = number_problem(entry.get("weight", 1.0), low=0.0)
        if problem:
            flag_issue(info, owner, f"weight of {entry.get('id', i)!r}", entry.get("weight"), problem)
            continue
        out.append(entry)
    return out


def _summary(criterion: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("id", "turn", "passed", "weight", "evidence", "description")
    return {k: criterion[k] for k in keep if k in criterion}
