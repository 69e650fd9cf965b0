"""Tools: a name, a JSON-schema of parameters (OpenAI function format) and a callable.

A tool's schema can be written by hand or generated from a typed, documented Python function with
:meth:`Tool.from_function`, so a service's methods become tools without writing their schema twice.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pydantic

__all__ = ["Tool", "ToolError", "ToolOutput", "tool_schemas"]


class ToolError(Exception):
    """An error the agent caused and should read (unknown order, text not found, bad SQL).

    The env turns it into the tool's result, as a real API returns an error body.
    """


@dataclass
class ToolOutput:
    """What a tool returns when it has more to say than text.

    Attributes:
        content: the text the agent sees.
        components: named reward components this call earned (e.g. ``{"executed": 1.0}``).
        is_error: whether the result is an error the agent should read.
        data: anything else the env wants to keep about the call (not shown to the agent).
    """

    content: str
    components: dict[str, float] = field(default_factory=dict)
    is_error: bool = False
    data: dict[str, Any] = field(default_factory=dict)


_ARG_LINE = re.compile(r"^\s{0,8}(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its summary and per-argument descriptions."""
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    lines = doc.splitlines()
    summary_lines: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        header = stripped.rstrip(":").lower()
        if stripped.endswith(":") and header in {"args", "arguments", "parameters", "params"}:
            section, current = "args", None
            continue
        if stripped.endswith(":") and header in {"returns", "raises", "yields", "example", "examples", "note"}:
            section, current = "other", None
            continue
        if section is None:
            summary_lines.append(stripped)
        elif section == "args":
            match = _ARG_LINE.match(line)
            indent = len(line) - len(line.lstrip())
            if match and indent <= 8 and not (current and indent > 4 and line.startswith(" " * 8)):
                current = match.group(1).lstrip("*")
                args[current] = match.group(3).strip()
            elif current and stripped:
                args[current] = f"{args[current]} {stripped}".strip()
    summary = " ".join(s for s in summary_lines if s).strip()
    return summary, args


def _schema_from_signature(fn: Callable[..., Any], arg_docs: Mapping[str, str]) -> dict[str, Any]:
    """JSON schema of a function's parameters, built with pydantic from its type hints.

    A method's schema is the same for every instance: it is built once per function (pydantic's schema generation
    costs milliseconds) and copied out.
    """
    plain = getattr(fn, "__func__", fn)
    try:
        cached = _function_schema(plain, tuple(sorted(arg_docs.items())))
    except TypeError:  # an unhashable callable object: build it each time
        return _build_schema(fn, arg_docs)
    return json.loads(cached)


@functools.lru_cache(maxsize=1024)
def _function_schema(fn: Callable[..., Any], arg_docs: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(_build_schema(fn, dict(arg_docs)))


def _build_schema(fn: Callable[..., Any], arg_docs: Mapping[str, str]) -> dict[str, Any]:
    sig = inspect.signature(fn)
    # Resolve string annotations (``from __future__ import annotations``) in the function's own module.
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for name, param in sig.parameters.items():
        if name in {"self", "cls"} or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, pydantic.Field(default, description=arg_docs.get(name) or None))
    model = pydantic.create_model(f"{fn.__name__}_args", **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    if "required" not in schema:
        schema["required"] = []
    return schema


@dataclass
class Tool:
    """A function the agent can call.

    Args:
        name: the name the agent calls it by.
        description: what it does, shown to the agent.
        parameters: JSON schema of the arguments (an object schema).
        fn: the callable, invoked with the validated arguments as keywords. It returns ``str``,
            :class:`ToolOutput`, or any JSON-serialisable value; it raises :class:`ToolError` for errors
            the agent should read.
        terminal: calling it ends the episode (a submit tool).
        code_arg: for code tools, the argument that a fenced code block in a raw reply fills.

    Example:
        >>> def add(a: int, b: int) -> int:
        ...     '''Add two integers.
        ...
        ...     Args:
        ...         a: the first.
        ...         b: the second.
        ...     '''
        ...     return a + b
        >>> tool = Tool.from_function(add)
        >>> tool.schema()["function"]["parameters"]["required"]
        ['a', 'b']
        >>> tool.validate({"a": 1, "b": "x"})
        "argument 'b': 'x' is not of type 'integer'"
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    terminal: bool = False
    code_arg: str | None = None

    def __post_init__(self) -> None:
        if self.parameters.get("type") != "object":
            raise ValueError(f"tool {self.name!r}: parameters must be an object schema")
        self._validator, self._flat = _compiled(json.dumps(self.parameters, sort_keys=True))

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        terminal: bool = False,
        code_arg: str | None = None,
    ) -> Tool:
        """Build a tool from a typed function (or bound method) and its Google-style docstring."""
        summary, arg_docs = _parse_docstring(fn.__doc__)
        return cls(
            name=name or fn.__name__,
            description=description if description is not None else summary,
            parameters=_schema_from_signature(fn, arg_docs),
            fn=fn,
            terminal=terminal,
            code_arg=code_arg,
        )

    def schema(self) -> dict[str, Any]:
        """The OpenAI function-calling schema of this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, arguments: Any) -> str | None:
        """Check arguments against the schema; return a precise message, or None when they are valid."""
        if not isinstance(arguments, dict):
            return f"arguments must be a JSON object, got {type(arguments).__name__}"
        if self._flat is not None and self._flat.accepts(arguments):
            return None
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        message = error.message
        if len(message) > 300:
            message = message[:300] + "..."
        return f"argument '{where}': {message}" if where else message

    def __call__(self, **arguments: Any) -> Any:
        return self.fn(**arguments)


_FLAT_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
_FLAT_KEYS = frozenset({"type", "description", "default"})


@dataclass(frozen=True)
class _FlatSchema:
    """A check for the common flat schema (named arguments of primitive types, no extras) that needs no jsonschema.

    It only ever says "valid" when jsonschema would; anything it does not accept goes to jsonschema, which gives
    the message (so ``1.0`` for an integer, valid in JSON Schema, is still accepted there).
    """

    types: dict[str, Callable[[Any], bool]]
    required: frozenset[str]

    @classmethod
    def of(cls, schema: Mapping[str, Any]) -> _FlatSchema | None:
        props = schema.get("properties", {})
        if set(schema) - {"type", "properties", "required", "additionalProperties", "description"}:
            return None
        if schema.get("additionalProperties", True) is not False or not isinstance(props, Mapping):
            return None
        types: dict[str, Callable[[Any], bool]] = {}
        for name, prop in props.items():
            kind = prop.get("type") if isinstance(prop, Mapping) else None
            if not isinstance(kind, str) or set(prop) - _FLAT_KEYS or kind not in _FLAT_TYPES:
                return None
            types[name] = _FLAT_TYPES[prop["type"]]
        required = schema.get("required", [])
        if not isinstance(required, list) or not set(required) <= set(types):
            return None
        return cls(types, frozenset(required))

    def accepts(self, arguments: Mapping[str, Any]) -> bool:
        types = self.types
        return self.required <= arguments.keys() and all(
            name in types and types[name](value) for name, value in arguments.items())


@functools.lru_cache(maxsize=1024)
def _compiled(schema_json: str) -> tuple[Any, _FlatSchema | None]:
    """The checked validator (and flat fast path) of a schema, made once per distinct schema."""
    schema = json.loads(schema_json)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema), _FlatSchema.of(schema)


def tool_schemas(tools: Mapping[str, Tool] | list[Tool]) -> list[dict[str, Any]]:
    """OpenAI function schemas for a collection of tools, in order."""
    values = tools.values() if isinstance(tools, Mapping) else tools
    return [t.schema() for t in values]
