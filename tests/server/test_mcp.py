"""Each session's tools over MCP, with the official SDK's client: the same tools and the same grading."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import gymnasium as gym
import pytest

import execgym  # noqa: F401
from execgym.core import report as R
from tests.server.conftest import SQL, TOOLUSE, active_sessions, require_server_packages, wait_for

require_server_packages()

import httpx  # noqa: E402

from execgym.server import ServerProcess  # noqa: E402
from execgym.server.mcp import REPLY_TOOL, TASK_PROMPT  # noqa: E402

mcp_client = pytest.importorskip("mcp.client.client", reason="needs the mcp SDK: pip install 'execgym[server]'")


def _calls(action: Any) -> list[tuple[str, dict[str, Any]]] | str:
    """An oracle action as MCP tool calls (name, arguments), or the plain reply it is."""
    if isinstance(action, str):
        return action
    entries = action if isinstance(action, list) else [action]
    return [(e["name"], e["arguments"]) for e in entries]


def _local_episode(env_id: str, seed: int) -> tuple[list[dict[str, Any]], list[Any], dict[str, Any]]:
    env = gym.make(env_id)
    _obs, info = env.reset(seed=seed)
    oracle = list(env.unwrapped.task.oracle)
    for action in oracle:
        *_rest, terminated, truncated, last = env.step(action)
        if terminated or truncated:
            break
    env.close()
    return info[R.TOOLS], oracle, last


async def _mcp_episode(url: str, oracle: list[Any], mode: str) -> tuple[list[Any], list[Any], Any]:
    async with mcp_client.Client(url, mode=mode) as client:
        tools = (await client.list_tools()).tools
        prompt = await client.get_prompt(TASK_PROMPT)
        results = []
        for action in oracle:
            calls = _calls(action)
            for name, arguments in ([(REPLY_TOOL, {"text": calls})] if isinstance(calls, str) else calls):
                results.append(await client.call_tool(name, arguments))
        return tools, results, prompt


@pytest.mark.parametrize(("env_id", "mode", "query"), [
    (SQL, "legacy", "seed=4"),
    (TOOLUSE, "legacy", "seed=2"),
    (SQL, "auto", "seed=4&session=episode-1"),
])
def test_an_mcp_episode_is_graded_as_a_local_one(server: ServerProcess, env_id: str, mode: str, query: str) -> None:
    seed = int(query.split("&")[0].removeprefix("seed="))
    local_tools, oracle, local_final = _local_episode(env_id, seed)
    url = f"{server.url}/mcp/{env_id}?{query}"
    before = active_sessions(server)
    tools, results, prompt = asyncio.run(_mcp_episode(url, oracle, mode))

    env_tools = [t for t in tools if t.name != REPLY_TOOL]
    assert [(t.name, t.input_schema) for t in env_tools] == [
        (f["function"]["name"], f["function"]["parameters"]) for f in local_tools]
    assert (REPLY_TOOL in {t.name for t in tools}) == (env_id == TOOLUSE)  # SQL ends on its submit tool
    assert "Question" in prompt.messages[-1].content.text or env_id == TOOLUSE

    last = results[-1].structured_content
    assert last["terminated"] is True and not any(r.is_error for r in results)
    info = last["info"]
    assert info[R.OUTCOME] == local_final[R.OUTCOME] == 1.0
    assert info[R.UNITS] == json.loads(json.dumps(local_final[R.UNITS]))
    assert info[R.INFRA_ERROR] is None
    if mode == "legacy":  # the SDK's client ends its session on exit: the env goes with it
        assert wait_for(lambda: active_sessions(server) == before, 15.0)


def _messages(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return " | ".join(_messages(e) for e in exc.exceptions)
    return str(exc)


def test_mcp_refuses_unknown_env_ids_and_bad_calls(server: ServerProcess) -> None:
    async def run() -> tuple[str, Any]:
        try:
            async with mcp_client.Client(f"{server.url}/mcp/execgym/Nope-v0", mode="legacy") as client:
                await client.list_tools()
                refused = ""
        except Exception as exc:  # the SDK raises the server's error (inside its task group's exception group)
            refused = _messages(exc)
        async with mcp_client.Client(f"{server.url}/mcp/{SQL}?seed=0", mode="legacy") as client:
            bad = await client.call_tool("no_such_tool", {})
        return refused, bad

    refused, bad = asyncio.run(run())
    assert "unknown env id 'execgym/Nope-v0'" in refused
    assert bad.is_error and "unknown tool 'no_such_tool'" in bad.content[0].text


def test_mcp_on_loopback_refuses_foreign_host_headers(server: ServerProcess) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"accept": "application/json, text/event-stream", "host": "rebound.example"}
    response = httpx.post(f"{server.url}/mcp/{SQL}", json=body, headers=headers, timeout=30)
    assert response.status_code == 421 and "Host" in response.text
