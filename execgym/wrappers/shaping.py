"""PotentialShaping (Ng, Harada & Russell, 1999): add F = γΦ(s') - Φ(s), which leaves optimal policies unchanged."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.wrappers.base import RewardScheme, checked_number

__all__ = ["PotentialShaping"]

Potential = Callable[[Mapping[str, Any]], float]


class PotentialShaping(RewardScheme[ObsType, ActType]):
    r"""Potential-based reward shaping over the step's ``info``.

    ``potential(info)`` is :math:`\Phi` of the state the env reports in ``info`` (the reset's ``info`` for the
    first state). Each step pays, as the part ``shaping``,

    .. math:: F_t = \gamma\,\Phi(s_{t+1}) - \Phi(s_t), \qquad \Phi(s_T) = 0 \text{ when the episode ends}

    (terminated or truncated: an execgym episode is graded when it is truncated, so both are final). Ng et
    al. show that adding such an :math:`F` leaves the optimal policies of the MDP unchanged, for any
    :math:`\Phi`. With :math:`\gamma = 1` the shaping of every episode sums to :math:`-\Phi(s_0)`, whatever
    the agent does, so it cannot be farmed. Use a potential that measures progress (tests passing so far,
    fraction of the checklist met) to give an agent dense guidance that cannot change what is optimal.
    ``info["shaping"]`` holds :math:`\Phi(s_t)` and :math:`\Phi(s_{t+1})`. A potential that is not a finite
    number is dropped and noted in ``info["reward_issues"]``: the state keeps the last usable potential (0 at
    reset), so the shaping still telescopes.

    Args:
        env: the env to wrap.
        potential: :math:`\Phi`, a function of a step's (or the reset's) ``info``.
        gamma: the discount :math:`\gamma` of the learner, in [0, 1].

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> progress = lambda info: info.get("reward_components", {}).get("tests_passed", 0.0)
        >>> env = PotentialShaping(ScriptedEnv(), progress, gamma=1.0)
        >>> _ = env.reset()
        >>> [round(env.step({"reward_components": {"tests_passed": p}})[1], 6) for p in (0.2, 0.5, 0.4)]
        [0.2, 0.3, -0.1]
        >>> env.step({"outcome": 1.0, "reward_components": {"tests_passed": 1.0}})[4]["reward_breakdown"]
        {'outcome': 1.0, 'shaping': -0.4}
    """

    info_key = "shaping"
    part = info_key  # the part it pays is named like its report

    def __init__(self, env: gym.Env[ObsType, ActType], potential: Potential, *, gamma: float = 1.0) -> None:
        gamma = checked_number("PotentialShaping", "gamma", gamma, low=0.0, high=1.0)
        if not callable(potential):
            raise TypeError("PotentialShaping: potential must be a function of info")
        gym.utils.RecordConstructorArgs.__init__(self, potential=potential, gamma=gamma)
        super().__init__(env)
        self.potential = potential
        self.gamma = gamma
        self._phi = 0.0

    def on_reset(self, info: dict[str, Any]) -> None:
        phi = self.value(info, self.potential(info), "potential")
        self._phi = 0.0 if phi is None else phi

    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        phi_next = 0.0
        if not ended:
            phi = self.value(info, self.potential(info), "potential")
            phi_next = self._phi if phi is None else phi
        parts[self.part] = self.gamma * phi_next - self._phi
        self.report(info, {"phi": self._phi, "phi_next": phi_next})
        self._phi = phi_next
        return parts
