"""Action parsing: a model's raw reply or structured tool calls -> validated :class:`ToolCall` s.

Accepted actions:

* raw text: every ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block (Hermes / Qwen
  convention; several blocks are parallel calls) and, when the env declares a code tool, a fenced code block
  (```` ```python ... ``` ````) that becomes a call of that tool;
* an OpenAI ``tool_calls`` entry ``{"type": "function", "function": {"name", "arguments": "<json>"}}``;
* a ``{"name", "arguments"}`` dict;
* a list of these, or an OpenAI assistant message ``{"role": "assistant", "content", "tool_calls"}``.

Parsing never raises on bad input: it returns the problems as precise messages. Arguments must be plain JSON
data, whether decoded from text or sent structured: at most :data:`MAX_JSON_DEPTH` levels deep and
:data:`MAX_JSON_VALUES` values, integers of at most :data:`MAX_INT_DIGITS` digits, finite numbers (no ``NaN`` or
``Infinity``), string keys; anything else is a malformed action, never an exception out of ``step``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from execgym.core.tools import Tool

__all__ = ["MAX_CALL_ID_CHARS", "MAX_INT_DIGITS", "MAX_JSON_DEPTH", "MAX_JSON_VALUES", "TOOL_CALL_BLOCK",
           "ParsedAction", "ToolCall", "decode_json", "json_data_problem", "parse_action", "sanitize_text"]

MAX_JSON_DEPTH = 64
"""The deepest nesting of lists and objects accepted in a tool call (no real tool takes more than a few)."""
MAX_JSON_VALUES = 1_000_000
"""The most values (leaves and containers) accepted in one action's JSON."""
MAX_INT_DIGITS = 1000
"""The longest integer accepted, in decimal digits (Python refuses to even convert past 4,300)."""
_INT_LIMIT = 10**MAX_INT_DIGITS

TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
"""A ``<tool_call>`` block and its body; an unclosed last block runs to the end (a generation cut at a stop
token). The one pattern for tool-call text in the package: agents and the env server use it too."""
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_SURROGATES = re.compile("[\ud800-\udfff]")


def sanitize_text(text: str) -> str:
    """Make any str safe to encode as UTF-8 (lone surrogates become U+FFFD, NUL is dropped)."""
    if _SURROGATES.search(text):
        text = _SURROGATES.sub("\ufffd", text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


@dataclass
class ToolCall:
    """One call of a tool with its (already decoded) arguments."""

    id: str
    name: str
    arguments: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)},
        }


@dataclass
class ParsedAction:
    """The result of parsing one action.

    Attributes:
        text: the reply's free text (raw replies only, tool-call blocks removed).
        calls: well-formed calls, validated against their tool's schema.
        errors: what was wrong, one precise message per problem; non-empty means the action is malformed.
    """

    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class _NumberError(ValueError):
    """A JSON number that is not accepted (raised from the decoder's hooks, reported as a message)."""


def _parse_int(literal: str) -> int:
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_INT_DIGITS:  # checked before int(), which would take quadratic time or raise
        raise _NumberError(f"an integer of {digits:,} digits (at most {MAX_INT_DIGITS:,} are accepted)")
    return int(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NumberError(f"the number {literal[:40]}{'...' if len(literal) > 40 else ''} is out of range")
    return value


def _parse_constant(literal: str) -> Any:
    raise _NumberError(f"{literal} is not a JSON number")


# One decoder for every str: ``json.loads`` with hooks builds a new one per call (a quarter of a parse).
_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


def _at(path: tuple[Any, ...]) -> str:
    return f"at '{'/'.join(str(p) for p in path)}': " if path else ""


def json_data_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH, max_values: int = MAX_JSON_VALUES) -> str | None:
    """Why ``value`` is not plain JSON data a tool can be called with, or None when it is.

    Plain JSON data: None, bools, str, integers of at most :data:`MAX_INT_DIGITS` digits, finite floats, and
    lists / tuples / mappings with str keys of these, at most ``max_depth`` levels deep and ``max_values``
    values in all. The walk is iterative and bounded, so it answers for a structure of any depth, size or
    shape (cycles and shared sub-structures included) without raising.

    Example:
        >>> json_data_problem({"a": [1, 2.5, "x", None]}) is None
        True
        >>> json_data_problem({"a": [float("nan")]})
        "at 'a/0': nan is not a finite number"
    """
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 0, ())]
    seen = 0
    while stack:
        item, depth, path = stack.pop()
        seen += 1
        if seen > max_values:
            return f"more than {max_values:,} values"
        if item is None or isinstance(item, (str, bool)):
            continue
        if isinstance(item, int):
            if not -_INT_LIMIT < item < _INT_LIMIT:
                return f"{_at(path)}an integer of more than {MAX_INT_DIGITS:,} digits"
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{_at(path)}{item!r} is not a finite number"
            continue
        if isinstance(item, (Mapping, list, tuple)):
            if depth >= max_depth:
                return f"{_at(path)}nested more than {max_depth} levels deep"
            if seen + len(item) > max_values:
                return f"more than {max_values:,} values"
            if isinstance(item, Mapping):
                for key in item:
                    if not isinstance(key, str):
                        return f"{_at(path)}a key of type {type(key).__name__} (JSON keys are strings)"
                children = [(item[key], depth + 1, (*path, key)) for key in item]
            else:
                children = [(child, depth + 1, (*path, i)) for i, child in enumerate(item)]
            stack.extend(reversed(children))
            continue
        return f"{_at(path)}a {type(item).__name__}, which is not JSON data"
    return None


def decode_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH,
                max_values: int = MAX_JSON_VALUES) -> tuple[Any, str | None]:
    """``json.loads`` that reports every problem as a message and never raises.

    Refused, each with a message saying what it was: invalid JSON, integers of more than
    :data:`MAX_INT_DIGITS` digits, numbers out of a float's range, ``NaN`` / ``Infinity``, nesting past
    ``max_depth`` levels, more than ``max_values`` values.

    Example:
        >>> decode_json('{"a": [1, 2]}')
        ({'a': [1, 2]}, None)
        >>> decode_json('{"a": ' + '9' * 5000 + '}')[1]
        'not valid JSON (an integer of 5,000 digits (at most 1,000 are accepted))'
    """
    try:
        value = _DECODER.decode(text) if isinstance(text, str) else json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at char {exc.pos})"
    except _NumberError as exc:
        return None, f"not valid JSON ({exc})"
    except RecursionError:
        return None, "JSON nested too deeply"
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError for bytes, a lowered int-string limit, ...
        return None, f"not valid JSON ({type(exc).__name__}: {str(exc)[:200]})"
    problem = json_data_problem(value, max_depth=max_depth, max_values=max_values)
    if problem:
        return None, f"JSON that is not accepted ({problem})"
    return value, None


def _decode_arguments(raw: Any, where: str, errors: list[str], *, checked: bool) -> dict[str, Any] | None:
    if raw is None:
        return {}
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        raw, problem = decode_json(raw)
        if problem:
            errors.append(f"{where}: 'arguments' is {problem}")
            return None
        checked = True
    if not isinstance(raw, dict):
        errors.append(f"{where}: 'arguments' must be a JSON object, got {type(raw).__name__}")
        return None
    problem = None if checked else json_data_problem(raw)  # structured: checked as decoding would have
    if problem:
        errors.append(f"{where}: 'arguments' are not plain JSON data: {problem}")
        return None
    return raw


MAX_CALL_ID_CHARS = 256
"""The longest tool-call id kept from the caller; a longer (or non-string) id is replaced by the env's own."""
_CALL_ID = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_CALL_ID_CHARS}}}")


def _call_from_obj(obj: Any, where: str, errors: list[str], *, checked: bool = False
                   ) -> tuple[str, dict[str, Any], str | None] | None:
    if not isinstance(obj, Mapping):
        errors.append(f"{where}: a tool call must be a JSON object, got {type(obj).__name__}")
        return None
    given_id = obj.get("id")
    call_id = given_id if isinstance(given_id, str) and _CALL_ID.fullmatch(given_id) else None
    if "function" in obj and isinstance(obj["function"], Mapping):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        errors.append(f"{where}: missing the tool 'name' (expected {{\"name\": ..., \"arguments\": {{...}}}})")
        return None
    args = _decode_arguments(obj.get("arguments", obj.get("parameters")), where, errors, checked=checked)
    if args is None:
        return None
    return name, args, call_id


def _check(name: str, args: dict[str, Any], tools: Mapping[str, Tool], where: str, errors: list[str]) -> bool:
    tool = tools.get(name)
    if tool is None:
        errors.append(f"{where}: unknown tool {name!r}; available tools: {', '.join(tools) or 'none'}")
        return False
    problem = tool.validate(args)
    if problem:
        errors.append(f"{where}: invalid arguments for {name}: {problem}")
        return False
    return True


def parse_action(action: Any, tools: Mapping[str, Tool], *, call_id_prefix: str = "call") -> ParsedAction:
    """Parse an action into validated tool calls, collecting every problem instead of raising.

    Example:
        >>> from execgym.core.tools import Tool
        >>> echo = Tool("echo", "Echo text.", {"type": "object", "properties": {"text": {"type": "string"}},
        ...             "required": ["text"], "additionalProperties": False}, lambda text: text)
        >>> p = parse_action('Hi <tool_call>{"name": "echo", "arguments": {"text": "a"}}</tool_call>',
        ...                  {"echo": echo})
        >>> p.text, [(c.name, c.arguments) for c in p.calls], p.errors
        ('Hi', [('echo', {'text': 'a'})], [])
        >>> parse_action({"name": "nope"}, {"echo": echo}).errors
        ["call 1: unknown tool 'nope'; available tools: echo"]
    """
    result = ParsedAction()
    raw_calls: list[tuple[str, dict[str, Any], str | None]] = []
    if isinstance(action, str):
        text = sanitize_text(action)
        blocks = TOOL_CALL_BLOCK.findall(text)
        free = TOOL_CALL_BLOCK.sub("", text)
        for i, block in enumerate(blocks, 1):
            where = f"<tool_call> block {i}"
            obj, problem = decode_json(block.strip())
            if problem:
                result.errors.append(f"{where}: {problem}")
                continue
            parsed = _call_from_obj(obj, where, result.errors, checked=True)
            if parsed:
                raw_calls.append(parsed)
        code_tools = [t for t in tools.values() if t.code_arg]
        if code_tools and not blocks:
            fences = _FENCE.findall(free)
            if fences:
                _lang, code = fences[-1]
                tool = code_tools[0]
                raw_calls.append((tool.name, {tool.code_arg: code}, None))
                free = _FENCE.sub("", free)
        result.text = free.strip()
    elif isinstance(action, Mapping) and ("tool_calls" in action or action.get("role") == "assistant"):
        content = action.get("content")
        result.text = sanitize_text(content).strip() if isinstance(content, str) else ""
        entries = action.get("tool_calls") or []
        if not isinstance(entries, list):
            result.errors.append("'tool_calls' must be a list")
            entries = []
        for i, entry in enumerate(entries, 1):
            parsed = _call_from_obj(entry, f"call {i}", result.errors)
            if parsed:
                raw_calls.append(parsed)
    elif isinstance(action, Mapping):
        parsed = _call_from_obj(action, "call 1", result.errors)
        if parsed:
            raw_calls.append(parsed)
    elif isinstance(action, (list, tuple)):
        if not action:
            result.errors.append("empty list of tool calls")
        for i, entry in enumerate(action, 1):
            parsed = _call_from_obj(entry, f"call {i}", result.errors)
            if parsed:
                raw_calls.append(parsed)
    else:
        result.errors.append(
            f"unsupported action type {type(action).__name__}: send a str reply, a tool-call dict or a list of them"
        )
    # The caller's ids are kept (its tool messages answer them); a missing or repeated one is made here, never
    # equal to another call's.
    used = {given for _, _, given in raw_calls if given is not None}
    taken: set[str] = set()
    for i, (name, args, given_id) in enumerate(raw_calls, 1):
        if _check(name, args, tools, f"call {i}" if not isinstance(action, str) else f"tool call {i}",
                  result.errors):
            call_id = given_id if given_id is not None and given_id not in taken else None
            suffix = 0
            while call_id is None or (call_id in taken) or (call_id != given_id and call_id in used):
                call_id = f"{call_id_prefix}_{i}" + (f"_{suffix}" if suffix else "")
                suffix += 1
            taken.add(call_id)
            result.calls.append(ToolCall(id=call_id, name=name, arguments=args))
    return result
