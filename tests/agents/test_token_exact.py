"""Token-exact multi-turn trajectories: ``execgym serve`` returns ids and log-probs in vLLM's fields, takes the
previous turn's ids back, and the recorded ids reproduce the recorded log-probs through the model."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import openai
import pytest

from execgym.agents.chat import render_chat
from execgym.agents.hf_policy import load_policy
from execgym.agents.openai_chat import OpenAIChatAgent
from execgym.agents.serve import PolicyServer, RequestError, make_http_server
from execgym.core.trajectory import RecordTrajectory, read_trajectories, record_agent_turn
from tests.agents.conftest import GUESS_ID

pytestmark = pytest.mark.timeout(600)


class _Served:
    def __init__(self, policy: PolicyServer) -> None:
        self.policy = policy
        self.httpd = make_http_server(policy, "127.0.0.1", 0)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.policy.close()


@pytest.fixture(scope="module")
def served(tiny_dir: Path) -> Iterator[_Served]:
    """``execgym serve``'s server around the from-scratch tiny model (random weights: any reply, many turns)."""
    live = _Served(PolicyServer(*load_policy(tiny_dir, device="cpu"), model_name="tiny", default_max_tokens=12))
    yield live
    live.close()


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=60)


def _play(env: gym.Env[Any, Any], agent: OpenAIChatAgent, seed: int) -> None:
    obs, info = env.reset(seed=seed)
    agent.reset(info)
    done = False
    while not done:
        action = agent.act(obs, info)
        record_agent_turn(env, agent)  # the rollout's hand-over: this action's tokens go with its step
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated


def test_recorded_ids_of_a_multi_turn_episode_reproduce_the_recorded_logprobs(served, tmp_path):
    import torch

    path = tmp_path / "episodes.jsonl"
    env = RecordTrajectory(gym.make(GUESS_ID, max_turns=3), path)
    agent = OpenAIChatAgent("tiny", base_url=served.url, temperature=1.0, max_tokens=12)
    _play(env, agent, seed=0)
    [record] = read_trajectories(path)
    turns = [step["tokens"] for step in record["steps"]]
    assert len(turns) == 3 and [t["completion_ids"] for t in turns] == [t.completion_ids for t in agent.turns]

    tokenizer, model = served.policy.tokenizer, served.policy.model
    first = render_chat(tokenizer, env.unwrapped.messages[:2], record["tools"], add_generation_prompt=True)
    assert turns[0]["prompt_ids"] == tokenizer.encode(first, add_special_tokens=False)
    for before, turn in itertools.pairwise(turns):  # no earlier turn re-tokenised: each prompt extends the last
        history = before["prompt_ids"] + before["completion_ids"]
        assert turn["prompt_ids"][:len(history)] == history and len(turn["prompt_ids"]) > len(history)
        assert turn["loss_mask"][:len(history)] == before["loss_mask"]
    for turn in turns:  # loss on the policy's tokens only: its completions, this turn's and the earlier ones
        assert len(turn["loss_mask"]) == len(turn["prompt_ids"]) + len(turn["completion_ids"])
        assert turn["loss_mask"][len(turn["prompt_ids"]):] == [1] * len(turn["completion_ids"])
        assert len(turn["logprobs"]) == len(turn["completion_ids"])
    last = turns[-1]
    assert sum(last["loss_mask"]) == sum(len(t["completion_ids"]) for t in turns)
    ids = last["prompt_ids"] + last["completion_ids"]
    assert agent.stream.ids == ids and agent.stream.mask == last["loss_mask"]

    with torch.no_grad():  # the whole episode in one forward pass, as a trainer scores it
        logp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    for turn in turns:
        start = len(turn["prompt_ids"])
        positions = torch.arange(start - 1, start - 1 + len(turn["completion_ids"]))
        scored = logp[positions, torch.tensor(turn["completion_ids"])]
        assert torch.allclose(scored, torch.tensor(turn["logprobs"]), atol=1e-4), (scored, turn["logprobs"])
    assert agent.stream.logprobs is not None
    generated = [lp for lp, m in zip(agent.stream.logprobs, agent.stream.mask) if m]
    assert generated == [lp for t in turns for lp in t["logprobs"]]


def test_responses_carry_vllms_token_fields_streamed_or_not(served):
    client = _client(served.url)
    messages = [{"role": "user", "content": "hello"}]
    extra = {"return_token_ids": True}
    whole = client.chat.completions.create(model="tiny", messages=messages, temperature=0.0, max_tokens=6,
                                           logprobs=True, top_logprobs=3, extra_body=extra)
    prompt, choice = whole.prompt_token_ids, whole.choices[0]
    assert prompt == served.policy.prepare({"messages": messages}).prompt
    assert len(choice.token_ids) == whole.usage.completion_tokens == len(choice.logprobs.content)
    for entry in choice.logprobs.content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.logprob - 1e-6  # greedy: the likeliest token
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, temperature=0.0, max_tokens=6,
                                                 logprobs=True, stream=True, extra_body=extra))
    assert chunks[0].prompt_token_ids == prompt
    streamed = [t for c in chunks for ch in c.choices for t in (getattr(ch, "token_ids", None) or [])]
    assert streamed == choice.token_ids
    plain = client.chat.completions.create(model="tiny", messages=messages, temperature=0.0, max_tokens=6)
    assert plain.choices[0].logprobs is None and getattr(plain, "prompt_token_ids", None) is None


def test_a_prefix_covers_tool_calls_and_tool_results(served):
    """The env's tool messages after a native tool call are tokenised alone, after the ids the policy sampled."""
    client = _client(served.url)
    tools = [{"type": "function", "function": {"name": "hint", "parameters": {"type": "object", "properties": {}}}}]
    messages: list[dict[str, Any]] = [{"role": "system", "content": "guess"}, {"role": "user", "content": "go"}]
    first = client.chat.completions.create(model="tiny", messages=messages, tools=tools, max_tokens=5,
                                           extra_body={"return_token_ids": True})
    prefix = first.prompt_token_ids + first.choices[0].token_ids
    call = {"id": "c1", "type": "function", "function": {"name": "hint", "arguments": "{}"}}
    messages += [{"role": "assistant", "content": None, "tool_calls": [call]},
                 {"role": "tool", "tool_call_id": "c1", "content": "the word starts with a"}]
    second = client.chat.completions.create(model="tiny", messages=messages, tools=tools, max_tokens=5,
                                            extra_body={"return_token_ids": True, "prefix_token_ids": prefix})
    prompt = second.prompt_token_ids
    assert prompt[:len(prefix)] == prefix
    tail = served.policy.tokenizer.decode(prompt[len(prefix):], skip_special_tokens=False)
    assert "<tool_response>\nthe word starts with a\n</tool_response>" in tail
    assert tail.endswith("<|im_start|>assistant\n") and "<tool_call>" not in tail


def test_bad_prefixes_are_refused(served):
    policy = served.policy
    user = [{"role": "user", "content": "hi"}]
    reply = [*user, {"role": "assistant", "content": "x"}, {"role": "user", "content": "again"}]
    good = [*policy.prepare({"messages": user}).prompt, policy.stop_ids[0]]
    assert policy.prepare({"messages": reply, "prefix_token_ids": good}).prompt[:len(good)] == good
    for messages, prefix, words in [(user, good, "needs the assistant message"),
                                    (reply, [len(policy.tokenizer) + 5], r"ids in \[0,"),
                                    (reply, "1 2 3", "non-empty list of token ids"),
                                    (reply, good + good, "turns")]:
        with pytest.raises(RequestError, match=words) as err:
            policy.prepare({"messages": messages, "prefix_token_ids": prefix})
        assert err.value.status == 400 and err.value.param == "prefix_token_ids"
    with pytest.raises(RequestError, match="needs 'logprobs'"):
        policy.prepare({"messages": user, "top_logprobs": 2})


class _NoTokenServer(PolicyServer):
    """Refuses vLLM's fields with a 400, as OpenAI's API refuses arguments it does not know."""

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        if "return_token_ids" in request:
            raise RequestError("Unrecognized request argument supplied: return_token_ids")
        return super().complete(request)


def test_the_agent_stops_asking_a_server_that_refuses_the_token_fields(tiny_dir):
    live = _Served(_NoTokenServer(*load_policy(tiny_dir, device="cpu"), model_name="tiny", default_max_tokens=4))
    try:
        env = gym.make(GUESS_ID, max_turns=2)
        agent = OpenAIChatAgent("tiny", base_url=live.url, max_tokens=4)
        _play(env, agent, seed=1)
        assert agent.last_turn is None and agent.turns == [] and agent.stream is None
        assert agent.usage["requests"] == 2  # the first turn's refused try is not a request the episode made
        required = OpenAIChatAgent("tiny", base_url=live.url, max_tokens=4, token_ids=True)
        obs, info = env.reset(seed=1)
        required.reset(info)
        with pytest.raises(openai.BadRequestError, match="return_token_ids"):
            required.act(obs, info)
    finally:
        live.close()


def test_a_local_policy_keeps_the_same_turns(tiny_dir):
    """HFPolicyAgent's turns have the same shape: each prompt extends the last, log-probs score through the model."""
    import torch

    from execgym.agents.hf_policy import HFPolicyAgent

    model, tokenizer = load_policy(tiny_dir, device="cpu")
    agent = HFPolicyAgent(model, tokenizer, max_new_tokens=8, temperature=1.0, seed=0, logprobs=True)
    env = gym.make(GUESS_ID, max_turns=3)
    obs, info = env.reset(seed=2)
    agent.reset(info)
    turns, done = [], False
    while not done:
        action = agent.act(obs, info)
        turns.append(agent.last_turn)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    assert len(turns) == 3
    for before, turn in itertools.pairwise(turns):
        history = before.prompt_ids + before.completion_ids
        assert turn.prompt_ids[:len(history)] == history and turn.loss_mask[:len(history)] == before.loss_mask
    last = turns[-1]
    ids = last.prompt_ids + last.completion_ids
    assert agent.stream.ids[:len(ids)] == ids and last.generated() == sum(len(t.completion_ids) for t in turns)
    with torch.no_grad():
        logp = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    for turn in turns:
        start = len(turn.prompt_ids)
        scored = logp[torch.arange(start - 1, start - 1 + len(turn.completion_ids)), torch.tensor(turn.completion_ids)]
        assert torch.allclose(scored, torch.tensor(turn.logprobs), atol=1e-4)
