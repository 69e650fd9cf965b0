"""How long `execgym swe build-tasks` takes on real PyPI projects, per project and per validated task.

Run: ``python benchmarks/swe_build.py [--executor local|docker] [--limit 10]``. Each project is built twice in
one run, with a fresh cache folder: first from nothing (the sdists downloaded, the wheels resolved, the
environment made, every test run), then again (everything cached: the build only copies working copies).
The table prints seconds per step, per project and per validated task. A wall-clock figure, so it lives here
and not in the tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from execgym.envs.swe.mining import build_tasks

PROJECTS = {
    "cachetools": "pypi:cachetools==5.3.3..5.5.0",
    "pathspec": "pypi:pathspec==0.12.0..0.12.1",
    "toolz": "pypi:toolz==0.11.2..1.0.0",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", choices=("local", "docker"), default="local")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    header = (
        f"{'project':<12} {'source':<32} {'tests':>5} {'flaky':>5} {'runs':>5} {'tasks':>9} "
        f"{'env s':>6} {'tests s':>8} {'total s':>8} {'s/task':>7} {'again s':>8}"
    )
    print(f"executor: {args.executor}, limit {args.limit} mutation tasks, {args.workers} workers")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EXECGYM_CACHE_DIR"] = str(Path(tmp) / "cache")
        for name, source in PROJECTS.items():
            out = Path(tmp) / name / "tasks.jsonl"
            first = build_tasks(source, out, executor=args.executor, limit=args.limit, workers=args.workers)
            start = time.perf_counter()
            build_tasks(source, out, executor=args.executor, limit=args.limit, workers=args.workers)
            again = time.perf_counter() - start
            total = first.seconds["total"]
            tasks = f"{first.tasks.get('mutation', 0)}+{first.tasks.get('version', 0)}"
            tests_s = sum(v for k, v in first.seconds.items() if k in ("clean runs", "mutation tasks", "version tasks"))
            print(
                f"{name:<12} {source.removeprefix('pypi:'):<32} {first.tests:>5} {len(first.flaky):>5} "
                f"{first.test_runs:>5} {tasks:>9} {first.seconds['environment']:>6.1f} {tests_s:>8.1f} "
                f"{total:>8.1f} {total / max(first.total_tasks(), 1):>7.1f} {again:>8.1f}"
            )
    print("tasks: mutation + version; runs: test-suite runs in sandboxes; again: the same build with the cache")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
