"""Token usage reported by an agent reaches EpisodeResult and the run summary."""

from __future__ import annotations

from types import SimpleNamespace

from execgym.agents import BatchedAgent
from execgym.rollout.episode import run_episode
from execgym.rollout.runner import summarise
from tests.core.toy_env import GuessEnv


class CountingAgent(BatchedAgent):
    name = "counting"

    def reset(self, info):
        self.episode_usage = {"prompt_tokens": 0, "completion_tokens": 0}

    def act(self, observation, info):
        self.episode_usage["prompt_tokens"] += 10
        self.episode_usage["completion_tokens"] += 3
        return {"name": "hint", "arguments": {"position": 0}}


def test_tokens_are_summed_per_episode_and_averaged_per_run():
    env = GuessEnv(max_turns=4)
    results = [run_episode(env, CountingAgent(), seed=s) for s in range(3)]
    assert [r.tokens for r in results] == [52, 52, 52]
    assert summarise("toy", "counting", results).mean_tokens == 52.0


class StreamingAgent(CountingAgent):
    """Exposes a token stream with log-probs, as a local policy's ChatStream does."""

    def reset(self, info):
        super().reset(info)
        self.stream = SimpleNamespace(ids=[5, 6, 7], mask=[0, 1, 1], logprobs=[0.0, -0.5, -1.25])


def test_the_trace_keeps_actions_rewards_and_the_agents_token_stream():
    env = GuessEnv(max_turns=2)
    result = run_episode(env, StreamingAgent(), seed=0, trace=True)
    trace = result.trace
    assert trace.actions == [{"name": "hint", "arguments": {"position": 0}}] * 2
    assert len(trace.rewards) == 2 and sum(trace.rewards) == result.total_reward
    assert (trace.token_ids, trace.token_mask, trace.logprobs) == ([5, 6, 7], [0, 1, 1], [0.0, -0.5, -1.25])
    assert run_episode(env, StreamingAgent(), seed=0).trace is None  # kept only when asked for
