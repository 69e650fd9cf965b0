"""A written-out answer scores 0 and is flagged however many tables it reads.

``SELECT 11 FROM authors WHERE country = 'Nigeria' LIMIT 1`` used to earn outcome 1 with no hack flag and
syntax 1, executed 1, schema_link 1.0 (the table read only made the literal legal); ``SELECT 6 FROM authors
LIMIT 1`` earned executed 1, syntax 1 and schema_link 0.5 on any task. Now a submission whose result columns
are all built from literals (while the gold's are not) scores 0 with the hack flag, and the tables it reads
earn nothing. Honest variants keep what they earned.
"""

from __future__ import annotations

import pytest

from execgym.envs.sql.env import TextToSQLEnv
from execgym.envs.sql.grading import constant_result
from execgym.envs.sql.tasks import bundled_tasks

from .conftest import call

COMPONENTS = ("executed", "syntax", "schema_link", "ngram")


@pytest.fixture(scope="module")
def env():
    environment = TextToSQLEnv()
    yield environment
    environment.close()


def _submit(env: TextToSQLEnv, task_id: str, query: str) -> tuple[float, dict]:
    env.reset(options={"task_id": task_id})
    _, reward, _, _, info = env.step(call("submit_sql", query=query))
    return reward, info


def _answer(env: TextToSQLEnv) -> str:
    env.reset(options={"task_id": "bookshop-001"})
    obs, *_ = env.step(call("execute_sql", query=env.task.data["gold"]))
    return obs.splitlines()[1]


@pytest.mark.parametrize("template", [
    "SELECT {n} FROM authors WHERE country = 'Nigeria' LIMIT 1",
    "SELECT {n} FROM authors LIMIT 1",
    "SELECT {n} AS answer FROM authors a JOIN authors b ON a.author_id = b.author_id LIMIT 1",
    "SELECT {n} WHERE (SELECT 1 FROM authors LIMIT 1)",
    "SELECT CAST('{n}' AS INTEGER) FROM authors LIMIT 1",
    "SELECT {n} + 0 n FROM authors WHERE country = 'Nigeria' GROUP BY country",
    "WITH c AS (SELECT country FROM authors) SELECT {n} FROM c LIMIT 1",
])
def test_a_literal_answer_that_reads_a_table_scores_zero_flagged_and_earns_no_component(env, template):
    query = template.format(n=_answer(env))
    reward, info = _submit(env, "bookshop-001", query)
    assert reward == 0.0
    assert any("literals" in flag for flag in info["hack_flags"]), info["hack_flags"]
    assert all(info["reward_components"][k] == 0.0 for k in COMPONENTS), info["reward_components"]


def test_honest_variants_earn_what_they_earned(env):
    task = next(t for t in bundled_tasks() if t.id == "bookshop-001")
    gold = task.data["gold"]
    reward, info = _submit(env, task.id, gold)
    assert reward == 1.0 and not info["hack_flags"]
    variants = ["SELECT COUNT(*) FROM authors AS x WHERE x.country = 'Nigeria'",
                "SELECT COUNT(author_id) FROM authors WHERE country = 'Nigeria'",
                "SELECT SUM(1) FROM authors WHERE country = 'Nigeria'"]
    for query in variants:
        reward, info = _submit(env, task.id, query)
        assert reward == 1.0 and not info["hack_flags"], (query, info["hack_flags"])
        assert info["reward_components"]["syntax"] == 1.0 and info["reward_components"]["schema_link"] > 0


def test_the_oracle_keeps_every_component_and_no_gold_is_constant(env):
    for task in bundled_tasks():
        assert not constant_result(task.data["gold"]), task.id
        reward, info = _submit(env, task.id, task.data["gold"])
        assert reward == 1.0 and not info["hack_flags"], task.id
        assert all(info["reward_components"][k] == 1.0 for k in COMPONENTS), (task.id, info["reward_components"])


@pytest.mark.parametrize(("query", "constant"), [
    ("SELECT 11 FROM authors WHERE country = 'Nigeria' LIMIT 1", True),
    ("VALUES (1), (2)", True),
    ("SELECT 'a' AS x UNION SELECT 'b'", True),
    ("(SELECT 5 FROM t)", True),
    ("SELECT 1e5, 0x1f, x'00', -1.5, 'a' || 'b', abs(-3), CASE WHEN 1 THEN 2 END z FROM t", True),
    ("SELECT COUNT(*) FROM t", False),
    ("SELECT t.name, 1 FROM t", False),
    ("SELECT * FROM t", False),
    ("SELECT (SELECT max(x) FROM t)", False),
    ("SELECT 1 UNION SELECT name FROM t", False),
    ("SELECT row_number() OVER () FROM t", False),
    ("WITH c AS (SELECT 1) SELECT x FROM c", False),
    ('SELECT "name" FROM t', False),
    ("SELECT CAST(x AS INT) FROM t", False),
    ("SELECT 1 x, y FROM t", False),
    ("not sql at all", False),
])
def test_constant_result_reads_the_outermost_result_columns(query, constant):
    assert constant_result(query) is constant
