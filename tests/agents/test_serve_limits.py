"""``execgym serve`` under bad and heavy input, on loopback: every malformed request gets a 4xx with a JSON body
and the server keeps serving (a corpus of malformed bodies gets no 500; lone surrogates become U+FFFD; numbers
JSON cannot hold, odd Content-Lengths and the stdlib's own errors are 4xx JSON); idle connections are closed,
and so are ones that trickle their headers past one deadline; bursts of connections are all answered; a huge
prompt, or a flood of messages, is refused with bounded memory before the chat template; streaming sends the
reply token by token; the openai agent finds the served model."""

from __future__ import annotations

import http.client
import json
import re
import select
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
from execgym.agents.serve import PolicyServer, RequestError, make_http_server
from execgym.rollout import run_episode
from tests.agents.conftest import SECRET_ID

pytestmark = pytest.mark.timeout(900)

IDLE_S = 1.5
HELLO = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def policy(tiny_dir: Path) -> Iterator[PolicyServer]:
    policy = PolicyServer(*load_policy(tiny_dir, device="cpu"), model_name="tiny", default_max_tokens=8)
    yield policy
    policy.close()


@pytest.fixture(scope="module")
def server(policy: PolicyServer) -> Iterator[tuple[str, int]]:
    httpd = make_http_server(policy, "127.0.0.1", 0, idle_timeout_s=IDLE_S, max_body_bytes=1 << 20)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield "127.0.0.1", httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


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


# ---------------------------------------------------------------- no 500 for a malformed request

def _answer(addr: tuple[str, int], body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
    """POST ``body`` raw (with ``headers``, or a right Content-Length); the status and the whole answer."""
    head = headers or b"Content-Length: %d\r\n" % len(body)
    with socket.create_connection(addr, timeout=60) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n"
                     + body)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return _status(out), out


def _json_body(answer: bytes) -> dict[str, Any]:
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"content-type: application/json" in head.lower(), head
    return json.loads(body)


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"messages":[{"role":"user","content":"\\ud800"}],"max_tokens":2}', 200),
    (b'{"messages":[{"role":"user","content":[{"type":"text","text":"a\\udfffb"}]}],"max_tokens":2}', 200),
    (b'{"messages":[{"role":"assistant","content":"x","tool_calls":[{"id":"a","type":"function","function":'
     b'{"name":"\\udfff","arguments":"{}"}}]},{"role":"user","content":"hi"}],"max_tokens":2}', 200),
    (b'{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f\\ud800",'
     b'"parameters":{"\\udc00":{}}}}],"max_tokens":2}', 200),
    ('{"messages":[{"role":"user","content":"\ud800"}],"max_tokens":2}'.encode("utf-8", "surrogatepass"), 200),
    (b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":' + b"9" * 5000 + b"}", 400),
    (b'{"messages":[{"role":"user","content":"hi"}],"x":[-' + b"9" * 5000 + b"]}", 400),
    (b'{"messages":[{"role":"user","content":"hi"}],"temperature":1e999}', 400),
    (b'{"messages":[{"role":"user","content":"hi"}],"x":' + b"[" * 500 + b"]" * 500 + b"}", 400),
], ids=["surrogate-content", "surrogate-part", "surrogate-tool-call-name", "surrogate-tool-key", "utf8-surrogate",
        "5000-digit-max-tokens", "5000-digit-anywhere", "1e999", "500-deep"])
def test_lone_surrogates_are_replaced_and_numbers_json_cannot_hold_are_400(server, body, expected):
    status, answer = _answer(server, body)
    assert status == expected, answer[:300]
    reply = _json_body(answer)
    if expected == 200:
        assert reply["choices"][0]["message"]["role"] == "assistant"
    else:
        assert reply["error"]["type"] == "invalid_request_error"
    _assert_serving(server)


def test_a_lone_surrogate_becomes_u_fffd_in_the_prompt(policy):
    from execgym.agents.serve import _decode_body

    request = _decode_body(b'{"messages":[{"role":"user","content":"a\\ud800b"}],"\\udfff":["\\udbff"]}')
    assert request["messages"][0]["content"] == "a\ufffdb" and request["\ufffd"] == ["\ufffd"]
    prepared = policy.prepare(request)
    assert "a\ufffdb" in policy.tokenizer.decode(prepared.prompt)


@pytest.mark.parametrize(("value", "expected"), [
    ("\u00b2".encode("latin-1"), "Content-Length"),  # "²": str.isdigit() says yes, int() says no
    ("\u00b3".encode("latin-1"), "Content-Length"),
    ("\u0663".encode(), "Content-Length"),  # ARABIC-INDIC DIGIT THREE, as UTF-8 bytes
    (b"1_5", "Content-Length"),  # int() takes it
    (b"9" * 5000, "over the limit"),  # 413; int() of 5,000 digits would raise
    (b" 15 ", "'messages'"),  # accepted: the 15-byte body is read, and its empty messages refused
    (b"0" * 30 + b"15", "'messages'"),
], ids=["superscript-two", "superscript-three", "arabic-indic", "underscore", "5000-digits", "spaces",
        "leading-zeros"])
def test_content_length_is_ascii_digits_only(server, value, expected):
    status, answer = _answer(server, b'{"messages":[]}', b"Content-Length: " + value + b"\r\n")
    assert status == (413 if expected == "over the limit" else 400), answer[:300]
    assert expected in _json_body(answer)["error"]["message"]
    _assert_serving(server)


def test_content_length_headers_that_disagree_get_400(server):
    status, answer = _answer(server, b'{"a":1}', b"Content-Length: 7\r\nContent-Length: 99\r\n")
    assert status == 400 and "disagree" in _json_body(answer)["error"]["message"]
    _assert_serving(server)


@pytest.mark.parametrize(("request_bytes", "expected"), [
    (b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"FROB / HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"\x16\x03\x01garbage\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    (b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 150 + b"\r\n", 431),
], ids=["HEAD", "OPTIONS", "unknown-method", "garbled-request-line", "bad-version", "too-many-headers"])
def test_the_stdlibs_own_errors_are_json_too(server, request_bytes, expected):
    with socket.create_connection(server, timeout=60) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):  # every one of these closes the connection
            answer += chunk
    assert _status(answer) == expected, answer[:300]
    head, body = answer.split(b"\r\n\r\n", 1)
    assert b"content-type: application/json" in head.lower()
    if request_bytes.startswith(b"HEAD"):
        assert body == b""  # a HEAD response has no body
    else:
        assert json.loads(body)["error"]["message"]
    _assert_serving(server)


_PLACE = "@@PLACE@@"
_POISONS = ["9" * 5000, "-" + "9" * 1001, "1e999", "-1e400", "NaN", "Infinity", "-Infinity", '"\\ud800"',
            '"\\udfff\\ud800x"', '"a\\u0000b"', "[" * 200 + "]" * 200, '{"a":' * 150 + "1" + "}" * 150, "[[[]]]",
            "{}", "[]", "null", "true", "false", "-1", "0", "1.5", '""', '"x"', '{"role": 5}', '[{"type": "text"}]',
            '[{"type": "text", "text": "\\ud800"}]', '{"name": "\\ud800", "arguments": "{\\"a\\": 1e999}"}',
            '[{"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": [' + "9" * 999 + "]}}}]",
            '{"\\ud800": "\\udc00"}', '[null, 5, "x", {}, []]', '"' + "\u00e9" * 20 + '"']
_SHAPES = [  # where a poison goes: a valid request with one value replaced
    {"model": _PLACE, "messages": [{"role": "user", "content": "hi"}]},
    {"messages": _PLACE},
    {"messages": [_PLACE]},
    {"messages": [{"role": _PLACE, "content": "hi"}]},
    {"messages": [{"role": "user", "content": _PLACE}]},
    {"messages": [{"role": "user", "content": "hi", "name": _PLACE}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": _PLACE}]}]},
    {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": None, "tool_calls": _PLACE},
                  {"role": "user", "content": "hi"}]},
    {"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": _PLACE, "arguments": "{}"}}]},
        {"role": "tool", "content": "r", "tool_call_id": "c"}]},
    {"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": _PLACE}}]},
        {"role": "tool", "content": "r", "tool_call_id": _PLACE}]},
    {"messages": [{"role": "user", "content": "hi"}], "tools": _PLACE},
    {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": _PLACE}]},
    {"messages": [{"role": "user", "content": "hi"}],
     "tools": [{"type": "function", "function": {"name": "f", "parameters": _PLACE}}]},
    {"messages": [{"role": "user", "content": "hi"}], "tool_choice": _PLACE, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {}}}]},
    {"messages": [{"role": "user", "content": "hi"}], "temperature": _PLACE},
    {"messages": [{"role": "user", "content": "hi"}], "top_p": _PLACE},
    {"messages": [{"role": "user", "content": "hi"}], "n": _PLACE},
    {"messages": [{"role": "user", "content": "hi"}], "stop": _PLACE},
    {"messages": [{"role": "user", "content": "hi"}], "stream": _PLACE},
    {"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": _PLACE},
    {"messages": [{"role": "user", "content": "hi"}], "extra": _PLACE},
    {"messages": [{"role": "user", "content": "hi"}], _PLACE: 1},
]


def _corpus() -> list[bytes]:
    """~230 malformed (and some valid) bodies: a poison in every shape, and broken bytes of a valid body."""
    import random

    rng = random.Random(0)
    bodies = []
    for shape in _SHAPES:
        for poison in rng.sample(_POISONS, 9):
            shape = {**shape, "max_tokens": 1} if "max_tokens" not in shape else shape
            text = json.dumps(shape)
            if f'"{_PLACE}": 1' in text:  # a poison as a key: only strings can be one
                text = text.replace(f'"{_PLACE}"', poison if poison.startswith('"') else json.dumps(poison))
            else:
                text = text.replace(f'"{_PLACE}"', poison)
            bodies.append(text.encode("utf-8", "surrogatepass"))
    valid = json.dumps(_with(max_tokens=1)).encode()
    for _ in range(30):
        cut = bytearray(valid[:rng.randrange(1, len(valid))])
        for _ in range(rng.randrange(3)):
            cut[rng.randrange(len(cut))] = rng.randrange(256)
        bodies.append(bytes(cut))
    return bodies


def test_a_corpus_of_malformed_bodies_gets_no_500(server):
    corpus = _corpus()
    assert len(corpus) > 200
    seen = set()
    for body in corpus:
        status, answer = _answer(server, body)
        seen.add(status)
        assert status < 500, (body[:200], answer[-300:])
        head, data = answer.split(b"\r\n\r\n", 1)
        if b"text/event-stream" in head:
            assert data.rstrip().endswith(b"data: [DONE]")
        else:
            reply = json.loads(data)
            assert ("choices" in reply) if status == 200 else reply["error"]["message"], reply
    assert {200, 400} <= seen
    _assert_serving(server)


def test_an_unexpected_error_in_prepare_is_a_400_and_one_in_generation_a_json_500(server, policy, monkeypatch):
    import execgym.agents.serve as serve_module

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("odd input")

    with monkeypatch.context() as patch:
        patch.setattr(policy.tokenizer, "encode", boom)
        status, answer = _post(server, HELLO)
    assert status == 400 and "RuntimeError: odd input" in answer["error"]["message"]
    with monkeypatch.context() as patch:  # a real bug past validation: a 500, still a JSON error body
        patch.setattr(serve_module, "generate", boom)
        status, answer = _post(server, HELLO)
    assert status == 500 and answer["error"]["type"] == "server_error"
    _assert_serving(server)


def test_a_generated_tool_call_json_cannot_hold_stays_text(policy):
    text = '<tool_call>{"name": "f", "arguments": {"a": ' + "9" * 5000 + "}}</tool_call>"
    produced = policy.tokenizer.encode(text, add_special_tokens=False)
    choice = policy._choice(0, produced, len(produced) + 1, [], parse_tools=True)
    assert "tool_calls" not in choice["message"] and choice["message"]["content"]


# ---------------------------------------------------------------- slow headers

def test_trickled_headers_are_cut_at_one_deadline_and_others_are_served(policy):
    httpd = make_http_server(policy, "127.0.0.1", 0, idle_timeout_s=1.0, max_connections=4)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    addr = ("127.0.0.1", httpd.server_address[1])
    slow = [socket.create_connection(addr, timeout=10) for _ in range(4)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nX-A: ")
        answers: dict[socket.socket, bytes] = {}
        guard = time.monotonic() + 60  # a hang guard, not a timing assertion: the deadline is 1 s
        while len(answers) < len(slow) and time.monotonic() < guard:
            for sock in slow:  # a byte every 0.2 s: each read is far inside the 1 s idle timeout
                if sock in answers:
                    continue
                try:
                    sock.sendall(b"a")
                except OSError:
                    answers[sock] = b""
            readable, _, _ = select.select([s for s in slow if s not in answers], [], [], 0.2)
            for sock in readable:
                try:
                    answers[sock] = _read_all(sock)
                except OSError:
                    answers[sock] = b""
        assert len(answers) == len(slow), "connections that trickle their headers were never closed"
        assert any(a.startswith(b"HTTP/1.1 408 ") for a in answers.values()), answers
        with socket.create_connection(addr, timeout=10) as sock:  # the slots are free again
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _status(_read_all(sock)) == 200
    finally:
        for sock in slow:
            sock.close()
        httpd.shutdown()
        httpd.server_close()


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_headers_in_pieces_within_the_deadline_and_keep_alive_still_work(server):
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % len(json.dumps(HELLO)) + json.dumps(HELLO).encode())
    with socket.create_connection(server, timeout=60) as sock:
        for _ in range(2):  # two requests on one connection, the first one's line and headers in pieces
            for piece in (request[:10], request[10:40], request[40:]):
                sock.sendall(piece)
                time.sleep(0.1)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                answer += sock.recv(65536)
            assert _status(answer) == 200


# ---------------------------------------------------------------- many messages

def test_a_flood_of_empty_messages_is_refused_before_the_chat_template(policy, monkeypatch):
    import execgym.agents.serve as serve_module

    rendered = []
    real = serve_module.render_chat
    monkeypatch.setattr(serve_module, "render_chat", lambda *a, **k: rendered.append(1) or real(*a, **k))
    per_message = policy.message_overhead_tokens["user"]
    assert per_message >= 1  # ChatML: <|im_start|>user\n<|im_end|>\n
    for count in (13_600, policy.context_limit // per_message + 1):
        with pytest.raises(RequestError) as refused:
            policy.prepare({"messages": [{"role": "user"}] * count, "max_tokens": 1})
        assert refused.value.status == 400 and refused.value.param == "messages"
        assert "messages" in str(refused.value)
    assert rendered == []
    fits = policy.prepare({"messages": [{"role": "user"}] * 4, "max_tokens": 1})
    assert rendered == [1] and len(fits.prompt) >= 4 * per_message


def test_the_cheap_bound_never_refuses_a_prompt_that_fits(policy):
    # the most empty messages the template can take, then one that the tokenizer refuses, never the bound
    per_message = policy.message_overhead_tokens["user"]
    near = policy.context_limit // per_message - 20
    prepared = policy.prepare({"messages": [{"role": "user"}] * near, "max_tokens": 1})
    assert len(prepared.prompt) < policy.context_limit


def test_max_messages_caps_a_request(tiny_dir):
    capped = PolicyServer(*load_policy(tiny_dir, device="cpu"), model_name="tiny", max_messages=3)
    try:
        with pytest.raises(RequestError, match="4 messages are more than the 3 accepted"):
            capped.prepare({"messages": [{"role": "user", "content": "x"}] * 4})
        assert capped.prepare({"messages": [{"role": "user", "content": "x"}] * 3, "max_tokens": 1}).prompt
    finally:
        capped.close()


@pytest.mark.parametrize(("option", "value"), [
    ("max_batch", 0), ("max_batch", 2.5), ("max_queued", 0), ("default_max_tokens", -1), ("batch_wait_s", -0.1),
    ("generation_timeout_s", 0), ("generation_timeout_s", float("inf")), ("max_batch", True), ("max_queued", "9"),
])
def test_a_limit_that_would_stall_the_server_is_refused_in_one_line_naming_it(option, value):
    with pytest.raises(ValueError, match=f"PolicyServer: {option} must be") as exc:
        PolicyServer(None, None, **{option: value})  # refused before the model is looked at
    assert "\n" not in str(exc.value)
