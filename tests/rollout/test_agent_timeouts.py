"""A stuck agent cannot stall a run: run_episode, AsyncRollout, vector envs and Ray return the finished
episodes, and the hung one as agent_error ``AgentTimeout: ...``."""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

from execgym.agents import OracleAgent
from execgym.agents.base import AgentTimeout, TimedCaller
from execgym.rollout import AsyncRollout, EpisodeSpec, run_episode
from execgym.rollout.vector import run_vector
from tests.core.toy_env import GuessEnv

pytestmark = pytest.mark.timeout(300)

RELEASE = threading.Event()  # set at the end of each test, so the hung threads finish


@pytest.fixture(autouse=True)
def _release_hung_agents():
    RELEASE.clear()
    yield
    RELEASE.set()


class HangsOnTask(OracleAgent):
    """The oracle, except that on one task its ``act`` blocks (a model server that never answers)."""

    built = 0

    def __init__(self, env: gym.Env[Any, Any], doomed: str = "word-1") -> None:
        super().__init__(env)
        self.doomed = doomed
        HangsOnTask.built += 1

    def reset(self, info: dict[str, Any]) -> None:
        super().reset(info)
        self.hang = info["task_id"] == self.doomed

    def act(self, observation: str, info: dict[str, Any]) -> Any:
        if self.hang:
            RELEASE.wait(120)
        return super().act(observation, info)


def _specs(n: int = 4) -> list[EpisodeSpec]:
    return [EpisodeSpec(options={"task_id": f"word-{i}"}) for i in range(n)]


def test_timed_caller_times_out_and_goes_on_with_a_new_thread():
    caller = TimedCaller()
    with pytest.raises(AgentTimeout, match="act did not return within 0.2 s"):
        caller.call(RELEASE.wait, 60, timeout_s=0.2, what="act")
    assert caller.call(lambda: threading.current_thread().daemon, timeout_s=10)
    with pytest.raises(ValueError, match="boom"):
        caller.call(_raise, timeout_s=10)
    with pytest.raises(ValueError, match="positive"):
        run_episode(GuessEnv(), HangsOnTask(GuessEnv()), act_timeout_s=0)


def _raise() -> None:
    raise ValueError("boom")


def test_run_episode_ends_a_hung_agent_as_an_agent_error():
    env = GuessEnv()
    result = run_episode(env, HangsOnTask(env), options={"task_id": "word-1"}, act_timeout_s=3.0)
    assert result.agent_error == "AgentTimeout: agent.act did not return within 3 s"
    assert result.infra_error is None and result.outcome == 0.0 and result.turns == 0
    fine = run_episode(env, HangsOnTask(env), options={"task_id": "word-2"}, act_timeout_s=3.0)
    assert fine.outcome == 1.0 and fine.agent_error is None


def test_async_rollout_returns_the_finished_episodes_and_the_hung_one():
    HangsOnTask.built = 0
    finished: list[int] = []
    with AsyncRollout(GuessEnv, HangsOnTask, num_slots=2, act_timeout_s=3.0) as rollout:
        results = rollout.run(_specs(5), on_episode=lambda i, r: finished.append(i))
        again = rollout.run(_specs(2))  # the slot whose agent hung plays on with a new agent
    assert [r.task_id for r in results] == [f"word-{i}" for i in range(5)]
    assert results[1].agent_error == "AgentTimeout: agent.act did not return within 3 s"
    assert results[1].outcome == 0.0 and results[1].infra_error is None
    assert all(r.outcome == 1.0 and r.agent_error is None for i, r in enumerate(results) if i != 1)
    assert sorted(finished) == list(range(5))
    assert HangsOnTask.built >= 3  # two slots, and a new agent after the hang
    assert again[0].outcome == 1.0 and again[1].agent_error.startswith("AgentTimeout")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_vector_env_rollout_returns_the_finished_episodes_and_the_hung_one(kind):
    fns = [partial(GuessEnv), partial(GuessEnv)]
    venv = SyncVectorEnv(fns) if kind == "sync" else AsyncVectorEnv(fns, shared_memory=False)
    reference = GuessEnv()  # the oracle looks tasks up by id in this env's task set
    seeds = [reference.reset(seed=s)[1]["task_id"] for s in range(6)]
    doomed = seeds[2]
    try:
        results = run_vector(venv, lambda i: HangsOnTask(reference, doomed=doomed), 6, seed=0, act_timeout_s=3.0)
    finally:
        venv.close()
    assert [r.task_id for r in results] == seeds
    hung = [r for r in results if r.task_id == doomed]
    assert hung and all(r.agent_error == "AgentTimeout: agent.act did not return within 3 s" for r in hung)
    assert all(r.outcome == 1.0 and r.agent_error is None for r in results if r.task_id != doomed)


def test_run_vector_refuses_per_episode_options():
    venv = SyncVectorEnv([GuessEnv])
    with pytest.raises(ValueError, match="per-episode options"):
        run_vector(venv, lambda i: OracleAgent(GuessEnv()), _specs(1))
    venv.close()


@pytest.mark.parametrize("mode", ["run_episode", "async"])
def test_an_episode_the_agent_ended_is_still_recorded_with_its_agent_error(mode, tmp_path):
    from execgym.core.trajectory import RecordTrajectory, read_trajectories

    path = tmp_path / "episodes.jsonl"
    if mode == "run_episode":
        env = RecordTrajectory(GuessEnv(), path)
        run_episode(env, HangsOnTask(GuessEnv()), options={"task_id": "word-1"}, act_timeout_s=2.0)
        run_episode(env, HangsOnTask(GuessEnv()), options={"task_id": "word-2"}, act_timeout_s=2.0)
    else:
        with AsyncRollout(lambda: RecordTrajectory(GuessEnv(), path), HangsOnTask, num_slots=2,
                          act_timeout_s=2.0) as rollout:
            rollout.run(_specs(3))
    records = {r["task_id"]: r for r in read_trajectories(path)}
    assert records["word-1"]["agent_error"] == "AgentTimeout: agent.act did not return within 2 s"
    assert records["word-1"]["outcome"] is None
    assert records["word-2"]["agent_error"] is None and records["word-2"]["outcome"] == 1.0
