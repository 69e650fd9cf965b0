"""TextToSQLEnv end to end: gymnasium API, tools, multi-turn episodes, grading on db variants, rewards."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from execgym.envs.sql.env import TextToSQLEnv

from .conftest import ENV_ID, call, make_db

TOOL_NAMES = ["list_tables", "describe_table", "execute_sql", "submit_sql"]


def test_gym_make_and_check_env():
    env = gym.make(ENV_ID, render_mode="ansi")
    obs, info = env.reset(seed=3)
    assert [t["function"]["name"] for t in info["tools"]] == TOOL_NAMES
    assert info["task_id"] and info["extra"]["db_id"] in obs and "Question:" in obs
    assert "submit_sql" in info["system_prompt"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


def test_reset_is_seeded():
    env = TextToSQLEnv()
    first = [env.reset(seed=s)[1]["task_id"] for s in range(5)]
    again = [env.reset(seed=s)[1]["task_id"] for s in range(5)]
    assert first == again and len(set(first)) > 1
    assert env.reset(options={"task_id": "flights-001"})[1]["task_id"] == "flights-001"
    test_only = TextToSQLEnv(split="test")
    assert {t.split for t in test_only.tasks} == {"test"}
    env.close()
    test_only.close()


def test_full_multi_turn_episode_with_raw_text(env):
    obs, info = env.reset(options={"task_id": "bookshop-019"})
    gold = env.task.data["gold"]
    assert gold not in obs and gold not in json.dumps(info)
    assert "Kenji Garcia" in obs

    obs, reward, terminated, truncated, info = env.step("Let me look around.\n" + call("list_tables"))
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert "books (400 rows)" in obs and "authors (80 rows)" in obs
    assert info["reward_components"]["format"] == 1.0

    obs, *_ , info = env.step(call("describe_table", name="books"))
    assert "author_id INTEGER NOT NULL" in obs and "author_id -> authors.author_id" in obs
    assert "Sample rows (3):" in obs and "title TEXT NOT NULL UNIQUE" in obs

    lookup = "SELECT author_id FROM authors WHERE name = 'Kenji Garcia'"
    obs, _, _, _, info = env.step(call("execute_sql", query=lookup))
    assert info["reward_components"] == {"format": 1.0, "executed": 1.0, "returned_rows": 1.0}
    assert obs.splitlines()[0] == "author_id" and obs.endswith("(1 row)")

    obs, _, _, _, info = env.step(call("execute_sql", query="SELECT title FROM books WHERE author_id = -1"))
    assert info["reward_components"]["returned_rows"] == 0.0 and obs.endswith("(0 rows)")

    obs, _, _, _, info = env.step(call("execute_sql", query="SELECT titel FROM books"))
    assert info["reward_components"]["executed"] == 0.0 and "no such column: titel" in obs

    # A fenced ```sql block without a tool call runs as execute_sql.
    obs, _, _, _, info = env.step("Trying:\n```sql\nSELECT title FROM books\n```")
    assert info["tool_calls"][0]["name"] == "execute_sql"
    assert "(400 rows; showing the first 20)" in obs

    answer = ("SELECT b.title FROM books b JOIN authors a ON a.author_id = b.author_id "
              "WHERE a.name = 'Kenji Garcia'")
    obs, reward, terminated, truncated, info = env.step("Final answer:\n" + call("submit_sql", query=answer))
    assert terminated and not truncated and reward == 1.0
    assert info["outcome"] == 1.0 and info["submitted"] and info["turns"] == 7
    components = info["reward_components"]
    assert components["executed"] == 1.0 and components["syntax"] == 1.0
    assert components["schema_link"] == 1.0 and 0.3 < components["ngram"] < 1.0
    assert info["units"] == [{"id": "bookshop.sqlite", "passed": True,
                              "evidence": "the result (17 rows) matches the gold result (17 rows)",
                              "extra": {"rows": 17, "gold_rows": 17}}]
    assert info["hack_flags"] == [] and info["infra_error"] is None
    with pytest.raises(gym.error.ResetNeeded):
        env.step(call("list_tables"))


def test_malformed_actions_are_observations(env):
    env.reset(options={"task_id": "hospital-001"})
    obs, reward, terminated, _, info = env.step("I think the answer is 58.")
    assert not terminated and info["reward_components"]["format"] == 0.0 and "No tool call" in obs
    obs, *_ = env.step(call("drop_everything"))
    assert "unknown tool 'drop_everything'" in obs
    obs, *_ = env.step(call("execute_sql"))
    assert "invalid arguments for execute_sql" in obs
    obs, *_ = env.step(call("describe_table", name="nurses"))
    assert "no table named 'nurses'" in obs and "patients" in obs


def test_wrong_answers_score_zero_with_partial_signals(env):
    env.reset(options={"task_id": "hospital-001"})  # How many patients live in Oslo?
    _, reward, _, _, info = env.step(call("submit_sql", query="SELECT COUNT(*) FROM patients WHERE city = 'Rome'"))
    assert reward == 0.0 and info["units"][0]["passed"] is False
    c = info["reward_components"]
    assert c["executed"] == 1.0 and c["syntax"] == 1.0 and c["schema_link"] == 1.0 and c["ngram"] > 0.7

    env.reset(options={"task_id": "hospital-001"})
    _, reward, _, _, info = env.step(call("submit_sql", query="SELEC COUNT(*) FROM patients"))
    c = info["reward_components"]
    assert reward == 0.0 and c["executed"] == 0.0 and c["syntax"] == 0.0 and c["schema_link"] == 0.0
    assert "syntax error" in info["units"][0]["evidence"]


def test_select_one_and_oracle_on_every_bundled_task(env):
    for task in env.tasks:
        env.reset(options={"task_id": task.id})
        assert env.step(task.oracle[0])[1] == 1.0, task.id
        env.reset(options={"task_id": task.id})
        assert env.step(call("submit_sql", query="SELECT 1"))[1] == 0.0, task.id


def test_truncation_without_submission():
    env = TextToSQLEnv(max_turns=2)
    env.reset(options={"task_id": "flights-001"})
    _, _, terminated, truncated, _ = env.step(call("list_tables"))
    assert not terminated and not truncated
    _, reward, terminated, truncated, info = env.step(call("execute_sql", query="SELECT 1"))
    assert truncated and not terminated and reward == 0.0 and not info["submitted"]
    # At the end, the grading components (nothing was submitted: all 0) take the place of the step's own.
    assert {k: info["reward_components"][k] for k in ("executed", "syntax", "schema_link", "ngram")} == {
        "executed": 0.0, "syntax": 0.0, "schema_link": 0.0, "ngram": 0.0}
    assert info["grade_details"]["error"] == "no query was submitted"
    env.close()


def test_hard_coded_answer_is_flagged(env):
    env.reset(options={"task_id": "bookshop-002"})  # publishers in Warsaw
    literal = "SELECT 'Harbor House' UNION ALL SELECT 'Red Fern Press'"
    _, reward, _, _, info = env.step(call("submit_sql", query=literal))
    assert reward == 1.0
    assert info["hack_flags"] and "literals" in info["hack_flags"][0]


def test_spider_variants_test_suite_semantics(variants_dir):
    env = TextToSQLEnv(dataset=f"spider:{variants_dir}")
    task = env.tasks.get("dev-0")
    assert [p.rsplit("/", 1)[-1] for p in task.data["db_paths"]] == ["shop.sqlite", "shop_v2.sqlite"]
    # Matches on shop.sqlite (only the pen is under 10 there) but not on shop_v2 (the stapler too).
    env.reset(options={"task_id": "dev-0"})
    _, reward, _, _, info = env.step(call("submit_sql", query="SELECT name FROM items WHERE price < 2"))
    assert reward == 0.0
    assert [(u["id"], u["passed"]) for u in info["units"]] == [("shop.sqlite", True), ("shop_v2.sqlite", False)]
    env.reset(options={"task_id": "dev-0"})
    _, reward, _, _, info = env.step(call("submit_sql", query="SELECT name FROM items WHERE price < 10.0"))
    assert reward == 1.0 and all(u["passed"] for u in info["units"])
    # An error on the first variant fails the submission without running the rest.
    env.reset(options={"task_id": "dev-0"})
    _, reward, _, _, info = env.step(call("submit_sql", query="SELECT nothing FROM items"))
    assert reward == 0.0 and [u["evidence"] for u in info["units"]][1] == "not run"
    env.close()


def test_metric_bird_versus_spider(tmp_path):
    make_db(tmp_path / "shop.sqlite")
    lines = [
        {"id": "dup", "db_path": "shop.sqlite", "question": "Categories of all items.",
         "query": "SELECT category FROM items"},
        {"id": "perm", "db_path": "shop.sqlite", "question": "Name and price.",
         "query": "SELECT name, price FROM items"},
        {"id": "ord", "db_path": "shop.sqlite", "question": "Names by price.",
         "query": "SELECT name FROM items ORDER BY price"},
    ]
    file = tmp_path / "t.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in lines))
    submissions = {
        "dup": "SELECT DISTINCT category FROM items",
        "perm": "SELECT price, name FROM items",
        "ord": "SELECT name FROM items ORDER BY price DESC",
    }
    expected = {"spider": {"dup": 0.0, "perm": 1.0, "ord": 0.0}, "bird": {"dup": 1.0, "perm": 0.0, "ord": 1.0}}
    for metric, outcomes in expected.items():
        env = TextToSQLEnv(dataset=f"jsonl:{file}", metric=metric)
        for task_id, query in submissions.items():
            env.reset(options={"task_id": task_id})
            assert env.step(call("submit_sql", query=query))[1] == outcomes[task_id], (metric, task_id)
        env.close()
    with pytest.raises(ValueError, match="metric must be one of"):
        TextToSQLEnv(metric="exact")


def test_broken_gold_is_found_at_load_and_a_failing_gold_is_an_infra_error(tmp_path):
    make_db(tmp_path / "shop.sqlite")
    file = tmp_path / "t.jsonl"
    entry = {"id": "x", "db_path": "shop.sqlite", "question": "q", "query": "SELECT nope FROM items"}
    file.write_text(json.dumps(entry))
    with pytest.raises(ValueError, match=r"t\.jsonl: line 1: the gold query does not compile on shop\.sqlite: no such"):
        TextToSQLEnv(dataset=f"jsonl:{file}")
    # A gold query that compiles but cannot finish within the grading limit is the machinery's failure.
    entry["query"] = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                      "SELECT MAX(x) FROM c, items")
    file.write_text(json.dumps(entry))
    env = TextToSQLEnv(dataset=f"jsonl:{file}", grading_timeout_s=0.2)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(call("submit_sql", query="SELECT name FROM items"))
    assert reward == 0.0 and "gold query fails" in info["infra_error"]
    env.close()


def test_options_shape_what_the_agent_sees(tmp_path):
    env = TextToSQLEnv(max_rows_shown=3, include_schema=True, query_timeout_s=0.2, count_rows_up_to=50)
    obs, _ = env.reset(options={"task_id": "flights-001"})
    assert "CREATE TABLE bookings" in obs
    obs, *_ = env.step(call("execute_sql", query="SELECT * FROM bookings"))
    assert len(obs.splitlines()) == 5 and obs.endswith("(more than 50 rows; showing the first 3)")
    obs, _, _, _, info = env.step(call(
        "execute_sql", query="WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c"))
    assert "time limit" in obs and info["reward_components"]["executed"] == 0.0
    env.close()


def test_render_shows_the_transcript():
    env = TextToSQLEnv(render_mode="ansi")
    env.reset(options={"task_id": "bookshop-001"})
    env.step(call("submit_sql", query="SELECT COUNT(*) FROM authors WHERE country = 'Nigeria'"))
    text = env.render()
    assert "submit_sql" in text and "=== outcome 1.0" in text
    env.close()


def test_snapshot_branches_grade_independently():
    from execgym.envs.sql.env import TextToSQLEnv

    env = TextToSQLEnv()
    task = env.tasks.tasks[0]
    env.reset(options={"task_id": task.id})
    env.step({"name": "list_tables", "arguments": {}})
    snap = env.snapshot()
    other = TextToSQLEnv()
    other.restore(snap)
    *_, info_a = env.step(task.oracle[0])
    *_, info_b = other.step({"name": "submit_sql", "arguments": {"query": "SELECT 1"}})
    assert (info_a["outcome"], info_b["outcome"]) == (1.0, 0.0)
    assert other.turn == env.turn == 2
