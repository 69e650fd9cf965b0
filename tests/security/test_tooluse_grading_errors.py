"""Issue 14.1: nothing an agent passes to a ToolUse or BFCL tool can crash grading or read as infra_error.

Every tool of every domain gets hypothesis-drawn, schema-valid arguments (ids from the task's own world,
empty and huge strings, path tricks, huge numbers); BFCL functions get arguments of any shape, nested up to
what the parser accepts. Each episode must finish with a graded outcome of 0 or 1, ``infra_error`` None, and
each failing call recorded as a failed call (scored), not raised out of ``step`` and not excused.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execgym.envs.bfcl.env import BFCLEnv
from execgym.envs.tooluse.env import ToolUseEnv
from tests.envs.bfcl.entries import write_bfcl

EXAMPLES = int(os.environ.get("EXECGYM_FUZZ_EXAMPLES", "120"))
TASKS = ("shop-place-00", "shop-refund-01", "office-reschedule-00", "cal-invite-02", "fs-archive-00", "fs-todo-01")


def _ids(task: Any) -> list[str]:
    world = json.dumps(task.data["world"])
    found = {w.strip('"') for w in world.replace(",", " ").replace(":", " ").split() if w.startswith(('"O-', '"C-',
             '"P-', '"E-', '"M-', '"/'))}
    return sorted(found)


def _value(schema: dict[str, Any], defs: dict[str, Any], ids: list[str]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return _value(defs[schema["$ref"].rsplit("/", 1)[1]], defs, ids)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([_value(s, defs, ids) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type", "string")
    if kind == "integer":
        return st.integers(-(10**30), 10**30) | st.sampled_from([0, 1, -1, 2**63])
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(_value(schema.get("items", {}), defs, ids), max_size=4)
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", [])
        return st.fixed_dictionaries({k: _value(props[k], defs, ids) for k in required},
                                     optional={k: _value(v, defs, ids) for k, v in props.items() if k not in required})
    return (st.sampled_from(ids or ["x"]) | st.text(max_size=20)
            | st.sampled_from(["", " ", "/", "..", "/../../etc/passwd", "*" * 40 + "x", "a@b.c", "2025-02-30",
                               "25:61", "\x00", "x" * 100_000, "O-" + "9" * 40]))


@st.composite
def calls(draw: st.DrawFn, tools: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    chosen = draw(st.lists(st.sampled_from(tools), min_size=1, max_size=3))
    out = []
    for tool in chosen:
        params = tool["function"]["parameters"]
        out.append({"name": tool["function"]["name"], "arguments": draw(_value(params, params.get("$defs", {}), ids))})
    return out


@pytest.fixture(scope="module")
def env() -> ToolUseEnv:
    return ToolUseEnv(max_turns=8)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_schema_valid_arguments_are_scored_not_raised_or_excused(env, data):
    task_id = data.draw(st.sampled_from(TASKS))
    _, info = env.reset(options={"task_id": task_id})
    tools, ids = info["tools"], _ids(env.task)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(calls(tools, ids) | st.text(max_size=30))
        *_, terminated, truncated, info = env.step(action)
        for call in info["tool_calls"]:
            assert isinstance(call["error"], bool)
        if terminated or truncated:
            break
    while not (terminated or truncated):
        *_, terminated, truncated, info = env.step("That is all.")
    assert info["infra_error"] is None and info["outcome"] in (0.0, 1.0)
    assert all(isinstance(item["passed"], bool) and item["evidence"] for item in info["checklist"])
    json.dumps(info)


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize("depth", [50, 600, 900])
def test_bfcl_arguments_of_any_depth_are_graded_and_snapshots_survive_them(tmp_path, depth):
    env = BFCLEnv(dataset=f"bfcl:{write_bfcl(tmp_path)}", split="multiple")
    task = env.tasks.tasks[0]
    env.reset(options={"task_id": task.id})
    deep = _nested(depth)
    text = f'<tool_call>{{"name": "book_hotel", "arguments": {{"city": {deep}, "nights": {{"a": {deep}}}, ' \
           f'"guest": {deep}}}}}</tool_call>'

    snapshot = env.snapshot()
    *_, terminated, truncated, info = env.step(text)
    assert terminated and info["infra_error"] is None and info["outcome"] == 0.0
    json.dumps(info["grade_details"]["calls"])
    # The env's own episode state (the recorded calls) copies without Python recursion.
    env._restore_state(env._snapshot_state())
    env.snapshot()  # the final info keeps the calls only 32 levels deep
    other = BFCLEnv(dataset=f"bfcl:{tmp_path}", split="multiple")
    other.restore(snapshot)
    *_, info = other.step(task.oracle[0])
    assert info["outcome"] == 1.0


def test_service_arguments_cannot_smuggle_nested_data_past_the_schema(env):
    """OrderLine refuses unknown keys: before, a 600-deep extra key in an order line broke snapshot()."""
    env.reset(options={"task_id": "shop-place-00"})
    line = dict(env.task.oracle[1][0]["arguments"]["items"][0])
    customer = env.task.oracle[1][0]["arguments"]["customer_id"]
    call = {"name": "place_order", "arguments": {"customer_id": customer, "items": [
        {"sku": line["sku"], "quantity": 1, "x": "<deep>"}]}}
    text = f"<tool_call>{json.dumps(call)}</tool_call>".replace('"<deep>"', _nested(600))
    obs, *_, info = env.step(text)
    # Refused by the schema, or already by the parser for its depth: never run, never in the state.
    assert "invalid arguments for place_order" in obs or "not accepted" in obs, obs
    assert info["reward_components"]["format"] == 0.0
    env.snapshot()
