"""Steps per second of the tool-use env on one core, for a one-call turn.

Run: ``python benchmarks/tooluse.py [--seconds 2] [--profile]``. It prints a table:

* ``tool step (dict)``: one ``get_order`` call given as a structured ``{"name", "arguments"}`` action;
* ``tool step (text)``: the same call written as ``<tool_call>{...}</tool_call>`` text;
* ``one-call turn``: reset + call + answer (the whole episode of an easy task, graded at the end);
* ``BFCL step``: a BFCL-format parallel entry, reset + one reply of two calls, AST-checked.

Tool steps run in one long episode (``max_turns`` is raised), so they measure the step alone. The target
is 5,000 steps/s for the tool step. ``--profile`` prints where a tool step's time goes (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from execgym.envs.bfcl.env import BFCLEnv
from execgym.envs.tooluse.env import ToolUseEnv

TASK = "shop-status-00"


def _rate(fn: Callable[[], Any], seconds: float, windows: int = 7) -> tuple[float, float]:
    """(median, best) calls per second of ``fn``, over ``windows`` windows of ``seconds / windows`` each.

    The median is the figure to quote; the best shows what the code does when nothing else shares the core.
    """
    for _ in range(50):
        fn()
    rates = []
    for _ in range(windows):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / windows:
            for _ in range(50):
                fn()
            n += 50
        rates.append(n / elapsed)
    return statistics.median(rates), max(rates)


def _bfcl_dir(root: Path) -> Path:
    fn = {"name": "get_weather", "description": "Weather in a city.", "parameters": {"type": "dict", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}
    entry = {"id": "parallel_0", "question": [[{"role": "user", "content": "Weather in Paris and Oslo?"}]],
             "function": [fn]}
    answer = {"id": "parallel_0", "ground_truth": [{"get_weather": {"city": ["Paris"], "unit": ["", "c"]}},
                                                   {"get_weather": {"city": ["Oslo"], "unit": ["", "c"]}}]}
    (root / "possible_answer").mkdir(parents=True, exist_ok=True)
    (root / "BFCL_v4_parallel.json").write_text(json.dumps(entry) + "\n")
    (root / "possible_answer" / "BFCL_v4_parallel.json").write_text(json.dumps(answer) + "\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--profile", action="store_true", help="profile the structured tool step")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    env = ToolUseEnv(max_turns=10**9)
    env.reset(options={"task_id": TASK})
    call = env.task.oracle[0][0]
    text = f"<tool_call>{json.dumps(call)}</tool_call>"
    rows = [("tool step (dict)", *_rate(lambda: env.step(call), args.seconds)),
            ("tool step (text)", *_rate(lambda: env.step(text), args.seconds))]

    episode = ToolUseEnv()
    oracle = episode.tasks.get(TASK).oracle

    def one_call_turn() -> None:
        episode.reset(options={"task_id": TASK})
        for action in oracle:
            episode.step(action)

    median, best = _rate(one_call_turn, args.seconds)
    rows.append(("one-call turn (reset+2 steps)", median, best))
    rows.append(("  = steps/s, reset included", median * 2, best * 2))

    with tempfile.TemporaryDirectory() as tmp:
        bfcl = BFCLEnv(dataset=f"bfcl:{_bfcl_dir(Path(tmp))}", split="parallel")
        reply = [{"name": "get_weather", "arguments": {"city": "oslo"}},
                 {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]

        def bfcl_episode() -> None:
            bfcl.reset(options={"task_id": "parallel_0"})
            bfcl.step(reply)

        rows.append(("BFCL episode (reset+1 step)", *_rate(bfcl_episode, args.seconds)))

    print(f"{'measurement (one core)':<32}{'median/s':>10}{'us each':>9}{'best/s':>10}")
    for name, median, best in rows:
        print(f"{name:<32}{median:>10,.0f}{1e6 / median:>9.1f}{best:>10,.0f}")
    target = rows[0][1]
    print(f"\ntarget 5,000 tool steps/s: {'met' if target >= 5000 else 'NOT met'} ({target:,.0f}/s)")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(20000):
            env.step(call)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()
