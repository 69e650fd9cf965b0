"""The bundled tasks' gold results, computed ahead of time: fresh, used only where they apply, graded alike."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from execgym.envs.sql import gold
from execgym.envs.sql.db import SafeDatabase
from execgym.envs.sql.env import TextToSQLEnv
from execgym.envs.sql.tasks import bundled_db_path, bundled_tasks

from .conftest import call

SHIPPED = json.loads(gold.RECORDS_PATH.read_text(encoding="utf-8"))
SAME_SQLITE = SHIPPED["sqlite_version"] == sqlite3.sqlite_version
needs_same_sqlite = pytest.mark.skipif(
    not SAME_SQLITE, reason=f"the records were computed by SQLite {SHIPPED['sqlite_version']}, this is "
                            f"{sqlite3.sqlite_version}: they are not used here (the live path is tested elsewhere)")


@needs_same_sqlite
def test_the_shipped_records_are_what_a_rebuild_writes() -> None:
    # A changed question, gold query or database without rebuilt records fails here, never misgrades.
    assert gold.dumps(gold.build_records(gold.bundled_items())) == gold.RECORDS_PATH.read_text(encoding="utf-8")


@needs_same_sqlite
def test_every_bundled_task_has_a_record_equal_to_its_live_result() -> None:
    dbs: dict[str, SafeDatabase] = {}
    for task in bundled_tasks():
        path = task.data["db_paths"][0]
        db = dbs.setdefault(path, SafeDatabase(path, allow_unbounded_functions=True))
        live = db.execute(task.data["gold"])
        record = gold.shipped_records().lookup(path, task.data["gold"])
        assert record is not None, task.id
        assert (record.columns, record.rows, record.reads) == (live.columns, live.rows, live.reads), task.id
        assert all(type(a) is type(b) for r, s in zip(record.rows, live.rows) for a, b in zip(r, s)), task.id


@needs_same_sqlite
@pytest.mark.parametrize("task_id", ["bookshop-031", "hospital-041", "flights-045", "flights-052"])
def test_grading_with_a_record_runs_no_gold_query_and_grades_as_live(task_id: str) -> None:
    task = next(t for t in bundled_tasks() if t.id == task_id)
    near_miss = task.data["gold"].replace("SELECT ", "SELECT DISTINCT ", 1) + " LIMIT 3"
    graded = {}
    for use in (True, False):
        env = TextToSQLEnv(gold_records=use)
        try:
            for query in (task.data["gold"], near_miss):
                env.reset(options={"task_id": task_id})
                _, reward, _, _, info = env.step(call("submit_sql", query=query))
                graded[use, query] = (reward, info["reward_components"], info["infra_error"])
            # With the record nothing opened the gold side's connection: no gold query ran.
            assert (len(env._gold_dbs) == 0) is use
        finally:
            env.close()
    assert graded[True, task.data["gold"]][0] == 1.0
    for query in (task.data["gold"], near_miss):
        assert graded[True, query] == graded[False, query], query


def test_a_record_follows_the_file_content_not_its_path(tmp_path: Path) -> None:
    task = bundled_tasks()[0]
    source = bundled_db_path(task.data["db_id"])
    copy = shutil.copy(source, tmp_path / "copy.sqlite")
    records = gold.GoldRecords(_records_file(tmp_path, task.data["gold"], source))
    assert records.lookup(copy, task.data["gold"]) is not None  # the same bytes elsewhere: the same result
    assert records.lookup(copy, task.data["gold"] + " ") is None  # another text: no record
    assert records.lookup(copy, task.data["gold"], max_rows=0) is None  # over the env's own cap
    conn = sqlite3.connect(copy)
    with conn:
        conn.execute("UPDATE authors SET country = 'Nigeria'")
    conn.close()
    assert records.lookup(copy, task.data["gold"]) is None  # edited: its digest names no record


def test_records_of_another_sqlite_or_format_or_unreadable_are_not_used(tmp_path: Path) -> None:
    task = bundled_tasks()[0]
    source = bundled_db_path(task.data["db_id"])
    path = _records_file(tmp_path, task.data["gold"], source)
    data = json.loads(path.read_text())
    for change, problem in ((lambda d: d.update(sqlite_version="0.0.1"), "computed by SQLite 0.0.1"),
                            (lambda d: d.update(format=99), "not a format-1 records file"),
                            (lambda d: d.pop("databases"), "cannot be read")):
        changed = json.loads(json.dumps(data))
        change(changed)
        path.write_text(json.dumps(changed))
        records = gold.GoldRecords(path)
        assert records.lookup(source, task.data["gold"]) is None and problem in (records.problem or ""), problem
    path.write_text("{not json")
    records = gold.GoldRecords(path)
    assert records.lookup(source, task.data["gold"]) is None and "cannot be read" in (records.problem or "")


def test_a_query_that_may_read_the_clock_is_never_precomputed(tmp_path: Path) -> None:
    db_path = tmp_path / "dates.sqlite"
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("CREATE TABLE t (id INTEGER, day TEXT, note TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(1, "2024-01-05", "a"), (2, "2024-03-01", "b")])
        conn.execute("CREATE TABLE u (id INTEGER, day TEXT)")
        conn.executemany("INSERT INTO u VALUES (?, ?)", [(1, "2024-01-05"), (2, " NOW ")])
    conn.close()
    fixed = [
        "SELECT COUNT(*) FROM t WHERE strftime('%Y', day) = '2024'",
        "SELECT julianday(MAX(day)) - julianday(MIN(day)) FROM t",
        "SELECT date(day, '+1 month') FROM t ORDER BY id",
    ]
    clocked = [
        "SELECT COUNT(*) FROM t WHERE day < date('now')",
        "SELECT datetime(day, 'localtime') FROM t",
        "SELECT id FROM t WHERE day < date()",
        "SELECT strftime('%Y') FROM t",
        "SELECT julianday(day) FROM u",  # a stored 'now' is the clock too
        "SELECT random() FROM t",
        "SELECT CURRENT_DATE FROM t",
    ]
    built = gold.build_records([(db_path, q) for q in fixed + clocked])
    (entry,) = built["databases"].values()
    assert sorted(entry["results"]) == sorted(fixed)


def _records_file(tmp_path: Path, query: str, db_path: Path) -> Path:
    path = tmp_path / "records.json"
    path.write_text(gold.dumps(gold.build_records([(db_path, query)])), encoding="utf-8")
    return path
