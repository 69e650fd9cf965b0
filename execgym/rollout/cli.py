"""The ``execgym bench`` command: one table of latency, throughput, memory and overhead figures per env."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["cmd_bench", "register"]


def register(subparsers: Any) -> None:
    """Add ``bench`` to the ``execgym`` command line (``subparsers`` of its parser)."""
    p = subparsers.add_parser("bench", help="benchmark the envs: latency, throughput (1 vs 2 processes), memory")
    p.add_argument("--env", default="all", help="env id(s), comma-separated (a unique part is enough), or 'all'")
    p.add_argument("--samples", type=int, default=30, help="timed resets and steps per env (heavy envs: a quarter)")
    p.add_argument("--seconds", type=float, default=3.0, help="time window of each throughput figure (heavy envs: x4)")
    p.add_argument("--executor", choices=("local", "docker"), help="executor of the envs that run code")
    p.add_argument("--no-workers", dest="workers", action="store_false", help="skip the 1 vs 2 process figures")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="write the figures and the machine to FILE")
    p.add_argument("--scaling", action="store_true",
                   help="print the scaling table instead: eps/s, speedup and memory of 1, 2, 4, 8 worker processes")
    p.add_argument("--workers", dest="scaling_workers", type=_worker_counts, default=(1, 2, 4, 8), metavar="N,N,...",
                   help="worker counts of the --scaling table (default 1,2,4,8)")
    p.set_defaults(func=cmd_bench)


def _worker_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive worker counts such as 1,2,4,8, got {text!r}")
    return counts


def cmd_bench(args: argparse.Namespace) -> int:
    from execgym.rollout.bench import format_bench_table, run_bench

    ids: list[str] | None = None
    if args.env != "all":
        from execgym.cli import resolve_env_id

        ids = [resolve_env_id(name) for name in args.env.split(",")]
    if args.scaling:
        from execgym.rollout.bench import format_scaling_table, run_scaling

        scaling = run_scaling(ids, workers=args.scaling_workers, seconds=args.seconds, executor=args.executor,
                              out=args.json_out, log=lambda m: print(m, file=sys.stderr))
        print(format_scaling_table(scaling))
        if args.json_out:
            print(f"figures written to {args.json_out}")
        return 0
    report = run_bench(ids, samples=args.samples, executor=args.executor,
                       workers=args.workers, seconds=args.seconds, out=args.json_out,
                       log=lambda m: print(m, file=sys.stderr))
    print(format_bench_table(report["rows"]))
    machine = report["machine"]
    print(f"\n{machine['cpu']} · {machine['usable_cores']} usable cores · load average "
          f"{' '.join(f'{x:.2f}' for x in machine['load_average'])} (before) · executor {report['executor']}")
    if args.json_out:
        print(f"figures written to {args.json_out}")
    else:
        print(json.dumps(machine))
    return 0
