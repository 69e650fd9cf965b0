"""Every SQL reward component pays only for what it claims to measure.

Audited as a new user would: for each component, the cheapest degenerate action must not earn it. ``test``,
``hello world``, ``42``, ``SELECT`` and ``DROP TABLE x`` used to earn ``syntax = 1.0`` (sqlglot parses a bare
expression), so the random agent averaged ``syntax = 1.00``. Now ``syntax`` needs one read-only query that
SQLite compiles on the task's database and that reads one of its tables; ``executed`` and ``returned_rows``
need the query to read the database (``SELECT 1`` earns neither); ``schema_link`` and ``ngram`` are paid only
on top of ``syntax``.
"""

from __future__ import annotations

import statistics

import pytest

from execgym.agents.random_agent import RandomAgent
from execgym.envs.sql.env import TextToSQLEnv

from .conftest import call

DEGENERATE = [
    "test", "hello world", "42", "SELECT", "DROP TABLE x", "*", "1", "name", "id", "title",
    "SELECT 1", "SELECT 'Nigeria'", "VALUES (80)", "SELECT name FROM sqlite_master", "PRAGMA table_info(authors)",
    "EXPLAIN SELECT * FROM authors", "SELECT COUNT(*) FROM", "SELECT name FROM nowhere",
    "SELECT country FROM authors WHERE", "COUNT(*) authors country Nigeria SELECT FROM WHERE",
    "authors", "SELECT * FROM authors; SELECT 1", "-- SELECT * FROM authors", "DELETE FROM authors",
    "SELECT count(*) FROM authors WHERE country = 'Nigeria' AND",
]
COMPONENTS = ("executed", "syntax", "schema_link", "ngram")


@pytest.fixture(scope="module")
def sql_env():
    environment = TextToSQLEnv(max_turns=50)
    yield environment
    environment.close()


@pytest.mark.parametrize("query", DEGENERATE)
def test_degenerate_submissions_earn_no_component(sql_env, query):
    sql_env.reset(options={"task_id": "bookshop-001"})  # gold: SELECT COUNT(*) FROM authors WHERE country = ...
    _, reward, _, _, info = sql_env.step({"name": "submit_sql", "arguments": {"query": query}})
    assert reward == 0.0 and info["infra_error"] is None
    assert {k: info["reward_components"][k] for k in COMPONENTS} == dict.fromkeys(COMPONENTS, 0.0), query


@pytest.mark.parametrize("query", ["SELECT 1", "SELECT 'x' AS y", "VALUES (1)", "SELECT name FROM sqlite_master",
                                   "SELECT * FROM pragma_table_info('authors')"])
def test_a_step_that_reads_no_table_earns_no_exploration_signal(sql_env, query):
    sql_env.reset(options={"task_id": "bookshop-001"})
    obs, _, _, _, info = sql_env.step(call("execute_sql", query=query))
    assert info["reward_components"] == {"format": 1.0, "executed": 0.0, "returned_rows": 0.0}, obs
    assert "reads none of the database's tables" in obs


def test_a_real_query_earns_what_it_claims(sql_env):
    sql_env.reset(options={"task_id": "bookshop-001"})
    _, _, _, _, info = sql_env.step(call("execute_sql", query="SELECT * FROM authors WHERE 0"))
    assert info["reward_components"] == {"format": 1.0, "executed": 1.0, "returned_rows": 0.0}
    _, _, _, _, info = sql_env.step(call("execute_sql", query="SELECT COUNT(*) FROM authors"))
    assert info["reward_components"] == {"format": 1.0, "executed": 1.0, "returned_rows": 1.0}
    # Compiles and reads the right table, fails at run time: syntax and schema signals, not executed.
    _, reward, _, _, info = sql_env.step(call(
        "submit_sql", query="SELECT COUNT(*) FROM authors WHERE country = json_extract('{', '$')"))
    c = info["reward_components"]
    assert reward == 0.0 and c["executed"] == 0.0 and c["syntax"] == 1.0
    assert 0.0 < c["schema_link"] <= 1.0 and c["ngram"] > 0.3


def test_a_timed_out_query_still_has_its_syntax():
    env = TextToSQLEnv(grading_timeout_s=0.2)
    env.reset(options={"task_id": "bookshop-001"})
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT COUNT(*) FROM authors, c WHERE country = 'Nigeria'")
    _, reward, _, _, info = env.step(call("submit_sql", query=slow))
    c = info["reward_components"]
    assert reward == 0.0 and "time limit" in info["units"][0]["evidence"]
    assert c["executed"] == 0.0 and c["syntax"] == 1.0 and c["schema_link"] == 1.0
    env.close()


def test_schema_link_counts_what_sqlite_resolves_not_the_text(sql_env):
    sql_env.reset(options={"task_id": "bookshop-001"})
    # Aliases, CTEs and a view of names are resolved to the real table and columns.
    query = "WITH a AS (SELECT country AS c FROM authors) SELECT COUNT(*) FROM a WHERE c = 'Nigeria'"
    _, _, _, _, info = sql_env.step(call("submit_sql", query=query))
    assert info["outcome"] == 1.0 and info["reward_components"]["schema_link"] == 1.0


def _random_means(env: TextToSQLEnv, episodes: int) -> dict[str, float]:
    agent = RandomAgent(seed=0)
    sums: dict[str, list[float]] = {k: [] for k in COMPONENTS}
    for episode in range(episodes):
        obs, info = env.reset(seed=episode)
        agent.reset(info)
        while True:
            obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
            if terminated or truncated:
                break
        assert info["infra_error"] is None
        for key in COMPONENTS:
            sums[key].append(info["reward_components"].get(key, 0.0))
    return {k: statistics.fmean(v) for k, v in sums.items()}


def test_random_agent_earns_almost_nothing_and_the_oracle_everything():
    env = TextToSQLEnv(max_turns=10)
    means = _random_means(env, 60)
    assert means["syntax"] <= 0.05 and means["schema_link"] <= 0.05 and means["ngram"] <= 0.05, means
    oracle = []
    for task in env.tasks:
        env.reset(options={"task_id": task.id})
        _, reward, _, _, info = env.step(task.oracle[0])
        assert reward == 1.0
        oracle.append([info["reward_components"][k] for k in ("executed", "syntax", "schema_link", "ngram")])
    assert all(row == [1.0, 1.0, 1.0, 1.0] for row in oracle)
    env.close()


def test_generated_oracle_earns_every_component():
    env = TextToSQLEnv(dataset="generated")
    for seed in range(30):
        env.reset(seed=seed)
        _, reward, _, _, info = env.step(env.task.oracle[0])
        assert reward == 1.0 and all(info["reward_components"][k] == 1.0 for k in COMPONENTS), env.task.id
    env.close()
