"""Every action format the env accepts, and every malformed case it must explain instead of raising."""

from __future__ import annotations

import json

import pytest

from execgym.core.actions import parse_action, sanitize_text
from execgym.core.tools import Tool

ECHO = Tool(
    "echo",
    "Echo text.",
    {"type": "object", "properties": {"text": {"type": "string"}, "times": {"type": "integer"}},
     "required": ["text"], "additionalProperties": False},
    lambda text, times=1: text * times,
)
RUN = Tool("run_python", "Run code.", {"type": "object", "properties": {"code": {"type": "string"}},
                                        "required": ["code"]}, lambda code: code, code_arg="code")
TOOLS = {"echo": ECHO}


def names_args(parsed):
    return [(c.name, c.arguments) for c in parsed.calls]


def test_hermes_blocks_are_parallel_calls_and_text_is_kept():
    reply = ('Let me look. <tool_call>{"name": "echo", "arguments": {"text": "a"}}</tool_call>\n'
             '<tool_call>\n{"name": "echo", "arguments": {"text": "b", "times": 2}}\n</tool_call>')
    parsed = parse_action(reply, TOOLS)
    assert parsed.ok and parsed.text == "Let me look."
    assert names_args(parsed) == [("echo", {"text": "a"}), ("echo", {"text": "b", "times": 2})]
    assert [c.id for c in parsed.calls] == ["call_1", "call_2"]


def test_openai_tool_calls_entry_with_json_string_arguments():
    entry = {"id": "x", "type": "function", "function": {"name": "echo", "arguments": '{"text": "hi"}'}}
    assert names_args(parse_action(entry, TOOLS)) == [("echo", {"text": "hi"})]
    assert names_args(parse_action([entry, entry], TOOLS)) == [("echo", {"text": "hi"})] * 2


def test_name_arguments_dict_and_assistant_message():
    assert names_args(parse_action({"name": "echo", "arguments": {"text": "z"}}, TOOLS)) == [("echo", {"text": "z"})]
    message = {"role": "assistant", "content": "ok", "tool_calls": [
        {"type": "function", "function": {"name": "echo", "arguments": {"text": "m"}}}]}
    parsed = parse_action(message, TOOLS)
    assert parsed.text == "ok" and names_args(parsed) == [("echo", {"text": "m"})]


def test_fenced_code_block_fills_the_code_tool():
    reply = "Here:\n```python\nprint(1)\n```\nthanks"
    parsed = parse_action(reply, {"run_python": RUN, "echo": ECHO})
    assert names_args(parsed) == [("run_python", {"code": "print(1)\n"})]
    assert "print" not in parsed.text
    # without a code tool a fence is just text
    assert parse_action(reply, TOOLS).calls == []


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ('<tool_call>{"name": "echo", "arguments": {"text": "a"</tool_call>', "not valid JSON"),
        ('<tool_call>{"name": "echo", "arguments": {"text": "a"}}', None),  # unterminated but complete JSON
        ('<tool_call>{"arguments": {}}</tool_call>', "missing the tool 'name'"),
        ({"name": "nope", "arguments": {}}, "unknown tool 'nope'; available tools: echo"),
        ({"name": "echo", "arguments": {"text": 3}}, "argument 'text': 3 is not of type 'string'"),
        ({"name": "echo", "arguments": {"text": "a", "extra": 1}}, "'extra' was unexpected"),
        ({"name": "echo", "arguments": {}}, "'text' is a required property"),
        ({"name": "echo", "arguments": "{bad json"}, "'arguments' is not valid JSON"),
        ({"name": "echo", "arguments": [1, 2]}, "'arguments' must be a JSON object"),
        ([], "empty list of tool calls"),
        ([42], "a tool call must be a JSON object, got int"),
        (3.5, "unsupported action type float"),
        ({"role": "assistant", "tool_calls": "nope"}, "'tool_calls' must be a list"),
    ],
)
def test_malformed_actions_are_explained(action, expected):
    parsed = parse_action(action, TOOLS)
    if expected is None:
        assert parsed.ok, parsed.errors
        return
    assert not parsed.ok
    assert any(expected in e for e in parsed.errors), parsed.errors


def test_non_utf8_safe_text_is_sanitised():
    text = "a\ud800b\x00c"
    clean = sanitize_text(text)
    assert clean == "a\ufffdbc"
    clean.encode("utf-8")  # would raise on a lone surrogate
    parsed = parse_action('<tool_call>{"name": "echo", "arguments": {"text": "\ud800"}}</tool_call>', TOOLS)
    assert parsed.ok and json.dumps(parsed.calls[0].arguments, ensure_ascii=False).encode("utf-8")


def test_deep_nesting_does_not_raise():
    deep = "[" * 100_000 + "]" * 100_000
    parsed = parse_action(f"<tool_call>{deep}</tool_call>", TOOLS)
    assert not parsed.ok


def test_tool_schema_from_postponed_annotations():
    from typing import Literal

    from execgym.core.tools import Tool

    namespace: dict = {"Literal": Literal}
    exec(
        "from __future__ import annotations\n"
        "Mode = Literal['fast', 'slow']\n"
        "def go(mode: Mode, n: int = 1) -> str:\n"
        "    '''Go.\n\n    Args:\n        mode: how.\n        n: times.\n    '''\n"
        "    return mode * n\n",
        namespace,
    )
    schema = Tool.from_function(namespace["go"]).parameters
    assert schema["properties"]["mode"]["enum"] == ["fast", "slow"]
    assert schema["required"] == ["mode"]


def _nested_value(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"a": [value]}
    return value


_BIG = "9" * 5000
_CYCLE: list = []
_CYCLE.append(_CYCLE)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ('<tool_call>{"name": "echo", "arguments": {"text": "a", "times": ' + _BIG + '}}</tool_call>',
         "an integer of 5,000 digits"),
        ('<tool_call>{"name": "echo", "arguments": {"text": "a", "times": -' + _BIG + '}}</tool_call>',
         "an integer of 5,000 digits"),
        ('<tool_call>{"name": "echo", "arguments": {"text": "a", "times": 1e999}}</tool_call>', "out of range"),
        ('<tool_call>{"name": "echo", "arguments": {"text": "a", "times": NaN}}</tool_call>',
         "NaN is not a JSON number"),
        ('<tool_call>{"name": "echo", "arguments": {"text": "a", "times": -Infinity}}</tool_call>',
         "-Infinity is not a JSON number"),
        ('<tool_call>{"name": "echo", "arguments": {"text": ' + "[" * 500 + "]" * 500 + '}}</tool_call>',
         "levels deep"),
        ('<tool_call>' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + '</tool_call>', "nested too deeply"),
        ({"id": "c", "type": "function", "function": {"name": "echo", "arguments": '{"times": ' + _BIG + "}"}},
         "an integer of 5,000 digits"),
        ({"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "echo", "arguments": '{"text": "a", "times": NaN}'}}]},
         "NaN is not a JSON number"),
        ({"name": "echo", "arguments": {"text": "a", "times": 10**5000}}, "an integer of more than 1,000 digits"),
        ([{"name": "echo", "arguments": {"text": "a", "times": float("nan")}}], "at 'times': nan is not a finite"),
        ({"name": "echo", "arguments": {"text": "a", "times": float("-inf")}}, "-inf is not a finite number"),
        ({"name": "echo", "arguments": {"text": _nested_value(10_000)}}, "levels deep"),
        ({"name": "echo", "arguments": {"text": _CYCLE}}, "levels deep"),
        ({"name": "echo", "arguments": {"text": "a", 3: 1}}, "a key of type int"),
        ({"name": "echo", "arguments": {"text": {1, 2}}}, "a set, which is not JSON data"),
    ],
    ids=["block-bigint", "block-negative-bigint", "block-1e999", "block-nan", "block-minus-infinity",
         "block-500-deep", "block-50000-deep", "openai-bigint", "assistant-nan", "dict-bigint", "list-nan",
         "dict-inf", "dict-10000-deep", "dict-cycle", "dict-int-key", "dict-set"],
)
def test_numbers_and_nesting_json_cannot_hold_are_malformed_not_exceptions(action, expected):
    parsed = parse_action(action, TOOLS)
    assert not parsed.ok and not parsed.calls
    assert any(expected in e for e in parsed.errors), parsed.errors


def test_the_largest_accepted_numbers_still_parse():
    big = "9" * 1000  # MAX_INT_DIGITS
    parsed = parse_action('<tool_call>{"name": "echo", "arguments": {"text": "a", "times": ' + big + '}}</tool_call>',
                          TOOLS)
    assert parsed.ok and parsed.calls[0].arguments["times"] == int(big)
    json.dumps(parsed.calls[0].to_openai())
    assert parse_action({"name": "echo", "arguments": {"text": "a", "times": -(10**999)}}, TOOLS).ok
    deep = parse_action({"name": "echo", "arguments": {"text": "a", "x": _nested_value(10)}}, ECHO_ANY)
    assert deep.ok, deep.errors


ECHO_ANY = {"echo": Tool("echo", "Echo.", {"type": "object", "properties": {"text": {"type": "string"}}},
                         lambda **kw: "ok")}
