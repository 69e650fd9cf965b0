"""Faults in what feeds the rewards: a process-reward model (a foreign wrapper) that sometimes returns NaN, inf,
1e308, a str or None, inside a full stack of reward schemes over a real env. Nothing non-finite reaches the
trainer, every dropped value is flagged, and RewardNormalize's statistics stay finite for the rest of the run."""

from __future__ import annotations

import json
import math
from typing import Any

import gymnasium as gym

import execgym  # noqa: F401  (registers the env ids)
from execgym.wrappers import RewardNormalize, apply_wrappers

FAULTS = [float("nan"), float("inf"), float("-inf"), 1e308, "0.5", None]


class FlakyPRM(gym.Wrapper):
    """Scores each step into ``reward_components["prm"]``; every third call its score is garbage."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.calls = 0

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.calls += 1
        good = 0.2 + 0.1 * (self.calls % 5)
        info["reward_components"]["prm"] = FAULTS[(self.calls // 3) % len(FAULTS)] if self.calls % 3 == 0 else good
        return obs, reward, terminated, truncated, info


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def full_stack(env: gym.Env) -> gym.Env:
    return apply_wrappers(FlakyPRM(env), [
        ("ComposeReward", {"weights": {"outcome": 1.0, "prm": 0.5, "format": 0.05}}),
        "DenseUnitReward",
        'GatedReward:{"components": {"prm": 0.1, "executed": 0.1}}',
        ("MinFormCredit", {"process": {"prm": 1.0}}),
        ("RewardNormalize", {"process": {"prm": 1.0}}),
        ("PotentialShaping", {"potential": lambda info: (info.get("reward_components") or {}).get("prm", 0.0)}),
        "HackPenalty",
    ])


def test_a_flaky_process_reward_never_poisons_a_full_stack_over_a_real_env():
    env = full_stack(gym.make("execgym/TextToSQL-v0", max_turns=4))
    rewards: list[float] = []
    issues: list[str] = []
    for seed in range(12):
        _, info = env.reset(seed=seed)
        task = env.unwrapped.task
        actions = [call("list_tables"), call("execute_sql", query="SELECT 1"), task.oracle[0]]
        for action in actions:
            _, reward, terminated, truncated, info = env.step(action)
            assert type(reward) is float and math.isfinite(reward), (seed, reward)
            rewards.append(reward)
            issues.extend(info.get("reward_issues", []))
            if terminated or truncated:
                break
    normalize = env.env.env
    assert isinstance(normalize, RewardNormalize)
    assert all(math.isfinite(s.mean) and math.isfinite(s.m2) for s in normalize.stats.values())
    assert normalize.stats["process"].count > 0
    # every kind of fault was met and named; the rewards still vary (they are not all zeroed or NaN)
    for fault in ("nan", "inf", "-inf", "1e+308", "'0.5'", "None"):
        assert any(f"'prm' = {fault} " in issue for issue in issues), fault
    assert len(set(rewards)) > 3
    env.close()
