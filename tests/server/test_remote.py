"""RemoteEnv is a Gymnasium env that returns what the local env returns, in vector envs and rollouts too."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import pytest

import execgym
from execgym.agents import OracleAgent
from execgym.core import report as R
from execgym.core.spaces import UnicodeText
from execgym.rollout.episode import run_episode
from execgym.wrappers import apply_wrappers
from tests.server.conftest import SQL, TOOLUSE, require_server_packages

require_server_packages()

from execgym.remote import RemoteEnv  # noqa: E402
from execgym.server import ServerProcess  # noqa: E402

WRAPPERS = ['HackPenalty:{"penalty": -0.5}', "DenseUnitReward"]


def _play(env: gym.Env[Any, Any], oracle_env: gym.Env[Any, Any], seed: int) -> list[tuple[Any, ...]]:
    """Every (observation, reward, terminated, truncated, info) of an oracle episode, the reset first."""
    agent = OracleAgent(oracle_env)
    obs, info = env.reset(seed=seed)
    agent.reset(info)
    record: list[tuple[Any, ...]] = [(obs, info)]
    while True:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info))
        record.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            return record


@pytest.mark.parametrize("env_id", [SQL, TOOLUSE])
def test_remote_episode_is_the_local_episode(server: ServerProcess, env_id: str) -> None:
    local = gym.make(env_id, max_turns=6)
    remote = RemoteEnv(server.url, env_id, max_turns=6)
    try:
        assert remote.observation_space == local.observation_space
        assert remote.action_space == local.action_space and isinstance(remote.action_space, UnicodeText)
        for seed in (0, 3):
            local_record, remote_record = _play(local, local, seed), _play(remote, local, seed)
            assert remote_record == local_record
            final = R.final_of(remote_record[-1][-1])
            assert final is not None and final.outcome == 1.0 and final.infra_error is None
    finally:
        remote.close()
        local.close()


def test_wrappers_and_kwargs_travel(server: ServerProcess) -> None:
    local = apply_wrappers(gym.make(SQL, max_turns=4), WRAPPERS)
    remote = RemoteEnv(server.url, SQL, wrappers=WRAPPERS, max_turns=4)
    try:
        local_record, remote_record = _play(local, local, 1), _play(remote, local, 1)
        assert remote_record == local_record
        assert R.BREAKDOWN in remote_record[-1][-1]
    finally:
        remote.close()
        local.close()


def test_task_id_option_and_step_before_reset(server: ServerProcess) -> None:
    remote = RemoteEnv(server.url, TOOLUSE)
    try:
        with pytest.raises(gym.error.ResetNeeded):
            remote.step("hello")
        task_id = gym.make(TOOLUSE).reset(seed=4)[1][R.TASK_ID]
        assert remote.reset(options={"task_id": task_id})[1][R.TASK_ID] == task_id
    finally:
        remote.close()


def test_gym_make_registration_style_and_run_episode(server: ServerProcess) -> None:
    local = gym.make(SQL)
    remote = RemoteEnv(server.url, SQL)
    try:
        result = run_episode(remote, OracleAgent(local), seed=2)
        assert result.outcome == run_episode(local, OracleAgent(local), seed=2).outcome == 1.0
        assert result.error is None
    finally:
        remote.close()
        local.close()


@pytest.mark.parametrize("vector", ["sync", "async"])
def test_vector_envs_over_remote_envs(server: ServerProcess, vector: str) -> None:
    fns = [functools.partial(RemoteEnv, server.url, SQL) for _ in range(2)]  # picklable for the async workers
    envs = (gym.vector.SyncVectorEnv(fns) if vector == "sync"
            else gym.vector.AsyncVectorEnv(fns, shared_memory=False, context="spawn"))
    local = gym.make(SQL)
    try:
        obs, infos = envs.reset(seed=[0, 1])
        assert [infos[R.TASK_ID][i] for i in range(2)] == [local.reset(seed=s)[1][R.TASK_ID] for s in (0, 1)]
        agents = [OracleAgent(local), OracleAgent(local)]
        for i, agent in enumerate(agents):
            agent.reset({R.TASK_ID: infos[R.TASK_ID][i]})
        actions = tuple(agent.act("", {}) for agent in agents)
        _obs, rewards, terminated, _truncated, _infos = envs.step(actions)
        assert list(rewards) == [1.0, 1.0] and all(terminated)
    finally:
        envs.close()
        local.close()


def test_refused_sessions_name_the_problem(server: ServerProcess) -> None:
    with pytest.raises(ValueError, match="unknown env id 'execgym/Nope-v0'; this server serves: "):
        RemoteEnv(server.url, "execgym/Nope-v0")
    with pytest.raises(ValueError, match="unexpected keyword argument 'bogus'"):
        RemoteEnv(server.url, SQL, bogus=1)
    with pytest.raises(ValueError, match="unknown reward wrapper 'Nope'"):
        RemoteEnv(server.url, SQL, wrappers=["Nope"])


def test_gym_make_remote_and_an_oracle_bound_to_the_remote_env(server: ServerProcess) -> None:
    """``gym.make("execgym/Remote-v0", ...)``; the oracle bound to the remote env itself finds its task locally."""
    env = gym.make(execgym.REMOTE_ENV_ID, url=server.url, env_id=SQL, max_turns=6)
    try:
        assert env.unwrapped.env_id == SQL and execgym.REMOTE_ENV_ID not in execgym.registered_envs()
        result = run_episode(env, OracleAgent(env), seed=3)
        assert result.outcome == 1.0 and result.error is None
    finally:
        env.close()


def test_execgym_run_on_an_env_server_matches_the_local_run(server: ServerProcess, tmp_path) -> None:
    import json

    from execgym.cli import main

    rows = {}
    for where, extra in (("local", []), ("remote", ["--env-server", server.url])):
        out = tmp_path / where
        assert main(["run", "--env", SQL, "--agent", "oracle,random", "--episodes", "2", "--out", str(out),
                     *extra]) == 0
        rows[where] = {(r["agent"], r["episodes"], r["success_rate"], r["infra_errors"])
                       for r in json.loads((out / "summary.json").read_text())}
    assert rows["remote"] == rows["local"]
    assert ("oracle", 2, 1.0, 0) in rows["remote"]
    with pytest.raises(SystemExit, match="do not go together"):
        main(["run", "--env", SQL, "--backend", "ray", "--env-server", server.url, "--episodes", "1"])
