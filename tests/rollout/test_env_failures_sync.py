"""The sequential rollout, like the async one, ends an episode whose env raises as an infra error and goes on."""

from __future__ import annotations

import math

import gymnasium as gym

from execgym.agents import OracleAgent
from execgym.rollout.episode import EpisodeResult, SyncRollout, run_episode
from execgym.rollout.runner import summarise
from tests.core.toy_env import GuessEnv


class Flaky(gym.Wrapper):
    """Raises on the step (or reset) of the episodes whose seed is in ``fail``."""

    def __init__(self, env, fail_step=(), fail_reset=()):
        super().__init__(env)
        self.fail_step, self.fail_reset, self.seed = set(fail_step), set(fail_reset), None

    def reset(self, *, seed=None, options=None):
        self.seed = seed
        if seed in self.fail_reset:
            raise RuntimeError("daemon gone")
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        if self.seed in self.fail_step:
            raise RuntimeError("sandbox died")
        return self.env.step(action)


def test_an_env_that_raises_ends_only_its_episode_as_an_infra_error():
    built = []

    def make():
        built.append(Flaky(GuessEnv(), fail_step={1}, fail_reset={2}))
        return built[-1]

    with SyncRollout(make, lambda env: OracleAgent(env)) as rollout:
        results = rollout.run(4, seed=0)
    assert [r.infra_error for r in results] == [None, "RuntimeError: sandbox died", "RuntimeError: daemon gone", None]
    assert results[0].outcome == results[3].outcome == 1.0
    assert len(built) == 3  # each env that raised was closed and replaced


def test_run_episode_reports_a_step_that_raises():
    env = Flaky(GuessEnv(), fail_step={5})
    result = run_episode(env, OracleAgent(env), seed=5)
    assert result.infra_error == "RuntimeError: sandbox died" and result.error == result.infra_error


def test_a_reward_error_is_counted_apart_not_scored_as_zero():
    ok = EpisodeResult("t", 0, 1, 1.0, 1.0, True, False, 0.1)
    nan = EpisodeResult("t", 1, 1, math.nan, 0.0, True, False, 0.1, reward_error="reward nan is not finite")
    s = summarise("execgym/Toy-v0", "oracle", [ok, nan])
    assert (s.scored, s.success_rate, s.reward_errors) == (1, 1.0, 1)
    assert s.error_causes == {"reward nan is not finite": 1}
