"""The reference baseline from nothing: oracle, random, a tiny from-scratch model after SFT, and after GRPO.

No weights are downloaded: the model is ``execgym init-model``'s tiny Qwen2-architecture network (random
weights, a BPE tokenizer trained on the env's own chats), warm-started by SFT on oracle trajectories, then
trained with GRPO on the sparse outcome and, with the reward wrappers, on dense and gated rewards. Every
success rate is measured greedily on the same held-out seeds. Prints a markdown table.

    python benchmarks/train_baseline.py --env execgym/TextToSQL-v0 --dataset generated:easy --out runs/baseline
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

import execgym
from execgym.agents import OracleAgent, RandomAgent
from execgym.agents.train.grpo import GRPOArgs, train
from execgym.agents.train.sft import SFTArgs, train_sft

REWARDS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "sparse": (None, {}),
    "dense": ("DenseUnitReward", {}),
    "gated": ("GatedReward", {"components": {"format": 0.1, "executed": 0.1}}),
}


def bound(env: gym.Env[Any, Any], agent: Any, seeds: list[int]) -> float:
    wins = 0
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        agent.reset(info)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
            done = terminated or truncated
        wins += info["outcome"] >= 1.0
    return wins / len(seeds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="execgym/TextToSQL-v0")
    p.add_argument("--dataset", default="generated:easy")
    p.add_argument("--out", default="runs/baseline")
    p.add_argument("--max-turns", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--sft-episodes", type=int, default=512)
    p.add_argument("--sft-epochs", type=int, default=8)
    p.add_argument("--sft-lr", type=float, default=3e-3)
    p.add_argument("--rl-iterations", type=int, default=20)
    p.add_argument("--rl-lr", type=float, default=1e-4)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--rewards", default="sparse,dense,gated")
    a = p.parse_args()

    from transformers.utils import logging as hf_logging

    from execgym.agents.tiny import build_tiny_policy

    hf_logging.disable_progress_bar()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    eval_seed = 1_000_000
    seeds = list(range(eval_seed, eval_seed + a.eval_episodes))
    rows: list[tuple[str, float | None, str]] = []
    timings: dict[str, float] = {}

    env = gym.make(a.env, dataset=a.dataset, max_turns=a.max_turns)
    rows.append(("oracle", bound(env, OracleAgent(env), seeds), "-"))
    rows.append(("random", bound(env, RandomAgent(seed=a.seed), seeds), "-"))
    env.close()

    t0 = time.perf_counter()
    chat_envs = [gym.make(a.env, dataset=a.dataset, max_turns=a.max_turns)]
    tiny = build_tiny_policy(out / "tiny", chat_envs, episodes=256, vocab_size=a.vocab_size,
                             hidden_size=a.hidden_size, seed=a.seed)
    chat_envs[0].close()
    sft = train_sft(SFTArgs(env_id=a.env, dataset=a.dataset, model=str(tiny), out=str(out / "sft"),
                            max_turns=a.max_turns, seed=a.seed, episodes=a.sft_episodes, epochs=a.sft_epochs,
                            learning_rate=a.sft_lr, eval_episodes=a.eval_episodes, eval_seed=eval_seed,
                            max_new_tokens=a.max_new_tokens, overwrite=True))
    timings["sft"] = time.perf_counter() - t0
    rows.append(("tiny model, random init", sft["before"]["success_rate"], "-"))
    rows.append(("tiny model after SFT on oracle trajectories", sft["after"]["success_rate"],
                 f"{timings['sft']:.0f}"))
    print(json.dumps(rows[-1]), flush=True)

    available = set(getattr(__import__("execgym.wrappers", fromlist=["*"]), "__all__", []))
    for name in a.rewards.split(","):
        wrapper, kwargs = REWARDS[name]
        if wrapper is not None and wrapper not in available:
            continue
        t0 = time.perf_counter()
        result = train(GRPOArgs(env_id=a.env, dataset=a.dataset, model=sft["final"], out=str(out / f"grpo-{name}"),
                                max_turns=a.max_turns, reward_wrapper=wrapper, wrapper_kwargs=kwargs,
                                seed=a.seed, iterations=a.rl_iterations, learning_rate=a.rl_lr,
                                max_new_tokens=a.max_new_tokens, eval_every=max(1, a.rl_iterations // 4),
                                eval_episodes=a.eval_episodes, eval_seed=eval_seed, overwrite=True))
        timings[name] = time.perf_counter() - t0
        rows.append((f"after SFT + GRPO, {name} reward" + (f" ({wrapper})" if wrapper else ""),
                     result["success_rate"], f"{timings[name]:.0f}"))
        print(json.dumps(rows[-1]), flush=True)

    import torch

    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only'}, "
               f"torch {torch.__version__}, execgym {execgym.__version__}")
    print(f"\n{a.env} `{a.dataset}`, greedy success on {a.eval_episodes} held-out seeds "
          f"({eval_seed}..{eval_seed + a.eval_episodes - 1}), max {a.max_turns} turns; seed {a.seed}; {machine}\n")
    print("| agent | success | train time (s) |\n| --- | ---: | ---: |")
    for name, rate, secs in rows:
        print(f"| {name} | {'n/a' if rate is None else f'{rate:.2f}'} | {secs} |")
    (out / "baseline.json").write_text(json.dumps({"rows": rows, "machine": machine, "args": vars(a)}, indent=2))


if __name__ == "__main__":
    main()
