"""Query-text fuzzing of the Text-to-SQL env: whatever text a policy puts in a query, grading never raises.

Each example is a query built from SQL fragments, names of the bundled schema and arbitrary Unicode (lone
surrogates and NULs included), sent through ``execute_sql`` and ``submit_sql`` as structured calls and as raw,
all-ASCII ``<tool_call>`` text with JSON escapes (the issue's ``\\ud800`` case). Asserted per example: nothing
escapes ``step``; ``infra_error`` stays None (a query cannot make the machinery fail); every component is in
[0, 1]; a component above 0 only for a query SQLite compiles that reads a table of the database.

Examples: ``EXECGYM_FUZZ_EXAMPLES`` (default 2,000), divided by 10 here: each example costs two steps.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execgym.envs.sql.db import SafeDatabase
from execgym.envs.sql.env import TextToSQLEnv
from execgym.envs.sql.tasks import bundled_db_path

EXAMPLES = max(50, int(os.environ.get("EXECGYM_FUZZ_EXAMPLES", "2000")) // 10)

FRAGMENTS = ["SELECT", "FROM", "WHERE", "authors", "books", "country", "title", "price", "COUNT(*)", "*", ",",
             "(", ")", "'", '"', ";", "--", "/*", "*/", "=", "'Nigeria'", "JOIN", "ON", "GROUP BY", "ORDER BY",
             "LIMIT 1", "UNION", "WITH x AS", "zeroblob(999999)", "randomblob(10)", "load_extension('x')",
             "ATTACH", "PRAGMA", "DELETE", "1", "NULL", "\ud800", "\udfff", "\x00", "é", "\U0001f600", "\n"]
_any_char = st.characters(exclude_categories=())  # surrogates (Cs) included
_piece = st.sampled_from(FRAGMENTS) | st.text(alphabet=_any_char, max_size=8)
QUERIES = st.lists(_piece, max_size=14).map(" ".join)


@pytest.fixture(scope="module")
def fuzz_env():
    env = TextToSQLEnv(max_turns=3, query_timeout_s=0.5, grading_timeout_s=0.5, max_result_rows=2_000)
    yield env
    env.close()


@pytest.fixture(scope="module")
def checker():
    db = SafeDatabase(bundled_db_path("bookshop"))
    yield db
    db.close()


def _send(env: TextToSQLEnv, tool: str, query: str, raw: bool) -> dict:
    if raw:
        action = "<tool_call>" + json.dumps({"name": tool, "arguments": {"query": query}}, ensure_ascii=True)
        action += "</tool_call>"
        assert action.isascii()
    else:
        action = {"name": tool, "arguments": {"query": query}}
    return env.step(action)[4]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=QUERIES, raw=st.booleans())
def test_no_query_text_breaks_grading(fuzz_env, checker, query, raw):
    fuzz_env.reset(options={"task_id": "bookshop-001"})
    info = _send(fuzz_env, "execute_sql", query, raw)
    assert "infra_error" not in info
    info = _send(fuzz_env, "submit_sql", query, raw)
    assert info["infra_error"] is None, info["infra_error"]
    components = info["reward_components"]
    assert all(0.0 <= components[k] <= 1.0 for k in ("executed", "syntax", "schema_link", "ngram"))
    if components["syntax"] or components["schema_link"] or components["ngram"] or components["executed"]:
        assert checker.compiles(query) and checker.last_reads, query


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ud83d", "\\u0000"])
def test_the_issues_ascii_json_escape(fuzz_env, escape):
    fuzz_env.reset(options={"task_id": "bookshop-001"})
    action = ('<tool_call>{"name": "submit_sql", "arguments": {"query": "SELECT \'' + escape
              + '\' FROM authors"}}</tool_call>')
    _, reward, terminated, _, info = fuzz_env.step(action)
    assert terminated and reward == 0.0 and info["infra_error"] is None
    assert "refused" in info["units"][0]["evidence"] and info["reward_components"]["syntax"] == 0.0
