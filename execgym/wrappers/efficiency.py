"""ConditionalEfficiency (HDPO): an efficiency term paid only in episodes that succeeded."""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.core import report as R
from execgym.wrappers.base import RewardScheme, checked_number

__all__ = ["ConditionalEfficiency"]


class ConditionalEfficiency(RewardScheme[ObsType, ActType]):
    r"""Reward using fewer tool calls (or turns), but only in episodes that succeeded.

    An efficiency bonus paid in every episode teaches an agent to give up early: a failure with one call
    then beats an honest attempt with ten. Conditioning it on success (as HDPO's conditional advantage does)
    keeps correctness first: a failed episode earns no efficiency, and among successes the cheaper one
    earns more. At the end of an episode with ``info["outcome"] >= success_threshold`` the part
    ``efficiency`` is

    .. math:: w \cdot e(c), \qquad e(c) = \frac{1}{1 + c} \;\text{ or, with a budget } B,\; \max(0, 1 - c/B)

    where :math:`c` is the number of tool calls (``len(info["tool_calls"])`` summed over the episode's
    steps) or of turns (steps), as ``measure`` says. :math:`e` is strictly decreasing in :math:`c` (up to
    the budget). ``info["efficiency"]`` reports the cost and whether the term was paid.

    Args:
        env: the env to wrap.
        weight: :math:`w`, the most the term can add.
        measure: ``"tool_calls"`` or ``"turns"``.
        budget: :math:`B`; None uses :math:`1/(1+c)`.
        success_threshold: the outcome at or above which the episode counts as a success.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = ConditionalEfficiency(ScriptedEnv(), weight=0.5, budget=10)
        >>> call = {"name": "run_query", "arguments": {}}
        >>> def episode(calls, outcome):
        ...     _ = env.reset()
        ...     for _ in range(calls - 1):
        ...         _ = env.step({"tool_calls": [call]})
        ...     return env.step({"tool_calls": [call], "outcome": outcome})[1]
        >>> episode(2, 1.0), episode(8, 1.0)          # both succeed: the cheaper one earns more
        (1.4, 1.1)
        >>> episode(1, 0.0)                           # a quick failure earns nothing for being quick
        0.0
    """

    info_key = "efficiency"
    part = info_key  # the term it pays is named like its report

    def __init__(
        self,
        env: gym.Env[ObsType, ActType],
        *,
        weight: float = 0.2,
        measure: Literal["tool_calls", "turns"] = R.TOOL_CALLS,
        budget: float | None = None,
        success_threshold: float = 1.0,
    ) -> None:
        if measure not in (R.TOOL_CALLS, "turns"):
            raise ValueError(f"measure must be 'tool_calls' or 'turns', got {measure!r}")
        if budget is not None and checked_number("ConditionalEfficiency", "budget", budget) <= 0:
            raise ValueError(f"budget must be positive, got {budget}")
        gym.utils.RecordConstructorArgs.__init__(
            self, weight=weight, measure=measure, budget=budget, success_threshold=success_threshold
        )
        super().__init__(env)
        self.weight = checked_number("ConditionalEfficiency", "weight", weight)
        self.measure = measure
        self.budget = None if budget is None else float(budget)
        self.success_threshold = checked_number("ConditionalEfficiency", "success_threshold", success_threshold)
        self._cost = 0

    def efficiency(self, cost: float) -> float:
        """:math:`e(c)`: 1 for no cost, decreasing as the cost grows."""
        if self.budget is None:
            return 1.0 / (1.0 + cost)
        return max(0.0, 1.0 - cost / self.budget)

    def begin_episode(self) -> None:
        self._cost = 0

    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        calls = info.get(R.TOOL_CALLS) or []
        self._cost += (len(calls) if isinstance(calls, list) else 1) if self.measure == R.TOOL_CALLS else 1
        if ended:
            _, success = self.succeeded(info, self.success_threshold)
            if success:
                parts[self.part] = self.weight * self.efficiency(self._cost)
            self.report(info, {"measure": self.measure, "cost": self._cost, "paid": success})
            self._cost = 0
        return parts
