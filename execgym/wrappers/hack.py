"""HackPenalty: an episode whose grader raised hack flags earns nothing (or a given penalty)."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.core import report as R
from execgym.wrappers.base import RewardScheme, checked_number
from execgym.wrappers.credit import CreditAssignment

__all__ = ["HackPenalty"]


class HackPenalty(RewardScheme[ObsType, ActType]):
    """Zero the return of any episode in which ``info["hack_flags"]`` is non-empty, or set it to ``penalty``.

    The grader reports what looks like gaming it (edited tests, hard-coded output) in ``info["hack_flags"]``
    at the end of the episode. Rewards already paid during the episode cannot be taken back one by one, so
    the last step pays ``penalty`` minus everything this episode paid before, as the single part
    ``hack_penalty``: the episode's return through this wrapper is exactly ``penalty`` (0 by default),
    whatever the wrappers inside paid. Put it outermost, or at least outside every wrapper whose reward it
    should cancel. Where an inner credit wrapper left per-step credit (``info["credit"]``), it is zeroed too.

    ``info["hack_penalty"]`` reports the flags, their count, and how many episodes were flagged so far
    (``episodes_flagged`` of ``episodes``); the running counts are also ``flagged_episodes`` and
    ``episodes`` on the wrapper.

    Args:
        env: the env to wrap.
        penalty: the return of a flagged episode (0 zeroes it; a negative value punishes it).

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = HackPenalty(ScriptedEnv(), penalty=-1.0)
        >>> _ = env.reset()
        >>> obs, reward, *_, info = env.step({"outcome": 1.0, "hack_flags": ["edited tests/test_core.py"]})
        >>> reward, info["reward_breakdown"], info["hack_penalty"]["count"]
        (-1.0, {'hack_penalty': -1.0}, 1)
        >>> _ = env.reset()
        >>> env.step({"outcome": 1.0})[1], env.flagged_episodes, env.episodes
        (1.0, 1, 2)
    """

    info_key = "hack_penalty"
    part = info_key  # the one part a flagged episode's last step pays is named like the report

    def __init__(self, env: gym.Env[ObsType, ActType], *, penalty: float = 0.0) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, penalty=penalty)
        super().__init__(env)
        self.penalty = checked_number("HackPenalty", "penalty", penalty)
        self.episodes = 0
        self.flagged_episodes = 0
        self._paid = 0.0
        self._flags: list[str] = []

    def begin_episode(self) -> None:
        self._paid = 0.0
        self._flags = []

    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        flags = info.get(R.HACK_FLAGS) or []
        for flag in flags if isinstance(flags, list | tuple) else [flags]:
            if str(flag) not in self._flags:
                self._flags.append(str(flag))
        if not ended:
            self._paid += math.fsum(parts.values())
            return parts

        self.episodes += 1
        report: dict[str, Any] = {"flags": list(self._flags), "count": len(self._flags), "penalized": False}
        if self._flags:
            self.flagged_episodes += 1
            report.update(penalized=True, dropped=self._paid + math.fsum(parts.values()))
            parts = {self.part: self.penalty - self._paid}
            credit = info.get(CreditAssignment.info_key)
            if isinstance(credit, dict) and "per_step" in credit:
                credit["per_step"] = [0.0 for _ in credit["per_step"]]
        report.update(episodes_flagged=self.flagged_episodes, episodes=self.episodes)
        self.report(info, report)
        self._paid = 0.0
        self._flags = []
        return parts
