"""``execgym serve`` under bad and heavy input, on loopback: every malformed request gets a 4xx and the server
keeps serving; idle connections are closed; bursts of connections are all answered; a huge prompt is refused
with bounded memory; streaming sends the reply token by token; the openai agent finds the served model."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gymnasium as gym
import openai
import pytest

from execgym.agents.hf_policy import load_policy
from execgym.agents.openai_chat import OpenAIChatAgent
from execgym.agents.serve import PolicyServer, make_http_server
from execgym.rollout import run_episode
from tests.agents.conftest import SECRET_ID

pytestmark = pytest.mark.timeout(900)

IDLE_S = 1.5
HELLO = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def server(tiny_dir: Path) -> Iterator[tuple[str, int]]:
    policy = PolicyServer(*load_policy(tiny_dir, device="cpu"), model_name="tiny", default_max_tokens=8)
    httpd = make_http_server(policy, "127.0.0.1", 0, idle_timeout_s=IDLE_S, max_body_bytes=1 << 20)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "127.0.0.1", httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    policy.close()


def _post(addr: tuple[str, int], body: Any, *, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(*addr, timeout=60)
    try:
        data = raw if raw is not None else json.dumps(body).encode()
        conn.request("POST", "/v1/chat/completions", body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _raw(addr: tuple[str, int], request: bytes) -> bytes:
    """Send raw bytes, return everything the server answers before it closes (or 10 s pass)."""
    with socket.create_connection(addr, timeout=10) as sock:
        sock.sendall(request)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and b"}" in out.split(b"\r\n\r\n", 1)[1]:
                    break
        except TimeoutError:
            pass
    return out


def _assert_serving(addr: tuple[str, int]) -> None:
    status, body = _post(addr, HELLO)
    assert status == 200 and body["choices"][0]["message"]["role"] == "assistant"


def _with(**fields: Any) -> dict[str, Any]:
    return {**HELLO, **fields}


def _message(content: Any) -> dict[str, Any]:
    return _with(messages=[{"role": "user", "content": content}])


BAD_REQUESTS = {
    "stop-int": (_with(stop=5), "stop"),
    "stop-dict": (_with(stop={"a": 1}), "stop"),
    "stop-list-of-int": (_with(stop=[1, 2]), "stop"),
    "stop-empty-string": (_with(stop=[""]), "stop"),
    "stop-too-many": (_with(stop=list("abcde")), "stop"),
    "part-text-int": (_message([{"type": "text", "text": 5}]), "content"),
    "part-string": (_message(["hi"]), "content"),
    "part-image": (_message([{"type": "image_url", "image_url": {"url": "x"}}]), "content"),
    "content-int": (_message(5), "content"),
    "stream-options-string": (_with(stream=True, stream_options="yes"), "stream_options"),
    "stream-options-list": (_with(stream=True, stream_options=[1]), "stream_options"),
    "stream-options-usage-string": (_with(stream=True, stream_options={"include_usage": "yes"}), "stream_options"),
    "stream-string": (_with(stream="yes"), "stream"),
    "tools-string": (_with(tools="x"), "tools"),
    "tools-bad-function": (_with(tools=[{"type": "function", "function": 5}]), "tools"),
    "tool-choice-int": (_with(tool_choice=5), "tool_choice"),
    "model-int": (_with(model=5), "model"),
    "tool-calls-string": (_with(messages=[{"role": "user", "content": "x"},
                                          {"role": "assistant", "content": "", "tool_calls": "x"}]), "tool_calls"),
    "tool-calls-bad-name": (_with(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": 1, "arguments": "{}"}}]}]), "tool_calls"),
    "role-missing": (_with(messages=[{"content": "x"}]), "role"),
    "n-string": (_with(n="2"), "'n'"),
    "max-tokens-negative": (_with(max_tokens=-1), "max_tokens"),
    "max-completion-tokens-string": (_with(max_completion_tokens="5"), "max_completion_tokens"),
    "temperature-string": (_with(temperature="hot"), "temperature"),
    "body-list": ([], "JSON object"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_malformed_fields_get_a_400_and_the_server_keeps_serving(server, case):
    body, needle = BAD_REQUESTS[case]
    status, answer = _post(server, body)
    assert status == 400, answer
    assert answer["error"]["type"] == "invalid_request_error" and needle in json.dumps(answer["error"])
    _assert_serving(server)


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b'"text"'],
                         ids=["not-json", "not-utf8", "deeply-nested", "a-string"])
def test_bodies_that_are_not_a_json_object_get_a_400(server, raw):
    status, answer = _post(server, None, raw=raw)
    assert status == 400 and answer["error"]["message"]
    _assert_serving(server)


def _status(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", response)
    assert match, response[:200]
    return int(match.group(1))


@pytest.mark.parametrize(("headers", "expected"), [
    (b"Content-Length: abc\r\n", 400),
    (b"Content-Length: -5\r\n", 400),
    (b"Content-Length: 1e3\r\n", 400),
    (b"Content-Length: 99999999999\r\n", 413),
    (b"", 411),
    (b"Transfer-Encoding: chunked\r\n", 411),
], ids=["non-numeric", "negative", "float", "over-the-cap", "missing", "chunked"])
def test_bad_content_length_gets_a_4xx_with_a_json_body(server, headers, expected):
    body = json.dumps(HELLO).encode()
    answer = _raw(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body)
    assert _status(answer) == expected
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["message"]
    _assert_serving(server)


def test_other_methods_get_405(server):
    answer = _raw(server, b"DELETE /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert _status(answer) == 405
    _assert_serving(server)


def test_an_idle_connection_is_closed_and_a_stalled_body_gets_408(server):
    with socket.create_connection(server, timeout=60) as sock:  # a server that never hangs up: TimeoutError
        assert sock.recv(1024) == b""  # the server hung up on a connection that sent nothing
    with socket.create_connection(server, timeout=60) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mod")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert _status(answer) == 408
    _assert_serving(server)


def test_64_concurrent_requests_are_all_answered(server):
    barrier = threading.Barrier(64)

    def one(i: int) -> int:
        barrier.wait(timeout=60)
        return _post(server, _with(max_tokens=1, messages=[{"role": "user", "content": f"hi {i}"}]))[0]

    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(one, range(64)))
    assert statuses == [200] * 64


def test_connections_over_the_cap_get_503(tiny_dir):
    policy = PolicyServer(*load_policy(tiny_dir, device="cpu"), model_name="tiny")
    httpd = make_http_server(policy, "127.0.0.1", 0, idle_timeout_s=30, max_connections=2)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    addr = ("127.0.0.1", httpd.server_address[1])
    try:
        held = [socket.create_connection(addr, timeout=10) for _ in range(2)]
        time.sleep(0.5)  # let the server take both
        with socket.create_connection(addr, timeout=10) as third:
            answer = b""
            while chunk := third.recv(65536):
                answer += chunk
        assert _status(answer) == 503
        for sock in held:
            sock.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        policy.close()


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def test_a_4mb_prompt_is_refused_with_bounded_memory(tiny_dir):
    code = (f"from execgym.agents.serve import serve; serve({str(tiny_dir)!r}, port=0, device='cpu', "
            "model_name='tiny')")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/v1", line).group(1))
        addr = ("127.0.0.1", port)
        _assert_serving(addr)  # warm: the first generation's buffers are in the baseline
        before = _peak_rss_mb(proc.pid)
        status, answer = _post(addr, _message("word " * 800_000))  # 4 MB of prompt
        after = _peak_rss_mb(proc.pid)
        assert status == 400 and "too long" in answer["error"]["message"]
        assert after - before < 150, f"peak RSS grew by {after - before:.0f} MB"
        _assert_serving(addr)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_streaming_sends_the_reply_token_by_token(server):
    client = openai.OpenAI(base_url=f"http://{server[0]}:{server[1]}/v1", api_key="EMPTY", max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "hello"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 3, deltas
    assert "".join(deltas) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]


def test_openai_agent_defaults_to_the_servers_only_model(server):
    url = f"http://{server[0]}:{server[1]}/v1"
    env = gym.make(SECRET_ID)
    agent = OpenAIChatAgent(base_url=url, max_tokens=4)
    result = run_episode(env, agent, seed=0)
    assert result.agent_error is None and agent.served_model() == "tiny"
    assert agent.usage["requests"] == result.turns >= 1


def test_an_unreachable_model_server_is_an_agent_error_not_a_zero():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = gym.make(SECRET_ID)
    agent = OpenAIChatAgent("tiny", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff_s=0.01,
                            timeout_s=5)
    result = run_episode(env, agent, seed=0)
    assert result.agent_error is not None and result.agent_error.startswith("APIConnectionError")
    assert result.infra_error is None and result.turns == 0
