"""One call of a SQL function must not run past the query time limit without bound.

The progress handler looks at the clock only between VM instructions (every few thousand), and one
instruction can be one function call: ``printf('%.*c', 2000000000, 'x')`` ran 7 s against a 5 s limit, and
SQLite's ``instr()`` / ``replace()`` are O(n*m) over two long values (40 ms a call at 100 KB, 2.4 s at 1 MB),
so a 20,000-character query could chain hours of host time in one row. Now: printf/format are refused up
front (nothing stops them once started), instr/replace run in linear time on the agent's connections, values
are capped at 100 KB, and a watchdog calls ``interrupt()`` at the deadline. Table-valued functions are refused
with a message that says so.
"""

from __future__ import annotations

import pytest

from execgym.envs.sql.db import UNBOUNDED_FUNCTIONS, QueryError, SafeDatabase
from execgym.envs.sql.env import TextToSQLEnv
from execgym.envs.sql.tasks import bundled_db_path, bundled_tasks

from .test_sql_dataset_paths import call

A = "replace(hex(zeroblob(49990)), '0', 'a')"  # 99,980 a's
NEEDLE = "replace(hex(zeroblob(24990)), '0', 'a') || 'b'"  # the worst case for a naive search


@pytest.fixture
def db():
    database = SafeDatabase(bundled_db_path("bookshop"), max_value_bytes=100_000, timeout_s=5.0)
    yield database
    database.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("query", [
    "SELECT printf('%.*c', 2000000000, 'x') FROM authors LIMIT 1",
    "SELECT printf('%.*c', 2000000000, 'x') || printf('%.*c', 2000000000, 'x')",
    "SELECT format('%d', 1)",
    "SELECT PRINTF('%s', name) FROM authors",
])
def test_printf_and_format_are_refused_before_they_run(db, query):
    with pytest.raises(QueryError, match=r"refused: the function (?i:printf|format)\(\) is not allowed") as err:
        db.execute(query)
    assert err.value.kind == "refused"


def test_printf_stays_available_to_the_operators_gold_queries():
    gold = SafeDatabase(bundled_db_path("bookshop"), allow_unbounded_functions=True)
    assert gold.execute("SELECT printf('%05d', 42)").rows == [("00042",)]
    gold.close()


@pytest.mark.timeout(60)
def test_a_chain_of_worst_case_instr_calls_stops_within_the_limit(db):
    # 1,500 calls of instr() on a 100 KB haystack and a 50 KB needle: about a minute with SQLite's own
    # instr; the linear version answers them at once (and the watchdog would stop a longer chain).
    chained = f"WITH s(a, h) AS (SELECT {A}, {NEEDLE}) SELECT " + ", ".join(
        "max(" + ", ".join(["instr(a, h)"] * 25) + ")" for _ in range(60)) + " FROM s"
    result = db.execute(chained)
    assert result.rows == [tuple([0] * 60)]


@pytest.mark.timeout(60)
def test_replace_is_linear_and_keeps_the_length_limit(db):
    assert db.execute(f"WITH s(a, h) AS (SELECT {A}, {NEEDLE}) SELECT length(replace(a, h, 'c')) FROM s").rows \
        == [(99_980,)]
    with pytest.raises(QueryError, match="too big") as err:
        db.execute(f"SELECT replace({A}, 'a', 'bb')")
    assert err.value.kind == "sql"


@pytest.mark.parametrize(("query", "expected"), [
    ("SELECT instr('héllo', 'l'), instr(x'616263', x'63'), instr(12345, 34), instr('abc', x'63')", (3, 3, 3, 3)),
    ("SELECT instr(1e20, 'e'), instr(NULL, 'a'), instr('abc', 'z'), instr('abc', '')", (4, None, 0, 1)),
    ("SELECT replace('abc', '', 'x'), replace(1.0, '.', 'x'), replace(x'6162', 'a', 'z'), replace('a', NULL, 'b')",
     ("abc", "1x0", "zb", None)),
    ("SELECT replace('aaaa', 'aa', 'b'), replace('héhé', 'é', 'e'), typeof(replace(x'6162', 'a', 'z'))",
     ("bb", "hehe", "text")),
])
def test_the_linear_instr_and_replace_give_sqlites_results(db, query, expected):
    native = SafeDatabase(bundled_db_path("bookshop"), allow_unbounded_functions=True)
    assert native.execute(query).rows == [expected]
    assert db.execute(query).rows == [expected]
    native.close()


def test_values_are_capped_at_100_kb_for_the_agent_and_the_bundled_data_stays_readable():
    env = TextToSQLEnv()
    env.reset(options={"task_id": "bookshop-001"})
    obs, *_ = env.step(call("execute_sql", query="SELECT length(zeroblob(100001))"))
    assert "too big" in obs
    obs, *_ = env.step(call("execute_sql", query="SELECT length(zeroblob(100000))"))
    assert "100000" in obs
    env.close()


@pytest.mark.timeout(60)
def test_the_watchdog_interrupts_at_the_deadline(db):
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(QueryError, match="time limit") as err:
        db.execute(runaway, timeout_s=0.2)
    assert err.value.kind == "timeout"
    # A stale interrupt never reaches the next query.
    assert db.execute("SELECT COUNT(*) FROM authors").rows[0][0] > 0


def test_a_finished_querys_watchdog_never_interrupts_a_later_one(db):
    db._watchdog(object())  # a timer of a query that has ended: its token is gone
    assert db.execute("SELECT COUNT(*) FROM authors").rows[0][0] > 0


@pytest.mark.timeout(60)
def test_a_refused_function_is_the_agents_zero_never_infra_error():
    env = TextToSQLEnv()
    env.reset(options={"task_id": "bookshop-001"})
    obs, *_ = env.step(call("execute_sql", query="SELECT printf('%.*c', 2000000000, 'x') FROM authors"))
    assert "printf() is not allowed" in obs
    _, reward, terminated, _, info = env.step(call("submit_sql", query="SELECT printf('%s', name) FROM authors"))
    assert terminated and reward == 0.0 and info["infra_error"] is None
    assert "printf() is not allowed" in info["units"][0]["evidence"]
    env.close()


@pytest.mark.parametrize("query", ["SELECT * FROM json_each('[1,2]')", "SELECT * FROM json_each('[1,2]'), authors",
                                   "SELECT value FROM json_tree('{\"a\": 1}')"])
def test_table_valued_functions_are_refused_with_the_right_message(db, query):
    with pytest.raises(QueryError) as err:
        db.execute(query)
    assert err.value.kind == "refused"
    assert "table-valued functions" in str(err.value) and "sqlite_master" not in str(err.value)
    assert db.execute("SELECT name FROM pragma_table_info('authors') LIMIT 1").rows  # these stay available


def test_no_bundled_or_generated_gold_query_uses_a_refused_function():
    from execgym.envs.sql.generator import QuestionGenerator

    golds = [t.data["gold"] for t in bundled_tasks()]
    generator = QuestionGenerator()
    golds += [generator(seed).data["gold"] for seed in range(200)]
    generator.close()
    for gold in golds:
        lowered = gold.lower()
        assert not any(f"{name}(" in lowered.replace(" (", "(") for name in UNBOUNDED_FUNCTIONS), gold
