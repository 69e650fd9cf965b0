"""Milliseconds per ``execute_sql`` step and per graded submission: execgym vs skyrl-gym's text-to-SQL env.

Both envs run the same queries on the same bundled SQLite databases, in one run of this script: the gold
query of every bundled task as one exploration step, then as the submission that is graded.

How skyrl-gym executes SQL (``skyrl_gym/tools/sql.py``, ``skyrl_gym/envs/sql/utils.py``): every step starts a
thread that opens a new (read-write) ``sqlite3`` connection, runs ``BEGIN``, ``fetchall()`` of the whole
result into a ``frozenset``, rolls back and closes, then formats the rows with a pandas ``DataFrame``. Grading
does the same twice (prediction and gold) per submission. execgym keeps one guarded read-only connection per
database open across steps and episodes, reads capped results with ``fetchmany``, caches gold results, and
adds the partial-reward parsing (sqlglot) to the graded submission.

skyrl-gym is not a dependency of execgym: it is installed in a separate virtualenv and driven from a
subprocess of this script (``--skyrl-worker``), so both sides are measured in the same run::

    python benchmarks/sql.py --setup      # once: create the benchmark venv and pip install skyrl-gym
    python benchmarks/sql.py              # measure both and print the table
    python benchmarks/sql.py --venv DIR   # use another venv (default: <tmp>/execgym-bench-skyrl)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_VENV = Path(tempfile.gettempdir()) / "execgym-bench-skyrl"
DB_IDS = ("bookshop", "hospital", "flights")


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / ("python.exe" if os.name == "nt" else "python")


def setup(venv: Path) -> None:
    """Create the benchmark's own virtualenv with skyrl-gym in it."""
    if not _venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(_venv_python(venv)), "-m", "pip", "install", "--quiet", "skyrl-gym"], check=True)


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1e3,
        "mean_ms": statistics.fmean(ordered) * 1e3,
        "p90_ms": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 1e3,
        "n": len(ordered),
    }


# ------------------------------------------------------------------------------------------------ ours
def exploration_queries() -> list[dict[str, str]]:
    """What an agent sends while exploring: a peek, a count and the whole table, for every bundled table."""
    import sqlite3

    from execgym.envs.sql.tasks import bundled_db_path

    queries = []
    for db_id in DB_IDS:
        conn = sqlite3.connect(bundled_db_path(db_id).resolve().as_uri() + "?mode=ro", uri=True)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        conn.close()
        for table in tables:
            for sql in (f"SELECT * FROM {table} LIMIT 5", f"SELECT COUNT(*) FROM {table}", f"SELECT * FROM {table}"):
                queries.append({"db_id": db_id, "query": sql})
    return queries


def _best(samples: list[list[float]]) -> list[float]:
    """Each query's fastest time over the rounds: the least disturbed by whatever else the machine runs."""
    return [min(times) for times in samples]


def measure_execgym(task_ids: list[str], rounds: int, explore: list[dict[str, str]]) -> dict[str, Any]:
    from execgym.envs.sql import grading
    from execgym.envs.sql.env import TextToSQLEnv

    steps: list[list[float]] = [[] for _ in task_ids]
    cold: list[list[float]] = [[] for _ in task_ids]
    warm: list[list[float]] = [[] for _ in task_ids]
    explore_steps: list[list[float]] = [[] for _ in explore]
    rewards: list[float] = []
    first_task = {db_id: next(i for i in task_ids if i.startswith(db_id)) for db_id in DB_IDS}
    for _ in range(rounds):
        # Every round starts as a fresh process would: no parsed query, no gold result cached.
        grading.clear_caches()
        env = TextToSQLEnv(max_turns=50)
        for i, task_id in enumerate(task_ids):
            env.reset(options={"task_id": task_id})
            gold = env.task.data["gold"]
            look = "<tool_call>" + json.dumps({"name": "execute_sql", "arguments": {"query": gold}}) + "</tool_call>"
            # A submission is never the gold text itself: a trailing space keeps it from hitting the parse cache.
            answer = gold + " "
            submit = "<tool_call>" + json.dumps({"name": "submit_sql", "arguments": {"query": answer}}) + "</tool_call>"
            start = time.perf_counter()
            env.step(look)
            steps[i].append(time.perf_counter() - start)
            start = time.perf_counter()
            _, reward, *_ = env.step(submit)
            cold[i].append(time.perf_counter() - start)
            rewards.append(float(reward))
            env.reset(options={"task_id": task_id})
            submit_again = submit.replace(json.dumps(answer), json.dumps(gold + "  "))
            start = time.perf_counter()
            env.step(submit_again)
            warm[i].append(time.perf_counter() - start)
        for j, item in enumerate(explore):
            env.reset(options={"task_id": first_task[item["db_id"]]})
            action = "<tool_call>" + json.dumps({"name": "execute_sql", "arguments": {"query": item["query"]}})
            start = time.perf_counter()
            env.step(action + "</tool_call>")
            explore_steps[j].append(time.perf_counter() - start)
        env.close()
    return {"step": _summary(_best(steps)), "submit_cold": _summary(_best(cold)),
            "submit_warm": _summary(_best(warm)), "explore": _summary(_best(explore_steps)),
            "mean_reward": statistics.fmean(rewards)}


# ------------------------------------------------------------------------------------------------ skyrl-gym
def skyrl_worker(spec_path: Path) -> None:
    """Runs inside the skyrl-gym venv: drive its SQLEnv with the same queries, print timings as JSON."""
    from skyrl_gym.envs.sql.env import SQLEnv, Text2SQLEnvConfig

    spec = json.loads(spec_path.read_text())
    config = Text2SQLEnvConfig(db_path=spec["db_root"])
    steps: list[list[float]] = [[] for _ in spec["tasks"]]
    submits: list[list[float]] = [[] for _ in spec["tasks"]]
    explore_steps: list[list[float]] = [[] for _ in spec["explore"]]
    rewards: list[float] = []
    for _ in range(spec["rounds"]):
        for i, task in enumerate(spec["tasks"]):
            extras = {"db_id": task["db_id"], "reward_spec": {"ground_truth": task["gold"]}, "data": "spider",
                      "max_turns": 50}
            env = SQLEnv(config, extras)
            env.init([{"role": "user", "content": task["question"]}])
            start = time.perf_counter()
            env.step(f"<think>explore</think>\n<sql>{task['gold']}</sql>")
            steps[i].append(time.perf_counter() - start)
            start = time.perf_counter()
            out = env.step(f"<think>answer</think>\n<solution>{task['gold']} </solution>")
            submits[i].append(time.perf_counter() - start)
            rewards.append(float(out["reward"]))
            env.close()
        for j, item in enumerate(spec["explore"]):
            extras = {"db_id": item["db_id"], "reward_spec": {"ground_truth": "SELECT 1"}, "data": "spider",
                      "max_turns": 50}
            env = SQLEnv(config, extras)
            env.init([{"role": "user", "content": "explore"}])
            start = time.perf_counter()
            env.step(f"<think>explore</think>\n<sql>{item['query']}</sql>")
            explore_steps[j].append(time.perf_counter() - start)
            env.close()
    print(json.dumps({"step": steps, "submit": submits, "rewards": rewards, "explore": explore_steps}))


def measure_skyrl(venv: Path, tasks: list[dict[str, str]], rounds: int, explore: list[dict[str, str]]
                  ) -> dict[str, Any]:
    from execgym.envs.sql.tasks import bundled_db_path

    python = _venv_python(venv)
    if not python.exists():
        raise RuntimeError(f"no benchmark venv at {venv}: run `python benchmarks/sql.py --setup` first")
    with tempfile.TemporaryDirectory() as tmp:
        # skyrl-gym's layout for data="spider": <db_path>/spider/database/<db_id>/<db_id>.sqlite
        root = Path(tmp)
        for db_id in DB_IDS:
            folder = root / "spider" / "database" / db_id
            folder.mkdir(parents=True)
            (folder / f"{db_id}.sqlite").symlink_to(bundled_db_path(db_id))
        spec = root / "spec.json"
        spec.write_text(json.dumps({"db_root": str(root), "tasks": tasks, "rounds": rounds, "explore": explore}))
        proc = subprocess.run([str(python), str(Path(__file__).resolve()), "--skyrl-worker", str(spec)],
                              capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"skyrl-gym worker failed:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"step": _summary(_best(data["step"])), "submit": _summary(_best(data["submit"])),
            "explore": _summary(_best(data["explore"])), "mean_reward": statistics.fmean(data["rewards"])}


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create the skyrl-gym venv and exit")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the skyrl-gym venv")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the bundled tasks")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N bundled tasks (0: all)")
    parser.add_argument("--skyrl-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.skyrl_worker:
        skyrl_worker(args.skyrl_worker)
        return
    if args.setup:
        setup(args.venv)
        print(f"skyrl-gym installed in {args.venv}")
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from execgym.envs.sql.tasks import bundled_tasks

    tasks = bundled_tasks()[: args.limit or None]
    explore = exploration_queries()
    ours = measure_execgym([t.id for t in tasks], args.rounds, explore)
    skyrl: dict[str, Any] | None = None
    reason = ""
    try:
        skyrl = measure_skyrl(args.venv, [{"db_id": t.data["db_id"], "gold": t.data["gold"],
                                           "question": t.data["question"]} for t in tasks], args.rounds, explore)
    except RuntimeError as exc:
        reason = str(exc)

    print(f"{len(tasks)} bundled tasks (gold queries) and {len(explore)} exploration queries, best of {args.rounds} "
          f"rounds per query; python {sys.version.split()[0]}\n")
    print("| measure | execgym (ms) | skyrl-gym (ms) | execgym speed-up |")
    print("| --- | ---: | ---: | ---: |")
    rows = [
        ("`execute_sql` step, median", ours["step"]["median_ms"], skyrl and skyrl["step"]["median_ms"]),
        ("`execute_sql` step, mean", ours["step"]["mean_ms"], skyrl and skyrl["step"]["mean_ms"]),
        ("`execute_sql` step, p90", ours["step"]["p90_ms"], skyrl and skyrl["step"]["p90_ms"]),
        ("`execute_sql` step, exploration queries, median", ours["explore"]["median_ms"],
         skyrl and skyrl["explore"]["median_ms"]),
        ("`execute_sql` step, exploration queries, mean", ours["explore"]["mean_ms"],
         skyrl and skyrl["explore"]["mean_ms"]),
        ("graded submission, median (gold not cached)", ours["submit_cold"]["median_ms"],
         skyrl and skyrl["submit"]["median_ms"]),
        ("graded submission, mean (gold not cached)", ours["submit_cold"]["mean_ms"],
         skyrl and skyrl["submit"]["mean_ms"]),
        ("graded submission, median (gold cached)", ours["submit_warm"]["median_ms"],
         skyrl and skyrl["submit"]["median_ms"]),
    ]
    for name, mine, theirs in rows:
        if theirs is None:
            print(f"| {name} | {mine:.3f} | n/a | n/a |")
        else:
            print(f"| {name} | {mine:.3f} | {theirs:.3f} | {theirs / mine:.1f}x |")
    print(f"\nmean reward of the gold submission: execgym {ours['mean_reward']:.3f}"
          + (f", skyrl-gym {skyrl['mean_reward']:.3f}" if skyrl else ""))
    if skyrl is None:
        print(f"\nskyrl-gym not measured: {reason}")


if __name__ == "__main__":
    main()
