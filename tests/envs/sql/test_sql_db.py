"""Safety and limits of query execution: read-only, one statement, time limit, row and byte caps."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from execgym.envs.sql.db import (
    DatabaseFault,
    DatabasePool,
    QueryError,
    SafeDatabase,
    first_keyword,
    format_result,
    split_statements,
)
from execgym.envs.sql.env import TextToSQLEnv
from execgym.envs.sql.tasks import bundled_db_path

from .conftest import call, make_db

ADVERSARIAL = [
    "DROP TABLE books",
    "DELETE FROM books",
    "UPDATE books SET price = 0",
    "INSERT INTO authors (author_id, name, country) VALUES (999, 'x', 'y')",
    "REPLACE INTO authors VALUES (1, 'x', 'y', 1)",
    "INSERT INTO authors SELECT * FROM authors RETURNING author_id",
    "CREATE TABLE evil (a)",
    "CREATE TEMP TABLE books (a)",
    "CREATE TEMP VIEW authors AS SELECT 1 AS author_id",
    "CREATE INDEX evil_idx ON books (title)",
    "CREATE TRIGGER t AFTER INSERT ON books BEGIN DELETE FROM books; END",
    "ALTER TABLE books RENAME TO b2",
    "ATTACH DATABASE 'evil.db' AS evil",
    "ATTACH ':memory:' AS mem",
    "DETACH DATABASE main",
    "PRAGMA writable_schema = ON",
    "PRAGMA writable_schema = 1",
    "PRAGMA journal_mode = WAL",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 5",
    "PRAGMA query_only = OFF",
    "PRAGMA foreign_keys = OFF",
    "PRAGMA schema_version = 99",
    "VACUUM",
    "VACUUM INTO 'copy.db'",
    "REINDEX",
    "ANALYZE",
    "BEGIN",
    "COMMIT",
    "SAVEPOINT s",
    "SELECT load_extension('libevil')",
    "SELECT writefile('evil.txt', 'x')",
    "SELECT 1; DROP TABLE books",
    "SELECT 1; SELECT 2",
    "SELECT * FROM books; -- fine\nDELETE FROM books",
    "/* hide */ DELETE FROM orders",
    "WITH x AS (SELECT 1) DELETE FROM books",
    "WITH x AS (SELECT 1) INSERT INTO authors SELECT * FROM authors",
    "EXPLAIN DELETE FROM books",
    "EXPLAIN QUERY PLAN UPDATE books SET price = 1",
    "SELECT * FROM pragma_table_info('books'); PRAGMA writable_schema=1",
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_adversarial_queries_change_no_byte(tmp_path, monkeypatch):
    """Every write, attach, pragma change, vacuum and extension load is refused; the file is byte-identical."""
    monkeypatch.chdir(tmp_path)  # a relative ATTACH / VACUUM INTO target would land here
    source = bundled_db_path("bookshop")
    copy = tmp_path / "db" / "bookshop.sqlite"
    copy.parent.mkdir()
    shutil.copy(source, copy)
    task_file = tmp_path / "tasks.jsonl"
    gold = "SELECT COUNT(*) FROM books"
    task_file.write_text(json.dumps({"id": "t", "db_path": "db/bookshop.sqlite", "question": "q", "query": gold}))
    before = {p: _sha(p) for p in (source, copy)}
    listing = sorted(p.name for p in tmp_path.rglob("*"))

    env = TextToSQLEnv(dataset=f"jsonl:{task_file}", max_turns=200)
    env.reset(seed=0)
    for query in ADVERSARIAL:
        _, _, terminated, _, info = env.step(call("execute_sql", query=query))
        assert not terminated
        assert info["reward_components"]["executed"] == 0.0, query
        assert info["tool_calls"][0]["error"], query
        last = env.messages[-1]["content"]
        # writefile() is not compiled into Python's SQLite; were it, the authorizer would refuse it.
        assert last.startswith(("Error: refused", "Error: no such function")), (query, last)
    # The state the agent might have tried to change is what the gold query sees: still 400 books.
    _, reward, terminated, _, info = env.step(call("submit_sql", query=gold))
    assert terminated and reward == 1.0
    # Grading runs the prediction with the same guards.
    for query in ["DELETE FROM books", "SELECT 1; DROP TABLE books", "PRAGMA writable_schema=1"]:
        env.reset(seed=0)
        _, reward, _, _, info = env.step(call("submit_sql", query=query))
        assert reward == 0.0 and info["reward_components"]["executed"] == 0.0
        assert "refused" in info["units"][0]["evidence"]
    env.close()

    assert {p: _sha(p) for p in (source, copy)} == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing  # no journal, WAL, attached or vacuumed file


def test_refusals_are_clear():
    db = SafeDatabase(bundled_db_path("bookshop"))
    with pytest.raises(QueryError, match="only one SQL statement per query, found 2") as exc:
        db.execute("SELECT 1; DROP TABLE books")
    assert exc.value.kind == "refused"
    with pytest.raises(QueryError, match="DELETE on books is not allowed"):
        db.execute("WITH x AS (SELECT 1) DELETE FROM books")
    with pytest.raises(QueryError, match=r"load_extension\(\) is not allowed"):
        db.execute("SELECT load_extension('x')")
    with pytest.raises(QueryError, match="PRAGMA journal_mode"):
        db.execute("PRAGMA journal_mode = WAL")
    with pytest.raises(QueryError, match="empty"):
        db.execute("   ")
    with pytest.raises(QueryError, match="only comments"):
        db.execute("-- nothing\n/* at all */")
    with pytest.raises(QueryError, match="no such column: nope") as exc:
        db.execute("SELECT nope FROM books")
    assert exc.value.kind == "sql"
    # Schema-reporting pragmas stay available.
    assert db.execute("PRAGMA table_info(books)").rows
    db.close()


def test_trailing_semicolons_and_comments_are_one_statement():
    assert split_statements("SELECT 1;") == ["SELECT 1"]
    assert split_statements("SELECT ';' -- ; comment\n;") == ["SELECT ';' -- ; comment"]
    assert split_statements("SELECT \"a;b\" FROM [x;y] /* ; */") == ["SELECT \"a;b\" FROM [x;y] /* ; */"]
    assert split_statements("SELECT 'it''s; fine'") == ["SELECT 'it''s; fine'"]
    assert len(split_statements("SELECT 1;; SELECT 2")) == 2
    assert first_keyword("-- c\n  ( WITH x AS (SELECT 1) SELECT * FROM x)") == "WITH"
    db = SafeDatabase(bundled_db_path("bookshop"))
    assert db.execute("SELECT COUNT(*) FROM books; -- done").rows == [(400,)]
    db.close()


def test_time_limit_stops_a_runaway_query():
    db = SafeDatabase(bundled_db_path("flights"), timeout_s=0.3)
    with pytest.raises(QueryError, match="time limit of 0.3 s") as exc:
        db.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c")
    assert exc.value.kind == "timeout"
    # The connection is usable right after, with the full limit again.
    assert db.execute("SELECT COUNT(*) FROM flights").rows == [(2500,)]
    db.close()


def test_rows_are_capped_and_counted_without_fetching_everything():
    db = SafeDatabase(bundled_db_path("flights"))
    result = db.execute("SELECT * FROM bookings", keep_rows=5, count_rows_up_to=100_000)
    assert len(result.rows) == 5 and result.total_rows == 6000 and not result.complete
    assert "(6,000 rows; showing the first 5)" in format_result(result)
    huge = db.execute("SELECT * FROM bookings AS a, bookings AS b", keep_rows=3, count_rows_up_to=1000)
    assert huge.total_is_lower_bound and huge.total_rows == 1000
    assert "more than 1,000 rows" in format_result(huge)
    capped = db.execute("SELECT * FROM bookings", keep_rows=100_000, max_bytes=2_000)
    assert not capped.complete and 0 < len(capped.rows) < 100
    db.close()


def test_long_values_are_limited():
    db = SafeDatabase(bundled_db_path("bookshop"), max_value_bytes=1000)
    with pytest.raises(QueryError, match="too big"):
        db.execute("SELECT randomblob(5000)")
    db.close()


def test_connections_are_pooled_and_reused(tmp_path):
    a = make_db(tmp_path / "a.sqlite")
    b = make_db(tmp_path / "b.sqlite")
    pool = DatabasePool(max_open=1)
    first = pool.get(a)
    assert pool.get(a) is first
    pool.get(b)  # evicts and closes a's connection
    assert len(pool) == 1
    assert pool.get(a) is not first
    pool.close()
    assert len(pool) == 0
    with pytest.raises(DatabaseFault, match="'missing.sqlite' does not exist"):
        SafeDatabase(tmp_path / "missing.sqlite")


def test_env_reuses_connections_across_episodes(env):
    env.reset(options={"task_id": "bookshop-001"})
    first = env._agent_dbs.get(env.task.data["db_paths"][0])
    env.reset(options={"task_id": "bookshop-002"})
    assert env._agent_dbs.get(env.task.data["db_paths"][0]) is first
    env.step(call("submit_sql", query="SELECT 1"))
    gold_conn = env._gold_dbs.get(env.task.data["db_paths"][0])
    assert gold_conn is not first  # gold results come from a connection the agent never used


def test_invalid_utf8_text_is_shown_not_fatal(tmp_path):
    path = tmp_path / "latin.sqlite"
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (name TEXT)")
    conn.execute("INSERT INTO t VALUES (CAST(X'4361666AE9' AS TEXT))")  # 'Cafj' + a latin-1 byte
    conn.commit()
    conn.close()
    db = SafeDatabase(path)
    assert db.execute("SELECT name FROM t").rows[0][0].startswith("Cafj")
    db.close()


def test_result_columns_are_limited_but_every_table_stays_readable(tmp_path):
    import sqlite3

    path = tmp_path / "wide.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE wide (" + ", ".join(f"c{i} INTEGER" for i in range(100)) + ")")
    conn.execute("INSERT INTO wide VALUES (" + ", ".join("?" * 100) + ")", list(range(100)))
    conn.execute("CREATE TABLE narrow (x)")
    conn.commit()
    conn.close()
    db = SafeDatabase(path)
    assert len(db.execute("SELECT * FROM wide").columns) == 100  # the widest table sets the limit
    with pytest.raises(QueryError, match="too many columns"):
        db.execute("SELECT * FROM wide, wide AS b")
    narrow = SafeDatabase(bundled_db_path("bookshop"))
    with pytest.raises(QueryError, match="too many columns"):
        narrow.execute("SELECT " + ", ".join(["1"] * 65))
    assert len(narrow.execute("SELECT " + ", ".join(["1"] * 64)).columns) == 64
    db.close()
    narrow.close()


def test_a_broken_view_is_the_querys_error_not_a_broken_file(tmp_path):
    import sqlite3

    path = tmp_path / "view.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (a)")
    conn.execute("CREATE TABLE u (x)")
    conn.execute("CREATE VIEW v AS SELECT x FROM u")
    conn.execute("DROP TABLE u")
    conn.commit()
    conn.close()
    db = SafeDatabase(path)
    assert db.tables() == ["t"] and db.execute("SELECT * FROM t").rows == []
    with pytest.raises(QueryError, match="no such table") as err:
        db.execute("SELECT * FROM v")
    assert err.value.kind == "sql"
    db.close()
