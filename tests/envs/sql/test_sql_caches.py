"""The SQL env's bounded caches and pools: byte budgets, closing what is evicted, loading many databases."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from execgym.envs.sql import tasks as sql_tasks
from execgym.envs.sql.cache import ByteLRU
from execgym.envs.sql.db import DatabasePool, SafeDatabase
from execgym.envs.sql.generator import TEMPLATES, Values
from execgym.envs.sql.tasks import bundled_db_path, load_spider

from .conftest import make_db


def test_a_new_budget_keeps_what_fits_and_bounds_what_comes():
    cache: ByteLRU[str] = ByteLRU(1000, cost=lambda _key, value: len(value))
    for key in "abcd":
        cache.put(key, "x" * 200)
    cache.max_bytes = 500
    assert cache.nbytes <= 500 and len(cache) == 2
    cache.put("e", "y" * 100)
    assert cache.nbytes <= 500 and "e" in cache
    cache.put("e", "z" * 300)  # over the per-entry cap (a quarter of the first budget): the old value goes too
    assert "e" not in cache


def test_an_evicted_connection_is_closed(tmp_path):
    pool = DatabasePool(max_open=2)
    dbs = [pool.get(make_db(tmp_path / f"{i}.sqlite")) for i in range(3)]
    assert len(pool) == 2
    with pytest.raises(sqlite3.ProgrammingError):
        dbs[0].conn.execute("SELECT 1")
    dbs[2].conn.execute("SELECT 1")
    pool.close()
    with pytest.raises(sqlite3.ProgrammingError):
        dbs[2].conn.execute("SELECT 1")


def test_loading_many_databases_keeps_few_connections_open(tmp_path, monkeypatch):
    opened: list[SafeDatabase] = []
    real = sql_tasks.DatabasePool.get

    def get(self: DatabasePool, path: str | Path) -> SafeDatabase:
        db = real(self, path)
        opened.append(db)
        assert len(self) <= 16
        return db

    monkeypatch.setattr(sql_tasks.DatabasePool, "get", get)
    root = tmp_path / "spider"
    entries = []
    for i in range(40):
        make_db(root / "database" / f"shop{i}" / f"shop{i}.sqlite")
        entries.append({"db_id": f"shop{i}", "question": "How many?", "query": "SELECT COUNT(*) FROM items"})
    root.joinpath("dev.json").write_text(json.dumps(entries))
    tasks = load_spider(root, "dev")  # the pool's bound is checked at every open, in get() above
    assert len(tasks) == 40 and len(opened) == 40


def test_template_values_are_cached_within_a_byte_budget():
    values = Values(SafeDatabase(bundled_db_path("bookshop")), cache_bytes=400_000)
    column = values.column("SELECT title FROM books ORDER BY title")
    assert values.column("SELECT title FROM books ORDER BY title") is column  # cached
    assert 0 < values._cache.nbytes <= 400_000
    assert {t.db_id for t in TEMPLATES} == {"bookshop", "hospital", "flights"}
    values.db.close()
