"""BFCL functions as tools: their parameter schemas in JSON Schema, and a tool that records each call."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from execgym.core.tools import Tool

__all__ = ["RecordingTool", "bfcl_tools", "to_json_schema"]

_JSON_TYPES = {"dict": "object", "object": "object", "float": "number", "number": "number", "tuple": "array",
               "array": "array", "list": "array", "integer": "integer", "int": "integer", "string": "string",
               "str": "string", "boolean": "boolean", "bool": "boolean", "null": "null", "any": None}


def to_json_schema(schema: Any, *, top: bool = False) -> dict[str, Any]:
    """Convert a BFCL parameter schema (``dict``, ``float``, ``tuple``, ``any``, nested) to JSON Schema.

    Example:
        >>> to_json_schema({"type": "dict", "properties": {"x": {"type": "float"}, "t": {"type": "tuple",
        ...                 "items": {"type": "integer"}}, "v": {"type": "any"}}, "required": ["x"]}, top=True)
        {'type': 'object', 'properties': {'x': {'type': 'number'}, 't': {'type': 'array', 'items': {'type': 'integer'}}, 'v': {}}, 'required': ['x']}
    """  # noqa: E501
    if not isinstance(schema, Mapping):
        return {"type": "object", "properties": {}} if top else {}
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, str) and _JSON_TYPES.get(kind.strip().lower()):
        out["type"] = _JSON_TYPES[kind.strip().lower()]
    elif isinstance(kind, list) and kind and all(isinstance(k, str) and _JSON_TYPES.get(k.strip().lower())
                                                  for k in kind):
        # JSON Schema's list of types (["string", "null"]); a list holding "any" or an unknown name is any type.
        out["type"] = list(dict.fromkeys(_JSON_TYPES[k.strip().lower()] for k in kind))
    if isinstance(schema.get("description"), str):
        out["description"] = schema["description"]
    if isinstance(schema.get("enum"), list):
        out["enum"] = list(schema["enum"])
    if "default" in schema:
        out["default"] = schema["default"]
    if isinstance(schema.get("properties"), Mapping):
        out["properties"] = {str(k): to_json_schema(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("items"), Mapping):
        out["items"] = to_json_schema(schema["items"])
    if isinstance(schema.get("required"), list):
        out["required"] = [r for r in schema["required"] if isinstance(r, str)]
    if top:
        out["type"] = "object"
        out.setdefault("properties", {})
    return out


class RecordingTool(Tool):
    """A BFCL function as a tool: its schema is shown to the agent, but arguments are not validated here.

    The AST checker judges names, types and values after the turn, as BFCL does; rejecting a call at parse
    time would hide it from the grader (an irrelevance entry must fail on any call, valid or not).
    """

    def validate(self, arguments: Any) -> str | None:
        return None if isinstance(arguments, dict) else f"arguments must be a JSON object, got {type(arguments)}"


def bfcl_tools(
    functions: Sequence[Mapping[str, Any]],
    record: Callable[[str, dict[str, Any]], str],
    *,
    underscore_names: bool = False,
) -> list[Tool]:
    """Tools for an entry's functions; calling one runs ``record(name, arguments)`` (an acknowledgement).

    ``underscore_names`` shows ``math.hypot`` as ``math_hypot`` (APIs such as OpenAI's refuse dots in tool
    names; BFCL makes the same substitution for those models); the call is recorded under the BFCL name.

    Example:
        >>> calls = []
        >>> tools = bfcl_tools([{"name": "geo.area", "description": "Area.", "parameters": {"type": "dict",
        ...     "properties": {"r": {"type": "float"}}, "required": ["r"]}}],
        ...     lambda name, args: calls.append((name, args)) or "recorded", underscore_names=True)
        >>> tools[0].name, tools[0].schema()["function"]["parameters"]["properties"], tools[0](r=2), calls
        ('geo_area', {'r': {'type': 'number'}}, 'recorded', [('geo.area', {'r': 2})])
    """

    def recorder(name: str) -> Callable[..., str]:
        return lambda **arguments: record(name, arguments)

    return [
        RecordingTool(
            name=str(fn["name"]).replace(".", "_") if underscore_names else str(fn["name"]),
            description=str(fn.get("description") or ""),
            parameters=to_json_schema(fn.get("parameters"), top=True),
            fn=recorder(str(fn["name"])),
        )
        for fn in functions
    ]
