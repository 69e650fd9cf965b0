"""Reward schemes as ``gymnasium.Wrapper`` s: each reads only the env's ``info`` and works on any env.

An execgym env pays the sparse outcome and reports everything richer in ``info`` (``reward_components``
each step; ``outcome``, ``units``, ``checklist``, ``hack_flags`` at the end). A wrapper here turns that
data into a reward, one scheme per class:

=========================  =====================================================================
``DenseUnitReward``        VeRPO: difficulty-weighted partial credit over units, with the outcome
``GatedReward``            G-RA: step components accumulate, paid only if the outcome clears a gate
``ChecklistReward``        CM2: weighted fraction of satisfied checklist criteria, per turn or episode
``PotentialShaping``       Ng et al.: F = γΦ(s') - Φ(s), optimal policies unchanged
``MinFormCredit``          PURE: a step's return is the minimum of the future process rewards
``ClipCredit``             process rewards clipped to ``min(r - η, 0)``: returns bounded above by 0
``DeltaCredit``            process rewards as differences: the return from a step is its own reward
``CreditAssignment``       any transform of the episode's process rewards, paid at the end
``ConditionalEfficiency``  HDPO: fewer calls or turns pay more, only in successful episodes
``RewardNormalize``        ReNorm / z-score mixing of process and outcome streams, frozen for eval
``HackPenalty``            an episode with hack flags returns 0 (or a penalty)
``ComposeReward``          a weighted sum of named parts and components
=========================  =====================================================================

Every wrapper records the parts of the reward it paid in ``info["reward_breakdown"]`` (name -> value), and
the reward it returns is always their sum; a wrapper reads the breakdown left by the wrappers inside it, so
schemes stack in any order: ``HackPenalty(GatedReward(DenseUnitReward(env), {"executed": 0.1}))``.
Below the first execgym wrapper, the env's own reward is the part ``outcome``.

Every scheme derives from :class:`RewardScheme`, which checks every number a scheme reads or pays: a value
that is not a real, finite number of magnitude at most 1e9 (NaN, inf, ``1e308``, a str, None) is dropped,
never paid, and noted in ``info["reward_issues"]`` (see :mod:`execgym.core.finite`).

A wrapper is named the same way everywhere (``execgym run --wrapper``, ``execgym train --wrapper``, the
rollouts, the trainer): ``"NAME"``, ``'NAME:{"json": "kwargs"}'`` or a ``(name, kwargs)`` pair, read by
:func:`parse_wrapper_spec` and stacked innermost first by :func:`apply_wrappers`. Each scheme reports what it
computed under its own ``info`` key, the class attribute ``info_key`` (``GatedReward.info_key`` is
``"gated_reward"``).

:class:`ScriptedEnv` is an env whose action is the step's ``info``: it makes reward schemes testable on exact
data (the examples in this package use it).

Example:
    >>> from execgym.wrappers import ScriptedEnv, DenseUnitReward, GatedReward, HackPenalty
    >>> env = HackPenalty(GatedReward(DenseUnitReward(ScriptedEnv()), {"executed": 0.1}))
    >>> _ = env.reset(options={"task_id": "q1"})
    >>> _ = env.step({"reward_components": {"executed": 1.0}})
    >>> units = [{"id": "t1", "passed": True}, {"id": "t2", "passed": False}]
    >>> obs, reward, terminated, truncated, info = env.step({"outcome": 0.0, "units": units})
    >>> info["reward_breakdown"], reward
    ({'unit_credit': 0.25}, 0.25)
"""

from execgym.wrappers.base import RewardScheme
from execgym.wrappers.checklist import ChecklistReward
from execgym.wrappers.compose import ComposeReward
from execgym.wrappers.credit import (
    ClipCredit,
    CreditAssignment,
    DeltaCredit,
    MinFormCredit,
    clip_credit,
    delta_credit,
    min_form_credit,
    tail_sums,
)
from execgym.wrappers.dense_units import DenseUnitReward
from execgym.wrappers.efficiency import ConditionalEfficiency
from execgym.wrappers.gated import GatedReward
from execgym.wrappers.hack import HackPenalty
from execgym.wrappers.normalize import RewardNormalize, RunningStats
from execgym.wrappers.scripted import ScriptedEnv
from execgym.wrappers.shaping import PotentialShaping
from execgym.wrappers.spec import WrapperSpec, apply_wrappers, known_wrappers, parse_wrapper_spec

__all__ = [
    "ChecklistReward",
    "ClipCredit",
    "ComposeReward",
    "ConditionalEfficiency",
    "CreditAssignment",
    "DeltaCredit",
    "DenseUnitReward",
    "GatedReward",
    "HackPenalty",
    "MinFormCredit",
    "PotentialShaping",
    "RewardNormalize",
    "RewardScheme",
    "RunningStats",
    "ScriptedEnv",
    "WrapperSpec",
    "apply_wrappers",
    "clip_credit",
    "delta_credit",
    "known_wrappers",
    "min_form_credit",
    "parse_wrapper_spec",
    "tail_sums",
]
