"""The OpenAI-compatible server on loopback, driven by the real ``openai`` client and by OpenAIChatAgent."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import gymnasium as gym
import openai
import pytest

from execgym.agents.hf_policy import load_policy
from execgym.agents.openai_chat import OpenAIChatAgent
from execgym.agents.serve import PolicyServer, RequestError, make_http_server
from tests.agents.conftest import GUESS_ID, SECRET_ID

# a tiny model trains in the session fixtures: generous on a loaded 2-core machine
pytestmark = pytest.mark.timeout(900)


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=60)


def test_models_and_health(server_url):
    assert [m.id for m in _client(server_url).models.list()] == ["tiny"]
    root = server_url.removesuffix("/v1")
    with urllib.request.urlopen(root + "/health", timeout=10) as r:
        assert json.load(r)["status"] == "ok"


def test_completion_with_tools_returns_parsed_tool_calls_and_usage(server_url):
    env = gym.make(SECRET_ID)
    obs, info = env.reset(seed=3)
    response = _client(server_url).chat.completions.create(
        model="tiny", messages=info["messages"], tools=info["tools"], temperature=0.0, max_tokens=24, n=2)
    assert len(response.choices) == 2
    for choice in response.choices:  # the SFT'd tiny model answers with one submit call
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.function.name == "submit"
        assert set(json.loads(call.function.arguments)) == {"word"}
    usage = response.usage
    assert usage.prompt_tokens > 50 and 2 <= usage.completion_tokens <= 48
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # without tools (or with tool_choice none) the same text comes back as content
    plain = _client(server_url).chat.completions.create(model="tiny", messages=info["messages"], temperature=0.0,
                                                        max_tokens=24)
    assert plain.choices[0].message.tool_calls is None
    assert plain.choices[0].message.content.startswith("<tool_call>")


def test_length_stop_and_streaming(server_url):
    client = _client(server_url)
    messages = [{"role": "user", "content": "hello"}]
    cut = client.chat.completions.create(model="tiny", messages=messages, max_tokens=1, temperature=1.0)
    assert cut.usage.completion_tokens == 1
    assert cut.choices[0].finish_reason in ("length", "stop")
    stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=4, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 4


def test_bad_requests_are_openai_style_errors(server_url):
    client = _client(server_url)
    with pytest.raises(openai.BadRequestError, match="'messages' must be a non-empty list"):
        client.chat.completions.create(model="tiny", messages=[])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], temperature=7)
    with pytest.raises(openai.BadRequestError, match="context"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 5000}])
    request = urllib.request.Request(server_url + "/chat/completions", data=b"{not json", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 400 and "not valid JSON" in json.load(err.value)["error"]["message"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server_url + "/nowhere", timeout=10)
    assert err.value.code == 404


@pytest.mark.parametrize("tool_mode", ["native", "text"])
def test_openai_agent_plays_batched_episodes_against_the_server(server_url, tool_mode):
    envs = [gym.make(SECRET_ID) for _ in range(4)]
    agent = OpenAIChatAgent("tiny", base_url=server_url, tool_mode=tool_mode, max_tokens=24)
    resets = [env.reset(seed=i) for i, env in enumerate(envs)]
    agent.reset_batch([info for _, info in resets])
    actions = agent.act_batch([obs for obs, _ in resets], [info for _, info in resets])
    outcomes = []
    for k, (env, action) in enumerate(zip(envs, actions)):
        if tool_mode == "native":  # the action is the assistant message with its tool calls
            assert action["role"] == "assistant" and action["tool_calls"][0]["function"]["name"] == "submit"
        else:
            assert isinstance(action, str) and "<tool_call>" in action
        obs, reward, terminated, truncated, info = env.step(action)
        assert terminated and info["tool_calls"][0]["name"] == "submit"
        outcomes.append(info["outcome"])
        usage = agent.slot(k).episode_usage
        assert usage["requests"] == 1 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert agent.usage["requests"] == 4
    assert agent.usage["completion_tokens"] == sum(agent.slot(k).episode_usage["completion_tokens"] for k in range(4))


def test_openai_agent_keeps_the_conversation_for_multi_turn_episodes(server_url):
    env = gym.make(GUESS_ID, max_turns=3)
    obs, info = env.reset(seed=0)
    tools = info["tools"]
    agent = OpenAIChatAgent("tiny", base_url=server_url, max_tokens=24, temperature=1.0, seed=1)
    agent.reset(info)
    sent = []
    real_create = agent.client.chat.completions.create

    def spy(**kwargs):
        sent.append(kwargs)
        return real_create(**kwargs)

    agent.client.chat.completions.create = spy
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
        done = terminated or truncated
    assert len(sent) == info["turns"]
    assert all(kwargs["tools"] == tools for kwargs in sent)
    for i in range(1, len(sent)):
        messages = sent[i]["messages"]
        assert messages[: len(sent[i - 1]["messages"])] == sent[i - 1]["messages"]  # append-only
        answers = {m["tool_call_id"] for m in messages if m["role"] == "tool"}
        asked = {c["id"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or []}
        assert answers == asked  # every native call is answered and every answer has its call


class _FlakyServer(PolicyServer):
    """Answers 503 to the first ``failures`` requests (a server under load), then serves normally."""

    failures = 2

    def complete(self, request):
        if self.failures > 0:
            self.failures -= 1
            raise RequestError("overloaded", status=503)
        return super().complete(request)


def test_openai_agent_retries_with_backoff(sft_dir):
    policy = _FlakyServer(*load_policy(sft_dir, device="cpu"), model_name="tiny", default_max_tokens=24)
    httpd = make_http_server(policy, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        env = gym.make(SECRET_ID)
        obs, info = env.reset(seed=1)
        agent = OpenAIChatAgent("tiny", base_url=url, max_tokens=24, backoff_s=0.01)
        agent.reset(info)
        assert agent.act(obs, info)["tool_calls"]
        assert agent.usage["retries"] == 2 and agent.usage["requests"] == 1
        policy.failures = 5
        agent = OpenAIChatAgent("tiny", base_url=url, max_tokens=24, backoff_s=0.01, max_retries=1)
        agent.reset(info)
        with pytest.raises(openai.InternalServerError):
            agent.act(obs, info)
    finally:
        httpd.shutdown()
        httpd.server_close()
        policy.close()


def test_streaming_with_tools_sends_text_then_the_parsed_calls(server_url):
    env = gym.make(SECRET_ID)
    obs, info = env.reset(seed=3)
    client = _client(server_url)
    whole = client.chat.completions.create(model="tiny", messages=info["messages"], tools=info["tools"],
                                           temperature=0.0, max_tokens=24)
    chunks = list(client.chat.completions.create(model="tiny", messages=info["messages"], tools=info["tools"],
                                                 temperature=0.0, max_tokens=24, stream=True))
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.function.name, tc.function.arguments) for tc in calls] == [
        (tc.function.name, tc.function.arguments) for tc in whole.choices[0].message.tool_calls]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not any("<tool_call>" in (c.choices[0].delta.content or "") for c in chunks)


def test_streaming_honours_stop_strings_across_tokens(server_url):
    env = gym.make(SECRET_ID)
    obs, info = env.reset(seed=3)
    client = _client(server_url)
    whole = client.chat.completions.create(model="tiny", messages=info["messages"], temperature=0.0, max_tokens=24)
    text = whole.choices[0].message.content
    stop = '"arguments"'
    assert stop in text  # the SFT'd model writes a <tool_call> block as text when it is given no tools
    chunks = list(client.chat.completions.create(model="tiny", messages=info["messages"], temperature=0.0,
                                                 max_tokens=24, stop=[stop], stream=True))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(deltas) >= 2 and "".join(deltas) == text[:text.index(stop)]
    assert chunks[-1].choices[0].finish_reason == "stop"
