"""``execgym swe build-tasks SOURCE --out tasks.jsonl``: a real project's validated SWE tasks (see
:mod:`execgym.envs.swe.mining`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from execgym.cli import _positive_int

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``swe build-tasks`` to the ``execgym`` command line."""
    swe = sub.add_parser("swe", help="SWE tasks from real projects (swe build-tasks)")
    swe_sub = swe.add_subparsers(dest="swe_command", required=True)
    build = swe_sub.add_parser(
        "build-tasks",
        help="turn a project (folder, git checkout, pypi:NAME==VERSION or pypi:NAME==A..B) into validated tasks",
    )
    build.add_argument("source", help="a folder, a git checkout, pypi:NAME==VERSION or pypi:NAME==A..B")
    build.add_argument("--out", required=True, type=Path, help="the tasks file to write (SWE-bench JSONL)")
    build.add_argument(
        "--executor",
        choices=("local", "docker"),
        default="local",
        help="where the tests run: local (a per-project venv) or docker (a per-project image)",
    )
    build.add_argument("--limit", type=_positive_int, default=20, help="at most this many mutation tasks (default 20)")
    build.add_argument("--seed", type=int, default=0, help="the order candidates are tried in")
    build.add_argument("--runs", type=_positive_int, default=2,
                       help="runs of each state's tests; a test whose status differs is dropped as flaky (default 2)")
    build.add_argument("--workers", type=_positive_int, default=None, help="test runs at once (default: up to 4)")
    build.add_argument("--no-verify", dest="verify", action="store_false",
                       help="skip playing every task's oracle in the env's own grader (kept only if it resolves)")
    build.add_argument(
        "--no-cache", dest="cache", action="store_false", help="run every test again instead of reusing earlier results"
    )
    build.set_defaults(func=_build_tasks)


def _build_tasks(args: argparse.Namespace) -> int:
    from execgym.envs.swe.mining import build_tasks

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = build_tasks(
            args.source,
            args.out,
            executor=args.executor,
            limit=args.limit,
            seed=args.seed,
            workers=args.workers,
            cache=args.cache,
            runs=args.runs,
            verify=args.verify,
            log=log,
        )
    except ValueError as exc:  # a BuildError, or an argument build_tasks refuses
        print(f"execgym swe build-tasks: {exc}", file=sys.stderr)
        return 1
    total = report.total_tasks()
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(report.tasks.items()))
    seconds = report.seconds.get("total", 0.0)
    print(
        f"{args.out}: {total} validated tasks ({kinds}) from {report.project} on {report.executor}; "
        f"{report.tests} tests ({len(report.flaky)} flaky, dropped); {report.validated} candidates run, "
        f"rejected {dict(sorted(report.rejected.items()))}; {seconds:.0f} s "
        f"({seconds / max(total, 1):.1f} s per task)"
    )
    print(f'load them with gym.make("execgym/SWERepair-v0", dataset="swebench:{args.out}")')
    return 0
