"""RewardNormalize: put process and outcome rewards of different scales on one footing (ReNorm), with
statistics that can be frozen for evaluation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.core.finite import number_problem
from execgym.wrappers._parts import BASE_PART
from execgym.wrappers.base import RewardScheme, checked_number, checked_weights
from execgym.wrappers.credit import CreditAssignment, ProcessReward

__all__ = ["RewardNormalize", "RunningStats"]


@dataclass
class RunningStats:
    """Count, mean and variance of a stream of numbers (Welford's update; Chan et al.'s merge).

    Example:
        >>> a, b = RunningStats(), RunningStats()
        >>> for x in (1.0, 2.0, 3.0): a.update(x)
        >>> for x in (10.0, 20.0): b.update(x)
        >>> a.merge(b); (a.count, a.mean, round(a.var, 6))
        (5, 7.2, 50.96)
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mean", "m2"):
            problem = number_problem(getattr(self, name))
            if problem:
                raise ValueError(f"RunningStats: {name} = {getattr(self, name)!r} {problem}")
        if self.count < 0 or self.m2 < 0:
            raise ValueError(f"RunningStats: count and m2 must be >= 0, got {self.count} and {self.m2}")

    def update(self, x: float) -> None:
        """Count ``x``; a value that is not a finite number of sane magnitude is a ``ValueError``."""
        problem = number_problem(x)
        if problem:
            raise ValueError(f"RunningStats.update: {x!r} {problem}")
        x = float(x)
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)

    @property
    def var(self) -> float:
        """The population variance; 1 until two values are seen (so early values pass unscaled)."""
        return self.m2 / self.count if self.count >= 2 else 1.0

    def zscore(self, x: float, epsilon: float) -> float:
        return (x - self.mean) / math.sqrt(self.var + epsilon)

    def merge(self, other: RunningStats) -> None:
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.mean += delta * other.count / total
        self.count = total

    def to_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunningStats:
        return cls(count=int(data["count"]), mean=float(data["mean"]), m2=float(data["m2"]))


def _sigmoid(z: float) -> float:
    # Clipped so the result stays strictly inside (0, 1) in floating point, as ReNorm's sign rule needs.
    z = min(30.0, max(-30.0, z))
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class RewardNormalize(RewardScheme[ObsType, ActType]):
    r"""Normalize the streams of a reward by running statistics, so process and outcome rewards mix.

    A process reward (``process``: weighted ``info["reward_components"]`` or a function of ``info``) and the
    outcome live on different scales: a count of passing tests in the tens, an outcome in {0, 1}. Summed
    raw, one drowns the other. Each stream keeps running statistics (mean and variance), updated on the
    steps where it is paid and frozen by setting ``update_stats = False`` (for evaluation: the same
    episode then always earns the same reward). ``method`` chooses how the streams are put together:

    * ``"zscore"``: every part of the reward (each inner part, e.g. ``outcome``, and ``process``) is paid
      as its z-score :math:`w_k (x - \mu_k) / \sqrt{\sigma_k^2 + \epsilon}` on the step it occurs, so each
      stream contributes at unit scale, weighted by ``weights``.
    * ``"renorm"`` (ReNorm, "Hybrid Reward Normalization for Process-supervised Non-verifiable Agentic
      Tasks"): the process reward of each step is calibrated into (0, 1) as
      :math:`\hat p_t = \operatorname{sigmoid}((p_t - \mu)/\sigma)` and shifted by the outcome
      :math:`o \in [0, 1]`: :math:`r_t = \hat p_t + o - 1`. Every step of a successful episode (o = 1)
      earns more than 0 and every step of a failed one (o = 0) less than 0, so no amount of process reward
      makes a failure look good. The outcome is known only at the end, so the credited rewards are paid
      then (part ``renorm``, replacing ``outcome``), with the per-step credit in
      ``info["credit"]["per_step"]``; other inner parts pass through.

    A value that is not a finite number (a part, a component, the process reward) is dropped and noted in
    ``info["reward_issues"]`` before it can reach the statistics; a dropped process reward counts as the
    running mean (z = 0). ``state_dict`` / ``load_state_dict`` / ``merge`` save and share the statistics;
    ``info["reward_normalize"]`` holds the raw values and the statistics used.

    Args:
        env: the env to wrap.
        process: the process reward of a step (required for ``renorm``).
        method: ``"zscore"`` or ``"renorm"``.
        weights: ``zscore``: a weight per part name (default 1).
        epsilon: added to the variance before the square root.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = RewardNormalize(ScriptedEnv(), {"tests_passed": 1.0}, method="renorm")
        >>> def episode(tests, outcome):
        ...     _ = env.reset()
        ...     for n in tests[:-1]:
        ...         _ = env.step({"reward_components": {"tests_passed": n}})
        ...     return env.step({"reward_components": {"tests_passed": tests[-1]}, "outcome": outcome})[4]
        >>> for _ in range(50):
        ...     _ = episode([0, 10, 20, 40], 1.0)
        >>> env.update_stats = False                       # evaluation: the statistics stay as they are
        >>> info = episode([40, 40, 40], 0.0)              # high process scores, but the episode failed
        >>> all(r < 0 for r in info["credit"]["per_step"]), info["reward_breakdown"]["renorm"] < 0
        (True, True)
        >>> episode([0, 0], 1.0)["credit"]["per_step"] == episode([0, 0], 1.0)["credit"]["per_step"]
        True
    """

    info_key = "reward_normalize"

    def __init__(
        self,
        env: gym.Env[ObsType, ActType],
        process: ProcessReward | None = None,
        *,
        method: Literal["zscore", "renorm"] = "zscore",
        weights: Mapping[str, float] | None = None,
        epsilon: float = 1e-8,
    ) -> None:
        if method not in ("zscore", "renorm"):
            raise ValueError(f"method must be 'zscore' or 'renorm', got {method!r}")
        if method == "renorm" and process is None:
            raise ValueError("method='renorm' needs a process reward (component weights or a function of info)")
        if checked_number("RewardNormalize", "epsilon", epsilon) <= 0:
            raise ValueError(f"epsilon must be positive, got {epsilon}")
        if process is not None and not callable(process):
            process = checked_weights("RewardNormalize", "process", process)
        gym.utils.RecordConstructorArgs.__init__(
            self, process=process, method=method, weights=dict(weights or {}), epsilon=epsilon
        )
        super().__init__(env)
        self.process = process
        self.method = method
        self.weights = checked_weights("RewardNormalize", "weights", weights or {})
        self.epsilon = float(epsilon)
        self.update_stats = True
        self.stats: dict[str, RunningStats] = {}
        self._raw: list[float] = []
        self._calibrated: list[float] = []

    # ----------------------------------------------------------------- statistics
    def state_dict(self) -> dict[str, Any]:
        """The statistics of every stream as plain data."""
        return {"stats": {name: st.to_dict() for name, st in self.stats.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the statistics with ``state`` (from :meth:`state_dict`)."""
        self.stats = {str(name): RunningStats.from_dict(d) for name, d in state["stats"].items()}

    def merge(self, other: RewardNormalize[Any, Any] | Mapping[str, Any]) -> None:
        """Pool another worker's statistics (from disjoint episodes) into these."""
        state = other.state_dict() if isinstance(other, RewardNormalize) else other
        for name, data in state["stats"].items():
            self.stats.setdefault(str(name), RunningStats()).merge(RunningStats.from_dict(data))

    def _observe(self, name: str, value: float) -> RunningStats:
        st = self.stats.setdefault(name, RunningStats())
        if self.update_stats:
            st.update(value)
        return st

    def _process_reward(self, info: dict[str, Any]) -> float | None:
        if callable(self.process):
            return self.value(info, self.process(info), "process reward")
        return self.weighted(info, self.process or {})

    # ----------------------------------------------------------------- gymnasium API
    def begin_episode(self) -> None:
        self._raw = []
        self._calibrated = []

    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        if self.method == "zscore":
            if self.process is not None:
                process = self._process_reward(info)
                if process is not None:
                    parts["process"] = parts.get("process", 0.0) + process
            out = {}
            for name, value in parts.items():
                st = self._observe(name, value)
                out[name] = self.weights.get(name, 1.0) * st.zscore(value, self.epsilon)
            self.report(info, {
                "raw": parts,
                "mean": {n: self.stats[n].mean for n in parts},
                "std": {n: math.sqrt(self.stats[n].var) for n in parts},
            })
            return out

        checked = self._process_reward(info)
        st = self.stats.setdefault("process", RunningStats())
        value = st.mean if checked is None else checked
        if checked is not None:
            st = self._observe("process", value)
        self._raw.append(value)
        self._calibrated.append(_sigmoid(st.zscore(value, self.epsilon)))
        self.report(info, {"raw": {"process": value}, "mean": {"process": st.mean},
                           "std": {"process": math.sqrt(st.var)}})
        if ended:
            paid_outcome = parts.pop(BASE_PART, 0.0)
            outcome = min(1.0, max(0.0, self.outcome(info, default=paid_outcome)))
            credit = [p + outcome - 1.0 for p in self._calibrated]
            parts["renorm"] = math.fsum(credit)
            # per-step credit where the credit wrappers leave it, for a trainer (and HackPenalty) to find
            info[CreditAssignment.info_key] = {"scheme": "renorm", "process": list(self._raw), "per_step": credit}
            self._raw = []
            self._calibrated = []
        return parts
