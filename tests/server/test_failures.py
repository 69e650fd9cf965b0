"""When the server dies, the connection drops or a step times out, step ends the episode as an infra error."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import gymnasium as gym
import pytest

import execgym  # noqa: F401
from execgym.agents import OracleAgent
from execgym.core import report as R
from tests.server.conftest import SQL, active_sessions, require_server_packages, wait_for

require_server_packages()

from execgym.remote import RemoteEnv  # noqa: E402
from execgym.server import ServerProcess  # noqa: E402

LIST_TABLES = {"name": "list_tables", "arguments": {}}


@pytest.fixture(scope="module")
def fragile() -> Iterator[ServerProcess]:
    """A server these tests kill and restart, reaping sessions idle for a second."""
    process = ServerProcess([SQL], max_sessions=4, idle_timeout_s=1.0).start()
    yield process
    process.stop()


def _assert_infra_truncation(step: tuple, needle: str) -> None:
    _obs, reward, terminated, truncated, info = step
    final = R.final_of(info)
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert final is not None and final.infra_error is not None and needle in final.infra_error
    assert info[R.INFRA_ERROR] == final.infra_error and final.submitted is False


def test_timeout_is_an_infra_error_and_reset_reconnects(fragile: ServerProcess) -> None:
    env = RemoteEnv(fragile.url, SQL)
    try:
        env.reset(seed=0)
        env.timeout_s = 1e-9  # no server answers that fast
        _assert_infra_truncation(env.step(LIST_TABLES), "no reply from the env server")
        with pytest.raises(gym.error.ResetNeeded):
            env.step(LIST_TABLES)
        env.timeout_s = 60.0
        env.reset(seed=0)
        assert env.step(LIST_TABLES)[4][R.REWARD_COMPONENTS]["format"] == 1.0
    finally:
        env.close()


def test_idle_sessions_are_reaped_and_client_death_frees_its_session(fragile: ServerProcess) -> None:
    assert wait_for(lambda: active_sessions(fragile) == 0)
    idle = RemoteEnv(fragile.url, SQL)
    idle.reset(seed=0)
    assert active_sessions(fragile) == 1
    assert wait_for(lambda: active_sessions(fragile) == 0), "an idle session was not reaped"
    _assert_infra_truncation(idle.step(LIST_TABLES), "connection to the env server lost")
    idle.reset(seed=0)  # a new session
    assert active_sessions(fragile) == 1
    assert idle._conn is not None
    idle._conn.socket.shutdown(socket.SHUT_RDWR)  # the client dies without closing
    assert wait_for(lambda: active_sessions(fragile) == 0), "a dead client's session was not reaped"
    idle.close()


def test_server_killed_mid_episode_then_restarted_on_the_same_port(fragile: ServerProcess) -> None:
    local = gym.make(SQL)
    env = RemoteEnv(fragile.url, SQL, connect_timeout_s=30.0)
    try:
        obs, info = env.reset(seed=1)
        assert env.step(LIST_TABLES)[2:4] == (False, False)
        fragile.kill()
        _assert_infra_truncation(env.step(LIST_TABLES), "env server")
        with pytest.raises(ConnectionError, match="cannot reach the env server"):
            env.connect_timeout_s = 0.5
            env.reset(seed=1)
        fragile.start()
        env.connect_timeout_s = 30.0
        agent = OracleAgent(local)
        obs, info = env.reset(seed=1)
        agent.reset(info)
        _obs, reward, terminated, _truncated, info = env.step(agent.act(obs, info))
        assert (reward, terminated, info[R.INFRA_ERROR]) == (1.0, True, None)
    finally:
        env.close()
        local.close()
