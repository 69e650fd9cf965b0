"""Host memory the Text-to-SQL env may spend on one agent's queries (all of it runs in the host process).

Measured as the growth of the peak RSS of a fresh subprocess (``ru_maxrss``), with generous bounds, never time:

* big values: SQLite itself refuses a value over ``max_value_bytes`` (100 KB for the agent's queries); rows
  are read one at a time and kept within the byte cap, so a query of many near-limit blobs holds at most the
  cap plus one row, where it used to build a 256-row batch (the issue's ``zeroblob(16000000)`` twice from 20
  rows: +640 MB);
* caches: queries longer than ``max_query_chars`` are refused unparsed, the agent's text is never parsed into
  a kept tree, and the gold-signal and gold-result caches are bounded in bytes (five distinct 180 KB
  submissions used to keep 399 MB alive in sqlglot parse caches).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from execgym.envs.sql import grading
from execgym.envs.sql.env import TextToSQLEnv


def _peak_growth_mb(body: str) -> dict[str, float]:
    """Run ``body`` in a fresh interpreter after a warm-up episode; return its figures and the peak RSS growth."""
    script = textwrap.dedent("""
        import json, resource
        from execgym.envs.sql.env import TextToSQLEnv

        def peak_mb():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        def submit(env, query, task="bookshop-001"):
            env.reset(options={"task_id": task})
            return env.step({"name": "submit_sql", "arguments": {"query": query}})

        def explore(env, query, task="bookshop-001"):
            env.reset(options={"task_id": task})
            return env.step({"name": "execute_sql", "arguments": {"query": query}})

        env = TextToSQLEnv(max_turns=50)
        submit(env, "SELECT name FROM authors")
        explore(env, "SELECT * FROM books")
        figures = {}
        base = peak_mb()
    """) + textwrap.dedent(body) + textwrap.dedent("""
        figures["growth_mb"] = peak_mb() - base
        print(json.dumps(figures))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_big_values_stay_within_the_byte_cap_plus_one_row():
    figures = _peak_growth_mb("""
        issue = "SELECT zeroblob(16000000), zeroblob(16000000) FROM (SELECT 1 FROM authors LIMIT 20)"
        _, reward, _, _, info = submit(env, issue)
        figures["issue_error"] = info["units"][0].get("evidence", "")
        figures["issue_infra"] = info["infra_error"]
        # 600 rows of eight 99 KB blobs: 475 MB of result, each value just under the agent's length limit.
        many = ("SELECT " + ", ".join(["zeroblob(99000)"] * 8)
                + " FROM (SELECT 1 FROM books LIMIT 60), (SELECT 1 FROM books LIMIT 10)")
        _, reward, _, _, info = submit(env, many)
        figures["many_reward"] = reward
        figures["many_infra"] = info["infra_error"]
        obs, *_ = explore(env, many)
        figures["many_obs"] = obs[-80:]
    """)
    assert "too big" in figures["issue_error"] and figures["issue_infra"] is None
    assert figures["many_reward"] == 0.0 and figures["many_infra"] is None
    assert "600 rows" in figures["many_obs"]
    assert figures["growth_mb"] < 200, figures


def test_distinct_long_submissions_keep_no_memory_alive():
    figures = _peak_growth_mb("""
        import gc
        from execgym.envs.sql import grading
        # The issue's five distinct 180 KB submissions: refused before any parsing.
        for i in range(5):
            query = f"SELECT {i} AS k, " + " + ".join(["price"] * 22_500) + " FROM books"
            _, _, _, _, info = submit(env, query)
            figures.setdefault("long_errors", []).append(info["units"][0]["evidence"])
        # Forty distinct queries just under the length limit that SQLite runs and grading tokenizes.
        for i in range(40):
            ids = ",".join(str(i * 5000 + j) for j in range(3_000))[:19_000].rsplit(",", 1)[0]
            submit(env, f"SELECT title FROM books WHERE book_id IN ({ids})")
        gc.collect()
        figures["signal_cache_bytes"] = grading.cache_bytes()
        figures["gold_cache_bytes"] = env._gold_results.nbytes
    """)
    assert all("characters long, over the limit of 20,000" in e for e in figures["long_errors"]), figures
    assert figures["signal_cache_bytes"] <= grading.SIGNAL_CACHE_BYTES
    assert figures["growth_mb"] < 120, figures


def test_distinct_exploration_queries_keep_the_step_cache_within_its_budget():
    figures = _peak_growth_mb("""
        # Four hundred distinct queries near the length limit, each showing 20 rows of long text.
        for i in range(400):
            ids = ",".join(str(i * 5000 + j) for j in range(3_000))[:19_000].rsplit(",", 1)[0]
            explore(env, f"SELECT {i} AS k, title, title || title AS t FROM books WHERE book_id NOT IN ({ids})")
        figures["step_cache_bytes"] = env._shown.nbytes
        figures["step_cache_entries"] = len(env._shown)
        figures["max_key_chars"] = max(len(str(k)) for k in env._shown.keys())
    """)
    assert 0 < figures["step_cache_bytes"] <= 16_000_000, figures
    assert figures["step_cache_entries"] > 100, figures
    assert figures["max_key_chars"] < 400, figures  # a digest, never the 19,000-character text
    assert figures["growth_mb"] < 120, figures


def test_gold_results_are_cached_within_their_byte_budget():
    env = TextToSQLEnv(gold_cache_bytes=20_000, gold_records=False)  # the live path and its cache
    for task in env.tasks.tasks[:60]:
        env.reset(options={"task_id": task.id})
        assert env.step(task.oracle[0])[1] == 1.0
        assert env._gold_results.nbytes <= 20_000
    assert 0 < len(env._gold_results) < 60
    env.close()


@pytest.mark.parametrize("tool", ["execute_sql", "submit_sql"])
def test_a_query_over_max_query_chars_is_refused_clearly(tool):
    env = TextToSQLEnv(max_query_chars=1_000)
    env.reset(options={"task_id": "bookshop-001"})
    query = "SELECT title FROM books WHERE book_id IN (" + ",".join(["1"] * 600) + ")"
    obs, reward, _, _, info = env.step({"name": tool, "arguments": {"query": query}})
    text = obs if tool == "execute_sql" else info["units"][0]["evidence"]
    assert "1,242 characters long, over the limit of 1,000" in text and reward == 0.0
    assert info.get("infra_error") is None
    env.close()


def test_the_signal_cache_is_bounded_by_bytes_not_entries(monkeypatch):
    grading.clear_caches()
    monkeypatch.setattr(grading._SIGNALS, "max_bytes", 200_000)
    monkeypatch.setattr(grading._SIGNALS, "max_entry_bytes", 100_000)
    for i in range(40):
        grading.query_signals(f"SELECT {i} FROM t WHERE x IN (" + ",".join(["1"] * 200) + ")")
        assert grading.cache_bytes() <= 200_000
    assert 5 < len(grading._SIGNALS) < 40  # entries of ~27 KB each: only the most recent fit
    grading.query_signals("SELECT 1 FROM t WHERE x IN (" + ",".join(["1"] * 2_000) + ")")
    assert len(grading._SIGNALS.keys()[-1]) < 1_000  # one entry over the per-entry cap is not kept
    grading.clear_caches()
    assert grading.cache_bytes() == 0
