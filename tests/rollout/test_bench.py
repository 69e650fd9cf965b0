"""``execgym bench``: one table and a JSON file with every figure and the machine's description."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from execgym.cli import main
from execgym.rollout import bench


def test_bench_command_prints_the_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code = main(["bench", "--env", "sql", "--samples", "5", "--seconds", "0.3", "--json", str(path)])
    assert code == 0
    report = json.loads(path.read_text())
    (row,) = report["rows"]
    assert row["env_id"] == "execgym/TextToSQL-v0"
    for key in ("reset_p50_ms", "reset_p99_ms", "step_p50_ms", "step_p99_ms", "oracle_eps_per_s", "eps_per_s_1w",
                "eps_per_s_2w", "ratio_2w_1w", "mb_per_env", "overhead_p50_ms", "overhead_p99_ms"):
        assert isinstance(row[key], float), key
    assert row["reset_p50_ms"] <= row["reset_p99_ms"] and row["overhead_p50_ms"] <= row["overhead_p99_ms"]
    assert row["oracle_eps_per_s"] > 0 and row["eps_per_s_2w"] > 0
    assert {"cpu", "cores", "load_average", "python", "platform"} <= set(report["machine"])
    assert report["executor"] == "local"
    table = capsys.readouterr().out
    assert "TextToSQL-v0" in table and "2w/1w" in table and "load average" in table


SCALING_COLUMNS = ("env_id", "workers", "eps_per_s", "speedup", "memory_mb", "mb_per_worker", "marginal_mb",
                   "processes", "rss_fallbacks", "window_s", "load_1m_start")


def test_scaling_command_prints_one_row_per_worker_count_and_writes_json(tmp_path, capsys):
    path = tmp_path / "scaling.json"
    code = main(["bench", "--scaling", "--env", "sql,tooluse", "--workers", "1,2", "--seconds", "0.3",
                 "--json", str(path)])
    assert code == 0
    report = json.loads(path.read_text())
    rows = report["rows"]
    assert [(r["env_id"], r["workers"]) for r in rows] == [
        ("execgym/TextToSQL-v0", 1), ("execgym/TextToSQL-v0", 2), ("execgym/ToolUse-v0", 1), ("execgym/ToolUse-v0", 2)]
    for row in rows:
        assert set(SCALING_COLUMNS) <= set(row), row
        assert row["eps_per_s"] > 0 and row["memory_mb"] > 0 and row["processes"] >= row["workers"]
        assert row["mb_per_worker"] == pytest.approx(row["memory_mb"] / row["workers"])
    for one, two in zip(rows[::2], rows[1::2]):
        assert one["speedup"] == 1.0 and one["marginal_mb"] is None
        assert two["speedup"] == pytest.approx(two["eps_per_s"] / one["eps_per_s"])
        assert two["marginal_mb"] == pytest.approx(two["memory_mb"] - one["memory_mb"])
    machine = report["machine"]
    assert len(machine["load_average"]) == 3 and len(machine["load_average_after"]) == 3
    assert report["workers"] == [1, 2]
    out = capsys.readouterr().out
    assert "MB marginal" in out and "ToolUse-v0" in out and "at start" in out and "at end" in out


def test_worker_counts_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--scaling", "--workers", "0,2"])
    assert "positive worker counts" in capsys.readouterr().err


def test_tree_memory_counts_child_processes():
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(32 << 20); time.sleep(60)"],
                             stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while bench.process_memory(child.pid)[0] < 32 << 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in bench.process_tree(os.getpid())
        alone = bench.tree_memory([child.pid])
        both = bench.tree_memory([os.getpid()])
        assert alone.processes == 1 and alone.bytes >= 32 << 20
        assert both.processes >= 2 and both.bytes >= alone.bytes
        assert bench.tree_memory([os.getpid(), child.pid]).processes == both.processes  # each process once
    finally:
        child.kill()
        child.wait()


def test_memory_falls_back_to_rss_where_smaps_rollup_is_unreadable(monkeypatch):
    real_open = open

    def no_smaps(path, *args, **kwargs):
        if str(path).endswith("/smaps_rollup"):
            raise PermissionError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_smaps)
    size, is_pss = bench.process_memory(os.getpid())
    assert size > 0 and not is_pss
    mem = bench.tree_memory([os.getpid()])
    assert mem.rss_fallbacks == mem.processes >= 1


def test_a_failing_worker_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="a worker failed"):
        bench.run_workers("execgym/TextToSQL-v0", 2, seconds=0.2, env_kwargs={"no_such_option": 1},
                          start_timeout=120)


def test_a_worker_that_dies_before_it_is_ready_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="the worker process died"):
        bench.run_workers("execgym/ToolUse-v0", 2, seconds=0.2, env_kwargs={"executor": _ExitOnArrival()},
                          start_timeout=120)


class _ExitOnArrival:
    """An env kwarg whose unpickling ends the spawned worker's process before it says it is ready."""

    def __reduce__(self):
        return os._exit, (3,)


def test_the_warm_up_plays_every_bundled_task_once_from_the_workers_own_start():
    import gymnasium as gym

    env = gym.make("execgym/TextToSQL-v0")
    try:
        tasks = [t.id for t in env.unwrapped.bundled_tasks()]
        assert bench._cover_tasks(env, seed=5) == len(tasks)
        assert env.unwrapped.task.id == tasks[4]  # started at task 5, went round, ended at the one before it
        assert bench._cover_tasks(env, seed=0, budget_s=0.0) == 0  # the budget bounds it
    finally:
        env.close()
