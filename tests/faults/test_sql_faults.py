"""Faults injected into the Text-to-SQL env's machinery, and failures the agent's own query causes.

A database file removed, replaced by a folder, truncated or overwritten with garbage (all of which really fail
for root, unlike ``chmod 000``) is the machinery's failure: ``info["infra_error"]`` is set, never a plain
outcome 0, and nothing raises out of ``step``. A query that fails for its own reasons (syntax, a refusal, a
timeout, a value or a result too big, text that is not valid Unicode) is the agent's 0 and never sets
``infra_error``: a policy cannot trigger it at will.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from execgym.core.errors import InfraError
from execgym.envs.sql.env import TextToSQLEnv
from tests.envs.sql.conftest import make_db

GOLD = "SELECT name FROM items WHERE category = 'furniture' ORDER BY name"


def call(tool: str, /, **arguments: object) -> str:
    return f"<tool_call>{json.dumps({'name': tool, 'arguments': arguments})}</tool_call>"


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A JSONL dataset with one task over a two-variant database folder: (the jsonl file, the folder)."""
    folder = tmp_path / "db"
    make_db(folder / "shop.sqlite")
    make_db(folder / "shop_v2.sqlite")
    file = tmp_path / "tasks.jsonl"
    file.write_text(json.dumps({"id": "t", "db_path": "db", "db_id": "shop", "question": "Furniture?",
                                "query": GOLD}) + "\n")
    return file, folder


def _corrupt_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database at all " * 400)


def _corrupt_pages(path: Path) -> None:
    # Keep the header and the schema page, scribble over every later page (the tables' b-trees).
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    data[page:] = b"\xa5" * (len(data) - page)
    path.write_bytes(bytes(data))


def _replace_by_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _remove(path: Path) -> None:
    path.unlink()


FAULTS = {"removed": _remove, "folder": _replace_by_folder, "truncated": _corrupt_truncate,
          "garbage": _corrupt_garbage, "pages": _corrupt_pages}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_broken_variant_at_grading_is_an_infra_error(dataset, fault):
    file, folder = dataset
    env = TextToSQLEnv(dataset=f"jsonl:{file}")
    env.reset(seed=0)
    FAULTS[fault](folder / "shop_v2.sqlite")  # the variant only the grader opens
    _, reward, _, _, info = env.step(call("submit_sql", query=GOLD))
    assert reward == 0.0 and info["infra_error"], info
    assert "shop_v2.sqlite" in info["infra_error"] and str(folder) not in info["infra_error"]
    env.close()


@pytest.mark.parametrize("fault", sorted(set(FAULTS) - {"pages"}))
def test_a_broken_database_at_reset_raises_infra_error(dataset, fault):
    file, folder = dataset
    env = TextToSQLEnv(dataset=f"jsonl:{file}")
    FAULTS[fault](folder / "shop.sqlite")
    with pytest.raises(InfraError, match="shop.sqlite"):
        env.reset(seed=0)
    env.close()


def test_corrupt_table_pages_are_an_infra_error_at_the_first_query_that_reads_them(dataset):
    file, folder = dataset
    env = TextToSQLEnv(dataset=f"jsonl:{file}")
    _corrupt_pages(folder / "shop.sqlite")
    for first in (call("execute_sql", query="SELECT name FROM items"), call("list_tables"),
                  call("describe_table", name="items")):
        env.reset(seed=0)  # the schema page is intact: the file opens
        obs, reward, _, truncated, info = env.step(first)
        assert info["infra_error"] and truncated and reward == 0.0 and "not your fault" in obs, (obs, info)
    env.close()


def test_a_result_too_big_to_grade_is_the_agents_zero(dataset):
    file, _ = dataset
    env = TextToSQLEnv(dataset=f"jsonl:{file}", max_result_rows=5_000)
    env.reset(seed=0)
    query = "SELECT * FROM items, items b, items c, items d, items e, items f, items g, items h, items i"
    _, reward, _, _, info = env.step(call("submit_sql", query=query))
    assert reward == 0.0 and info["infra_error"] is None and "exceeds 5,000 rows" in info["units"][0]["evidence"]
    env.close()


@pytest.mark.parametrize("fault", ["truncated", "garbage"])
def test_a_database_corrupted_mid_episode_is_an_infra_error_on_the_next_query(dataset, fault):
    file, folder = dataset
    env = TextToSQLEnv(dataset=f"jsonl:{file}")
    env.reset(seed=0)
    obs, _, _, _, info = env.step(call("execute_sql", query="SELECT * FROM items"))
    assert info["reward_components"]["executed"] == 1.0
    FAULTS[fault](folder / "shop.sqlite")
    obs, reward, terminated, truncated, info = env.step(call("execute_sql", query="SELECT * FROM items"))
    assert info["infra_error"] and truncated and not terminated and reward == 0.0, (obs, info)
    assert "not your fault" in obs
    env.close()


def test_the_gold_cache_does_not_hide_a_fault_of_the_agent_side(dataset):
    """A grader that cached the gold result still fails as infra when the agent-side variant is gone."""
    file, folder = dataset
    env = TextToSQLEnv(dataset=f"jsonl:{file}", max_open_databases=1)  # the agent side reopens each variant
    env.reset(seed=0)
    assert env.step(call("submit_sql", query=GOLD))[1] == 1.0  # gold results cached for both variants
    env.reset(seed=0)
    _replace_by_folder(folder / "shop_v2.sqlite")
    _, reward, _, _, info = env.step(call("submit_sql", query=GOLD))
    assert reward == 0.0 and info["infra_error"] and "shop_v2.sqlite" in info["infra_error"]
    env.close()


AGENT_FAILURES = [
    "SELEC name FRM items",  # syntax
    "SELECT nope FROM items",  # no such column
    "DELETE FROM items",  # refused
    "SELECT 1; SELECT 2",  # two statements
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c",  # timeout
    "SELECT zeroblob(5000000) FROM items",  # a value over the length limit
    "SELECT randomblob(2000000)",
    "SELECT group_concat(hex(zeroblob(100000)), '') FROM items, items AS b, items AS c",
    "SELECT '\ud800' FROM items",  # not valid Unicode
    "SELECT 'a\x00b' FROM items",  # a NUL character
    "SELECT " + ", ".join(["name"] * 3000) + " FROM items",  # too many result columns
    "SELECT * FROM items WHERE id IN (" + ",".join(["1"] * 30_000) + ")",  # too long
    "SELECT json_extract('{', '$')",  # a run-time error
    "SELECT abs(-9223372036854775808) FROM items",  # integer overflow
    "PRAGMA table_info(items)",
    "ATTACH DATABASE '/etc/passwd' AS p",
    "SELECT * FROM sqlite_master",
    "",
    "   ",
    "(" * 5000 + "SELECT 1" + ")" * 5000,  # nested too deeply for the parser
]


@pytest.mark.parametrize("query", AGENT_FAILURES, ids=range(len(AGENT_FAILURES)))
def test_the_agents_own_failure_is_its_zero_never_infra(dataset, query):
    file, _ = dataset
    env = TextToSQLEnv(dataset=f"jsonl:{file}", query_timeout_s=0.3, grading_timeout_s=0.5, max_result_rows=5_000)
    env.reset(seed=0)
    _, _, _, _, info = env.step({"name": "execute_sql", "arguments": {"query": query}})
    assert "infra_error" not in info and info["reward_components"].get("executed", 0.0) == 0.0, info
    _, reward, terminated, _, info = env.step({"name": "submit_sql", "arguments": {"query": query}})
    assert terminated and reward == 0.0 and info["infra_error"] is None, info
    assert info["reward_components"]["executed"] == 0.0
    env.close()


def test_a_missing_database_folder_between_episodes_is_infra_and_recovers(dataset, tmp_path):
    file, folder = dataset
    env = TextToSQLEnv(dataset=f"jsonl:{file}")
    env.reset(seed=0)
    env.step(call("submit_sql", query=GOLD))
    backup = tmp_path / "backup"
    shutil.move(folder, backup)
    env._agent_dbs.close()
    with pytest.raises(InfraError):
        env.reset(seed=0)
    shutil.move(backup, folder)
    env.reset(seed=0)
    assert env.step(call("submit_sql", query=GOLD))[1] == 1.0
    env.close()


def test_an_unexpected_error_in_grading_never_escapes_step(dataset, monkeypatch):
    """A bug in the grader is infra (the oracle's own submission must not read as a 0); what the submission's
    results can set off (memory, recursion) is the submission's 0; a bug on the gold side is infra."""
    from execgym.envs.sql import env as env_module

    file, _ = dataset
    env = TextToSQLEnv(dataset=f"jsonl:{file}")

    def broken_match(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("comparison bug")

    monkeypatch.setattr(env_module, "results_match", broken_match)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(call("submit_sql", query=GOLD))
    assert reward == 0.0 and "comparison bug" in info["infra_error"] and (terminated or truncated)

    def exhausting_match(*args: object, **kwargs: object) -> bool:
        raise MemoryError

    monkeypatch.setattr(env_module, "results_match", exhausting_match)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(call("submit_sql", query=GOLD))
    assert terminated and reward == 0.0 and info["infra_error"] is None
    assert "MemoryError" in info["grade_details"]["error"]
    monkeypatch.undo()

    def broken_execute(self: object, *args: object, **kwargs: object) -> object:
        raise RuntimeError("gold connection bug")

    fresh = TextToSQLEnv(dataset=f"jsonl:{file}")
    fresh.reset(seed=0)
    monkeypatch.setattr(env_module.SafeDatabase, "execute", broken_execute)
    _, reward, _, _, info = fresh.step(call("submit_sql", query=GOLD))
    assert reward == 0.0 and "gold connection bug" in info["infra_error"]
    env.close()
    fresh.close()
