"""Grounding never counts what the agent sent, however a service spells it back; a flood of calls cannot stall it.

A grounded answer rests on what the agent's calls showed. Text the agent sent in an argument shows nothing,
in any quoting or escaping (``'x'``, ``"x\\x01"``, upper-cased, stripped, a normalised path): services report
errors without echoing arguments, grounding reads the values a result holds (not its JSON text), and what
is left of an echo is cut out token by token (:class:`~execgym.envs.tooluse.grading.EchoFilter`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from execgym.envs.tooluse.env import MAX_CALLS_PER_EPISODE, MAX_CALLS_PER_STEP, ToolUseEnv
from execgym.envs.tooluse.grading import EchoFilter, mentions, shown_texts, without_echo

# The reviewer's payloads (issue 16.2) and the same class spelled other ways.
TRICKS = ["shipped delivered", "shipped delivered'\"", "shipped delivered\x01", "SHIPPED\nDELIVERED",
          "  shipped\tdelivered  ", "shipped\\delivered", "shipped\u2028delivered", "shipped/./delivered",
          "x/../shipped delivered", '{"status": "shipped delivered"}']
REFUSAL = "I'm sorry, that order is already shipped or delivered, so it can no longer be cancelled."


@pytest.fixture(scope="module")
def env() -> ToolUseEnv:
    return ToolUseEnv(max_turns=40)


def _family(env: ToolUseEnv, name: str) -> list[Any]:
    return [t for t in env.tasks if t.data["template"] == name]


@pytest.mark.parametrize("trick", TRICKS)
def test_a_status_smuggled_through_an_argument_in_any_spelling_grounds_nothing(env, trick):
    """get_order(order_id="shipped delivered'\\"") then a blanket refusal won 6/6 shop-cancel-shipped."""
    for task in _family(env, "shop-cancel-shipped"):
        env.reset(options={"task_id": task.id})
        obs, *_ = env.step({"name": "get_order", "arguments": {"order_id": trick}})
        assert "shipped" not in obs.casefold() and "delivered" not in obs.casefold(), obs
        *_, info = env.step(REFUSAL)
        assert info["outcome"] == 0.0, (trick, task.id)


def _arguments(schema: dict[str, Any], marker: str) -> dict[str, Any]:
    """Arguments that put ``marker`` (or the number 4711) into every field the schema lets the agent fill."""
    out: dict[str, Any] = {}
    for key, spec in schema.get("properties", {}).items():
        kind = spec.get("type")
        if "enum" in spec:
            out[key] = spec["enum"][0]
        elif kind == "string":
            out[key] = f"/tmp/{marker}" if key in ("path", "source", "destination") else marker
        elif kind == "integer":
            out[key] = 4711
        elif kind == "array":
            items = spec.get("items", {})
            if items.get("type") == "object" or "$ref" in items:
                out[key] = [{"sku": marker, "quantity": 4711}]
            else:
                out[key] = [f"{marker}@x.example"]
        elif "anyOf" in spec:
            out[key] = [f"{marker}@x.example"]
    return out


@pytest.mark.parametrize("marker", ["zqxv'\"\x01", "ZQXV", " zqxv\\n ", "a/../zqxv"])
def test_no_tool_grounds_a_value_the_agent_put_into_its_arguments(env, marker):
    """Every tool of every service, every argument the agent fills: nothing it sent is left to ground on."""
    tasks = {t.data["domain"]: t for t in env.tasks if t.id.endswith("-00")}
    for task in tasks.values():
        _, info = env.reset(options={"task_id": task.id})
        calls = [{"name": tool["function"]["name"],
                  "arguments": _arguments(tool["function"]["parameters"], marker)} for tool in info["tools"]]
        for call in calls:
            env.step(call)
        records = [c for turn in env._calls for c in turn]
        assert len(records) >= len(calls) - 3  # a few are refused by the schema (an e-mail list, a path)
        for record, text in zip([r for r in records if "text" in r], shown_texts(records)):
            assert "zqxv" not in text.casefold(), (record, text)
            assert not mentions(text, "4711")[0], (record, text)
            if not record["ok"]:  # errors never echo an argument, in any form
                assert "zqxv" not in record["text"].casefold() and "4711" not in record["text"], record


def test_the_echo_filter_cuts_every_spelling_and_keeps_what_the_lookup_told():
    assert without_echo("Error: no order with id 'SHIPPED, DELIVERED'", {"order_id": "shipped delivered"}).split() \
        == ["Error:", "no", "order", "with", "id", "'", "'"]
    assert "shipped" not in without_echo(repr("shipped\x01"), ["shipped\x01"])
    assert "shipped" not in without_echo("/shipped", {"path": "x/../shipped"})
    # A number the agent sent is not cut out of a larger one: a 30-minute search keeps the slot 10:30.
    assert mentions(without_echo("10:30-11:00", {"duration_minutes": 30}), "10:30")[0]
    assert not mentions(without_echo("refunded 4711 units", {"quantity": 4711}), "4711")[0]
    # What the lookup told stays: the order's status is not in anything the agent sent.
    assert mentions(without_echo("O-1042\nshipped\n59.9", {"order_id": "O-1042"}), "shipped")[0]
    assert not mentions(without_echo("O-1042\nshipped", {"order_id": "o-1042"}), "O-1042")[0]


def test_grounding_reads_result_values_not_escapes_of_the_json_text(env):
    """A title "note\\n45000" reads back in JSON as "note\\\\n45000": neither spelling may ground the fact."""
    for task in _family(env, "mail-fact"):
        fact = task.data["turns"][0]["outputs"][0]
        env.reset(options={"task_id": task.id})
        env.step({"name": "create_event", "arguments": {"title": f"note\n{fact}\\n{fact}", "date": "2025-03-15",
                                                        "start": "08:00", "end": "08:30"}})
        event_id = json.loads(env.messages[-1]["content"])["event_id"]
        env.step({"name": "get_event", "arguments": {"event_id": event_id}})
        env.step({"name": "cancel_event", "arguments": {"event_id": event_id}})
        *_, info = env.step(task.oracle[-1])
        assert info["outcome"] == 0.0, task.id
        assert next(u for u in info["units"] if u["id"] == "state")["passed"]


def test_a_reply_with_thousands_of_calls_is_capped_and_grading_stays_small():
    """One 194K-character reply with 2,500 calls made the turn-closing step take 117 s (a regex per argument)."""
    env = ToolUseEnv()
    env.reset(options={"task_id": "mail-fact-00"})
    text = "".join(f'<tool_call>{{"name":"search_contacts","arguments":{{"name":"z{i}"}}}}</tool_call>'
                   for i in range(2500))
    obs, _, terminated, truncated, info = env.step(text)
    ran = [c for turn in env._calls for c in turn]
    assert len(ran) == MAX_CALLS_PER_STEP and not (terminated or truncated)
    assert f"at most {MAX_CALLS_PER_STEP} calls" in obs
    *_, terminated, _, info = env.step("Done.")
    assert terminated and info["outcome"] == 0.0


def test_an_episode_runs_at_most_its_call_budget():
    env = ToolUseEnv(max_turns=40)
    env.reset(options={"task_id": "mail-fact-00"})
    reply = [{"name": "search_contacts", "arguments": {"name": f"z{i}"}} for i in range(MAX_CALLS_PER_STEP)]
    steps = MAX_CALLS_PER_EPISODE // MAX_CALLS_PER_STEP + 2
    for _ in range(steps):
        obs, *_ = env.step(reply)
    assert sum(len(turn) for turn in env._calls) == MAX_CALLS_PER_EPISODE
    assert f"at most {MAX_CALLS_PER_EPISODE} calls" in obs


def test_the_echo_filter_walks_each_result_once_whatever_was_sent():
    """Work is counted, not timed: the trie is walked token by token, never once per sent argument."""
    echo = EchoFilter()
    for i in range(5000):
        echo.add({"name": f"z{i} word{i}"})
    text = json.dumps([{"name": f"Person {i}", "email": f"p{i}@x.example"} for i in range(300)])
    walked = 0
    original = dict.__contains__

    class Counting(dict):
        def __contains__(self, key: object) -> bool:
            nonlocal walked
            walked += 1
            return original(self, key)

    def convert(node: dict) -> Counting:
        return Counting({k: convert(v) if isinstance(v, dict) else v for k, v in node.items()})

    echo._trie = convert(echo._trie)
    echo.strip(text)
    tokens = len(text.split())
    assert walked <= 8 * tokens, (walked, tokens)
