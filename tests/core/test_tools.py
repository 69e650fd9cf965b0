"""Tools: schemas built once per function, and the flat-schema fast path agreeing with jsonschema."""

from __future__ import annotations

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from execgym.core import tools as tools_module
from execgym.core.actions import parse_action
from execgym.core.tools import Tool


class Shop:
    def find(self, name: str, limit: int = 5, exact: bool = False, price: float = 0.0) -> str:
        """Find products.

        Args:
            name: what to look for.
            limit: how many.
            exact: match the whole name.
            price: the most to pay.
        """
        return f"{name}:{limit}"


def test_a_method_schema_is_built_once_per_function_and_each_tool_gets_its_own_copy():
    tools_module._function_schema.cache_clear()
    a, b = Tool.from_function(Shop().find), Tool.from_function(Shop().find)
    info = tools_module._function_schema.cache_info()
    assert info.misses == 1 and info.hits == 1
    assert a.parameters == b.parameters and a.parameters is not b.parameters
    a.parameters["properties"]["name"]["description"] = "changed"
    assert b.parameters["properties"]["name"]["description"] == "what to look for."
    assert a.fn.__self__ is not b.fn.__self__ and b(name="x") == "x:5"


def test_the_flat_fast_path_is_taken_for_primitive_arguments_only():
    assert Tool.from_function(Shop().find)._flat is not None
    nested = Tool("t", "", {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "integer"}}},
                            "additionalProperties": False}, lambda xs: xs)
    ranged = Tool("r", "", {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}},
                            "additionalProperties": False}, lambda n: n)
    assert nested._flat is None and ranged._flat is None
    assert ranged.validate({"n": -1}) is not None and ranged.validate({"n": 1}) is None


values = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False,
                   allow_infinity=False), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "limit", "exact", "price", "other"]), values, max_size=5))
def test_the_fast_path_and_jsonschema_agree_on_every_argument_set(arguments):
    tool = Tool.from_function(Shop().find)
    reference = jsonschema.Draft202012Validator(tool.parameters)
    assert (tool.validate(arguments) is None) == reference.is_valid(arguments)
    if not reference.is_valid(arguments):  # a refusal still names the problem, as jsonschema words it
        assert tool.validate(arguments)


def test_a_parsed_call_through_the_fast_path_is_the_same_call():
    tool = Tool.from_function(Shop().find)
    parsed = parse_action({"name": "find", "arguments": {"name": "lamp", "limit": 2.0}}, {"find": tool})
    assert parsed.errors == [] and parsed.calls[0].arguments == {"name": "lamp", "limit": 2.0}
