"""The reward breakdown every execgym reward wrapper keeps in ``info`` (helpers shared by the wrappers).

``info["reward_breakdown"]`` maps a name to the part of this step's reward paid under that name, and the
reward a wrapper returns is always the sum of its breakdown. A wrapper reads the breakdown the wrappers
inside it left, changes or adds the parts it is about, and pays the sum. Below the first execgym wrapper
there is no breakdown: the env's own reward (for an execgym env, the sparse outcome) is the part
``"outcome"``. A wrapper from elsewhere (gymnasium's ``TransformReward``, say) changes the reward without
touching the breakdown; the difference is kept as the part ``"unattributed"`` so the sum stays exact.
These helpers do plain arithmetic: :class:`execgym.wrappers.base.RewardScheme` checks every number first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, SupportsFloat

from execgym.core.report import BREAKDOWN, OUTCOME

__all__ = ["BASE_PART", "BREAKDOWN", "incoming_parts", "pay"]

# BREAKDOWN is the info key of :mod:`execgym.core.report`, imported here so ``execgym.wrappers._parts.BREAKDOWN``
# keeps working. The env's own reward is its outcome, so its part is named after the outcome's info key.
BASE_PART: Final = OUTCOME
_TOLERANCE = 1e-9


def incoming_parts(reward: SupportsFloat, info: Mapping[str, Any], ended: bool) -> dict[str, float]:
    """The parts of ``reward`` as the wrappers inside left them (a fresh dict the caller may change).

    Example:
        >>> incoming_parts(1.0, {}, ended=True)
        {'outcome': 1.0}
        >>> incoming_parts(0.0, {}, ended=False)
        {}
        >>> incoming_parts(2.5, {"reward_breakdown": {"outcome": 1.0}}, ended=True)
        {'outcome': 1.0, 'unattributed': 1.5}
    """
    value = float(reward)
    given = info.get(BREAKDOWN)
    if given is None:
        return {BASE_PART: value} if (ended or value != 0.0) else {}
    parts = {str(name): float(part) for name, part in given.items()}
    gap = value - math.fsum(parts.values())
    if abs(gap) > _TOLERANCE * max(1.0, abs(value)):
        parts["unattributed"] = parts.get("unattributed", 0.0) + gap
    return parts


def pay(info: dict[str, Any], parts: dict[str, float]) -> float:
    """Record ``parts`` as this step's breakdown and return the reward they add up to."""
    info[BREAKDOWN] = parts
    return math.fsum(parts.values())
