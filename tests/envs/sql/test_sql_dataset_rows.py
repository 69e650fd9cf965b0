"""A malformed dataset row is found at load time, named by file and row in one line, or skipped and counted.

Before, several of these surfaced later or as a bare ``KeyError``, ``AttributeError`` or ``RecursionError``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from execgym.envs.sql.env import TextToSQLEnv
from execgym.envs.sql.tasks import load_bird, load_jsonl, load_spider

from .conftest import make_db

GOOD = {"id": "good", "db_path": "shop.sqlite", "question": "How many?", "query": "SELECT COUNT(*) FROM items"}

BAD_ROWS = {
    "not_an_object": (["a", "list"], "expected a JSON object, got list"),
    "null_row": (None, "expected a JSON object, got NoneType"),
    "missing_question": ({**GOOD, "id": "x", "question": None}, "field 'question' must be a non-empty string"),
    "query_not_text": ({**GOOD, "id": "x", "query": {"sql": 1}}, "field 'query' must be a non-empty string"),
    "id_is_a_list": ({**GOOD, "id": [1, 2]}, "field 'id' must be a string or an integer, got list"),
    "id_is_a_bool": ({**GOOD, "id": True}, "field 'id' must be a string or an integer, got bool"),
    "duplicate_id": ({**GOOD}, r"duplicate id 'good' \(first at line 1\)"),
    "difficulty_not_text": ({**GOOD, "id": "x", "difficulty": 3}, "field 'difficulty' must be a string or null"),
    "evidence_not_text": ({**GOOD, "id": "x", "evidence": ["e"]}, "field 'evidence' must be a string or null"),
    "db_id_not_text": ({**GOOD, "id": "x", "db_id": 7}, "field 'db_id' must be a string or null"),
    "surrogate": ({**GOOD, "id": "x", "question": "caf\ud800"}, "field 'question' is not valid Unicode"),
    "nul": ({**GOOD, "id": "x", "question": "a\x00b"}, "field 'question' holds a NUL character"),
    "gold_does_not_compile": ({**GOOD, "id": "x", "query": "SELECT nope FROM items"},
                              r"the gold query does not compile on shop\.sqlite: no such column: nope"),
    "gold_writes": ({**GOOD, "id": "x", "query": "DELETE FROM items"}, "the gold query does not compile"),
    "gold_two_statements": ({**GOOD, "id": "x", "query": "SELECT 1; SELECT 2"}, "only one SQL statement"),
    "gold_too_long": ({**GOOD, "id": "x", "query": "SELECT " + "1+" * 60_000 + "1"},
                      "the gold query is longer than 100,000"),
    "db_missing": ({**GOOD, "id": "x", "db_path": "nope.sqlite"}, "database '.*nope.sqlite' does not exist"),
    "db_is_garbage": ({**GOOD, "id": "x", "db_path": "garbage.sqlite"},
                      "database file 'garbage.sqlite' is not a readable SQLite database"),
}


def _write(tmp_path: Path, rows: list[object]) -> Path:
    make_db(tmp_path / "shop.sqlite")
    (tmp_path / "garbage.sqlite").write_bytes(b"not sqlite " * 500)
    file = tmp_path / "tasks.jsonl"
    file.write_text("\n".join(json.dumps(r) if not isinstance(r, str) else r for r in rows) + "\n")
    return file


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_one_line_naming_the_file_and_the_row(tmp_path, case):
    row, message = BAD_ROWS[case]
    file = _write(tmp_path, [GOOD, row])
    with pytest.raises(ValueError, match=r"tasks\.jsonl: line 2: (.*: )?" + message) as err:
        TextToSQLEnv(dataset=f"jsonl:{file}")
    assert "\n" not in str(err.value)
    assert str(file) in str(err.value)


def test_bad_json_lines_and_deep_nesting_are_rows_too(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    file = _write(tmp_path, [GOOD, '{"id": "a", ', deep, {**GOOD, "id": "last"}])
    with pytest.raises(ValueError, match=r"tasks\.jsonl: line 2: not valid JSON"):
        load_jsonl(file, None)
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 rows with problems \(first: .*line 2: not valid JSON"):
        env = TextToSQLEnv(dataset=f"jsonl:{file}", skip_invalid_rows=True)
    assert env.tasks.ids() == ["good", "last"]
    assert "line 3: the JSON is nested too deeply" in env.skipped_rows[1]
    env.close()


def test_skipping_counts_every_bad_row_and_keeps_the_good(tmp_path):
    rows = [GOOD] + [row for row, _ in BAD_ROWS.values()] + [{**GOOD, "id": "tail"}]
    file = _write(tmp_path, rows)
    with pytest.warns(UserWarning, match=f"skipped {len(BAD_ROWS)} of {len(rows)} rows"):
        env = TextToSQLEnv(dataset=f"jsonl:{file}", skip_invalid_rows=True)
    assert env.tasks.ids() == ["good", "tail"] and len(env.skipped_rows) == len(BAD_ROWS)
    assert all(line.startswith(f"{file}: line ") and "\n" not in line for line in env.skipped_rows)
    env.close()


def test_a_whole_file_that_is_not_json_is_one_clear_error(tmp_path):
    root = tmp_path / "spider"
    make_db(root / "database" / "shop" / "shop.sqlite")
    (root / "dev.json").write_text("[" * 100_000)
    with pytest.raises(ValueError, match=r"dev\.json: (the JSON is nested too deeply|not valid JSON)"):
        load_spider(root, None)
    (root / "dev.json").write_bytes(b"[\xff\xfe]")
    with pytest.raises(ValueError, match=r"dev\.json: not UTF-8 text"):
        load_spider(root, None)
    (root / "dev.json").write_text('{"db_id": "shop"}')
    with pytest.raises(ValueError, match="expected a JSON list of objects, got dict"):
        load_spider(root, None)


def test_spider_and_bird_rows_name_the_entry(tmp_path):
    root = tmp_path / "spider"
    make_db(root / "database" / "shop" / "shop.sqlite")
    (root / "dev.json").write_text(json.dumps([
        {"db_id": "shop", "question": "q", "query": "SELECT name FROM items"},
        {"db_id": "shop", "question": "q", "query": "SELECT name FROM items", "id": {"x": 1}},
    ]))
    with pytest.raises(ValueError, match=r"dev\.json: entry 1: field 'id' must be a string or an integer"):
        load_spider(root, None)
    (root / "dev.json").write_text(json.dumps([
        {"db_id": "shop", "question": "q", "query": "SELECT name FROM items"},
        {"db_id": "gone", "question": "q", "query": "SELECT 1"},
        {"db_id": "gone", "question": "q", "query": "SELECT 1"},
    ]))
    skipped: list[str] = []
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        assert len(load_spider(root, None, skip_invalid_rows=True, skipped=skipped)) == 1
    assert [s.rsplit(": ", 2)[-2] for s in skipped] == ["entry 1", "entry 2"]
    bird = tmp_path / "bird"
    make_db(bird / "dev_databases" / "shop" / "shop.sqlite")
    (bird / "dev.json").write_text(json.dumps([
        {"question_id": 1, "db_id": "shop", "question": "q", "SQL": "SELECT name FROM items"},
        {"question_id": 1, "db_id": "shop", "question": "q", "SQL": "SELECT name FROM items"},
    ]))
    with pytest.raises(ValueError, match=r"dev\.json: entry 1: duplicate id '1' \(first at entry 0\)"):
        load_bird(bird, None)
    (bird / "dev.json").write_text(json.dumps([
        {"question_id": 1, "db_id": "shop", "question": "q", "SQL": "SELECT name FROM items", "difficulty": ["x"]}]))
    with pytest.raises(ValueError, match=r"entry 0: field 'difficulty' must be a string or null"):
        load_bird(bird, None)
