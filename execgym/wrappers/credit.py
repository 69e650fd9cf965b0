"""Credit assignment for process rewards: min-form (PURE), Clip and Delta, as functions and as wrappers.

A process reward (a PRM's score, or a step's reward components) summed over a trajectory can be farmed: an
agent that repeats a well-scored step collects it again every time. The transforms here change which
per-step rewards are credited so that the return from any step stays bounded, whatever the length:

* :func:`min_form_credit` (PURE, "Stop Summation: Min-Form Credit Assignment Is All Process Reward Model
  Needs for Reasoning"): the return of step *t* is the minimum of the process rewards from *t* on;
* :func:`clip_credit` ("On Designing Effective RL Reward at Training Time for LLM Reasoning"):
  ``min(r - threshold, 0)``, so every credited reward is <= 0 and any return is <= 0;
* :func:`delta_credit` (same paper): ``r_t - r_{t+1}`` (the last step keeps ``r_T``), so the return from
  step *t* telescopes to ``r_t``.

Each function maps a list of step rewards to a list of credited step rewards. The wrappers
(:class:`MinFormCredit`, :class:`ClipCredit`, :class:`DeltaCredit`, or :class:`CreditAssignment` with any
transform) collect the process reward of every step and, since the transforms look ahead, pay at the
episode's end: the sum of the credited rewards as one part, with the per-step credit in
``info["credit"]["per_step"]`` for a trainer that assigns rewards to steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.wrappers.base import RewardScheme, checked_number, checked_weights

__all__ = [
    "ClipCredit",
    "CreditAssignment",
    "DeltaCredit",
    "MinFormCredit",
    "clip_credit",
    "delta_credit",
    "min_form_credit",
    "tail_sums",
]

_CREDIT: Final = "credit"

Transform = Callable[[Sequence[float]], Sequence[float]]
ProcessReward = Mapping[str, float] | Callable[[Mapping[str, Any]], float]


def tail_sums(rewards: Sequence[float]) -> list[float]:
    """The undiscounted return from every step: ``[sum(rewards[t:]) for t in ...]``.

    Example:
        >>> tail_sums([1.0, 2.0, 3.0])
        [6.0, 5.0, 3.0]
    """
    out = [0.0] * len(rewards)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc += float(rewards[t])
        out[t] = acc
    return out


def _differences(returns: Sequence[float]) -> list[float]:
    """Per-step rewards whose tail sums are ``returns`` (the last step's return is its own reward)."""
    return [returns[t] - (returns[t + 1] if t + 1 < len(returns) else 0.0) for t in range(len(returns))]


def _soft_min(values: Sequence[float], temperature: float) -> float:
    low = min(values)
    weights = [math.exp(-(v - low) / temperature) for v in values]
    return math.fsum(w * v for w, v in zip(weights, values)) / math.fsum(weights)


def min_form_credit(rewards: Sequence[float], *, temperature: float | None = None) -> list[float]:
    """Credited rewards whose return from step *t* is ``min(rewards[t:])`` (PURE's min-form credit).

    With ``temperature`` the minimum is softened to a softmin (``sum(softmax(-r / T) * r)`` over the
    future rewards), which lies between the minimum and the mean and tends to the minimum as ``T -> 0``.

    Example:
        >>> credit = min_form_credit([0.9, 0.2, 0.8, 0.7])
        >>> [round(c, 6) for c in credit]
        [0.0, -0.5, 0.0, 0.7]
        >>> [round(g, 6) for g in tail_sums(credit)]    # each step's return: the min of the rewards from it on
        [0.2, 0.2, 0.7, 0.7]
    """
    values = [float(r) for r in rewards]
    if temperature is not None and temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if temperature is None:
        returns = [0.0] * len(values)
        low = math.inf
        for t in range(len(values) - 1, -1, -1):
            low = min(low, values[t])
            returns[t] = low
    else:
        returns = [_soft_min(values[t:], temperature) for t in range(len(values))]
    return _differences(returns)


def clip_credit(rewards: Sequence[float], *, threshold: float) -> list[float]:
    """``min(r - threshold, 0)`` for every step: a step scored above the threshold earns 0, below it a penalty.

    Example:
        >>> clip_credit([0.9, 0.3, 0.6], threshold=0.5)
        [0.0, -0.2, 0.0]
    """
    return [min(float(r) - threshold, 0.0) for r in rewards]


def delta_credit(rewards: Sequence[float]) -> list[float]:
    """``r_t - r_{t+1}`` for every step but the last, which keeps ``r_T``: the return from *t* is ``r_t``.

    Example:
        >>> delta_credit([0.5, 0.9, 0.4])
        [-0.4, 0.5, 0.4]
        >>> tail_sums(delta_credit([0.5, 0.9, 0.4]))
        [0.5, 0.9, 0.4]
    """
    values = [float(r) for r in rewards]
    return _differences(values)


class CreditAssignment(RewardScheme[ObsType, ActType]):
    """Collect each step's process reward and pay the credit that ``transform`` assigns, at the episode's end.

    The process reward of a step is ``process(info)``, or, when ``process`` is a mapping, the weighted sum of
    those ``info["reward_components"]``. Whatever the wrappers inside pay (the outcome) passes through
    unchanged; at the end the sum of the credited rewards is paid as the part ``name``, and
    ``info["credit"]`` holds the raw process rewards and the credit of every step. A process reward or a
    credit that is not a finite number is dropped (counts 0) and noted in ``info["reward_issues"]``.

    Args:
        env: the env to wrap.
        process: the process reward of a step (component weights, or a function of the step's ``info``).
        transform: a function from the list of process rewards to the list of credited rewards.
        name: the name of the part paid.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = CreditAssignment(ScriptedEnv(), {"prm": 1.0}, lambda r: [2 * x for x in r], name="doubled")
        >>> _ = env.reset()
        >>> env.step({"reward_components": {"prm": 0.25}})[1]
        0.0
        >>> obs, reward, *_, info = env.step({"outcome": 1.0, "reward_components": {"prm": 0.5}})
        >>> reward, info["reward_breakdown"], info["credit"]["per_step"]
        (2.5, {'outcome': 1.0, 'doubled': 1.5}, [0.5, 1.0])
    """

    info_key = _CREDIT

    def __init__(
        self, env: gym.Env[ObsType, ActType], process: ProcessReward, transform: Transform, *, name: str = _CREDIT
    ) -> None:
        if not callable(process):
            process = checked_weights(type(self).__name__, "process", process)
        if not callable(transform):
            raise TypeError(f"{type(self).__name__}: transform must be a function of the list of rewards")
        gym.utils.RecordConstructorArgs.__init__(self, process=process, transform=transform, name=name)
        super().__init__(env)
        self.process = process
        self.transform = transform
        self.name = name
        self._rewards: list[float] = []

    def _process_reward(self, info: dict[str, Any]) -> float:
        if callable(self.process):
            value = self.value(info, self.process(info), "process reward")
            return 0.0 if value is None else value
        return self.weighted(info, self.process)

    def begin_episode(self) -> None:
        self._rewards = []

    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        self._rewards.append(self._process_reward(info))
        if ended:
            given = list(self.transform(list(self._rewards)))
            if len(given) != len(self._rewards):
                raise ValueError(f"{self.name}: the transform returned {len(given)} rewards for "
                                 f"{len(self._rewards)} steps")
            checked = (self.value(info, c, f"{self.name} credit of step {t}") for t, c in enumerate(given, 1))
            credit = [0.0 if c is None else c for c in checked]
            parts[self.name] = math.fsum(credit)
            self.report(info, {"scheme": self.name, "process": list(self._rewards), "per_step": credit})
            self._rewards = []
        return parts


class MinFormCredit(CreditAssignment[ObsType, ActType]):
    """:class:`CreditAssignment` with :func:`min_form_credit`: the return of a step is the minimum of the
    process rewards from it on, so one weak step caps the credit of every step before it (PURE).

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = MinFormCredit(ScriptedEnv(), {"prm": 1.0})
        >>> _ = env.reset()
        >>> for score in (0.9, 0.9, 0.9, 0.1):          # repeating a good step earns nothing more
        ...     _ = env.step({"reward_components": {"prm": score}})
        >>> info = env.step({"outcome": 0.0, "reward_components": {"prm": 0.8}})[4]
        >>> round(info["reward_breakdown"]["min_form"], 6)        # the episode's weakest step
        0.1
    """

    def __init__(
        self, env: gym.Env[ObsType, ActType], process: ProcessReward, *, temperature: float | None = None
    ) -> None:
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        gym.utils.RecordConstructorArgs.__init__(self, process=process, temperature=temperature)
        super().__init__(env, process, lambda r: min_form_credit(r, temperature=temperature), name="min_form")
        self.temperature = temperature


class ClipCredit(CreditAssignment[ObsType, ActType]):
    """:class:`CreditAssignment` with :func:`clip_credit`: every step's credit is ``min(r - threshold, 0)``.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = ClipCredit(ScriptedEnv(), {"prm": 1.0}, threshold=0.5)
        >>> _ = env.reset()
        >>> _ = env.step({"reward_components": {"prm": 0.9}})
        >>> env.step({"outcome": 1.0, "reward_components": {"prm": 0.25}})[4]["credit"]["per_step"]
        [0.0, -0.25]
    """

    def __init__(self, env: gym.Env[ObsType, ActType], process: ProcessReward, *, threshold: float) -> None:
        threshold = checked_number("ClipCredit", "threshold", threshold)
        gym.utils.RecordConstructorArgs.__init__(self, process=process, threshold=threshold)
        super().__init__(env, process, lambda r: clip_credit(r, threshold=threshold), name="clip")
        self.threshold = threshold


class DeltaCredit(CreditAssignment[ObsType, ActType]):
    """:class:`CreditAssignment` with :func:`delta_credit` (after :func:`clip_credit` when ``clip`` is given):
    the return from any step is that step's own process reward, however long the episode.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = DeltaCredit(ScriptedEnv(), {"prm": 1.0})
        >>> _ = env.reset()
        >>> for score in (0.6, 0.6, 0.6):
        ...     _ = env.step({"reward_components": {"prm": score}})
        >>> env.step({"outcome": 1.0, "reward_components": {"prm": 0.6}})[4]["reward_breakdown"]
        {'outcome': 1.0, 'delta': 0.6}
    """

    def __init__(
        self, env: gym.Env[ObsType, ActType], process: ProcessReward, *, clip: float | None = None
    ) -> None:
        if clip is not None:
            clip = checked_number("DeltaCredit", "clip", clip)
        gym.utils.RecordConstructorArgs.__init__(self, process=process, clip=clip)

        def transform(rewards: Sequence[float]) -> list[float]:
            return delta_credit(rewards if clip is None else clip_credit(rewards, threshold=clip))

        super().__init__(env, process, transform, name="delta")
        self.clip = clip
