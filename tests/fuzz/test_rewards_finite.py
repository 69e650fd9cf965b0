"""Hypothesis: whatever an env reports (NaN, inf, 1e308, str, None where numbers belong), every reward scheme
and every stack of them pays finite floats, keeps its breakdown exact, flags what it dropped, and keeps its
running statistics finite, so the rewards of later, clean episodes are unaffected."""

from __future__ import annotations

import math
import os
from typing import Any

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execgym.wrappers import RewardNormalize, ScriptedEnv, apply_wrappers

EXAMPLES = int(os.environ.get("EXECGYM_FUZZ_EXAMPLES", "30"))
NAMES = ["format", "executed", "prm", "progress"]

POISON = st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 1.7e308, "1.0", "nan", None,
                          [0.5], {"v": 1.0}, b"1"])
GOOD = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False)
VALUE = st.one_of(GOOD, POISON)


def _potential(info: dict[str, Any]) -> Any:
    return (info.get("reward_components") or {}).get("progress", 0.0)


def _prm(info: dict[str, Any]) -> Any:
    return (info.get("reward_components") or {}).get("prm")


# every scheme, named as a user names it (execgym.wrappers.apply_wrappers specs)
SCHEMES: dict[str, tuple[str, dict[str, Any]]] = {
    "dense": ("DenseUnitReward", {}),
    "dense_additive": ("DenseUnitReward", {"combine": "additive", "source": "checklist"}),
    "gated": ("GatedReward", {"components": {"format": 0.1, "executed": 0.2, "prm": 1.0}, "threshold": 0.5}),
    "checklist": ("ChecklistReward", {}),
    "checklist_episode": ("ChecklistReward", {"assign": "episode", "keep_outcome": True}),
    "shaping": ("PotentialShaping", {"potential": _potential, "gamma": 0.9}),
    "minform": ("MinFormCredit", {"process": {"prm": 1.0}}),
    "minform_soft": ("MinFormCredit", {"process": _prm, "temperature": 0.5}),
    "clip": ("ClipCredit", {"process": {"prm": 1.0}, "threshold": 0.5}),
    "delta": ("DeltaCredit", {"process": {"prm": 1.0}, "clip": 0.2}),
    "credit_bad_transform": ("CreditAssignment", {"process": {"prm": 1.0},
                                                  "transform": lambda r: [x * 1e300 for x in r]}),
    "efficiency": ("ConditionalEfficiency", {"weight": 0.5, "budget": 4}),
    "zscore": ("RewardNormalize", {"process": {"prm": 1.0, "format": 0.5}}),
    "zscore_fn": ("RewardNormalize", {"process": _prm}),
    "renorm": ("RewardNormalize", {"process": {"prm": 1.0}, "method": "renorm"}),
    "hack": ("HackPenalty", {"penalty": -1.0}),
    "compose": ("ComposeReward", {"weights": {"outcome": 1.0, "format": 0.1, "prm": 2.0, "term": 1.0},
                                  "terms": {"term": _prm}}),
}


def _stack(*names: str) -> list[tuple[str, dict[str, Any]]]:
    return [SCHEMES[name] for name in names]


STACKS = {
    **{name: [spec] for name, spec in SCHEMES.items()},
    "full": _stack("dense", "compose", "checklist", "gated", "efficiency", "minform", "zscore", "shaping", "hack"),
    "issue": _stack("gated", "compose", "shaping", "zscore"),
    "renorm_stack": _stack("compose", "delta", "renorm", "hack"),
    "credit_stack": _stack("clip", "credit_bad_transform", "dense_additive", "checklist_episode"),
}


@st.composite
def poisoned_episode(draw) -> list[dict[str, Any]]:
    """Steps of a ScriptedEnv episode whose components, outcome, unit / criterion weights may be poisoned."""
    n = draw(st.integers(min_value=1, max_value=5))
    steps: list[dict[str, Any]] = []
    for i in range(n):
        step: dict[str, Any] = {"reward_components": draw(st.dictionaries(st.sampled_from(NAMES), VALUE,
                                                                          max_size=4))}
        if draw(st.booleans()):
            step["tool_calls"] = [{"name": "t", "arguments": {}}]
        if i == n - 1:
            step["outcome"] = draw(st.one_of(st.sampled_from([0.0, 1.0]), POISON))
            entry = st.fixed_dictionaries({"id": st.sampled_from("abc"), "passed": st.booleans()},
                                          optional={"weight": VALUE})
            step["units"] = draw(st.lists(entry, max_size=3))
            step["checklist"] = draw(st.lists(entry, max_size=3))
            step["hack_flags"] = draw(st.sampled_from([[], ["edited tests"]]))
        steps.append(step)
    return steps


def _clean_episode() -> list[dict[str, Any]]:
    return [{"reward_components": {"format": 1.0, "prm": 0.5, "executed": 1.0, "progress": 0.3}},
            {"reward_components": {"format": 1.0, "prm": 0.7}, "outcome": 1.0,
             "units": [{"id": "a", "passed": True}], "checklist": [{"id": "a", "passed": True}]}]


def _play(env: gym.Env, steps: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    env.reset(options={"task_id": "t"})
    out = []
    for step in steps:
        _, reward, terminated, truncated, info = env.step(step)
        out.append((reward, info))
        if terminated or truncated:
            break
    return out


def _assert_finite(played: list[tuple[Any, dict[str, Any]]]) -> None:
    for reward, info in played:
        assert type(reward) is float and math.isfinite(reward), reward
        parts = info["reward_breakdown"]
        assert all(type(v) is float and math.isfinite(v) for v in parts.values()), parts
        assert math.isclose(reward, math.fsum(parts.values()), rel_tol=1e-9, abs_tol=1e-9)
        for step in (info.get("credit") or {}).get("per_step", []):
            assert math.isfinite(step)


def _stats_finite(env: gym.Env) -> None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, RewardNormalize):
            for st_ in env.stats.values():
                assert math.isfinite(st_.mean) and math.isfinite(st_.m2) and math.isfinite(st_.var)
        env = env.env


def _poisoned(steps: list[dict[str, Any]]) -> bool:
    def bad(v: Any) -> bool:
        return not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > 1e9

    for i, s in enumerate(steps):
        # the potential of the final state is 0 by definition: shaping never reads the last step's "progress"
        read = {k: v for k, v in s["reward_components"].items() if not (k == "progress" and i == len(steps) - 1)}
        if any(bad(v) for v in read.values()) or ("outcome" in s and bad(s["outcome"])):
            return True
        if any("weight" in e and (bad(e["weight"]) or e["weight"] < 0) for e in s.get("units", []) + s.get(
                "checklist", [])):
            return True
    return False


@pytest.mark.parametrize("name", sorted(STACKS))
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(episodes=st.lists(poisoned_episode(), min_size=1, max_size=3))
def test_no_scheme_or_stack_ever_pays_a_non_finite_or_untyped_reward(name, episodes):
    env = apply_wrappers(ScriptedEnv(max_turns=5), STACKS[name])
    for steps in episodes:
        played = _play(env, steps)
        _assert_finite(played)
        _stats_finite(env)
        if name == "full" and _poisoned(steps[: len(played)]):  # the full stack reads every value drawn
            assert any(info.get("reward_issues") for _, info in played), "a dropped value was not flagged"
    # Later, clean episodes are not poisoned by what came before (RewardNormalize's statistics above all).
    for _ in range(2):
        _assert_finite(_play(env, _clean_episode()))
    _stats_finite(env)


def test_the_issue_stack_nan_component_does_not_poison_normalize():
    env = apply_wrappers(ScriptedEnv(max_turns=5), STACKS["issue"])
    _play(env, [{"reward_components": {"format": float("nan"), "prm": float("inf"), "progress": -math.inf}},
                {"reward_components": {"prm": 1e308}, "outcome": 1.0}])
    later = [reward for _ in range(5) for reward, _ in _play(env, _clean_episode())]
    assert all(math.isfinite(r) for r in later) and len(set(later)) > 1


def test_a_foreign_env_paying_nan_is_flagged_and_paid_as_nothing():
    class NaNReward(gym.Wrapper):
        def step(self, action):
            obs, _, terminated, truncated, info = self.env.step(action)
            return obs, float("nan"), terminated, truncated, info

    for name in sorted(SCHEMES):
        env = apply_wrappers(NaNReward(ScriptedEnv()), [SCHEMES[name]])
        played = _play(env, _clean_episode())
        _assert_finite(played)
        assert any("incoming reward" in issue for _, info in played for issue in info.get("reward_issues", []))
