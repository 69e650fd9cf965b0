"""Reusing ``execute_sql`` results: only for deterministic queries on an unchanged file, within a byte budget."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from execgym.envs.sql import db as sqldb
from execgym.envs.sql.env import TextToSQLEnv

from .conftest import SHOP_ROWS, call, make_db


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_db(root / "shop.sqlite")
    row = {"id": "q1", "db_path": "shop.sqlite", "question": "How many items?", "query": "SELECT COUNT(*) FROM items"}
    (root / "tasks.jsonl").write_text(json.dumps(row) + "\n")
    return root


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement SQLite really runs (on any connection)."""
    seen: list[str] = []
    original = sqldb.SafeDatabase._run

    def counted(self: sqldb.SafeDatabase, statement: str, *args: object) -> sqldb.QueryResult:
        seen.append(statement)
        return original(self, statement, *args)

    monkeypatch.setattr(sqldb.SafeDatabase, "_run", counted)
    return seen


def _explore(env: TextToSQLEnv, query: str) -> tuple[str, dict[str, float]]:
    env.reset(options={"task_id": "q1"})
    obs, _, _, _, info = env.step(call("execute_sql", query=query))
    return obs, info["reward_components"]


def test_a_deterministic_query_sent_again_is_answered_the_same_without_running(shop, runs):
    env = TextToSQLEnv(dataset=f"jsonl:{shop / 'tasks.jsonl'}")
    query = "SELECT name, price FROM items WHERE price > 10 ORDER BY price"
    first = _explore(env, query)
    assert runs.count(query) == 1
    again = _explore(env, query)
    assert again == first and runs.count(query) == 1
    assert first[1]["executed"] == 1.0 and first[1]["returned_rows"] == 1.0 and "desk" in first[0]
    # A query that reads no table keeps its 0 when reused.
    assert _explore(env, "SELECT 1")[1]["executed"] == 0.0 == _explore(env, "SELECT 1")[1]["executed"]
    env.close()


@pytest.mark.parametrize("query", ["SELECT random(), COUNT(*) FROM items", "SELECT datetime('now'), name FROM items",
                                   "SELECT CURRENT_TIMESTAMP, name FROM items", "SELECT date(added) FROM items"])
def test_a_query_whose_value_is_not_fixed_by_the_file_runs_every_time(shop, runs, query):
    env = TextToSQLEnv(dataset=f"jsonl:{shop / 'tasks.jsonl'}")
    _explore(env, query)
    _explore(env, query)
    assert runs.count(query) == 2
    env.close()


def test_errors_are_never_reused(shop, runs):
    env = TextToSQLEnv(dataset=f"jsonl:{shop / 'tasks.jsonl'}")
    for _ in range(2):
        obs, components = _explore(env, "SELECT nope FROM items")
        assert obs.startswith("Error:") and components["executed"] == 0.0
    assert runs.count("SELECT nope FROM items") == 2
    env.close()


def test_a_file_rewritten_since_is_queried_afresh(shop, runs):
    env = TextToSQLEnv(dataset=f"jsonl:{shop / 'tasks.jsonl'}")
    query = "SELECT COUNT(*) FROM items"
    assert _explore(env, query)[0].splitlines()[1] == "5"
    path = shop / "shop.sqlite"
    fresh = shop / "next.sqlite"
    make_db(fresh, SHOP_ROWS[:2])
    os.replace(fresh, path)  # a new file at the same path: the open connection still reads the old one
    env.close()
    env = TextToSQLEnv(dataset=f"jsonl:{shop / 'tasks.jsonl'}")
    assert _explore(env, query)[0].splitlines()[1] == "2"
    # In place: same inode, a new size and modification time.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    before = len(runs)
    _explore(env, query)
    assert len(runs) == before + 1
    env.close()


def test_the_cache_is_bounded_in_bytes_keeps_no_query_text_and_can_be_off(shop, runs):
    env = TextToSQLEnv(dataset=f"jsonl:{shop / 'tasks.jsonl'}", step_cache_bytes=40_000)
    queries = [f"SELECT name, {i} AS n{i} FROM items" for i in range(300)]
    for query in queries:
        _explore(env, query)
        assert env._shown.nbytes <= 40_000
    assert 10 < len(env._shown) < 300
    kept = env._shown.keys()
    for key in kept:
        assert not any(isinstance(part, str) and "SELECT" in part for part in key)
    env.close()
    off = TextToSQLEnv(dataset=f"jsonl:{shop / 'tasks.jsonl'}", step_cache_bytes=0)
    _explore(off, queries[0])
    _explore(off, queries[0])
    assert runs.count(queries[0]) == 2 + 1  # twice here, once in the first env
    off.close()


def _rewrite_in_place_keeping_size_and_mtime(path: Path, value: str) -> None:
    stat = path.stat()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE items SET name = ? WHERE id = 1", (value,))
    conn.close()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def test_a_rewrite_in_place_that_restores_the_mtime_is_queried_afresh(shop):
    """The signature holds st_ctime_ns, which the kernel sets on every write and no user can set back."""
    env = TextToSQLEnv(dataset=f"jsonl:{shop / 'tasks.jsonl'}")
    query = "SELECT name FROM items WHERE id = 1"
    assert _explore(env, query)[0].splitlines()[1] == "pen"
    _rewrite_in_place_keeping_size_and_mtime(shop / "shop.sqlite", "nib")
    assert _explore(env, query)[0].splitlines()[1] == "nib"
    env.close()


def test_gold_results_are_keyed_by_the_file_signature(shop):
    """After the database file changes, the gold query is run again on the new contents, not served stale."""
    (shop / "tasks.jsonl").write_text(json.dumps(
        {"id": "q1", "db_path": "shop.sqlite", "question": "Name of item 1?",
         "query": "SELECT name FROM items WHERE id = 1"}) + "\n")
    env = TextToSQLEnv(dataset=f"jsonl:{shop / 'tasks.jsonl'}")
    env.reset(options={"task_id": "q1"})
    assert env.step(call("submit_sql", query="SELECT name FROM items WHERE id = 1"))[1] == 1.0
    _rewrite_in_place_keeping_size_and_mtime(shop / "shop.sqlite", "nib")
    env.reset(options={"task_id": "q1"})
    _, reward, _, _, info = env.step(call("submit_sql", query="SELECT name FROM items WHERE id = 1"))
    assert reward == 1.0, info["units"]  # the gold result is the new file's too
    env.reset(options={"task_id": "q1"})
    _, reward, _, _, info = env.step(call("submit_sql", query="SELECT 'pen' FROM items WHERE id = 1"))
    assert reward == 0.0
    env.close()
