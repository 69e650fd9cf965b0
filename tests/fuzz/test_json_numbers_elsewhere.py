"""Huge integers and deep nesting in the JSON the chat parser and the CLI read are refused or kept as text,
never a crash (Python's int-string limit raises ValueError, deep nesting RecursionError)."""

from __future__ import annotations

import pytest

from execgym.agents.chat import parse_tool_calls
from execgym.cli import _parse_reply, main

HUGE = "9" * 5000
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("payload", [f'{{"name": "x", "arguments": {{"a": {HUGE}}}}}',
                                     f'{{"name": "x", "arguments": {DEEP}}}'])
def test_chat_parser_leaves_unusable_json_as_text(payload):
    text = f"before <tool_call>{payload}</tool_call> after"
    result = parse_tool_calls(text)
    assert result[1] == []  # no call parsed, and no exception


def test_play_sends_unusable_bare_json_to_the_env_as_a_malformed_call():
    reply = _parse_reply(f'{{"name": "x", "arguments": {{"a": {HUGE}}}}}')
    assert isinstance(reply, str) and reply.startswith("<tool_call>")


def test_cli_options_with_huge_json_numbers_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--env", "TextToSQL", "--agent", "oracle", "--episodes", "1",
              "--wrapper", f'GatedReward:{{"components": {{"executed": {HUGE}}}}}'])
    assert exc.value.code != 0 and "Traceback" not in capsys.readouterr().err
