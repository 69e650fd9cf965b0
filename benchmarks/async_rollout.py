"""Ready-first throughput of AsyncRollout against the sum of its episodes' own rates.

Run: ``python benchmarks/async_rollout.py [--repeats 3]``. Four GuessEnv episodes whose agents think for
10, 20, 40 and 80 ms per reply (each episode about 0.4 s long) are first played alone, one after another,
then all four at once on four slots. With every episode in flight at once the ideal throughput is the sum
of the episodes' own rates; the script prints the measured fraction of it per repeat (1.0 is ideal; 0.90 and
0.92 on a shared 2-core machine, Dec 2026). A wall-clock figure, so it lives here and not in the tests: on a
loaded machine it drops for reasons that are no fault of the code.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' toy env, when run from a checkout

from execgym.agents import OracleAgent
from execgym.rollout import AsyncRollout, EpisodeSpec, run_episode
from tests.core.toy_env import GuessEnv

DELAYS = {"word-0": 0.01, "word-1": 0.02, "word-2": 0.04, "word-3": 0.08}
EPISODE_S = 0.4


class SlowAgent:
    """Asks for hints, then submits the word; how long it thinks depends on the episode's task."""

    name = "slow"

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.oracle = OracleAgent(env)

    def reset(self, info: dict[str, Any]) -> None:
        self.oracle.reset(info)
        self.delay = DELAYS[info["task_id"]]
        self.left = round(EPISODE_S / self.delay)

    def act(self, observation: str, info: dict[str, Any]) -> Any:
        time.sleep(self.delay)
        self.left -= 1
        return self.oracle.act(observation, info) if self.left <= 0 else {"name": "hint", "arguments": {"position": 0}}


def make_guess() -> GuessEnv:
    return GuessEnv(max_turns=100)


def measure() -> float:
    """One repeat: the ready-first throughput as a fraction of the sum of the episodes' own rates."""
    specs = [EpisodeSpec(options={"task_id": t}) for t in DELAYS]
    alone = []
    for spec in specs:
        env = make_guess()
        result = run_episode(env, SlowAgent(env), options=spec.options)
        assert result.outcome == 1.0, result
        alone.append(result.seconds)
        env.close()
    with AsyncRollout(make_guess, SlowAgent, num_slots=len(specs)) as rollout:
        t0 = time.perf_counter()
        results = rollout.run(specs)
        wall = time.perf_counter() - t0
    assert all(r.outcome == 1.0 for r in results)
    return (len(specs) / wall) / sum(1.0 / s for s in alone)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    ratios = [measure() for _ in range(a.repeats)]
    print("| repeat | throughput / sum of own rates |\n| ---: | ---: |")
    for i, r in enumerate(ratios):
        print(f"| {i} | {r:.2f} |")
    print(f"\nmedian {statistics.median(ratios):.2f} over {a.repeats} repeats")


if __name__ == "__main__":
    main()
