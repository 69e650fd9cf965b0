"""Hypothesis: numbers and nesting JSON cannot hold, in every action format, through ``env.step`` of the core's
toy env and of Text-to-SQL. Asserted per example: no exception escapes ``step`` (Python's int-string limit, an
overflowing float, ``NaN`` / ``Infinity``, a nesting past the parser's limit or past the recursion limit); the
observation is in ``observation_space``; an action carrying one of these is malformed (``format`` 0, the
observation names the problem). Random JSON-ish text around such numbers must not raise either.

Examples per env: ``EXECGYM_FUZZ_EXAMPLES`` (default 2,000) divided by 10.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execgym.core.actions import MAX_INT_DIGITS, MAX_JSON_DEPTH
from execgym.envs.sql.env import TextToSQLEnv
from tests.core.toy_env import GuessEnv

EXAMPLES = max(20, int(os.environ.get("EXECGYM_FUZZ_EXAMPLES", "2000")) // 10)

# A poison: (kind, size, sign). Its text is what a model would write; its value is what a structured action holds.
_POISON = st.one_of(
    st.tuples(st.just("int"), st.integers(MAX_INT_DIGITS + 1, 20_000), st.booleans()),
    st.tuples(st.just("float"), st.integers(309, 5_000), st.booleans()),  # 1e309 and up overflow to inf
    st.tuples(st.just("constant"), st.sampled_from(["NaN", "Infinity"]), st.booleans()),
    st.tuples(st.just("deep"), st.integers(MAX_JSON_DEPTH + 1, 3_000), st.booleans()),
)


def _poison_text(kind: str, size: Any, negative: bool) -> str:
    sign = "-" if negative else ""
    if kind == "int":
        return sign + "9" * size
    if kind == "float":
        return f"{sign}1e{size}" if size % 2 else sign + "9" * size + ".5"
    if kind == "constant":
        return "-Infinity" if negative and size == "Infinity" else size
    return ("[" * size + "]" * size) if negative else ('{"k": ' * size + "0" + "}" * size)


def _poison_value(kind: str, size: Any, negative: bool) -> Any:
    if kind == "int":
        return (-1 if negative else 1) * 10**size
    if kind in ("float", "constant"):
        return float("nan") if size == "NaN" else float("-inf" if negative else "inf")
    value: Any = 0
    for _ in range(size):
        value = [value] if negative else {"k": value}
    return value


_KEY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_PLAIN = st.recursive(st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=10)
                      | st.floats(allow_nan=False, allow_infinity=False),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEY, inner, max_size=3),
                      max_leaves=6)
FORMS = ["block", "openai", "assistant", "structured", "structured-list"]
# JSON-ish noise: the characters of JSON and its number syntax, with the literals that trip decoders.
_NOISE = st.lists(st.sampled_from(['{', '}', '[', ']', '"', ':', ',', '"a"', '"name"', '"arguments"', "NaN",
                                   "Infinity", "-", "1e999", "9" * 4301, "0", ".", "e", "E", "+", " ", "null",
                                   "\\u0000", "\\ud800", "[" * 200, "{\"a\":" * 80]), max_size=40).map("".join)


def _action(form: str, tool: str, arguments_text: str, arguments: dict[str, Any]) -> Any:
    text = '{"name": ' + json.dumps(tool) + ', "arguments": ' + arguments_text + "}"
    if form == "block":
        return f"Let me see. <tool_call>{text}</tool_call>"
    if form == "openai":
        return [{"id": "c1", "type": "function", "function": {"name": tool, "arguments": arguments_text}}]
    if form == "assistant":
        return {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": tool, "arguments": arguments_text}}]}
    if form == "structured":
        return {"name": tool, "arguments": arguments}
    return [{"name": tool, "arguments": arguments}]


class Stepper:
    def __init__(self, env: Any, tools: list[str]) -> None:
        self.env, self.tools, self.over = env, tools, True

    def step(self, action: Any) -> tuple[str, dict[str, Any]]:
        if self.over:
            self.env.reset(seed=0)
            self.over = False
        obs, reward, terminated, truncated, info = self.env.step(action)  # nothing may escape
        assert self.env.observation_space.contains(obs)
        assert 0.0 <= float(reward) <= 1.0
        self.over = terminated or truncated
        return obs, info


@pytest.fixture(scope="module", params=["toy", "sql"])
def stepper(request: pytest.FixtureRequest) -> Iterator[Stepper]:
    if request.param == "toy":
        env: Any = GuessEnv(max_turns=50)
        tools = ["hint", "submit"]
    else:
        env = TextToSQLEnv(max_turns=50, query_timeout_s=0.5, grading_timeout_s=0.5)
        tools = ["execute_sql", "submit_sql"]
    yield Stepper(env, tools)
    env.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
@given(poison=_POISON, form=st.sampled_from(FORMS), tool=st.integers(0, 1), key=_KEY, others=_PLAIN)
def test_a_number_or_nesting_json_cannot_hold_is_a_malformed_action(stepper, poison, form, tool, key, others):
    extra = others if isinstance(others, dict) else {"other": others}
    extra = {k: v for k, v in extra.items() if k != key}
    arguments = {**extra, key: _poison_value(*poison)}
    arguments_text = json.dumps(extra)[:-1] + (", " if extra else "") + json.dumps(key) + ": " \
        + _poison_text(*poison) + "}"
    obs, info = stepper.step(_action(form, stepper.tools[tool], arguments_text, arguments))
    assert info["reward_components"]["format"] == 0.0, obs
    assert "could not be used" in obs, obs


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=_NOISE, form=st.sampled_from(["block", "openai", "assistant"]), tool=st.integers(0, 1))
def test_json_ish_noise_never_raises(stepper, noise, form, tool):
    stepper.step(_action(form, stepper.tools[tool], noise, {}))
    stepper.step(f"<tool_call>{noise}</tool_call>")
