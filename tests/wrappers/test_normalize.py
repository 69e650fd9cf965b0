"""RewardNormalize: streams of different scales come out at unit scale; frozen statistics stay frozen;
ReNorm keeps every step of a failure below every step of a success."""

from __future__ import annotations

import json
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execgym.wrappers import RewardNormalize, RunningStats, ScriptedEnv
from tests.wrappers.helpers import assert_breakdown_sums, play


def noisy_episode(rng: random.Random) -> list[dict]:
    """Process reward in the hundreds each step; outcome in {0, 1} at the end."""
    steps = [{"reward_components": {"tests": rng.gauss(300, 100)}} for _ in range(rng.randint(1, 5))]
    steps[-1] = {**steps[-1], "outcome": float(rng.random() < 0.3)}
    return steps


def frozen_after(episodes: int, seed: int) -> tuple[RewardNormalize, random.Random]:
    """A z-score RewardNormalize over the noisy stream, its statistics learnt from ``episodes`` and frozen."""
    env = RewardNormalize(ScriptedEnv(), {"tests": 1.0})
    rng = random.Random(seed)
    for _ in range(episodes):
        play(env, noisy_episode(rng))
    env.update_stats = False
    return env, rng


def test_zscore_puts_process_and_outcome_on_the_same_scale():
    env, rng = frozen_after(300, seed=0)
    process, outcome, raw_process, raw_outcome = [], [], [], []
    for _ in range(300):
        ep = play(env, noisy_episode(rng))
        assert_breakdown_sums(ep)
        process += [s.info["reward_breakdown"]["process"] for s in ep.steps]
        raw_process += [s.info["reward_normalize"]["raw"]["process"] for s in ep.steps]
        outcome.append(ep.final["reward_breakdown"]["outcome"])
        raw_outcome.append(ep.final["reward_normalize"]["raw"]["outcome"])
    assert statistics.pstdev(raw_process) > 100 * statistics.pstdev(raw_outcome)  # raw: ~200x apart
    for values in (process, outcome):
        assert abs(statistics.mean(values)) < 0.2
        assert statistics.pstdev(values) == pytest.approx(1.0, abs=0.2)


def test_renorm_survives_saturated_scores():
    env = RewardNormalize(ScriptedEnv(), {"prm": 1.0}, method="renorm")
    for _ in range(50):
        play(env, [{"reward_components": {"prm": 0.0}, "outcome": 1.0}])
    env.update_stats = False
    credit = play(env, [{"reward_components": {"prm": 1e9}, "outcome": 0.0}]).final["credit"]["per_step"]
    assert credit[0] < 0


def test_frozen_statistics_do_not_move_and_give_the_same_reward_for_the_same_episode():
    env, rng = frozen_after(50, seed=1)
    before = env.state_dict()
    probe = noisy_episode(rng)
    first = play(env, probe).rewards
    for _ in range(20):
        play(env, noisy_episode(rng))
    assert env.state_dict() == before
    assert play(env, probe).rewards == first


def test_state_round_trips_and_merge_equals_pooling():
    rng = random.Random(2)
    streams = [[noisy_episode(rng) for _ in range(40)] for _ in range(2)]
    workers = [RewardNormalize(ScriptedEnv(), {"tests": 1.0}) for _ in range(2)]
    pooled = RewardNormalize(ScriptedEnv(), {"tests": 1.0})
    for worker, stream in zip(workers, streams):
        for steps in stream:
            play(worker, steps)
            play(pooled, steps)
    merged = RewardNormalize(ScriptedEnv(), {"tests": 1.0})
    merged.load_state_dict(json.loads(json.dumps(workers[0].state_dict())))
    merged.merge(workers[1])
    for name, st_ in pooled.stats.items():
        assert merged.stats[name].count == st_.count
        assert merged.stats[name].mean == pytest.approx(st_.mean)
        assert merged.stats[name].var == pytest.approx(st_.var)


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.integers(0, 39))
def test_running_stats_match_the_batch_statistics_and_merge_at_any_split(values, split):
    split %= len(values)
    whole, left, right = RunningStats(), RunningStats(), RunningStats()
    for i, v in enumerate(values):
        whole.update(v)
        (left if i < split else right).update(v)
    left.merge(right)
    assert whole.mean == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-6)
    if len(values) >= 2:
        assert whole.var == pytest.approx(statistics.pvariance(values), rel=1e-6, abs=1e-3)
    assert (left.count, left.mean) == (whole.count, pytest.approx(whole.mean, rel=1e-9, abs=1e-6))


episodes_st = st.lists(
    st.tuples(st.lists(st.floats(-100, 100), min_size=1, max_size=6), st.sampled_from([0.0, 1.0])),
    min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, database=None)
@given(episodes_st)
def test_renorm_every_step_of_a_success_earns_more_than_zero_and_of_a_failure_less(episodes):
    env = RewardNormalize(ScriptedEnv(), {"prm": 1.0}, method="renorm")
    for process, outcome in episodes:
        steps = [{"reward_components": {"prm": p}} for p in process]
        steps[-1] = {**steps[-1], "outcome": outcome}
        ep = play(env, steps)
        assert_breakdown_sums(ep)
        credit = ep.final["credit"]["per_step"]
        assert len(credit) == len(process)
        assert all((c > 0) if outcome == 1.0 else (c < 0) for c in credit)
        assert all(-1 < c < 1 for c in credit)
        assert ep.rewards[:-1] == [0.0] * (len(process) - 1)
        assert ep.final["reward_breakdown"] == {"renorm": pytest.approx(sum(credit))}


def test_renorm_ranks_steps_by_their_process_reward_within_an_episode():
    env = RewardNormalize(ScriptedEnv(), {"prm": 1.0}, method="renorm")
    for p in range(10):
        play(env, [{"reward_components": {"prm": float(p)}, "outcome": 1.0}])
    env.update_stats = False
    credit = play(env, [{"reward_components": {"prm": p}} for p in (1.0, 8.0)] + [{"outcome": 1.0}]).final[
        "credit"]["per_step"]
    assert credit[1] > credit[0] > credit[2] > 0  # the last step had no process reward at all


def test_invalid_normalize_arguments():
    with pytest.raises(ValueError, match="renorm"):
        RewardNormalize(ScriptedEnv(), method="renorm")
    with pytest.raises(ValueError, match="method"):
        RewardNormalize(ScriptedEnv(), method="minmax")  # type: ignore[arg-type]
