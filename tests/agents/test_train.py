"""The trainers: loss masking (proved on gradients), advantages, SFT and a short RL run that learns."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from execgym.agents.hf_policy import HFPolicyAgent, load_policy
from execgym.agents.train.grpo import (
    GRPOArgs,
    evaluate,
    group_advantages,
    make_env,
    pad_streams,
    policy_loss,
    rollout,
    token_logprobs,
    train,
)
from execgym.agents.train.sft import SFTArgs, collect_demonstrations, sft_loss, train_sft
from tests.agents.conftest import GUESS_ID, SECRET_ID
from tests.agents.toy import SECRET
from tests.core.toy_env import GuessEnv

# a tiny model trains in the session fixtures: generous on a loaded 2-core machine
pytestmark = pytest.mark.timeout(900)


def _multi_turn_episode(tokenizer):
    """A GuessEnv episode with two tool results between three replies, as the policy's token stream."""
    replies = ['<tool_call>\n{"name": "hint", "arguments": {"position": 0}}\n</tool_call>',
               '<tool_call>\n{"name": "hint", "arguments": {"position": 1}}\n</tool_call>',
               '<tool_call>\n{"name": "submit", "arguments": {"word": "ap"}}\n</tool_call>']
    agent = _Scripted(replies)
    (demo,) = collect_demonstrations(GuessEnv(), tokenizer, [0], agent=agent, only_successful=False)
    return demo


class _Scripted:
    def __init__(self, replies):
        self.replies = list(replies)

    def reset(self, info):
        self.queue = list(self.replies)

    def act(self, observation, info):
        return self.queue.pop(0)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_policy(tiny_dir, device="cpu")


def _logit_grads(model, ids, attention, loss_fn):
    """The loss's gradient with respect to the model's logits (captured by a hook) and to its input embeddings."""
    captured = {}

    def keep(module, args, output):
        output.register_hook(lambda g: captured.__setitem__("logits", g))

    handle = model.get_output_embeddings().register_forward_hook(keep)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
    try:
        loss = loss_fn(embeds)
        model.zero_grad()
        loss.backward()
    finally:
        handle.remove()
    return captured["logits"][0], embeds.grad[0]


def test_observation_tokens_carry_no_loss(tiny):
    model, tokenizer = tiny
    demo = _multi_turn_episode(tokenizer)
    mask = torch.tensor(demo.mask)
    policy_positions = mask.nonzero().squeeze(1)
    # the stream interleaves: prompt, reply, tool result, reply, tool result, reply (+ nothing after)
    assert 0 < int(mask.sum()) < len(mask) and int(mask[0]) == 0
    assert int((mask[1:] != mask[:-1]).sum()) == 5
    ids, attention, loss_mask = pad_streams([demo.ids], [demo.mask], tokenizer.pad_token_id, "cpu")
    # append an observation after the last reply, as the env's final tool result would be
    tail = tokenizer.encode("<tool_response>\nsubmitted\n</tool_response>", add_special_tokens=False)
    ids = torch.cat([ids, torch.tensor([tail])], dim=1)
    attention = torch.cat([attention, torch.ones(1, len(tail), dtype=torch.long)], dim=1)
    loss_mask = torch.cat([loss_mask, torch.zeros(1, len(tail))], dim=1)

    def rl_loss(mask_row):
        def fn(embeds):
            logp = token_logprobs(model, ids, attention, inputs_embeds=embeds)
            loss, _ = policy_loss(logp, logp.detach(), torch.tensor([1.5]), mask_row, clip_eps=0.2)
            return loss
        return fn

    def supervised_loss(embeds):
        logits = model(inputs_embeds=embeds, attention_mask=attention).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="none")
        return (nll * loss_mask[0, 1:]).sum() / loss_mask[0, 1:].sum()

    for loss_fn in (rl_loss(loss_mask), supervised_loss):
        logit_grad, embed_grad = _logit_grads(model, ids, attention, loss_fn)
        predicts_policy = torch.zeros(ids.shape[1], dtype=torch.bool)
        predicts_policy[policy_positions - 1] = True  # logits at t-1 predict token t
        # every logit that predicts an observation (or prompt) token has exactly zero gradient ...
        assert torch.count_nonzero(logit_grad[~predicts_policy]) == 0
        # ... and every logit that predicts a policy token has some
        assert bool((logit_grad[predicts_policy].abs().sum(dim=-1) > 0).all())
        # the observation after the last reply influences no loss term: zero gradient on its embeddings
        last = int(policy_positions.max())
        assert torch.count_nonzero(embed_grad[last + 1:]) == 0
        assert torch.count_nonzero(embed_grad[: last]) > 0  # earlier observations are context, as they should be
    # sft_loss (the trainer's own) agrees with the hand-written masked cross-entropy above
    with torch.no_grad():
        assert torch.allclose(sft_loss(model, ids, attention, loss_mask),
                              supervised_loss(model.get_input_embeddings()(ids)))
    # control: without the mask, observation logits do get gradient (the test can fail)
    logit_grad, embed_grad = _logit_grads(model, ids, attention, rl_loss(torch.ones_like(loss_mask)))
    assert torch.count_nonzero(logit_grad[~predicts_policy][:-1]) > 0 and torch.count_nonzero(embed_grad[last + 1:])


def test_policy_loss_clips_and_measures_kl():
    logp = torch.log(torch.tensor([[0.5, 0.9, 0.2]]))
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    loss, stats = policy_loss(logp, old, torch.tensor([1.0]), mask, clip_eps=0.2, ref_logp=old, kl_coef=0.1)
    ratios = torch.tensor([1.8, 0.4])
    pg = -torch.minimum(ratios, ratios.clamp(0.8, 1.2)).mean()
    kl = (torch.exp(old[0, 1:] - logp[0, 1:]) - (old[0, 1:] - logp[0, 1:]) - 1).mean()
    assert stats["clip_fraction"] == 1.0 and stats["policy_tokens"] == 2
    assert loss.item() == pytest.approx((pg + 0.1 * kl).item(), rel=1e-5)
    assert stats["kl"] == pytest.approx(kl.item(), rel=1e-5)


def test_group_advantages():
    adv = group_advantages([1, 0, 0, 0, 1, 1, 1, 1], 4)
    assert adv[:4].sum() == pytest.approx(0) and adv[0] > 0 > adv[1]
    assert np.all(adv[4:] == 0)  # a group where every episode scored alike teaches nothing
    assert group_advantages([2.0, 0.0], 2, scale=False).tolist() == [1.0, -1.0]


def test_rollout_groups_share_a_task_and_record_streams(tiny):
    model, tokenizer = tiny
    agent = HFPolicyAgent(model, tokenizer, max_new_tokens=6, temperature=1.0, seed=0)
    envs = [gym.make(GUESS_ID, max_turns=2) for _ in range(4)]
    episodes = rollout(envs, agent, [7, 7, 9, 9, 11, 11])
    assert [e.seed for e in episodes] == [7, 7, 9, 9, 11, 11]
    assert episodes[0].task_id == episodes[1].task_id and episodes[2].task_id == episodes[3].task_id
    for e in episodes:
        ids, mask = e.trace.token_ids, e.trace.token_mask
        assert len(ids) == len(mask) and 0 < sum(mask) <= 12 and e.turns == 2
        assert len(e.trace.actions) == len(e.trace.rewards) == 2  # the per-step record a trainer reads


def test_make_env_applies_reward_wrappers_by_spec():
    args = GRPOArgs(env_id=SECRET_ID, dataset="generated", wrappers=['GatedReward:{"components": {"format": 0.5}}'])
    env = make_env(args)
    assert type(env).__name__ == "GatedReward"
    obs, info = env.reset(seed=0)
    *_, reward, terminated, truncated, info = env.step({"name": "submit", "arguments": {"word": SECRET}})
    assert reward == pytest.approx(1.5) and info["reward_breakdown"] == {"outcome": 1.0, "gated": 0.5}
    assert type(make_env(args, wrap_env=lambda e: gym.wrappers.RecordEpisodeStatistics(e))).__name__ == \
        "RecordEpisodeStatistics"
    with pytest.raises(ValueError, match="unknown reward wrapper 'Nope'"):
        make_env(GRPOArgs(env_id=SECRET_ID, dataset="generated", wrappers=["Nope"]))


def test_sft_on_oracle_trajectories_learns_the_tool_call_format(sft_dir, tmp_path):
    records = [json.loads(line) for line in (sft_dir.parent / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["phase"] == "train"]
    assert losses[-1] < losses[0] / 10
    evals = [r for r in records if r["phase"] == "eval"]
    # from random weights (no valid call) to a policy whose every reply is a well-formed submit
    assert evals[0]["success_rate"] == 0.0 and evals[0]["mean_turns"] == 2
    assert evals[-1]["mean_turns"] == 1.0
    assert (sft_dir.parent / "curves.png").stat().st_size > 1000


def test_grpo_raises_the_success_rate(sft_dir, tmp_path):
    """From the format-only SFT policy (a uniform guess among four words: success near 1/4), a short GRPO run
    on the sparse outcome raises the sampled policy's success rate on held-out seeds: the secret is in no
    prompt and no demonstration, only in the reward."""
    args = GRPOArgs(env_id=SECRET_ID, dataset="generated", model=str(sft_dir), out=str(tmp_path / "grpo"),
                    max_turns=2, iterations=12, tasks_per_iteration=4, group_size=8, max_new_tokens=24,
                    learning_rate=1e-3, minibatch_size=32, eval_every=12, eval_episodes=64, eval_temperature=1.0,
                    device="cpu", seed=0)
    result = train(args)
    records = [json.loads(line) for line in (tmp_path / "grpo" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["phase"] == "eval"]
    assert [r["iteration"] for r in evals] == [0, 12]
    before, after = evals[0]["success_rate"], evals[-1]["success_rate"]
    assert after >= before + 0.25, (before, after)
    assert result["success_rate"] == after
    assert (tmp_path / "grpo" / "curves.png").stat().st_size > 1000
    # the final model loads like any other and plays as well as the log says
    model, tokenizer = load_policy(result["final"], device="cpu")
    agent = HFPolicyAgent(model, tokenizer, max_new_tokens=24)
    envs = [gym.make(SECRET_ID, dataset="generated", max_turns=2) for _ in range(8)]
    greedy = evaluate(envs, agent, range(args.eval_seed, args.eval_seed + 16))
    assert greedy["success_rate"] >= after - 0.25


def test_train_sft_collects_oracle_demonstrations_itself(tiny_dir, tmp_path):
    args = SFTArgs(env_id=GUESS_ID, dataset="bundled", model=str(tiny_dir), out=str(tmp_path / "sft"), episodes=6,
                   epochs=1, batch_size=4, eval_episodes=2, max_new_tokens=4, max_turns=2, device="cpu")
    result = train_sft(args)
    data = json.loads((tmp_path / "sft" / "log.jsonl").read_text().splitlines()[0])
    assert data["demonstrations"] == 6 and data["trained_tokens"] > 6
    assert (tmp_path / "sft" / "final" / "config.json").exists() and result["after"]["mean_turns"] == 2
