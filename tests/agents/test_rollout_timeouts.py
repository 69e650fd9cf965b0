"""The trainer's rollout with a policy that hangs: the run returns, the hung batch's episodes are agent errors."""

from __future__ import annotations

import threading

import pytest

from execgym.agents.hf_policy import HFPolicyAgent, load_policy
from execgym.agents.train.grpo import rollout
from tests.agents.toy import SecretWordEnv

pytestmark = pytest.mark.timeout(900)


class HangsOnTask(HFPolicyAgent):
    """The real tiny policy, except that a batch holding the doomed task never comes back (until released)."""

    doomed = ""
    release = threading.Event()

    def act_batch(self, observations, infos, slots=None):
        if any(info.get("task_id") == self.doomed for info in infos):
            self.release.wait(120)
        return super().act_batch(observations, infos, slots)


def _hangs_on(tiny_dir, doomed: int, act_timeout_s: float):
    """The rollout of seeds 0..3 by the hanging policy in two envs, the ``doomed``-th task hanging it, and the
    tasks; the hung call is released afterwards (so its thread ends)."""
    model, tokenizer = load_policy(tiny_dir, device="cpu")
    agent = HangsOnTask(model, tokenizer, max_new_tokens=8, temperature=1.0, seed=0)
    envs = [SecretWordEnv(dataset="generated") for _ in range(2)]
    tasks = [envs[0].reset(seed=s)[1]["task_id"] for s in range(4)]
    assert len(set(tasks)) == 4
    HangsOnTask.doomed = tasks[doomed]
    HangsOnTask.release.clear()
    try:
        return rollout(envs, agent, [0, 1, 2, 3], act_timeout_s=act_timeout_s), tasks
    finally:
        HangsOnTask.release.set()


def test_grpo_rollout_returns_finished_episodes_and_the_hung_batch_as_agent_timeouts(tiny_dir):
    episodes, tasks = _hangs_on(tiny_dir, 2, act_timeout_s=30.0)
    assert [e.task_id for e in episodes] == tasks
    assert [e.agent_error for e in episodes[:2]] == [None, None]
    assert all(e.turns >= 1 and sum(e.trace.token_mask) > 0 for e in episodes[:2])
    for e in episodes[2:]:
        assert e.agent_error == "AgentTimeout: agent.act_batch did not return within 30 s"
        assert e.outcome == 0.0 and e.turns == 0


class NaNReward:
    """A foreign reward wrapper (not an execgym scheme) whose every reward is NaN."""

    def __new__(cls, env):
        import gymnasium as gym

        class _Wrapper(gym.RewardWrapper):
            def reward(self, reward):
                return float("nan")

        return _Wrapper(env)


def test_grpo_rollout_flags_a_non_finite_reward_from_a_foreign_wrapper_and_the_trainer_drops_it(tiny_dir):
    from execgym.agents.train.grpo import group_advantages

    model, tokenizer = load_policy(tiny_dir, device="cpu")
    agent = HFPolicyAgent(model, tokenizer, max_new_tokens=8, temperature=1.0, seed=0)
    envs = [NaNReward(SecretWordEnv(dataset="generated")), SecretWordEnv(dataset="generated")]
    episodes = rollout(envs, agent, [0, 1], act_timeout_s=None)
    assert episodes[0].reward_error is not None and "non-finite reward nan" in episodes[0].reward_error
    assert episodes[0].error == episodes[0].reward_error
    assert episodes[1].reward_error is None
    assert all(e.total_reward == e.total_reward for e in episodes)  # no NaN return reaches the advantages
    keep = [e.error is None for e in episodes]
    assert keep == [False, True]
    advantages = group_advantages([e.total_reward for e in episodes], 2, keep=keep)
    assert all(a == a for a in advantages)


def test_grpo_rollout_never_generates_beside_a_call_that_timed_out(tiny_dir):
    """After a hung batch the policy may still be generating: later batches are agent errors, not played."""
    episodes, _ = _hangs_on(tiny_dir, 0, act_timeout_s=10.0)
    assert all(e.agent_error and e.agent_error.startswith("AgentTimeout") for e in episodes)
    assert "still busy" in episodes[2].agent_error and episodes[2].turns == 0 and episodes[3].turns == 0
