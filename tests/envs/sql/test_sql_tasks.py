"""Bundled databases and questions, the template generator, and the Spider / BIRD / JSONL loaders."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from execgym.envs.sql.env import TextToSQLEnv
from execgym.envs.sql.generator import TEMPLATES, QuestionGenerator
from execgym.envs.sql.grading import normalize_rows
from execgym.envs.sql.tasks import (
    ASSETS_DIR,
    bundled_tasks,
    load_bird,
    load_jsonl,
    load_spider,
)

from .conftest import call, make_db

DB_IDS = ("bookshop", "hospital", "flights")


def _connect(db_id: str) -> sqlite3.Connection:
    path = ASSETS_DIR / db_id / f"{db_id}.sqlite"
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


# ------------------------------------------------------------------------------------------ databases
def test_bundled_databases_meet_the_spec():
    total = 0
    for db_id in DB_IDS:
        path = ASSETS_DIR / db_id / f"{db_id}.sqlite"
        total += path.stat().st_size
        conn = _connect(db_id)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert len(tables) >= 5, db_id
        counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        assert max(counts.values()) >= 1000, (db_id, counts)
        assert sum(bool(conn.execute(f'PRAGMA foreign_key_list("{t}")').fetchall()) for t in tables) >= 2
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        columns = [(t, r[1], r[2]) for t in tables for r in conn.execute(f'PRAGMA table_info("{t}")')]
        assert any(typ == "TEXT" for _, _, typ in columns)
        dates = [c for c in columns if c[1].endswith(("_date", "_time"))]
        assert dates, db_id
        nulls = sum(conn.execute(f'SELECT COUNT(*) FROM "{t}" WHERE "{c}" IS NULL').fetchone()[0]
                    for t, c, _ in columns)
        assert nulls > 0, db_id
        conn.close()
    assert total < 4_000_000


def test_build_script_reproduces_the_committed_databases(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ among the package's assets
    spec = importlib.util.spec_from_file_location("sql_build", ASSETS_DIR / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for path in build.build_all(tmp_path):
        committed = sqlite3.connect(ASSETS_DIR / path.parent.name / path.name)
        rebuilt = sqlite3.connect(path)
        assert list(committed.iterdump()) == list(rebuilt.iterdump()), path.name
        committed.close()
        rebuilt.close()


# ------------------------------------------------------------------------------------------ questions
def test_bundled_question_set_shape():
    tasks = bundled_tasks()
    assert len(tasks) >= 150
    assert len({t.id for t in tasks}) == len(tasks)
    assert {t.data["db_id"] for t in tasks} == set(DB_IDS)
    assert set(Counter(t.difficulty for t in tasks)) == {"easy", "medium", "hard"}
    splits = Counter(t.split for t in tasks)
    assert set(splits) == {"train", "test"} and 0.15 < splits["test"] / len(tasks) < 0.45
    assert bundled_tasks()[0].split == tasks[0].split  # stable
    for task in tasks:
        assert task.oracle == ({"name": "submit_sql", "arguments": {"query": task.data["gold"]}},)
        assert task.data["gold"] not in task.prompt
        assert task.data["db_id"] in task.prompt and task.data["question"] in task.prompt
    features = " ".join(t.data["gold"].upper() for t in tasks)
    for construct in (" JOIN ", " GROUP BY ", " HAVING ", "(SELECT", " ORDER BY ", " LIMIT ", " INTERSECT ",
                      " EXCEPT ", "STRFTIME(", "JULIANDAY("):
        assert construct in features, construct


def test_every_gold_query_runs_and_answers():
    conns = {db_id: _connect(db_id) for db_id in DB_IDS}
    for task in bundled_tasks():
        conn = conns[task.data["db_id"]]
        rows = conn.execute(task.data["gold"]).fetchall()
        assert rows, task.id
        assert rows != [(0,)] and rows != [(None,)], task.id
        # Ties broken by scan order would make the answer depend on the query plan: reverse the scans.
        conn.execute("PRAGMA reverse_unordered_selects = ON")
        reversed_rows = conn.execute(task.data["gold"]).fetchall()
        conn.execute("PRAGMA reverse_unordered_selects = OFF")
        if " ORDER BY " in task.data["gold"].upper():
            assert normalize_rows(rows) == normalize_rows(reversed_rows), task.id
        else:
            assert sorted(map(repr, normalize_rows(rows))) == sorted(map(repr, normalize_rows(reversed_rows))), task.id


def _order_ties(conn: sqlite3.Connection, sql: str) -> list[int]:
    """Positions where two adjacent rows tie on the ORDER BY keys but differ in what is returned.

    With ``LIMIT k`` only the first k + 1 rows are looked at: a tie at the k-th row means another query plan
    could return another answer.
    """
    tree = sqlglot.parse_one(sql, read="sqlite")
    if not isinstance(tree, exp.Select) or tree.args.get("distinct") or not tree.args.get("order"):
        return []
    limit = tree.args.get("limit")
    k = int(limit.expression.name) if limit else None
    aliases = {s.alias: s.this for s in tree.expressions if isinstance(s, exp.Alias)}
    keys, order = [], []
    for i, ordered in enumerate(tree.args["order"].expressions):
        key = ordered.this
        if isinstance(key, exp.Column) and not key.table and key.name in aliases:
            key = aliases[key.name]
        elif isinstance(key, exp.Literal) and key.is_int:
            chosen = tree.expressions[int(key.name) - 1]
            key = chosen.this if isinstance(chosen, exp.Alias) else chosen
        keys.append(exp.alias_(key.copy(), f"_k{i}"))
        new = ordered.copy()
        new.set("this", exp.column(f"_k{i}"))
        order.append(new)
    probe = tree.copy()
    width = len(tree.expressions)
    probe.set("expressions", [e.copy() for e in tree.expressions] + keys)
    probe.set("order", exp.Order(expressions=order))
    if k is not None:
        probe.set("limit", exp.Limit(expression=exp.Literal.number(k + 1)))
    rows = conn.execute(probe.sql(dialect="sqlite")).fetchall()
    return [i for i in range(len(rows) - 1)
            if rows[i][width:] == rows[i + 1][width:] and rows[i][:width] != rows[i + 1][:width]]


def test_ordered_gold_queries_are_not_ambiguous_by_ties():
    conns = {db_id: _connect(db_id) for db_id in DB_IDS}
    checked = 0
    for task in bundled_tasks():
        gold = task.data["gold"]
        if " ORDER BY " not in gold.upper():
            continue
        checked += 1
        assert _order_ties(conns[task.data["db_id"]], gold) == [], task.id
    assert checked >= 15


def test_tie_detector_catches_a_tie(tmp_path):
    conn = sqlite3.connect(make_db(tmp_path / "t.sqlite"))
    # desk/chair/lamp are all furniture: LIMIT 1 over category is ambiguous; over price it is not.
    assert _order_ties(conn, "SELECT name FROM items WHERE category = 'furniture' ORDER BY category LIMIT 1")
    assert not _order_ties(conn, "SELECT name FROM items ORDER BY price DESC LIMIT 2")


# ------------------------------------------------------------------------------------------ generator
def test_generator_is_seeded_and_covers_every_template():
    gen = QuestionGenerator()
    assert gen(5, "medium").prompt == gen(5, "medium").prompt
    assert len({gen(seed, "medium").data["gold"] for seed in range(10)}) > 5
    seen = {gen(seed, d).data["template"] for d in ("easy", "medium", "hard") for seed in range(60)}
    assert seen == {t.name for t in TEMPLATES}
    assert gen(3, None).difficulty in {"easy", "medium", "hard"}
    with pytest.raises(ValueError, match="no templates"):
        gen(1, "legendary")
    gen.close()


def test_generated_oracle_scores_one_and_select_one_scores_zero():
    env = TextToSQLEnv(dataset="generated")
    for seed in range(200):
        difficulty = ("easy", "medium", "hard")[seed % 3]
        task_id = f"gen-{difficulty}-{seed}"
        _, info = env.reset(options={"task_id": task_id})
        assert info["task_id"] == task_id and info["difficulty"] == difficulty
        _, reward, terminated, _, info = env.step(env.task.oracle[0])
        assert terminated and reward == 1.0, (task_id, info)
        env.reset(options={"task_id": task_id})
        _, reward, *_ = env.step(call("submit_sql", query="SELECT 1"))
        assert reward == 0.0, task_id
    env.close()


def test_generated_answers_are_non_empty():
    gen = QuestionGenerator()
    for seed in range(60):
        task = gen(seed, ("easy", "medium", "hard")[seed % 3])
        rows = gen._db(task.data["db_id"]).db.execute(task.data["gold"]).rows
        assert rows and rows != [(0,)], task.data["question"]
    gen.close()


# ------------------------------------------------------------------------------------------ loaders
def test_spider_loader(spider_dir):
    tasks = load_spider(spider_dir, None)
    assert [t.id for t in tasks] == ["dev-0", "dev-1", "dev-2"]
    assert tasks[0].split == "dev" and tasks[0].data["db_id"] == "shop"
    assert tasks[0].data["db_paths"] == [str(spider_dir / "database" / "shop" / "shop.sqlite")]
    assert tasks[0].oracle[0]["arguments"]["query"] == "SELECT COUNT(*) FROM items"
    assert [t.id for t in load_spider(spider_dir, "train")] == ["train-0"]
    with pytest.raises(FileNotFoundError, match="no test.json"):
        load_spider(spider_dir, "test")


def test_spider_loader_errors(spider_dir):
    (spider_dir / "dev.json").write_text(json.dumps([{"db_id": "nowhere", "question": "q", "query": "SELECT 1"}]))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_spider(spider_dir, None)
    (spider_dir / "dev.json").write_text(json.dumps([{"db_id": "shop", "question": "q"}]))
    with pytest.raises(ValueError, match="entry 0: field 'query'"):
        load_spider(spider_dir, None)
    (spider_dir / "dev.json").write_text(json.dumps([{"db_id": "../shop", "question": "q", "query": "SELECT 1"}]))
    with pytest.raises(ValueError, match="not a plain name"):
        load_spider(spider_dir, None)
    (spider_dir / "dev.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_spider(spider_dir, None)


def test_spider_dataset_in_env(spider_dir):
    env = TextToSQLEnv(dataset=f"spider:{spider_dir}")
    assert len(env.tasks) == 3
    for task in env.tasks:
        env.reset(options={"task_id": task.id})
        _, reward, *_ = env.step(task.oracle[0])
        assert reward == 1.0
    env.close()


def test_bird_loader(bird_dir):
    tasks = load_bird(bird_dir, None)
    assert [t.id for t in tasks] == ["7", "8"]
    assert tasks[0].difficulty == "easy" and tasks[1].difficulty == "hard"
    assert tasks[0].data["bird_difficulty"] == "simple"
    assert "Evidence: office items refers to category = 'office'" in tasks[0].prompt
    assert "Evidence" not in tasks[1].prompt  # empty evidence is left out
    assert tasks[0].data["gold"] == "SELECT COUNT(*) FROM items WHERE category = 'office'"
    env = TextToSQLEnv(dataset=f"bird:{bird_dir}", metric="bird")
    env.reset(options={"task_id": "8"})
    _, reward, *_ = env.step(call("submit_sql", query="SELECT name FROM items WHERE added IS NULL"))
    assert reward == 1.0
    env.close()


def test_bird_loader_errors(bird_dir):
    entries = json.loads((bird_dir / "dev.json").read_text())
    entries[1]["db_id"] = "missing_db"
    (bird_dir / "dev.json").write_text(json.dumps(entries))
    with pytest.raises(FileNotFoundError, match="missing_db"):
        load_bird(bird_dir, None)
    del entries[1]["SQL"]
    entries[1]["db_id"] = "shop"
    (bird_dir / "dev.json").write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="entry 1: field 'SQL'"):
        load_bird(bird_dir, None)
    with pytest.raises(FileNotFoundError, match="train"):
        load_bird(bird_dir, "train")


def test_jsonl_loader(tmp_path):
    make_db(tmp_path / "dbs" / "shop.sqlite")
    make_db(tmp_path / "suite" / "shop.sqlite")
    make_db(tmp_path / "suite" / "shop_b.sqlite")
    lines = [
        {"id": "a", "db_path": "dbs/shop.sqlite", "question": "How many items?", "query": "SELECT COUNT(*) FROM items",
         "evidence": "an item is a row of items"},
        {"db_path": "suite", "db_id": "shop", "question": "Names?", "query": "SELECT name FROM items",
         "difficulty": "hard"},
    ]
    file = tmp_path / "tasks.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    tasks = load_jsonl(file, None)
    assert [t.id for t in tasks] == ["a", "test-1"]
    assert tasks[0].data["db_paths"] == [str(tmp_path / "dbs" / "shop.sqlite")]
    assert [Path(p).name for p in tasks[1].data["db_paths"]] == ["shop.sqlite", "shop_b.sqlite"]
    assert tasks[1].difficulty == "hard" and "Evidence: an item" in tasks[0].prompt
    # A folder with <split>.jsonl in it.
    (tmp_path / "train.jsonl").write_text(json.dumps(lines[0]))
    assert [t.split for t in load_jsonl(tmp_path, "train")] == ["train"]
    env = TextToSQLEnv(dataset=f"jsonl:{file}")
    env.reset(options={"task_id": "a"})
    assert env.step(env.task.oracle[0])[1] == 1.0
    env.close()


def test_jsonl_loader_errors(tmp_path):
    file = tmp_path / "tasks.jsonl"
    file.write_text(json.dumps({"id": "a", "db_path": "missing.sqlite", "question": "q", "query": "SELECT 1"}))
    with pytest.raises(FileNotFoundError, match="line 1: database"):
        load_jsonl(file, None)
    file.write_text(json.dumps({"id": "a", "db_path": "x.sqlite", "question": "q"}))
    with pytest.raises(ValueError, match="line 1: field 'query'"):
        load_jsonl(file, None)
    file.write_text('{"id": "a", ')
    with pytest.raises(ValueError, match="tasks.jsonl: line 1: not valid JSON"):
        load_jsonl(file, None)
    with pytest.raises(FileNotFoundError, match="no dev.jsonl"):
        load_jsonl(tmp_path, "dev")
