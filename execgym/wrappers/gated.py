"""GatedReward (G-RA): immediate rewards are accumulated and paid only if the episode's outcome clears a gate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.wrappers.base import RewardScheme, checked_number, checked_weights

__all__ = ["GatedReward"]


class GatedReward(RewardScheme[ObsType, ActType]):
    r"""Gated reward accumulation: step components count only in episodes whose outcome reaches a threshold.

    Every step, the chosen components of ``info["reward_components"]`` are weighted and added to a running
    sum that is *not* paid. When the episode ends (terminated or truncated) the sum is paid as the part
    ``gated`` if ``info["outcome"]`` is at least ``threshold``; otherwise it is dropped. So immediate
    rewards can guide an agent between successful episodes but can never make a failed one pay, which is
    what keeps a policy from farming them (G-RA, "Stabilizing Long-term Multi-turn RL with Gated Rewards").
    A component or outcome that is not a finite number is dropped (an unusable outcome keeps the gate shut)
    and noted in ``info["reward_issues"]``.
    Whatever the wrappers inside pay passes through unchanged. ``info["gated_reward"]`` says what was held
    and whether the gate opened.

    .. math:: R = R_{\text{inner}} + \mathbb{1}[o \ge \delta] \sum_t \sum_c w_c\, r_{t,c}

    Args:
        env: the env to wrap.
        components: the components to accumulate and their weights, e.g. ``{"format": 0.1, "executed": 0.2}``.
        threshold: the outcome the episode must reach for the accumulated sum to be paid.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = GatedReward(ScriptedEnv(), {"executed": 0.1}, threshold=1.0)
        >>> def episode(outcome):
        ...     _ = env.reset()
        ...     paid = [env.step({"reward_components": {"executed": 1.0}})[1] for _ in range(3)]
        ...     obs, reward, *_, info = env.step({"outcome": outcome, "reward_components": {"executed": 1.0}})
        ...     return paid + [reward], info["reward_breakdown"]
        >>> episode(0.0)              # failed: the four components are never paid
        ([0.0, 0.0, 0.0, 0.0], {'outcome': 0.0})
        >>> episode(1.0)              # succeeded: the outcome and the accumulated 4 x 0.1
        ([0.0, 0.0, 0.0, 1.4], {'outcome': 1.0, 'gated': 0.4})
    """

    info_key = "gated_reward"

    def __init__(
        self, env: gym.Env[ObsType, ActType], components: Mapping[str, float], *, threshold: float = 1.0
    ) -> None:
        checked = checked_weights("GatedReward", "components", components)
        if not checked:
            raise ValueError("GatedReward needs at least one component to accumulate")
        gym.utils.RecordConstructorArgs.__init__(self, components=dict(components), threshold=threshold)
        super().__init__(env)
        self.components = checked
        self.threshold = checked_number("GatedReward", "threshold", threshold)
        self._held = 0.0

    def begin_episode(self) -> None:
        self._held = 0.0

    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        self._held += self.weighted(info, self.components)
        report: dict[str, Any] = {"held": self._held}
        if ended:
            outcome, opened = self.succeeded(info, self.threshold)
            if opened:
                parts["gated"] = self._held
            report.update(outcome=outcome, threshold=self.threshold, paid=opened)
            self._held = 0.0
        self.report(info, report)
        return parts
