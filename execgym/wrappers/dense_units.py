"""DenseUnitReward (VeRPO): partial credit over units, weighted by how rarely each unit is passed."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import gymnasium as gym
from gymnasium.core import ActType, ObsType

from execgym.core import report as R
from execgym.wrappers._parts import BASE_PART
from execgym.wrappers.base import RewardScheme, checked_number
from execgym.wrappers.checklist import CRITERION_TURN, entry_field, usable_criteria

__all__ = ["DenseUnitReward"]

Combine = Literal["verpo", "additive", "partial"]
_ALL_TASKS = "*"


class DenseUnitReward(RewardScheme[ObsType, ActType]):
    r"""Difficulty-weighted partial credit over an episode's units, combined with its outcome (VeRPO).

    The units are the entries of ``info["units"]`` (one per unit test, check or BFCL parameter), falling
    back to ``info["checklist"]``. Each unit :math:`j` of a task keeps a pass count :math:`k_j` over the
    :math:`n_j` past episodes of that task that reported it. Its smoothed pass rate under a
    :math:`\mathrm{Beta}(a, b)` prior and its difficulty weight are

    .. math:: \hat p_j = \frac{k_j + a}{n_j + a + b}, \qquad w_j = (1 - \hat p_j)\, s_j

    (:math:`s_j` is the unit's own ``weight``, default 1), so units that are rarely passed weigh more. The
    partial credit :math:`P = \sum_j w_j\,[\text{passed}_j] / \sum_j w_j` lies in [0, 1] and is 1 exactly
    when every unit passed. With the outcome :math:`o` (``info["outcome"]``) and success meaning
    :math:`o \ge` ``success_threshold``, ``combine`` chooses the reward paid at the episode's end:

    * ``"verpo"`` (default): :math:`o` if success, else :math:`\alpha P` (parts ``outcome`` / ``unit_credit``);
    * ``"additive"``: :math:`(o + \alpha P) / (1 + \alpha)`;
    * ``"partial"``: :math:`P` alone.

    With :math:`0 \le \alpha \le 1` every scheme stays in [0, 1] and an episode that passed every unit and
    succeeded earns 1. The weights used for an episode come from the statistics *before* it; the episode is
    then counted (unless ``update_stats`` is False, for evaluation). Statistics are per task
    (``info["task_id"]``) unless ``per_task=False``; ``state_dict`` / ``load_state_dict`` / ``merge`` let
    many workers share them. Episodes without units keep the reward they had. What was computed is in
    ``info["dense_units"]``. A unit whose ``weight`` is not a finite number >= 0, or an outcome that is not a
    finite number, is dropped and noted in ``info["reward_issues"]``.

    Args:
        env: the env to wrap.
        alpha: the weight of the partial credit (``verpo``: what a complete failure with every unit passed
            would earn).
        combine: how partial credit and outcome combine (see above).
        success_threshold: the outcome at or above which the episode counts as a success.
        prior: the Beta prior ``(a, b)`` of every unit's pass rate.
        per_task: keep statistics per task (True) or pool units with the same id across tasks.
        source: ``"auto"`` (units, else checklist), ``"units"`` or ``"checklist"``.

    Example:
        >>> from execgym.wrappers import ScriptedEnv
        >>> env = DenseUnitReward(ScriptedEnv(), alpha=0.5)
        >>> def episode(*passed):
        ...     _ = env.reset(options={"task_id": "t"})
        ...     units = [{"id": u, "passed": p} for u, p in zip("abc", passed)]
        ...     return env.step({"outcome": float(all(passed)), "units": units})
        >>> episode(True, True, False)[1]          # fresh statistics: all weights equal, 2/3 passed
        0.3333333333333333
        >>> for _ in range(20):
        ...     _ = episode(True, True, False)
        >>> {u: round(w, 3) for u, w in env.unit_weights("t").items()}   # "c" is never passed
        {'a': 0.043, 'b': 0.043, 'c': 0.957}
        >>> round(episode(True, True, False)[1], 3)  # a and b pass but are easy: little credit
        0.042
        >>> round(episode(False, False, True)[1], 3) # c alone is the hard part
        0.46
        >>> episode(True, True, True)[1], episode(True, True, True)[4]["reward_breakdown"]
        (1.0, {'outcome': 1.0})
    """

    info_key = "dense_units"

    def __init__(
        self,
        env: gym.Env[ObsType, ActType],
        *,
        alpha: float = 0.5,
        combine: Combine = "verpo",
        success_threshold: float = 1.0,
        prior: tuple[float, float] = (1.0, 1.0),
        per_task: bool = True,
        source: Literal["auto", "units", "checklist"] = "auto",
    ) -> None:
        alpha = checked_number("DenseUnitReward", "alpha", alpha, low=0.0, high=1.0)  # keeps the reward in [0, 1]
        if combine not in ("verpo", "additive", "partial"):
            raise ValueError(f"combine must be 'verpo', 'additive' or 'partial', got {combine!r}")
        if source not in ("auto", "units", "checklist"):
            raise ValueError(f"source must be 'auto', 'units' or 'checklist', got {source!r}")
        a, b = (checked_number("DenseUnitReward", "prior", x) for x in prior)
        if a <= 0 or b <= 0:
            raise ValueError(f"prior (a, b) must be positive, got {prior}")
        gym.utils.RecordConstructorArgs.__init__(
            self, alpha=alpha, combine=combine, success_threshold=success_threshold, prior=prior,
            per_task=per_task, source=source,
        )
        super().__init__(env)
        self.alpha = float(alpha)
        self.combine: Combine = combine
        self.success_threshold = checked_number("DenseUnitReward", "success_threshold", success_threshold)
        self.prior = (a, b)
        self.per_task = per_task
        self.source = source
        self.update_stats = True
        # task key -> unit id -> [passes, trials]
        self._counts: dict[str, dict[str, list[int]]] = {}

    # ----------------------------------------------------------------- statistics
    def _task_key(self, task_id: Any) -> str:
        return str(task_id) if self.per_task else _ALL_TASKS

    def pass_rate(self, task_id: Any, unit_id: Any) -> float:
        """The smoothed pass rate of a unit: ``(passes + a) / (trials + a + b)``."""
        passes, trials = self._counts.get(self._task_key(task_id), {}).get(str(unit_id), (0, 0))
        a, b = self.prior
        return (passes + a) / (trials + a + b)

    def unit_weights(self, task_id: Any) -> dict[str, float]:
        """The difficulty weight ``1 - pass_rate`` of every unit seen so far for ``task_id``."""
        units = self._counts.get(self._task_key(task_id), {})
        return {uid: 1.0 - self.pass_rate(task_id, uid) for uid in units}

    def state_dict(self) -> dict[str, Any]:
        """The statistics as plain JSON-able data: ``{"counts": {task: {unit: [passes, trials]}}}``."""
        return {"counts": copy.deepcopy(self._counts)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the statistics with ``state`` (from :meth:`state_dict`)."""
        self._counts = _checked_counts(state)

    def merge(self, other: DenseUnitReward[Any, Any] | Mapping[str, Any], *,
              base: Mapping[str, Any] | None = None) -> None:
        """Add another worker's counts to these.

        When both workers started from a shared ``base`` state (loaded from the same checkpoint), pass it,
        so only what ``other`` counted since is added and the base is not counted twice.
        """
        theirs = _checked_counts(other.state_dict() if isinstance(other, DenseUnitReward) else other)
        subtract = _checked_counts(base) if base is not None else {}
        for task, units in theirs.items():
            mine = self._counts.setdefault(task, {})
            for uid, (passes, trials) in units.items():
                bp, bt = subtract.get(task, {}).get(uid, (0, 0))
                dp, dt = passes - bp, trials - bt
                if dp < 0 or dt < 0 or dp > dt:
                    raise ValueError(f"merge: counts for {task}/{uid} are below the base's")
                cur = mine.setdefault(uid, [0, 0])
                cur[0] += dp
                cur[1] += dt

    def _record(self, task_id: Any, results: Sequence[tuple[str, bool, float]]) -> None:
        units = self._counts.setdefault(self._task_key(task_id), {})
        for uid, passed, _ in results:
            cur = units.setdefault(uid, [0, 0])
            cur[0] += int(passed)
            cur[1] += 1

    # ----------------------------------------------------------------- gymnasium API
    def reward_parts(self, parts: dict[str, float], info: dict[str, Any], ended: bool) -> dict[str, float]:
        results = self._results(info) if ended else []
        if not results:
            if ended:
                self.report(info, {"units": 0})
            return parts

        task_id = info.get(R.TASK_ID)
        weights = {uid: (1.0 - self.pass_rate(task_id, uid)) * scale for uid, _, scale in results}
        total = math.fsum(weights[uid] for uid, _, _ in results)
        partial = math.fsum(weights[uid] for uid, passed, _ in results if passed) / total if total > 0 else 0.0
        paid_outcome = parts.pop(BASE_PART, 0.0)
        outcome = self.outcome(info, default=paid_outcome)
        success = outcome >= self.success_threshold
        if self.combine == "verpo":
            if success:
                parts[BASE_PART] = outcome
            else:
                parts["unit_credit"] = self.alpha * partial
        elif self.combine == "additive":
            parts[BASE_PART] = outcome / (1.0 + self.alpha)
            parts["unit_credit"] = self.alpha * partial / (1.0 + self.alpha)
        else:
            parts["unit_credit"] = partial
        self.report(info, {
            "units": len(results),
            "partial": partial,
            "success": success,
            "weights": weights,
            "pass_rates": {uid: self.pass_rate(task_id, uid) for uid, _, _ in results},
        })
        if self.update_stats:
            self._record(task_id, results)
        return parts

    def _results(self, info: dict[str, Any]) -> list[tuple[str, bool, float]]:
        """``(unit id, passed, own weight)`` of every usable unit the episode reported."""
        owner = type(self).__name__
        units = usable_criteria(info, owner, info.get(R.UNITS), R.UNITS) if self.source != R.CHECKLIST else []
        from_checklist = not units and self.source != R.UNITS
        entries: Sequence[Mapping[str, Any]] = (
            usable_criteria(info, owner, info.get(R.CHECKLIST)) if from_checklist else units
        )
        out = []
        for i, entry in enumerate(entries):
            uid = str(entry.get("id", i))
            turn = entry_field(entry, CRITERION_TURN) if from_checklist else None
            if turn is not None:  # criterion ids are only unique within a user turn
                uid = f"{turn}:{uid}"
            out.append((uid, bool(entry.get("passed")), float(entry_field(entry, "weight", 1.0))))
        return out


def _checked_counts(state: Mapping[str, Any]) -> dict[str, dict[str, list[int]]]:
    counts = state.get("counts")
    if not isinstance(counts, Mapping):
        raise ValueError("a DenseUnitReward state needs a 'counts' mapping: {task: {unit: [passes, trials]}}")
    out: dict[str, dict[str, list[int]]] = {}
    for task, units in counts.items():
        out[str(task)] = {}
        for uid, pair in units.items():
            passes, trials = (int(x) for x in pair)
            if not 0 <= passes <= trials:
                raise ValueError(f"counts for {task}/{uid} must satisfy 0 <= passes <= trials, got {pair}")
            out[str(task)][str(uid)] = [passes, trials]
    return out
