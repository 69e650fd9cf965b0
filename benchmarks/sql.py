"""Milliseconds per ``execute_sql`` step and per graded submission: execgym vs skyrl-gym's text-to-SQL env.

Both envs run the same queries on the same bundled SQLite databases, interleaved round by round in one run of
this script (skyrl-gym in a worker process that stays up between rounds): the gold query of every bundled task
as one exploration step, the same step again in a later episode, then the gold as the submission that is
graded. Every figure is each query's best over the rounds; ratios compare figures of the same run.

How skyrl-gym executes SQL (``skyrl_gym/tools/sql.py``, ``skyrl_gym/envs/sql/utils.py``): every step starts a
thread that opens a new (read-write) ``sqlite3`` connection, runs ``BEGIN``, ``fetchall()`` of the whole
result into a ``frozenset``, rolls back and closes, then formats the rows with a pandas ``DataFrame``. Grading
does the same twice (prediction and gold) per submission. execgym keeps one guarded read-only connection per
database open across steps and episodes, reads capped results one row at a time, reuses the result of a
deterministic query sent again on an unchanged file, grades the bundled tasks against gold results computed
ahead of time (``execgym.envs.sql.gold``: by database digest, gold text and SQLite version; the
``gold run live`` rows turn that off) or else caches them, and computes the partial rewards (``syntax``,
``schema_link``, ``ngram``) that skyrl-gym does not.

The floor is the query alone on an already open read-only connection (prepared and run once, all rows
fetched, no guard, no formatting): what any env pays at least for a query it has not seen. ``skyrl-gym /
floor`` is therefore the most a first execution could be sped up. The skyrl-gym worker also measures the floor
on the SQLite that apsw bundles (newer than most Pythons'): whether another SQLite build would move that bound.

skyrl-gym (and apsw) are not dependencies of execgym: they are installed in a separate virtualenv and driven from a
subprocess of this script (``--skyrl-worker``)::

    python benchmarks/sql.py --setup      # once: create the benchmark venv, pip install skyrl-gym and apsw
    python benchmarks/sql.py              # measure both and print the table
    python benchmarks/sql.py --venv DIR   # use another venv (default: <tmp>/execgym-bench-skyrl)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
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
    """Create the benchmark's own virtualenv with skyrl-gym in it, and apsw (a newer SQLite, for a second floor)."""
    if not _venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(_venv_python(venv)), "-m", "pip", "install", "--quiet", "skyrl-gym", "apsw"], check=True)


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


def _call(name: str, query: str) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": {"query": query}}) + "</tool_call>"


def execgym_round(task_ids: list[str], explore: list[dict[str, str]], first_task: dict[str, str]) -> dict[str, Any]:
    """One pass as a fresh process would make it: new envs, no file digest, gold signal or result cached.

    Submissions are graded twice: by the default env, against the gold result shipped for the bundled task
    (``cold``), and by an env with ``gold_records=False`` that runs the gold query live (``live``), then again
    in a later episode, against the gold result it cached (``warm``).
    """
    from execgym.core.report import TASK_ID
    from execgym.envs.sql import gold as gold_records
    from execgym.envs.sql import grading
    from execgym.envs.sql.env import TextToSQLEnv

    grading.clear_caches()
    gold_records.clear_digests()
    env = TextToSQLEnv(max_turns=50)
    live = TextToSQLEnv(max_turns=50, gold_records=False)
    keys = ("reset", "again", "step", "repeat", "cold", "live", "warm", "explore")
    out: dict[str, list[float]] = {k: [] for k in keys}
    rewards: list[float] = []
    for task_id in task_ids:
        start = time.perf_counter()
        env.reset(options={TASK_ID: task_id})
        out["reset"].append(time.perf_counter() - start)
        gold = env.task.data["gold"]
        start = time.perf_counter()
        env.step(_call("execute_sql", gold))
        out["step"].append(time.perf_counter() - start)
        # A submission is never the gold text itself: a trailing space keeps it from any cache of the gold.
        start = time.perf_counter()
        _, reward, *_ = env.step(_call("submit_sql", gold + " "))
        out["cold"].append(time.perf_counter() - start)
        rewards.append(float(reward))
        start = time.perf_counter()
        env.reset(options={TASK_ID: task_id})  # the task's next episode (a GRPO group's next sample)
        out["again"].append(time.perf_counter() - start)
        start = time.perf_counter()
        env.step(_call("execute_sql", gold))  # the same query in a later episode (a GRPO group's next sample)
        out["repeat"].append(time.perf_counter() - start)
        live.reset(options={TASK_ID: task_id})
        live.step(_call("execute_sql", "SELECT 1"))  # the agent's connection is open, as after any step
        start = time.perf_counter()
        _, reward, *_ = live.step(_call("submit_sql", gold + " "))
        out["live"].append(time.perf_counter() - start)
        rewards.append(float(reward))
        live.reset(options={TASK_ID: task_id})
        start = time.perf_counter()
        live.step(_call("submit_sql", gold + "  "))
        out["warm"].append(time.perf_counter() - start)
    for item in explore:
        env.reset(options={TASK_ID: first_task[item["db_id"]]})
        start = time.perf_counter()
        env.step(_call("execute_sql", item["query"]))
        out["explore"].append(time.perf_counter() - start)
    env.close()
    live.close()
    return {**out, "rewards": rewards}


def floor_round(tasks: list[dict[str, str]], explore: list[dict[str, str]],
                paths: dict[str, Path] | None = None, engine: str = "sqlite3") -> dict[str, list[float]]:
    """Each query once on an open read-only connection (opened before timing): prepare, run, fetch all.

    ``engine`` is the standard library's ``sqlite3`` (the SQLite Python was built with) or ``apsw`` (the
    SQLite its wheel bundles, measured in the benchmark venv): how much a newer SQLite alone would give.
    """
    if paths is None:
        from execgym.envs.sql.tasks import bundled_db_path

        paths = {d: bundled_db_path(d) for d in DB_IDS}
    if engine == "apsw":
        import apsw

        conns: dict[str, Any] = {d: apsw.Connection(str(p), flags=apsw.SQLITE_OPEN_READONLY) for d, p in paths.items()}
    else:
        conns = {d: sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True) for d, p in paths.items()}
    out: dict[str, list[float]] = {"step": [], "explore": []}
    for key, items, field in (("step", tasks, "gold"), ("explore", explore, "query")):
        for item in items:
            conn = conns[item["db_id"]]
            start = time.perf_counter()
            conn.execute(item[field]).fetchall()
            out[key].append(time.perf_counter() - start)
    for conn in conns.values():
        conn.close()
    return out


# ------------------------------------------------------------------------------------------------ skyrl-gym
def skyrl_worker(spec_path: Path) -> None:
    """Runs inside the skyrl-gym venv: one round per line read from stdin, its timings printed as one JSON line."""
    from skyrl_gym.envs.sql.env import SQLEnv, Text2SQLEnvConfig

    spec = json.loads(spec_path.read_text())
    config = Text2SQLEnvConfig(db_path=spec["db_root"])
    try:
        import apsw

        apsw_version = apsw.sqlite_lib_version()
    except ImportError:
        apsw_version = ""

    def make(db_id: str, gold: str, question: str) -> Any:
        extras = {"db_id": db_id, "reward_spec": {"ground_truth": gold}, "data": "spider", "max_turns": 50}
        env = SQLEnv(config, extras)
        env.init([{"role": "user", "content": question}])
        return env

    for _line in sys.stdin:
        out: dict[str, Any] = {k: [] for k in ("reset", "again", "step", "repeat", "submit", "explore", "rewards")}
        for task in spec["tasks"]:
            start = time.perf_counter()
            env = make(task["db_id"], task["gold"], task["question"])
            out["reset"].append(time.perf_counter() - start)
            start = time.perf_counter()
            env.step(f"<think>explore</think>\n<sql>{task['gold']}</sql>")
            out["step"].append(time.perf_counter() - start)
            start = time.perf_counter()
            result = env.step(f"<think>answer</think>\n<solution>{task['gold']} </solution>")
            out["submit"].append(time.perf_counter() - start)
            out["rewards"].append(float(result["reward"]))
            env.close()
            start = time.perf_counter()
            env = make(task["db_id"], task["gold"], task["question"])
            out["again"].append(time.perf_counter() - start)
            start = time.perf_counter()
            env.step(f"<think>explore</think>\n<sql>{task['gold']}</sql>")
            out["repeat"].append(time.perf_counter() - start)
            env.close()
        for item in spec["explore"]:
            env = make(item["db_id"], "SELECT 1", "explore")
            start = time.perf_counter()
            env.step(f"<think>explore</think>\n<sql>{item['query']}</sql>")
            out["explore"].append(time.perf_counter() - start)
            env.close()
        if apsw_version:
            paths = {d: Path(spec["db_root"]) / "spider" / "database" / d / f"{d}.sqlite" for d in DB_IDS}
            out["apsw_floor"] = floor_round(spec["tasks"], spec["explore"], paths, engine="apsw")
            out["apsw_version"] = apsw_version
        print(json.dumps(out), flush=True)


class SkyrlProcess:
    """The skyrl-gym worker, kept up between rounds so its rounds interleave with execgym's."""

    def __init__(self, venv: Path, tasks: list[dict[str, str]], explore: list[dict[str, str]]) -> None:
        from execgym.envs.sql.tasks import bundled_db_path

        python = _venv_python(venv)
        if not python.exists():
            raise RuntimeError(f"no benchmark venv at {venv}: run `python benchmarks/sql.py --setup` first")
        self._tmp = tempfile.TemporaryDirectory()
        # skyrl-gym's layout for data="spider": <db_path>/spider/database/<db_id>/<db_id>.sqlite
        root = Path(self._tmp.name)
        for db_id in DB_IDS:
            folder = root / "spider" / "database" / db_id
            folder.mkdir(parents=True)
            (folder / f"{db_id}.sqlite").symlink_to(bundled_db_path(db_id))
        spec = root / "spec.json"
        spec.write_text(json.dumps({"db_root": str(root), "tasks": tasks, "explore": explore}))
        self._proc = subprocess.Popen([str(python), str(Path(__file__).resolve()), "--skyrl-worker", str(spec)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)

    def round(self) -> dict[str, list[float]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("round\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            stderr = self._proc.stderr.read() if self._proc.stderr else ""
            raise RuntimeError(f"skyrl-gym worker failed:\n{stderr[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
        self._tmp.cleanup()


# ------------------------------------------------------------------------------------------------ main
def _best_of(rounds: list[dict[str, list[float]]], key: str) -> list[float]:
    """Each query's fastest time over the rounds: the least disturbed by whatever else the machine runs."""
    return [min(times) for times in zip(*(r[key] for r in rounds))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create the skyrl-gym venv and exit")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the skyrl-gym venv")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the bundled tasks")
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

    every_task = bundled_tasks()
    tasks = every_task[: args.limit or None]
    first_task = {db_id: next(t.id for t in every_task if t.data["db_id"] == db_id) for db_id in DB_IDS}
    specs = [{"db_id": t.data["db_id"], "gold": t.data["gold"], "question": t.data["question"]} for t in tasks]
    explore = exploration_queries()
    skyrl: SkyrlProcess | None = None
    reason = ""
    try:
        skyrl = SkyrlProcess(args.venv, specs, explore)
    except RuntimeError as exc:
        reason = str(exc)
    ours_rounds: list[dict[str, Any]] = []
    floor_rounds: list[dict[str, list[float]]] = []
    skyrl_rounds: list[dict[str, list[float]]] = []
    for r in range(args.rounds):
        # Interleaved, and each side first in every other round, so both see the same machine load.
        sides = ["ours", "floor", "skyrl"] if r % 2 == 0 else ["skyrl", "floor", "ours"]
        for side in sides:
            if side == "ours":
                ours_rounds.append(execgym_round([t.id for t in tasks], explore, first_task))
            elif side == "floor":
                floor_rounds.append(floor_round(specs, explore))
            elif skyrl is not None:
                try:
                    skyrl_rounds.append(skyrl.round())
                except RuntimeError as exc:
                    reason, skyrl = str(exc), None
    if skyrl is not None:
        skyrl.close()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    sqlite_version = sqlite3.sqlite_version

    ours = {k: _summary(_best_of(ours_rounds, k))
            for k in ("reset", "again", "step", "repeat", "cold", "live", "warm", "explore")}
    floor = {k: _summary(_best_of(floor_rounds, k)) for k in ("step", "explore")}
    theirs = ({k: _summary(_best_of(skyrl_rounds, k))
               for k in ("reset", "again", "step", "repeat", "submit", "explore")}
              if skyrl_rounds else None)
    print(f"{len(tasks)} bundled tasks (gold queries) and {len(explore)} exploration queries, best of "
          f"{args.rounds} interleaved rounds per query; python {sys.version.split()[0]}, SQLite {sqlite_version}; "
          f"load average {load:.1f}\n")
    print("| measure | execgym (ms) | skyrl-gym (ms) | execgym speed-up | floor (ms) | execgym / floor |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    stats = (("median", "median_ms"), ("mean", "mean_ms"), ("p90", "p90_ms"))
    rows: list[tuple[str, float, float | None, float | None]] = []
    for label, stat in stats:
        rows.append((f"`execute_sql` step, {label}", ours["step"][stat], theirs and theirs["step"][stat],
                     floor["step"][stat]))
    for label, stat in stats:
        rows.append((f"`execute_sql` step, same query in a later episode, {label}", ours["repeat"][stat],
                     theirs and theirs["repeat"][stat], None))
    for label, stat in stats[:2]:
        rows.append((f"`execute_sql` step, exploration queries, {label}", ours["explore"][stat],
                     theirs and theirs["explore"][stat], floor["explore"][stat]))
    for label, stat in stats:
        rows.append((f"graded submission, {label} (gold result precomputed and shipped)", ours["cold"][stat],
                     theirs and theirs["submit"][stat], None))
    for label, stat in stats:
        rows.append((f"graded submission, {label} (gold run live, nothing cached)", ours["live"][stat],
                     theirs and theirs["submit"][stat], None))
    rows.append(("graded submission, median (gold result cached in the process)", ours["warm"]["median_ms"],
                 theirs and theirs["submit"]["median_ms"], None))
    rows.append(("reset (a task's first episode in the process), median", ours["reset"]["median_ms"],
                 theirs and theirs["reset"]["median_ms"], None))
    rows.append(("reset (the same task's next episode), median", ours["again"]["median_ms"],
                 theirs and theirs["again"]["median_ms"], None))
    for name, mine, other, low in rows:
        speed = f"{other / mine:.1f}x" if other is not None else "n/a"
        other_s = f"{other:.3f}" if other is not None else "n/a"
        low_s = f"{low:.3f} | {mine / low:.1f}x" if low is not None else "| "
        print(f"| {name} | {mine:.3f} | {other_s} | {speed} | {low_s} |")
    if theirs is not None:
        print("\nskyrl-gym / floor (the most a first execution could be sped up): "
              + ", ".join(f"{label} {theirs['step'][stat] / floor['step'][stat]:.1f}x" for label, stat in stats))
        for label, stat in stats:
            need = theirs["step"][stat] / 5
            if need < floor["step"][stat]:
                print(f"5x at the {label} of a first `execute_sql` needs {need:.3f} ms, less than SQLite alone takes "
                      f"for these queries on an open connection ({floor['step'][stat]:.3f} ms)")
        newer = [r["apsw_floor"] for r in skyrl_rounds if "apsw_floor" in r]
        if newer:
            fast = _summary(_best_of(newer, "step"))
            print("\nthe floor of the first `execute_sql` queries on a newer SQLite "
                  f"({skyrl_rounds[0]['apsw_version']}, through apsw in the benchmark venv):")
            for label, stat in stats:
                gain = floor["step"][stat] / fast[stat]
                print(f"- {label} {fast[stat]:.3f} ms (SQLite {sqlite_version}'s floor / this: {gain:.2f}x); "
                      f"5x needs a whole step of {theirs['step'][stat] / 5:.3f} ms")
    ours_rewards = [x for r in ours_rounds for x in r["rewards"]]
    print(f"\nmean reward of the gold submission: execgym {statistics.fmean(ours_rewards):.3f}"
          + (f", skyrl-gym {statistics.fmean([x for r in skyrl_rounds for x in r['rewards']]):.3f}"
             if skyrl_rounds else ""))
    if not skyrl_rounds:
        print(f"\nskyrl-gym not measured: {reason}")


if __name__ == "__main__":
    main()
