"""Supervised warm start: fine-tune a policy on demonstrations (the oracle's, by default), loss on its own turns.

A demonstration is played in the env with its actions written as the text a model would reply with
(:func:`~execgym.agents.chat.action_to_text`), and recorded as a :class:`~execgym.agents.chat.ChatStream`:
the same template, the same token stream and the same mask the RL trainer uses, so the policy learns
exactly the layout it will act in. Cross-entropy goes on the assistant tokens only (the reply and its
end-of-turn token); the prompt and every env observation are masked.

Example:
    >>> from execgym.agents.train.sft import SFTArgs, train_sft
    >>> summary = train_sft(SFTArgs(env_id="execgym/TextToSQL-v0", dataset="generated:easy",
    ...                             model="models/tiny", out="runs/sft"))                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from execgym.agents.chat import ChatStream, action_to_text, stop_token_ids
from execgym.agents.train.grpo import (
    RunArgs,
    _save,
    evaluate,
    make_env,
    pad_streams,
    start_training,
)
from execgym.core import report as R
from execgym.rollout.episode import is_timeout, run_episode

__all__ = ["Demonstration", "Demonstrations", "SFTArgs", "collect_demonstrations", "sft_loss", "train_sft"]


@dataclass
class SFTArgs(RunArgs):
    """Hyperparameters of :func:`train_sft` (``execgym train --sft``)."""

    out: str = "runs/sft"
    episodes: int = 256
    """demonstrations (seeds seed .. seed + episodes - 1); only successful ones are kept"""
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 10


class Demonstrations(list):  # type: ignore[type-arg]
    """The kept demonstrations, and in ``dropped`` how many episodes were left out and why
    (``infra_error``, ``agent_error``, ``unsuccessful``)."""

    def __init__(self, items: Sequence[Demonstration] = (), dropped: dict[str, int] | None = None) -> None:
        super().__init__(items)
        self.dropped: dict[str, int] = dict(dropped or {R.INFRA_ERROR: 0, R.AGENT_ERROR: 0, "unsuccessful": 0})


@dataclass
class Demonstration:
    """One demonstrated episode as the policy's token stream (mask 1 on the demonstrated replies)."""

    seed: int
    task_id: str
    ids: list[int]
    mask: list[int]
    outcome: float


class _AsReplyText:
    """A demonstrator whose every action is written as the reply text a model would give, recorded in a
    :class:`~execgym.agents.chat.ChatStream` (``stream``) exactly as the policy will read and write it."""

    def __init__(self, agent: Any, tokenizer: Any) -> None:
        self.agent, self.tokenizer = agent, tokenizer
        self.stop = stop_token_ids(tokenizer)[0]
        self.stream: ChatStream | None = None

    def reset(self, info: dict[str, Any]) -> None:
        self.stream = ChatStream(self.tokenizer, info[R.MESSAGES], info.get(R.TOOLS))
        self.replied = False
        self.agent.reset(info)

    def act(self, observation: str, info: dict[str, Any]) -> str:
        assert self.stream is not None
        if self.replied:  # what the env answered to the last reply, as the policy will see it
            self.stream.add_messages([m for m in info[R.NEW_MESSAGES] if m.get("role") != "assistant"])
        text = action_to_text(self.agent.act(observation, info))
        self.stream.add_generated([*self.tokenizer.encode(text, add_special_tokens=False), self.stop])
        self.replied = True
        return text


def collect_demonstrations(env: gym.Env[Any, Any], tokenizer: Any, seeds: Sequence[int], *, agent: Any = None,
                           only_successful: bool = True, act_timeout_s: float | None = None) -> Demonstrations:
    """Play ``agent`` (default: the env's oracle) on ``seeds`` and record each episode as a token stream.

    Every action is written as reply text and stepped as such, so the env's answers are the ones the
    policy will see for those replies. Episodes are played by :func:`~execgym.rollout.run_episode`, so an
    episode that ends on an infra error (the machinery failed) or an agent error (the demonstrator raised,
    or took longer than ``act_timeout_s``; None: no limit) is never kept, whatever ``only_successful`` says;
    the result's ``dropped`` counts them, and the unsuccessful ones left out. After a timeout the remaining
    seeds are not played (the hung call may still hold the demonstrator) and count as agent errors.
    """
    from execgym.agents.oracle import OracleAgent

    demonstrator = _AsReplyText(agent if agent is not None else OracleAgent(env), tokenizer)
    demos = Demonstrations()
    for n, seed in enumerate(seeds):
        result = run_episode(env, demonstrator, seed=int(seed), act_timeout_s=act_timeout_s, trace=True)
        if is_timeout(result):  # its call may still be running: the rest is not played beside it
            demos.dropped[R.AGENT_ERROR] += len(seeds) - n
            break
        if result.infra_error:
            demos.dropped[R.INFRA_ERROR] += 1
        elif result.agent_error:
            demos.dropped[R.AGENT_ERROR] += 1
        elif result.reward_error:  # a reward that is not a number says nothing about the demonstration
            demos.dropped["reward_error"] += 1
        elif result.outcome >= 1.0 or not only_successful:
            trace = result.trace
            assert trace is not None
            demos.append(Demonstration(int(seed), result.task_id, trace.token_ids, trace.token_mask, result.outcome))
        else:
            demos.dropped["unsuccessful"] += 1
    return demos


def sft_loss(model: Any, ids: Any, attention: Any, loss_mask: Any) -> Any:
    """Mean cross-entropy of the masked tokens (the demonstrated replies) given everything before them."""
    import torch

    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    targets = ids[:, 1:]
    mask = loss_mask[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                            reduction="none").view_as(mask)
    return (nll * mask).sum() / mask.sum().clamp(min=1.0)


def train_sft(
    args: SFTArgs,
    *,
    demonstrations: Sequence[Demonstration] | None = None,
    wrap_env: Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune on demonstrations (default: the oracle's on ``args.episodes`` seeds), evaluate greedily on
    held-out seeds before and after, save ``out/final``; return the evaluations."""
    import torch

    from execgym.agents.hf_policy import HFPolicyAgent

    model, tokenizer, out, log, device, autocast = start_training(args, model, tokenizer, on_log)
    env = make_env(args, wrap_env)
    t0 = time.perf_counter()
    if demonstrations is None:
        demonstrations = collect_demonstrations(env, tokenizer, range(args.seed, args.seed + args.episodes))
    dropped = dict(getattr(demonstrations, "dropped", {}))
    if not demonstrations:
        env.close()
        why = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in dropped.items() if n) or "none collected"
        raise RuntimeError(f"no successful demonstration to learn from (dropped: {why})")
    log({"phase": "data", "demonstrations": len(demonstrations),
         "dropped": dropped, "dropped_total": sum(dropped.values()),
         "tokens": int(sum(len(d.ids) for d in demonstrations)),
         "trained_tokens": int(sum(sum(d.mask) for d in demonstrations)), "seconds": time.perf_counter() - t0})

    agent = HFPolicyAgent(model, tokenizer, max_new_tokens=args.max_new_tokens, temperature=0.0)
    eval_envs = [env] + [make_env(args, wrap_env) for _ in range(min(args.eval_episodes, 32) - 1)]
    eval_seeds = [args.eval_seed + i for i in range(args.eval_episodes)]
    model.eval()
    with autocast:
        before = {"phase": "eval", "step": 0, **evaluate(eval_envs, agent, eval_seeds)}
    log(before)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = (len(demonstrations) + args.batch_size - 1) // args.batch_size
    total = steps_per_epoch * args.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, args.warmup_steps)) * max(0.0, 1.0 - s / max(1, total)))
    generator = torch.Generator().manual_seed(args.seed)
    pad_id = int(tokenizer.pad_token_id)
    step = 0
    model.train()
    for epoch in range(args.epochs):
        order = torch.randperm(len(demonstrations), generator=generator).tolist()
        losses = []
        for j in range(0, len(order), args.batch_size):
            batch = [demonstrations[i] for i in order[j:j + args.batch_size]]
            ids, attention, loss_mask = pad_streams([d.ids for d in batch], [d.mask for d in batch], pad_id, device)
            with autocast:
                loss = sft_loss(model, ids, attention, loss_mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            step += 1
        log({"phase": "train", "epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)),
             "lr": schedule.get_last_lr()[0], "seconds": time.perf_counter() - t0})
    model.eval()
    with autocast:
        after = {"phase": "eval", "step": step, **evaluate(eval_envs, agent, eval_seeds)}
    log(after)
    for e in eval_envs:
        e.close()
    _save(model, tokenizer, out / "final", merge=True)
    summary: dict[str, Any] = {"phase": "summary", "optimizer_steps": step, "trained": step > 0,
                               "demonstrations": len(demonstrations), "dropped": dropped}
    if step == 0:
        summary["note"] = "no optimizer step ran (epochs = 0); final/ is the starting model, unchanged"
    log(summary)
    _plot_sft(out / "log.jsonl", out / "curves.png")
    return {"before": before, "after": after, "final": str(out / "final"), "log": str(out / "log.jsonl"),
            "optimizer_steps": step, "trained": step > 0, "dropped": dropped}


def _plot_sft(log_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from execgym.agents.train.grpo import EVAL_STYLE, TRAIN_STYLE

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train_r = [r for r in records if r.get("phase") == "train"]
    eval_r = [r for r in records if r.get("phase") == "eval"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    if train_r:
        axes[0].plot([r["epoch"] for r in train_r], [r["loss"] for r in train_r], label="train loss", **TRAIN_STYLE)
        axes[0].legend(fontsize="small")
    else:
        axes[0].text(0.5, 0.5, "no optimizer step ran\n(epochs = 0)", ha="center", va="center",
                     transform=axes[0].transAxes, color="dimgray")
    axes[0].set_title("SFT loss (assistant tokens)")
    axes[0].set_xlabel("epoch")
    names = ["before SFT" if r["step"] == 0 else f"after {r['step']} steps" for r in eval_r]
    rates = [r["success_rate"] if r.get("success_rate") is not None else 0.0 for r in eval_r]
    axes[1].bar(names, rates, color=[EVAL_STYLE["color"] if r["step"] else "tab:gray" for r in eval_r])
    axes[1].set_ylim(0, 1)
    axes[1].set_title("eval: greedy success, held-out seeds")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
