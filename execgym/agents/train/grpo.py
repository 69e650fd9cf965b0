"""GRPO-style RL for execgym agents, in one file (in the spirit of CleanRL).

Read it top to bottom:

1. ``GRPOArgs``: every hyperparameter, in one dataclass (the fields SFT shares are ``RunArgs``).
2. ``make_env``: the env, with reward wrappers named as everywhere (``GatedReward:{...}``; or your own callable).
3. ``rollout``: many episodes in lockstep; a group of ``group_size`` episodes per task (same seed, same task),
   each summed up by the rollouts' one :class:`~execgym.rollout.EpisodeAccumulator`. The policy's
   :class:`~execgym.agents.chat.ChatStream` keeps the exact ids it read and wrote, and a mask that is 1 on its
   own generated tokens only.
4. ``group_advantages``: each episode's return minus its group's mean (divided by the group's std unless
   ``scale_advantages`` is off, as Dr. GRPO recommends); ``training_samples`` drops every episode that ended
   on an infra, agent or reward error (counted in the log as ``episodes_dropped``), never training on it.
5. ``policy_loss``: a token-level clipped policy gradient (PPO ratio, DAPO's token-level normalisation),
   plus ``kl_coef`` times the k3 estimate of KL to a frozen reference. Env observations carry no loss: the
   mask multiplies every per-token term, so their positions give exactly zero gradient.
6. ``train``: the loop: evaluate, roll out, compute advantages, update, log (``log.jsonl``), checkpoint,
   plot learning curves (``curves.png``).

Example:
    >>> from execgym.agents.train.grpo import GRPOArgs, train
    >>> args = GRPOArgs(env_id="execgym/TextToSQL-v0", dataset="generated:easy", model="runs/sft/final",
    ...                 out="runs/grpo", iterations=20)                                    # doctest: +SKIP
    >>> summary = train(args)                                                              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from execgym.agents.base import DEFAULT_ACT_TIMEOUT_S, AgentTimeout, TimedCaller, check_timeout
from execgym.rollout.episode import EpisodeAccumulator, EpisodeResult, EpisodeTrace, error_text, make_wrapped_env

__all__ = [
    "GRPOArgs",
    "RunArgs",
    "curves_figure",
    "episode_stats",
    "group_advantages",
    "make_env",
    "pad_streams",
    "plot_log",
    "policy_loss",
    "rollout",
    "start_training",
    "token_logprobs",
    "train",
    "training_samples",
]


# ---------------------------------------------------------------------------------------------- 1. arguments
@dataclass
class RunArgs:
    """What every trainer's run needs: the env, the model, the run folder, evaluation and LoRA settings."""

    env_id: str = "execgym/TextToSQL-v0"
    """the env to train on (a registered id)"""
    model: str = ""
    """a local folder or hub id (``from_pretrained``)"""
    out: str = "runs/grpo"
    """folder for log.jsonl, curves.png, checkpoints and final/"""
    dataset: str | None = "generated:easy"
    """the env's ``dataset`` (None: its default)"""
    split: str | None = None
    max_turns: int = 4
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_new_tokens: int = 96
    lora_rank: int = 0
    """>0: train a LoRA adapter of this rank (peft) instead of every weight"""
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    eval_episodes: int = 32
    eval_seed: int = 1_000_000
    """evaluation uses seeds eval_seed .. eval_seed + eval_episodes - 1"""
    device: str = "auto"
    dtype: str = "float32"
    """weights' dtype (float32 master weights; a GPU computes in bf16 under autocast)"""
    overwrite: bool = False
    """``out`` holds an earlier run: remove its log, curves, checkpoints and final/ first (else refuse)"""


@dataclass
class GRPOArgs(RunArgs):
    """Hyperparameters of :func:`train` (the ``execgym train`` options are these fields)."""

    wrappers: list[str] = field(default_factory=list)
    """reward wrappers, innermost first: ``NAME`` or ``NAME:{json kwargs}`` (:func:`execgym.wrappers.apply_wrappers`);
    none: the sparse outcome"""
    iterations: int = 20
    tasks_per_iteration: int = 8
    group_size: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    update_epochs: int = 1
    """passes over each iteration's episodes (>1 makes the ratio clipping matter)"""
    minibatch_size: int = 16
    """episodes per optimiser step"""
    clip_eps: float = 0.2
    kl_coef: float = 0.0
    """weight of the KL to the frozen starting policy (0: no reference model is kept)"""
    scale_advantages: bool = True
    eval_every: int = 5
    eval_temperature: float = 0.0
    """0: greedy evaluation; 1: the sampled policy's own success rate"""
    act_timeout_s: float | None = 600.0
    """the longest one batched generation may take; a batch over it is an agent error (None: no limit)"""
    save_every: int = 0
    """>0: a checkpoint every this many iterations (final/ is always written)"""
    gradient_checkpointing: bool = False


# ---------------------------------------------------------------------------------------------- 2. envs
def make_env(args: Any, wrap_env: Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None = None
             ) -> gym.Env[Any, Any]:
    """The env of ``args`` (``env_id``, ``dataset``, ``split``, ``max_turns``, ``env_kwargs``), wrapped by
    ``wrap_env`` if given, else by the reward wrappers ``args.wrappers`` names (if any)."""
    kwargs = dict(args.env_kwargs)
    for key in ("dataset", "split", "max_turns"):
        if getattr(args, key, None) is not None:
            kwargs.setdefault(key, getattr(args, key))
    if wrap_env is not None:
        return wrap_env(gym.make(args.env_id, **kwargs))
    return make_wrapped_env(args.env_id, kwargs, getattr(args, "wrappers", ()))


# ---------------------------------------------------------------------------------------------- 3. rollouts
def rollout(envs: Sequence[gym.Env[Any, Any]], agent: Any, seeds: Sequence[int], *,
            act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S) -> list[EpisodeResult]:
    """Play one episode per seed, ``len(envs)`` at a time, all in lockstep so the policy generates in batches.

    Each episode is summed up by the rollouts' :class:`~execgym.rollout.EpisodeAccumulator`, with its trace:
    ``result.trace.token_ids`` / ``token_mask`` are the slot's :class:`~execgym.agents.chat.ChatStream`.
    ``result.error`` says whether the trainer must drop it: an infra error (the machinery failed), an agent
    error, or a reward that was not a finite number. A batch's ``act_batch`` that takes longer than
    ``act_timeout_s`` (None: no limit) ends that batch's unfinished episodes with ``agent_error``
    ``"AgentTimeout: ..."``; the later batches are agent errors too (never generate beside a hung call).
    """
    timeout_s = check_timeout(act_timeout_s)
    caller = TimedCaller(name="execgym-grpo-policy")
    results: list[EpisodeResult] = []
    busy: str | None = None  # set once a call timed out: that call may still be using the policy's slots
    try:
        for start in range(0, len(seeds), len(envs)):
            accs = [EpisodeAccumulator(int(s), trace=True) for s in seeds[start:start + len(envs)]]
            if busy is not None:  # never run a second generation beside the abandoned one
                results.extend(acc.result(agent_error=busy) for acc in accs)
                continue
            for env, acc in zip(envs, accs):
                acc.begin(*env.reset(seed=acc.seed))
            agent.reset_batch([acc.info for acc in accs])
            errors: list[str | None] = [None] * len(accs)
            active = list(range(len(accs)))
            while active:
                try:
                    actions = caller.call(agent.act_batch, [accs[k].observation for k in active],
                                          [accs[k].info for k in active], active, timeout_s=timeout_s,
                                          what="agent.act_batch")
                except AgentTimeout as exc:  # the policy hung: its episodes are agent errors, not zeros
                    for k in active:
                        errors[k] = error_text(exc)
                    busy = f"AgentTimeout: not played, the policy was still busy with a call that timed out ({exc})"
                    break
                for k, action in zip(active, actions):
                    accs[k].add_step(action, *envs[k].step(action))
                active = [k for k in active if not accs[k].over]
            results.extend(acc.result(agent=agent.slot(k), agent_error=errors[k]) for k, acc in enumerate(accs))
    finally:
        caller.close()
    return results


# ---------------------------------------------------------------------------------------------- 4. advantages
def group_advantages(returns: Sequence[float], group_size: int, *, scale: bool = True,
                     keep: Sequence[bool] | None = None) -> np.ndarray:
    """GRPO advantages: each return minus its group's mean, over the group's std when ``scale``.

    ``keep`` (one flag per episode) leaves episodes out: they get advantage 0 and their group's mean and std
    are over the rest (episodes that ended on an infra or agent error are not the policy's returns).

    Example:
        >>> group_advantages([1.0, 0.0, 0.0, 0.0, 2.0, 2.0], 3, scale=False).round(2).tolist()
        [0.67, -0.33, -0.33, -1.33, 0.67, 0.67]
        >>> group_advantages([1.0, 0.0, 5.0], 3, scale=False, keep=[True, True, False]).tolist()
        [0.5, -0.5, 0.0]
    """
    r = np.asarray(returns, dtype=np.float64).reshape(-1, group_size)
    k = (np.ones_like(r) if keep is None else np.asarray(keep, dtype=np.float64).reshape(-1, group_size))
    count = np.maximum(k.sum(axis=1, keepdims=True), 1.0)
    mean = (r * k).sum(axis=1, keepdims=True) / count
    adv = (r - mean) * k
    if scale:
        std = np.sqrt((((r - mean) * k) ** 2).sum(axis=1, keepdims=True) / count)
        adv = adv / (std + 1e-6)
    return adv.reshape(-1)


def _trace(episode: EpisodeResult) -> EpisodeTrace:
    return episode.trace if episode.trace is not None else EpisodeTrace()


def training_samples(episodes: Sequence[EpisodeResult], group_size: int, *, scale: bool = True
                     ) -> tuple[np.ndarray, list[int]]:
    """The episodes' advantages and the indices of those to train on.

    An episode that ended on an infra, agent or reward error (``result.error``) is not the policy's return: it
    is dropped (advantage 0, left out of its group's mean and std) and never trained on. Of the rest, those
    with no spread in their group (advantage 0) or no token of the policy's teach nothing and are skipped.
    """
    keep = [e.error is None for e in episodes]
    advantages = group_advantages([e.total_reward for e in episodes], group_size, scale=scale, keep=keep)
    chosen = [i for i, a in enumerate(advantages) if keep[i] and abs(a) > 1e-8 and sum(_trace(episodes[i]).token_mask)]
    return advantages, chosen


# ---------------------------------------------------------------------------------------------- 5. loss
def pad_streams(seqs: Sequence[Sequence[int]], masks: Sequence[Sequence[int]], pad_id: int, device: Any
                ) -> tuple[Any, Any, Any]:
    """Right-pad token streams: ``(ids, attention_mask, loss_mask)`` as ``[batch, length]`` tensors."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width), dtype=torch.float32)
    for row, (s, m) in enumerate(zip(seqs, masks)):
        ids[row, :len(s)] = torch.tensor(list(s), dtype=torch.long)
        attention[row, :len(s)] = 1
        loss_mask[row, :len(m)] = torch.tensor(list(m), dtype=torch.float32)
    return ids.to(device), attention.to(device), loss_mask.to(device)


def token_logprobs(model: Any, ids: Any, attention: Any, *, inputs_embeds: Any = None) -> Any:
    """``logp[b, t]``: the log-probability the model gives token ``t`` of row ``b`` after tokens ``< t``
    (column 0, which nothing predicts, is 0)."""
    import torch

    if inputs_embeds is not None:
        logits = model(inputs_embeds=inputs_embeds, attention_mask=attention).logits
    else:
        logits = model(input_ids=ids, attention_mask=attention).logits
    logits = logits[:, :-1].float()
    picked = logits.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    logp = picked - torch.logsumexp(logits, dim=-1)
    return torch.nn.functional.pad(logp, (1, 0))


def policy_loss(logp: Any, old_logp: Any, advantages: Any, loss_mask: Any, *, clip_eps: float,
                ref_logp: Any = None, kl_coef: float = 0.0) -> tuple[Any, dict[str, float]]:
    """Token-level clipped policy-gradient loss (+ k3 KL to a reference), averaged over policy tokens.

    ``loss_mask`` is 1 on tokens the policy generated and 0 on everything else (prompt, tool outputs, env
    messages, padding); every per-token term is multiplied by it, so masked tokens contribute nothing.

    Example:
        >>> import torch
        >>> logp = torch.log(torch.tensor([[0.5, 0.5, 0.5]])).requires_grad_()
        >>> loss, stats = policy_loss(logp, logp.detach(), torch.tensor([1.0]), torch.tensor([[0., 1., 0.]]),
        ...                           clip_eps=0.2)
        >>> loss.backward(); logp.grad.tolist() == [[0.0, -1.0, 0.0]]   # only the policy token moves
        True
    """
    import torch

    adv = advantages.view(-1, 1)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(per_token)
    if ref_logp is not None and kl_coef > 0:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1.0
        per_token = per_token + kl_coef * kl
    tokens = loss_mask.sum().clamp(min=1.0)
    loss = (per_token * loss_mask).sum() / tokens
    with torch.no_grad():
        stats = {
            "pg_loss": float(((-torch.minimum(unclipped, clipped)) * loss_mask).sum() / tokens),
            "kl": float((kl * loss_mask).sum() / tokens),
            "clip_fraction": float((((ratio - 1.0).abs() > clip_eps).float() * loss_mask).sum() / tokens),
            "policy_tokens": float(loss_mask.sum()),
        }
    return loss, stats


# ---------------------------------------------------------------------------------------------- 6. training
Logger = Callable[[dict[str, Any]], None]


def check_out_dir(args: Any) -> Path:
    """``args.out``, if it is new or empty, or ``args.overwrite`` is set; else FileExistsError (two runs in one
    folder would mix their logs and checkpoints)."""
    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not getattr(args, "overwrite", False):
        raise FileExistsError(f"--out {out} is not empty (an earlier run?); choose a new folder or pass "
                              "--overwrite to start it fresh")
    return out


def start_run(args: Any, on_log: Logger | None) -> tuple[Path, Logger]:
    """Create the run folder with ``args.json`` and an empty ``log.jsonl``; return it and a logger."""
    out = check_out_dir(args)
    if out.is_dir() and any(out.iterdir()):
        for old in [*out.glob("checkpoint-*"), out / "final", out / "log.jsonl", out / "curves.png",
                    out / "args.json"]:
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
    log_path = out / "log.jsonl"
    log_path.write_text("")

    def log(record: dict[str, Any]) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if on_log is not None:
            on_log(record)

    return out, log


def _set_seed(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _success(episodes: Sequence[EpisodeResult]) -> float | None:
    """The success rate of the episodes that ended without an infra or agent error (None: there are none)."""
    scored = [e for e in episodes if e.error is None]
    return float(np.mean([e.outcome >= 1.0 for e in scored])) if scored else None


def episode_stats(episodes: Sequence[EpisodeResult]) -> dict[str, Any]:
    """Success rate, mean return and mean turns over the episodes without an infra or agent error, and how
    many of each error there were (errored episodes are not the policy's returns)."""
    scored = [e for e in episodes if e.error is None]
    return {"success_rate": _success(episodes),
            "mean_return": float(np.mean([e.total_reward for e in scored])) if scored else None,
            "mean_turns": float(np.mean([e.turns for e in scored])) if scored else None,
            "infra_errors": sum(e.infra_error is not None for e in episodes),
            "agent_errors": sum(e.agent_error is not None and e.infra_error is None for e in episodes),
            "reward_errors": sum(e.reward_error is not None and e.infra_error is None and e.agent_error is None
                                 for e in episodes)}


def evaluate(envs: Sequence[gym.Env[Any, Any]], agent: Any, seeds: Sequence[int], *, temperature: float = 0.0,
             act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S) -> dict[str, Any]:
    """Episodes on ``seeds`` (greedy at temperature 0): :func:`episode_stats` of them."""
    temperature, agent.temperature = agent.temperature, temperature
    try:
        episodes = rollout(envs, agent, seeds, act_timeout_s=act_timeout_s)
    finally:
        agent.temperature = temperature
    return episode_stats(episodes)


def _save(model: Any, tokenizer: Any, path: Path, *, merge: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if merge and hasattr(model, "merge_and_unload"):
        # a LoRA run's final model is merged, so `execgym serve --model final/` loads it like any other
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def apply_lora(model: Any, rank: int, alpha: int, dropout: float) -> Any:
    """Wrap ``model`` with a peft LoRA adapter on every linear layer of its blocks."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def start_training(args: RunArgs, model: Any, tokenizer: Any, on_log: Logger | None
                   ) -> tuple[Any, Any, Path, Logger, Any, Any]:
    """What every trainer does first: seed, refuse a used ``out`` folder before loading anything, load the
    policy (unless given), start the run folder, move the model to its device and add a LoRA adapter if asked.

    Returns the model, tokenizer, run folder, logger, device and the autocast context to compute in.
    """
    import torch

    from execgym.agents.hf_policy import load_policy, pick_device

    _set_seed(args.seed)
    check_out_dir(args)  # write nothing before the model loads
    if model is None:
        model, tokenizer = load_policy(args.model, device=args.device, dtype=args.dtype)
    out, log = start_run(args, on_log)
    device = pick_device(args.device)
    model.to(device)
    # float32 weights train with bf16 autocast on a GPU; weights loaded in bf16 train as they are
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    if args.lora_rank > 0:
        model = apply_lora(model, args.lora_rank, args.lora_alpha, args.lora_dropout)
    return model, tokenizer, out, log, device, autocast


def train(
    args: GRPOArgs,
    *,
    wrap_env: Callable[[gym.Env[Any, Any]], gym.Env[Any, Any]] | None = None,
    model: Any = None,
    tokenizer: Any = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train with GRPO; return the last evaluation and where the final model is.

    ``wrap_env`` wraps every env (any reward scheme); ``model`` / ``tokenizer`` start from loaded objects
    instead of ``args.model``; ``on_log`` sees every logged record.
    """
    import torch

    from execgym.agents.hf_policy import HFPolicyAgent

    model, tokenizer, out, log, device, autocast = start_training(args, model, tokenizer, on_log)
    ref_model = None
    if args.lora_rank == 0 and args.kl_coef > 0:  # with LoRA the base weights are the reference
        ref_model = copy.deepcopy(model).eval()
        ref_model.requires_grad_(False)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    agent = HFPolicyAgent(model, tokenizer, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          top_p=args.top_p)
    n_envs = args.tasks_per_iteration * args.group_size
    envs = [make_env(args, wrap_env) for _ in range(n_envs)]
    eval_seeds = [args.eval_seed + i for i in range(args.eval_episodes)]
    pad_id = int(tokenizer.pad_token_id)

    def reference_logp(ids: Any, attention: Any) -> Any:
        if ref_model is not None:
            return token_logprobs(ref_model, ids, attention)
        with model.disable_adapter():  # LoRA: the base weights are the reference
            return token_logprobs(model, ids, attention)

    last_eval: dict[str, Any] = {}
    steps_total = dropped_total = 0
    start = time.perf_counter()
    try:
        for iteration in range(args.iterations + 1):
            # ---- evaluate (held-out seeds) every eval_every iterations and at the end
            if args.eval_every > 0 and (iteration % args.eval_every == 0 or iteration == args.iterations):
                model.eval()
                with autocast:
                    scores = evaluate(envs, agent, eval_seeds, temperature=args.eval_temperature,
                                      act_timeout_s=args.act_timeout_s)
                last_eval = {"iteration": iteration, "phase": "eval", **scores, "temperature": args.eval_temperature,
                             "episodes": len(eval_seeds), "seconds": time.perf_counter() - start}
                log(last_eval)
            if iteration == args.iterations:
                break
            # ---- roll out: a group of group_size episodes per task, each group on one seed (one task)
            t0 = time.perf_counter()
            model.eval()
            task_seeds = [args.seed * 1_000_003 + iteration * args.tasks_per_iteration + t
                          for t in range(args.tasks_per_iteration)]
            with autocast:
                episodes = rollout(envs, agent, [s for s in task_seeds for _ in range(args.group_size)],
                                   act_timeout_s=args.act_timeout_s)
            rollout_s = time.perf_counter() - t0
            # ---- advantages and the samples to train on (never an errored episode: see training_samples)
            advantages, chosen = training_samples(episodes, args.group_size, scale=args.scale_advantages)
            dropped = sum(e.error is not None for e in episodes)
            dropped_total += dropped
            # ---- update
            model.train()
            stats_sum: dict[str, float] = {}
            steps = 0
            if chosen:
                traces = [_trace(episodes[i]) for i in chosen]
                ids, attention, loss_mask = pad_streams([t.token_ids for t in traces], [t.token_mask for t in traces],
                                                        pad_id, device)
                adv = torch.tensor([advantages[i] for i in chosen], dtype=torch.float32, device=device)
                with torch.no_grad(), autocast:
                    old_logp = torch.cat([token_logprobs(model, ids[j:j + args.minibatch_size],
                                                         attention[j:j + args.minibatch_size])
                                          for j in range(0, len(chosen), args.minibatch_size)])
                    ref_logp = None
                    if args.kl_coef > 0:
                        ref_logp = torch.cat([reference_logp(ids[j:j + args.minibatch_size],
                                                             attention[j:j + args.minibatch_size])
                                              for j in range(0, len(chosen), args.minibatch_size)])
                generator = torch.Generator().manual_seed(args.seed + iteration)
                for _ in range(args.update_epochs):
                    order = torch.randperm(len(chosen), generator=generator).tolist()
                    for j in range(0, len(order), args.minibatch_size):
                        mb = torch.tensor(order[j:j + args.minibatch_size], device=device)
                        width = int(attention[mb].sum(dim=1).max())
                        with autocast:
                            logp = token_logprobs(model, ids[mb, :width], attention[mb, :width])
                        loss, stats = policy_loss(
                            logp, old_logp[mb, :width], adv[mb], loss_mask[mb, :width], clip_eps=args.clip_eps,
                            ref_logp=None if ref_logp is None else ref_logp[mb, :width], kl_coef=args.kl_coef)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        grad_norm = torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                        optimizer.step()
                        stats["loss"] = float(loss.detach())
                        stats["grad_norm"] = float(grad_norm)
                        for key, value in stats.items():
                            stats_sum[key] = stats_sum.get(key, 0.0) + value
                        steps += 1
            kept = [e for e in episodes if e.error is None]
            comp_keys = sorted({k for e in kept for k in e.reward_components})
            steps_total += steps
            record = {
                "iteration": iteration + 1,
                "phase": "train",
                **episode_stats(episodes),
                "episodes": len(episodes),
                "temperature": args.temperature,
                "episodes_dropped": dropped,
                "episodes_trained": len(chosen),
                "optimizer_steps": steps,
                **{k: v / steps for k, v in stats_sum.items()},
                "components": {k: float(np.mean([e.reward_components.get(k, 0.0) for e in kept])) for k in comp_keys},
                "rollout_seconds": rollout_s,
                "seconds": time.perf_counter() - start,
            }
            if steps == 0:
                record["note"] = ("no optimizer step: every episode was dropped for an infra or agent error"
                                  if not kept else "no optimizer step: no group had any reward spread")
            log(record)
            if args.save_every > 0 and (iteration + 1) % args.save_every == 0:
                _save(model, tokenizer, out / f"checkpoint-{iteration + 1}", merge=False)
    finally:
        for env in envs:
            env.close()
    _save(model, tokenizer, out / "final", merge=True)
    summary: dict[str, Any] = {"phase": "summary", "optimizer_steps": steps_total, "episodes_dropped": dropped_total,
                               "trained": steps_total > 0}
    if steps_total == 0:
        # say it plainly: final/ is the starting policy, not a trained one
        summary["note"] = ("no optimizer step ran in the whole run (no group had any reward spread, or every "
                           "episode was dropped); final/ is the starting model, unchanged")
    log(summary)
    plot_log(out / "log.jsonl", out / "curves.png")
    return {**last_eval, **{k: v for k, v in summary.items() if k != "phase"}, "final": str(out / "final"),
            "log": str(out / "log.jsonl")}


TRAIN_STYLE = {"color": "tab:blue", "linestyle": "-", "marker": ".", "linewidth": 1.2}
EVAL_STYLE = {"color": "tab:orange", "linestyle": "--", "marker": "o", "markersize": 6, "linewidth": 1.6}


def curves_figure(records: Sequence[dict[str, Any]]) -> Any:
    """The learning-curve figure of a trainer's log records: success and return (train, sampled, as a thin blue
    line; eval on held-out seeds as orange dashes with dots), and the loss terms; a panel with nothing to draw
    says why (no optimizer step ran: no group had any reward spread, or every episode errored)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_r = [r for r in records if r.get("phase") == "train"]
    eval_r = [r for r in records if r.get("phase") == "eval"]
    t_train = train_r[0].get("temperature") if train_r else None
    t_eval = eval_r[0].get("temperature", 0.0) if eval_r else 0.0
    eval_label = "eval, held-out seeds (" + ("greedy" if not t_eval else f"T={t_eval:g}") + ")"
    train_label = "train, sampled" + (f" (T={t_train:g})" if t_train is not None else "")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))

    def curve(ax: Any, rs: Sequence[dict[str, Any]], key: str, label: str, style: dict[str, Any]) -> None:
        points = [(r["iteration"], r[key]) for r in rs if isinstance(r.get(key), (int, float))]
        if points:
            ax.plot(*zip(*points), label=label, **style)

    for ax, key, title in ((axes[0], "success_rate", "success rate"), (axes[1], "mean_return", "mean return")):
        curve(ax, train_r, key, train_label, TRAIN_STYLE)
        curve(ax, eval_r, key, eval_label, EVAL_STYLE)
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    axes[0].set_ylim(-0.02, 1.02)
    ax = axes[2]
    for key in ("loss", "kl", "clip_fraction"):
        points = [(r["iteration"], r[key]) for r in train_r if key in r and math.isfinite(r[key])]
        if points:
            ax.plot(*zip(*points), marker=".", label=key)
    ax.set_title("loss")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize="small")
    else:
        why = ("no iteration ran" if not train_r else
               "every episode was dropped\n(infra or agent errors)" if all(r.get("episodes_dropped", 0) ==
                                                                           r.get("episodes") for r in train_r)
               else "no group had any reward spread\n(every episode of a task scored alike)")
        ax.text(0.5, 0.5, f"no optimizer step ran:\n{why}", ha="center", va="center", transform=ax.transAxes,
                color="dimgray")
    dropped = sum(r.get("episodes_dropped", 0) for r in train_r)
    if dropped:
        fig.suptitle(f"{dropped} episode(s) dropped for infra or agent errors", fontsize="small")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_log(log_path: str | Path, png_path: str | Path) -> Path:
    """Learning curves from a trainer's ``log.jsonl`` (:func:`curves_figure`) saved as a PNG."""
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    fig = curves_figure(records)
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
