"""RewardScheme: the base every reward wrapper in execgym derives from, and the one place numbers are checked.

A scheme writes :meth:`RewardScheme.reward_parts` (and, if it keeps per-episode state,
:meth:`RewardScheme.begin_episode`, or :meth:`RewardScheme.on_reset` when it needs the reset's ``info``); it names the
``info`` key of its own report once, as the class attribute ``info_key``. The base does the rest of ``step``: it reads
the parts the wrappers inside left (see :mod:`execgym.wrappers._parts`), hands them to the scheme, and pays their sum
with the breakdown in ``info``. Every number a scheme reads (the incoming reward and breakdown, components, the
outcome, the values of user functions) and every part it pays goes through :func:`execgym.core.finite.number_problem`:
a value that is not a real, finite number of sane magnitude is dropped and noted in ``info["reward_issues"]``. So no
NaN, inf, ``1e308``, str or None ever reaches a trainer from any stack of these wrappers, and running statistics are
never poisoned by one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.core import report as R
from execgym.core.finite import flag_issue, number_problem
from execgym.wrappers._parts import BREAKDOWN, incoming_parts, pay

__all__ = ["RewardScheme", "checked_number", "checked_weights"]


def checked_weights(owner: str, what: str, weights: Mapping[Any, Any]) -> dict[str, float]:
    """``weights`` as ``{str: float}``, or a one-line ``ValueError`` naming the first unusable weight.

    Example:
        >>> checked_weights("ComposeReward", "weights", {"format": 0.1})
        {'format': 0.1}
        >>> checked_weights("ComposeReward", "weights", {"format": float("nan")})
        Traceback (most recent call last):
            ...
        ValueError: ComposeReward: weights['format'] = nan is not finite
    """
    if not isinstance(weights, Mapping):
        raise TypeError(f"{owner}: {what} must be a mapping of name -> weight, got {type(weights).__name__}")
    out: dict[str, float] = {}
    for name, weight in weights.items():
        problem = number_problem(weight)
        if problem:
            raise ValueError(f"{owner}: {what}[{str(name)!r}] = {weight!r} {problem}")
        out[str(name)] = float(weight)
    return out


def checked_number(owner: str, what: str, value: Any, *, low: float | None = None,
                   high: float | None = None) -> float:
    """``value`` as a float, or a one-line ``ValueError`` naming the argument (for constructor arguments)."""
    problem = number_problem(value, low=low, high=high)
    if problem:
        raise ValueError(f"{owner}: {what} = {value!r} {problem}")
    return float(value)


class RewardScheme(gym.Wrapper[ObsType, ActType, ObsType, ActType], gym.utils.RecordConstructorArgs):
    """A reward wrapper that pays named parts, with every number it reads or pays checked.

    Subclasses implement ``reward_parts(parts, info, ended) -> parts``: ``parts`` are the incoming parts
    (already checked), ``info`` the step's info, ``ended`` whether the episode ended. Read values with
    :meth:`value`, :meth:`component`, :meth:`weighted` and :meth:`outcome`, which drop and flag unusable ones.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> class Bonus(RewardScheme):
        ...     def reward_parts(self, parts, info, ended):
        ...         bonus = self.component(info, "bonus")
        ...         return {**parts, "bonus": bonus} if bonus is not None else parts
        >>> env = Bonus(ScriptedEnv())
        >>> _ = env.reset()
        >>> env.step({"reward_components": {"bonus": 0.5}})[1]
        0.5
        >>> obs, reward, *_, info = env.step({"reward_components": {"bonus": float("nan")}})
        >>> reward, info["reward_issues"]
        (0.0, ["Bonus: component 'bonus' = nan is not finite; dropped"])
    """

    info_key: ClassVar[str | None] = None
    """The ``info`` key under which the scheme reports what it computed (None: it reports nothing)."""

    def __init__(self, env: gym.Env[ObsType, ActType]) -> None:
        # A subclass records its own constructor arguments first (the first record wins); this one is for
        # schemes without arguments, so that ``spec`` works for every scheme.
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def begin_episode(self) -> None:
        """Forget the per-episode state (called by ``reset``, before the env resets)."""

    def on_reset(self, info: dict[str, Any]) -> None:
        """Read the reset's ``info`` (called by ``reset``, after the env reset)."""

    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        """The parts this step pays, given the incoming ``parts``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- checked reads
    def value(self, info: MutableMapping[str, Any], value: Any, what: str, *, low: float | None = None,
              high: float | None = None) -> float | None:
        """``value`` as a float, or None (and a note in ``info["reward_issues"]``) when it is unusable."""
        problem = number_problem(value, low=low, high=high)
        if problem:
            flag_issue(info, type(self).__name__, what, value, problem)
            return None
        return float(value)

    def component(self, info: MutableMapping[str, Any], name: str) -> float | None:
        """The step's ``reward_components[name]``; None when absent or unusable (flagged)."""
        components = info.get(R.REWARD_COMPONENTS)
        if not isinstance(components, Mapping) or name not in components:
            return None
        return self.value(info, components[name], f"component {name!r}")

    def weighted(self, info: MutableMapping[str, Any], weights: Mapping[str, float]) -> float:
        """``sum(w * component)`` over the components present and usable (absent ones count 0)."""
        values = ((w, self.component(info, name)) for name, w in weights.items())
        return math.fsum(w * v for w, v in values if v is not None)

    def outcome(self, info: MutableMapping[str, Any], default: float = 0.0) -> float:
        """``info["outcome"]``, or ``default`` when it is absent or unusable (flagged)."""
        if R.OUTCOME not in info:
            return default
        value = self.value(info, info[R.OUTCOME], R.OUTCOME)
        return default if value is None else value

    def succeeded(self, info: MutableMapping[str, Any], threshold: float) -> tuple[float | None, bool]:
        """The episode's checked outcome (absent: 0) and whether it reaches ``threshold``; an unusable outcome
        (None, flagged) is no success."""
        outcome = self.value(info, info.get(R.OUTCOME, 0.0), R.OUTCOME)
        return outcome, outcome is not None and outcome >= threshold

    def report(self, info: dict[str, Any], value: Any) -> None:
        """Put the scheme's own report in ``info`` under its ``info_key``."""
        if self.info_key is None:
            raise TypeError(f"{type(self).__name__} has no info_key to report under")
        info[self.info_key] = value

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict[str, Any]]:
        self.begin_episode()
        obs, info = self.env.reset(seed=seed, options=options)
        self.on_reset(info)
        return obs, info

    def step(self, action: ActType) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        ended = bool(terminated or truncated)
        parts = self.reward_parts(self._incoming(reward, info, ended), info, ended)
        return obs, self._pay(info, parts), terminated, truncated, info

    def _incoming(self, reward: Any, info: dict[str, Any], ended: bool) -> dict[str, float]:
        value = self.value(info, reward, "incoming reward")
        given = info.get(BREAKDOWN)
        clean: dict[str, float] | None = None
        if isinstance(given, Mapping):
            clean = {}
            for name, part in given.items():
                checked = self.value(info, part, f"incoming part {str(name)!r}")
                if checked is not None:
                    clean[str(name)] = checked
        elif given is not None:
            flag_issue(info, type(self).__name__, "incoming breakdown", given, "is not a mapping")
        if value is None:
            return clean if clean is not None else {}
        return incoming_parts(value, {} if clean is None else {BREAKDOWN: clean}, ended)

    def _pay(self, info: dict[str, Any], parts: Mapping[str, Any]) -> float:
        clean: dict[str, float] = {}
        for name, part in parts.items():
            checked = self.value(info, part, f"part {name!r}")
            if checked is not None:
                clean[name] = checked
        return pay(info, clean)
