"""RandomAgent: well-formed random tool calls with schema-valid random arguments (the lower bound)."""

from __future__ import annotations

import string
from typing import Any

import jsonschema
import numpy as np

from execgym.agents.base import BatchedAgent
from execgym.core import report as R

__all__ = ["RandomAgent", "random_instance"]

_WORDS = ["id", "name", "total", "user", "file", "2024-01-01", "x", "test", "main", "value", "*", "1"]


def random_instance(schema: dict[str, Any], rng: np.random.Generator, depth: int = 0) -> Any:
    """A random value valid under a (simple) JSON schema: types, enums, anyOf, arrays, objects, bounds.

    Example:
        >>> s = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 5}},
        ...      "required": ["n"], "additionalProperties": False}
        >>> 3 <= random_instance(s, np.random.default_rng(0))["n"] <= 5
        True
    """
    if "enum" in schema:
        return schema["enum"][int(rng.integers(len(schema["enum"])))]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return random_instance(options[int(rng.integers(len(options)))], rng, depth + 1)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "integer":
        lo = int(schema.get("minimum", 0))
        hi = int(schema.get("maximum", lo + 20))
        return int(rng.integers(lo, hi + 1))
    if kind == "number":
        lo = float(schema.get("minimum", 0.0))
        hi = float(schema.get("maximum", lo + 100.0))
        return round(float(rng.uniform(lo, hi)), 3)
    if kind == "boolean":
        return bool(rng.integers(2))
    if kind == "null":
        return None
    if kind == "array":
        items = schema.get("items", {"type": "string"})
        n = int(rng.integers(int(schema.get("minItems", 0)), int(schema.get("maxItems", 3)) + 1))
        return [random_instance(items, rng, depth + 1) for _ in range(n)] if depth < 4 else []
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        out = {}
        for key, sub in props.items():
            if key in required or rng.random() < 0.5:
                out[key] = random_instance(sub, rng, depth + 1)
        return out
    if rng.random() < 0.5:
        return str(rng.choice(_WORDS))
    length = int(rng.integers(1, 12))
    return "".join(rng.choice(list(string.ascii_lowercase + " _")) for _ in range(length))


class RandomAgent(BatchedAgent):
    """Calls a uniformly chosen tool with random, schema-valid arguments every turn.

    Args:
        seed: seeds the agent's own generator, so a run is reproducible.
        max_tries: attempts at drawing arguments that validate before giving up on a schema.

    Example:
        >>> agent = RandomAgent(seed=0)
        >>> agent.reset({"tools": [{"type": "function", "function": {"name": "ping", "parameters":
        ...     {"type": "object", "properties": {}, "required": []}}}]})
        >>> agent.act("", {})
        {'name': 'ping', 'arguments': {}}
    """

    name = "random"

    def __init__(self, seed: int | None = None, max_tries: int = 20) -> None:
        self.rng = np.random.default_rng(seed)
        self.max_tries = max_tries
        self.tools: list[dict[str, Any]] = []

    def reset(self, info: dict[str, Any]) -> None:
        self.tools = [t["function"] for t in info.get(R.TOOLS, [])]

    def act(self, observation: str, info: dict[str, Any]) -> Any:
        if not self.tools:
            return "I have no tools."
        fn = self.tools[int(self.rng.integers(len(self.tools)))]
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        args: Any = {}
        for _ in range(self.max_tries):
            args = random_instance(schema, self.rng)
            if jsonschema.Draft202012Validator(schema).is_valid(args):
                break
        return {"name": fn["name"], "arguments": args}
