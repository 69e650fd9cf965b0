"""ComposeReward: a weighted sum of named reward parts and components, with the breakdown in ``info``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.wrappers.base import RewardScheme, checked_weights

__all__ = ["ComposeReward"]

Term = Callable[[Mapping[str, Any]], float | None]


class ComposeReward(RewardScheme[ObsType, ActType]):
    """Pay a weighted sum of named components; each named part of the sum is in ``info["reward_breakdown"]``.

    Every step, each name in ``weights`` is looked up, in order, among

    1. the parts the wrappers inside paid this step (``outcome`` for a bare env, ``unit_credit``, ...),
    2. ``terms``: your own functions of the step's ``info`` (returning None when they have nothing to say),
    3. the step's ``info["reward_components"]`` (``format``, ``executed``, ``schema_link``, ...),

    and, when found, paid as ``weight * value`` under its name. Parts paid inside and not named in
    ``weights`` pass through with weight 1 (``keep_unlisted=True``) or are dropped. A name found nowhere
    on a step pays nothing on that step, and so does a value that is not a finite number (it is noted in
    ``info["reward_issues"]``).

    Args:
        env: the env to wrap.
        weights: name -> weight.
        terms: name -> function of ``info`` for values not already in ``info``.
        keep_unlisted: keep the inner parts that ``weights`` does not name.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = ComposeReward(ScriptedEnv(), {"outcome": 1.0, "format": 0.1, "calls": -0.05},
        ...                     terms={"calls": lambda info: len(info["tool_calls"])})
        >>> _ = env.reset()
        >>> obs, reward, *_, info = env.step({"reward_components": {"format": 1.0},
        ...                                   "tool_calls": [{"name": "a"}, {"name": "b"}]})
        >>> round(reward, 6), info["reward_breakdown"]
        (0.0, {'format': 0.1, 'calls': -0.1})
        >>> info = env.step({"outcome": 1.0, "reward_components": {"format": 1.0},
        ...                  "tool_calls": [{"name": "submit"}]})[4]
        >>> info["reward_breakdown"]
        {'outcome': 1.0, 'format': 0.1, 'calls': -0.05}
    """

    info_key = "compose_reward"

    def __init__(
        self,
        env: gym.Env[ObsType, ActType],
        weights: Mapping[str, float],
        *,
        terms: Mapping[str, Term] | None = None,
        keep_unlisted: bool = True,
    ) -> None:
        checked = checked_weights("ComposeReward", "weights", weights)
        if not checked:
            raise ValueError("ComposeReward needs at least one weighted name")
        for name, term in (terms or {}).items():
            if not callable(term):
                raise TypeError(f"ComposeReward: terms[{name!r}] must be a function of info")
        gym.utils.RecordConstructorArgs.__init__(
            self, weights=dict(weights), terms=dict(terms or {}), keep_unlisted=keep_unlisted
        )
        super().__init__(env)
        self.weights = checked
        self.terms = dict(terms or {})
        self.keep_unlisted = keep_unlisted

    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        inner = parts
        out: dict[str, float] = {}
        raw: dict[str, float] = {}
        for name, weight in self.weights.items():
            value: float | None
            if name in inner:
                value = inner.pop(name)
            elif name in self.terms:
                term = self.terms[name](info)
                value = None if term is None else self.value(info, term, f"term {name!r}")
            else:
                value = self.component(info, name)
            if value is None:
                continue
            raw[name] = value
            out[name] = weight * value
        if self.keep_unlisted:
            out.update(inner)
        self.report(info, {"raw": raw, "weights": dict(self.weights)})
        return out
