"""Action fuzzing of every registered env: whatever a policy sends, ``step`` answers with an observation.

One hypothesis example is one action sent to a long-lived env instance (reset whenever its episode ends,
so thousands of examples cost thousands of steps, not thousands of env start-ups). Asserted per action:
no exception escapes ``step``; the observation is inside ``observation_space``; the turn counter never
passes ``max_turns`` (every episode ends by truncation at the latest); after the end, ``step`` raises
``ResetNeeded`` and nothing else.

Examples per env: ``EXECGYM_FUZZ_EXAMPLES`` (default 2,000). How the slow envs are balanced: SQL and tool
use take every drawn action as it is (about half of them reach a real tool). CAD (~70 ms per real run, plus
a grading at every episode end) and SWE (up to ~1 s per real run, ~0.5 s per grading) get a budget of real
tool runs (``ENV_SETTINGS``: 120 and 30) and long episodes (max_turns 20 and 200, so few gradings); a real
call or code fence drawn past the budget is sent as a malformed ``<tool_call>`` block instead, which still
exercises parsing and argument validation at no cost. With 2,000 examples this keeps CAD and SWE well under
a minute each.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.error import ResetNeeded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import execgym

EXAMPLES = int(os.environ.get("EXECGYM_FUZZ_EXAMPLES", "2000"))

# env id -> (constructor kwargs keeping every tool run short, real-tool-call budget or None for unbounded)
ENV_SETTINGS: dict[str, tuple[dict[str, Any], int | None]] = {
    "execgym/TextToSQL-v0": ({"max_turns": 5, "query_timeout_s": 2.0}, None),
    "execgym/ToolUse-v0": ({"max_turns": 5}, None),
    "execgym/BFCL-v0": ({}, None),
    "execgym/CADModel-v0": ({"max_turns": 20, "run_timeout_s": 5.0}, 120),
    "execgym/SWERepair-v0": ({"max_turns": 200, "bash_timeout_s": 5.0, "test_timeout_s": 30.0}, 30),
}

_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=12)


def _nested(depth: int, kind: str) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def _wrap(obj: Any) -> str:
    try:
        return f"<tool_call>{json.dumps(obj)}</tool_call>"
    except (ValueError, RecursionError):  # NaN is fine for json.dumps; too deep is not
        return "<tool_call>{}</tool_call>"


# An action is drawn as (kind, payload); the test turns it into what is sent, knowing the env's tools.
_junk = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("text"), st.text(alphabet=st.characters(codec=None), max_size=80)),  # surrogates, NUL
    st.tuples(st.just("huge"), st.integers(150_000, 1_500_000)),  # megabyte replies, over and under the cap
    st.tuples(st.just("block"), st.text(max_size=200)),  # malformed <tool_call> JSON
    st.tuples(st.just("nested"), st.tuples(st.integers(50, 20_000), st.sampled_from(["list", "dict", "text"]))),
    st.tuples(st.just("unknown"), st.tuples(st.text(max_size=30), _json)),
    st.tuples(st.just("structured"), _json),  # any JSON value as a structured action
    st.tuples(st.just("openai"), st.tuples(st.text(max_size=20), st.text(max_size=100))),
    st.tuples(st.just("wrongtype"), st.tuples(st.integers(0, 99), _json)),
    st.tuples(st.just("fence"), st.text(max_size=200)),
)
# A valid call of a random tool: one value of each JSON type is drawn up front (never depending on which
# tools the current task has, so hypothesis sees the same draws when it replays an example).
_typed_values = st.fixed_dictionaries({
    "string": st.text(max_size=60),
    "integer": st.integers(-(10**6), 10**6),
    "number": st.floats(allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
    "enum": st.integers(0, 20),
    "other": _json,
})
_real = st.tuples(st.just("real"), st.tuples(
    st.integers(0, 99), _typed_values, st.dictionaries(st.text(max_size=12), _json, max_size=3) | st.just({})))
_after_end = st.tuples(st.just("after_end"), st.none())
ACTIONS = st.one_of(_junk, _junk, _real, _after_end)


def _tool_params(info: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for schema in info["tools"]:
        fn = schema.get("function", schema)
        out.append((fn["name"], fn.get("parameters", {}).get("properties") or {}))
    return out


def _value_for(prop: dict[str, Any], values: dict[str, Any]) -> Any:
    if prop.get("enum"):
        return prop["enum"][values["enum"] % len(prop["enum"])]
    kind = prop.get("type")
    return values[kind] if kind in values else values["other"]


class FuzzState:
    """One env and its bookkeeping across examples."""

    def __init__(self, env_id: str) -> None:
        kwargs, self.budget = ENV_SETTINGS.get(env_id, ({"max_turns": 5}, 20))
        self.env = gym.make(env_id, **kwargs).unwrapped
        self.max_turns = self.env.max_turns
        self.stats: Counter[str] = Counter()
        self.over = True
        self.info: dict[str, Any] = {}
        self.turns = 0

    def ensure_episode(self) -> None:
        if self.over:
            obs, self.info = self.env.reset(seed=self.stats["episodes"])
            assert self.env.observation_space.contains(obs)
            self.stats["episodes"] += 1
            self.over, self.turns = False, 0

    def action(self, kind: str, payload: Any) -> Any:
        tools = _tool_params(self.info)
        # Kinds that can reach a real tool run: "real", a code fence (CAD and SWE turn it into a run).
        if kind in ("real", "fence") and self.budget is not None and self.stats["real"] >= self.budget:
            kind, payload = "block", payload if kind == "fence" else json.dumps(payload[1]["other"])
        if kind == "fence":
            self.stats["real"] += 1
        if kind == "text":
            return payload
        if kind == "huge":
            return "<tool_call>" + "x" * payload if payload % 2 else "y" * payload
        if kind == "block":
            return f"<tool_call>{payload}</tool_call>"
        if kind == "nested":
            depth, how = payload
            if how == "text":
                return "<tool_call>" + "[" * depth + "]" * depth + "</tool_call>"
            if depth > 5000:  # a structured action this deep: the parser must answer, not recurse forever
                return {"name": tools[0][0], "arguments": _nested(depth, how)}
            return _wrap({"name": tools[0][0], "arguments": {"x": _nested(depth, how)}})
        if kind == "unknown":
            name, args = payload
            return _wrap({"name": "no_such_tool_" + name, "arguments": args})
        if kind == "structured":
            return payload
        if kind == "openai":
            name, arguments = payload
            return [{"type": "function", "function": {"name": name, "arguments": arguments}}]
        if kind == "wrongtype":
            index, value = payload
            name, props = tools[index % len(tools)]
            if isinstance(value, str):
                value = [value]  # a string could be a valid argument: wrong types only here
            args: Any = {p: value for p in props} if props and isinstance(value, (int, float, list)) else value
            return _wrap({"name": name, "arguments": args})
        if kind == "fence":
            return f"```python\n{payload}\n```"
        assert kind == "real"
        index, values, extra = payload
        name, props = tools[index % len(tools)]
        args = {p: _value_for(schema, values) for p, schema in props.items()}
        args.update(extra)  # unexpected extra arguments, when drawn
        self.stats["real"] += 1
        return _wrap({"name": name, "arguments": args})

    def step(self, kind: str, payload: Any) -> None:
        if kind == "after_end":
            if self.over:  # only meaningful once an episode has ended
                with pytest.raises(ResetNeeded):
                    self.env.step("<tool_call>{}</tool_call>")
                self.stats["after_end"] += 1
            return
        self.ensure_episode()
        action = self.action(kind, payload)
        obs, reward, terminated, truncated, info = self.env.step(action)  # nothing may escape
        self.stats["steps"] += 1
        self.turns += 1
        assert self.env.observation_space.contains(obs), (kind, type(obs))
        assert isinstance(info["reward_components"], dict)
        assert 0.0 <= float(reward) <= 1.0
        assert self.turns <= self.max_turns
        if self.turns == self.max_turns:
            assert terminated or truncated, "the episode outlived max_turns"
        if terminated or truncated:
            self.over = True
            self.stats["truncated" if truncated else "terminated"] += 1
            with pytest.raises(ResetNeeded):  # a call after the end: ResetNeeded, never anything else
                self.env.step(action)
            self.stats["after_end"] += 1
            assert "outcome" in info and "hack_flags" in info
            assert info.get("infra_error") is None, info["infra_error"]


@pytest.fixture(scope="module", params=execgym.registered_envs())
def fuzz_state(request: pytest.FixtureRequest) -> Iterator[FuzzState]:
    state = FuzzState(request.param)
    yield state
    state.env.close()
    print(f"\n{request.param}: {dict(state.stats)}")


def test_registered_envs_are_all_fuzzed() -> None:
    assert set(execgym.registered_envs()) <= set(ENV_SETTINGS)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
                           HealthCheck.large_base_example],
)
@given(move=ACTIONS)
def test_step_survives_any_action(fuzz_state: FuzzState, move: tuple[str, Any]) -> None:
    fuzz_state.step(*move)
