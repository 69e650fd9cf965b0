"""OpenEnv's own Python client drives an execgym env unchanged; HTTP requests that are wrong get one-line 4xx."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import execgym  # noqa: F401
from execgym.agents import OracleAgent
from execgym.core import report as R
from tests.server.conftest import MAX_SESSIONS, SQL, TOOLUSE, require_server_packages

require_server_packages()

import httpx  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from execgym.remote import RemoteEnv  # noqa: E402
from execgym.server import ServerProcess  # noqa: E402

generic_client = pytest.importorskip("openenv.core.generic_client", reason="needs openenv-core (a test dependency)")


def test_openenv_generic_client_plays_a_sql_episode(server: ServerProcess) -> None:
    local = gym.make(SQL)
    oracle = OracleAgent(local)
    with generic_client.GenericEnvClient(base_url=f"{server.url}/{SQL}").sync() as client:
        result = client.reset(seed=5)
        info = result.observation["metadata"]
        assert result.done is False and result.reward is None
        assert info[R.TASK_ID] and info[R.TOOLS] and "Question" in result.observation["text"]

        # A tool-call action, as OpenEnv clients send one: an object.
        result = client.step({"name": "list_tables", "arguments": {}})
        assert result.done is False and result.reward == 0.0
        assert result.observation["metadata"][R.REWARD_COMPONENTS]["format"] == 1.0
        assert result.observation["metadata"][R.TOOL_CALLS][0]["name"] == "list_tables"

        oracle.reset(info)
        result = client.step({"action": oracle.act("", info)})
        final = R.final_of(result.observation["metadata"])
        assert result.done is True and result.reward == 1.0
        assert final is not None and final.outcome == 1.0 and final.infra_error is None and final.units
        state = client.state()
        assert state["step_count"] == 2 and state[R.TASK_ID] == info[R.TASK_ID] and state["env_id"] == SQL
    local.close()


def test_openenv_client_with_a_raw_text_action(server: ServerProcess) -> None:
    with generic_client.GenericEnvClient(base_url=f"{server.url}/{TOOLUSE}").sync() as client:
        task_id = gym.make(TOOLUSE).reset(seed=7)[1][R.TASK_ID]
        result = client.reset(seed=2, options={"task_id": task_id})
        assert result.observation["metadata"][R.TASK_ID] == task_id
        result = client.step({"text": '<tool_call>{"name": "list_directory", "arguments": {"path": "/"}}</tool_call>'})
        assert result.observation["metadata"][R.TOOL_CALLS][0]["name"] == "list_directory"


def test_http_reset_and_step_keep_a_session(server: ServerProcess) -> None:
    with httpx.Client(base_url=f"{server.url}/{SQL}", timeout=30) as http:
        reset = http.post("/reset", json={"seed": 0})
        assert reset.status_code == 200
        session_id = reset.json()["observation"]["session_id"]
        step = http.post("/step", json={"action": {"name": "list_tables", "arguments": {}}, "session_id": session_id})
        assert step.status_code == 200 and step.json()["done"] is False
        assert http.get("/state", params={"session_id": session_id}).json()["step_count"] == 1
        assert http.post("/close", json={"session_id": session_id}).json() == {"closed": True}
        assert http.get("/state", params={"session_id": session_id}).status_code == 404


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/step", {"actio": {}}, 422, "body.action: Field required"),
    ("/step", {"action": {"text": "x"}}, 400, "missing session_id"),
    ("/step", {"action": {"text": "x"}, "session_id": "nope"}, 404, "no session 'nope'"),
    ("/reset", {"seed": -1}, 422, "body.seed: Input should be greater than or equal to 0"),
    ("/reset", {"seed": 0, "colour": 1}, 400, "unknown reset field(s) colour"),
    ("/reset", {"kwargs": {"max_turns": "many", "bogus": 1}}, 400, "unexpected keyword argument 'bogus'"),
    ("/reset", {"wrappers": ["NoSuchWrapper"]}, 400, "unknown reward wrapper 'NoSuchWrapper'"),
])
def test_malformed_http_requests_get_a_one_line_4xx(server: ServerProcess, path: str, body: dict, status: int,
                                                    message: str) -> None:
    response = httpx.post(f"{server.url}/{SQL}{path}", json=body, timeout=30)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and message in detail


def test_http_unknown_env_id_and_bad_json(server: ServerProcess) -> None:
    response = httpx.post(f"{server.url}/execgym/Nope-v0/reset", json={}, timeout=30)
    assert response.status_code == 404 and response.json()["detail"].startswith("unknown env id 'execgym/Nope-v0'")
    response = httpx.post(f"{server.url}/{SQL}/step", content=b"{not json", timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["detail"]


def test_max_sessions_refuses_with_a_clear_error(server: ServerProcess) -> None:
    held = []
    try:
        with httpx.Client(base_url=f"{server.url}/{SQL}", timeout=30) as http:
            while True:
                response = http.post("/reset", json={})
                if response.status_code != 200:
                    break
                held.append(response.json()["observation"]["session_id"])
                assert len(held) <= MAX_SESSIONS
            assert response.status_code == 503 and "at capacity" in response.json()["detail"]
        with (generic_client.GenericEnvClient(base_url=f"{server.url}/{SQL}").sync() as client,
              pytest.raises(RuntimeError, match="at capacity.*CAPACITY_REACHED")):
            client.reset()
        with pytest.raises(ConnectionRefusedError, match="server at capacity"):
            RemoteEnv(server.url, TOOLUSE)
    finally:
        for session_id in held:
            httpx.post(f"{server.url}/{SQL}/close", json={"session_id": session_id}, timeout=30)


def test_malformed_websocket_messages_get_an_error_reply_and_the_session_lives_on(server: ServerProcess) -> None:
    ws_url = server.url.replace("http://", "ws://") + f"/{SQL}/ws"
    with connect(ws_url, open_timeout=30) as ws:
        replies = []
        for raw in ["{not json", '{"type": "jump"}', '{"type": "step"}', '{"type": "reset", "data": {"seed": "x"}}',
                    '{"type": "step", "data": {"name": "list_tables", "arguments": {}}}',
                    '{"type": "reset", "data": {"seed": ' + "9" * 5000 + "}}", "[" * 10_000 + "]" * 10_000]:
            ws.send(raw)
            replies.append(json.loads(ws.recv(timeout=30)))
    codes = [r["data"].get("code") for r in replies[:4]]
    assert codes == ["INVALID_JSON", "UNKNOWN_TYPE", "VALIDATION_ERROR", "VALIDATION_ERROR"]
    assert all("\n" not in r["data"]["message"] for r in replies[:4])
    assert "data: Field required" in replies[2]["data"]["message"]
    assert "seed must be a non-negative integer" in replies[3]["data"]["message"]
    # A step before any reset is the env's own refusal, reported, not a dropped session.
    assert replies[4]["type"] == "error" and "ResetNeeded" in replies[4]["data"]["message"]
    # Numbers and nesting Python's json would choke on are refused like any malformed message.
    assert [r["data"].get("code") for r in replies[5:]] == ["INVALID_JSON", "INVALID_JSON"]
