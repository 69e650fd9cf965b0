"""Every reward scheme goes through RewardScheme, and bad numbers at construction or in saved statistics are
clear errors, never silently kept."""

from __future__ import annotations

import inspect
import math

import gymnasium as gym
import pytest

import execgym.wrappers as wrappers
from execgym.wrappers import RewardNormalize, RewardScheme, RunningStats, ScriptedEnv, apply_wrappers


def test_every_reward_wrapper_in_the_package_is_a_reward_scheme():
    schemes = [obj for name in wrappers.__all__ if inspect.isclass(obj := getattr(wrappers, name))
               and issubclass(obj, gym.Wrapper)]
    assert len(schemes) >= 12
    assert all(issubclass(cls, RewardScheme) for cls in schemes), [c for c in schemes
                                                                   if not issubclass(c, RewardScheme)]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e308, "0.1", None])
@pytest.mark.parametrize(
    ("scheme", "kwargs", "named"),
    [
        ("ComposeReward", lambda bad: {"weights": {"format": bad}}, "weights['format']"),
        ("GatedReward", lambda bad: {"components": {"executed": bad}}, "components['executed']"),
        ("GatedReward", lambda bad: {"components": {"executed": 0.1}, "threshold": bad}, "threshold"),
        ("RewardNormalize", lambda bad: {"process": {"prm": bad}}, "process['prm']"),
        ("RewardNormalize", lambda bad: {"process": {"prm": 1.0}, "weights": {"outcome": bad}}, "weights['outcome']"),
        ("HackPenalty", lambda bad: {"penalty": bad}, "penalty"),
        ("DeltaCredit", lambda bad: {"process": {"prm": 1.0}, "clip": bad}, "clip"),
        ("ConditionalEfficiency", lambda bad: {"weight": bad}, "weight"),
        ("DenseUnitReward", lambda bad: {"success_threshold": bad}, "success_threshold"),
        ("PotentialShaping", lambda bad: {"potential": lambda info: 0.0, "gamma": bad}, "gamma"),
    ],
)
def test_a_bad_number_at_construction_is_a_one_line_error_naming_it(scheme, kwargs, named, bad):
    if named == "clip" and bad is None:
        pytest.skip("clip=None means no clipping")
    with pytest.raises((ValueError, TypeError)) as exc:
        apply_wrappers(ScriptedEnv(), [(scheme, kwargs(bad))])
    assert named in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e308, "1", None])
def test_running_stats_refuse_what_would_poison_them(bad):
    stats = RunningStats()
    stats.update(1.0)
    with pytest.raises(ValueError, match="RunningStats.update"):
        stats.update(bad)
    assert stats.count == 1 and math.isfinite(stats.mean)


@pytest.mark.parametrize("state", [{"count": 3, "mean": float("nan"), "m2": 1.0},
                                   {"count": 3, "mean": 0.0, "m2": float("inf")},
                                   {"count": -1, "mean": 0.0, "m2": 0.0},
                                   {"count": 3, "mean": 0.0, "m2": -2.0}])
def test_saved_statistics_with_bad_numbers_are_refused(state):
    env = RewardNormalize(ScriptedEnv(), {"prm": 1.0})
    with pytest.raises(ValueError):
        env.load_state_dict({"stats": {"process": state}})
    with pytest.raises(ValueError):
        env.merge({"stats": {"process": state}})
