"""BFCL's AST checker, re-implemented: the verdict of one entry, and ToolRL components of a reply.

The rules follow BFCL's published checker (``bfcl_eval/eval_checker/ast_eval/ast_checker.py``):

* the function name must match exactly; every required parameter must be present, and every parameter must
  be both declared and listed in the possible answer;
* types are strict (``bool`` is not ``int``) except that an ``int`` is accepted for a ``float`` and a tuple
  for a list; when the possible answers are of another type than declared (a variable name), the value is
  compared with them as is;
* strings are compared after BFCL's normalisation (lowercase; spaces and ``,./-_*^`` removed; ``'`` -> ``"``),
  also inside lists and dicts; a parameter whose possible answers include ``""`` is optional;
* parallel categories match calls to expected calls in any order, one to one (a full matching is searched,
  where BFCL's own loop is greedy: an output with a valid assignment is never rejected here);
* irrelevance categories pass only when the agent answers in text and makes no call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from execgym.envs.tooluse.grading import multiset_jaccard

__all__ = ["check_bfcl", "standardize_string", "step_scores"]

_PY_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list,
                              "tuple": list, "dict": dict, "any": str, "object": dict, "number": float}
_STRIP = re.compile(r"[ ,./\-_*^]")


def standardize_string(text: str) -> str:
    """BFCL's string normalisation: drop spaces and ``,./-_*^``, lowercase, and ``'`` becomes ``"``.

    Example:
        >>> standardize_string("New York, NY") == standardize_string("new_york-ny")
        True
    """
    return _STRIP.sub("", text).lower().replace("'", '"')


def _verdict(valid: bool, error: str = "", error_type: str = "") -> dict[str, Any]:
    return {"valid": valid, "error": [error] if error else [], "error_type": error_type}


def _std(value: Any) -> Any:
    return standardize_string(value) if isinstance(value, str) else value


def _answer_type(options: Sequence[Any]) -> type | None:
    return next((type(o) for o in options if not (isinstance(o, str) and o == "")), None)


def _type_ok(value: Any, options: Sequence[Any], expected: type, nested: type | None) -> tuple[bool, bool]:
    """(valid, is_variable): BFCL's type check, nested one level for arrays."""
    answer_type = _answer_type(options)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return True, is_variable
        for option in options:
            if not isinstance(option, list):
                return True, is_variable  # "" (optional) and other non-lists leave BFCL's flag set
            if all(_type_ok(item, option, nested, None)[0] for item in value):
                return True, is_variable
        return False, is_variable
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, is_variable


def _dict_ok(param: str, value: Mapping[str, Any], options: Sequence[Any]) -> dict[str, Any]:
    result = _verdict(False, f"no possible answer matches dict parameter {param!r}", "dict_checker:unclear")
    for option in options:
        if isinstance(option, str) and option == "":
            continue
        if not isinstance(option, Mapping):
            continue
        problem = None
        for key, item in value.items():
            if key not in option:
                problem = _verdict(False, f"Unexpected dict key parameter: {key!r}.", "value_error:dict_key")
                break
            choices = option[key] if isinstance(option[key], list) else [option[key]]
            if _std(item) not in [_std(c) for c in choices]:
                problem = _verdict(False, f"Invalid value for parameter {key!r}: {item!r}. Expected one of "
                                          f"{choices}.", "value_error:dict_value")
                break
        if problem is None:
            for key, choices in option.items():
                choices = choices if isinstance(choices, list) else [choices]
                if key not in value and "" not in choices:
                    problem = _verdict(False, f"Missing dict key parameter: {key!r}.", "value_error:dict_key")
                    break
        if problem is None:
            return _verdict(True)
        result = problem
    return result


def _list_dict_ok(param: str, value: Sequence[Any], options: Sequence[Any]) -> dict[str, Any]:
    result = _verdict(False, "Wrong number of dictionaries in the list.", "value_error:list_dict_count")
    for option in options:
        if not isinstance(option, list) or len(option) != len(value):
            continue
        checks = [_dict_ok(param, v, [o]) if isinstance(v, Mapping) else
                  _verdict(False, f"{v!r} is not a dict", "type_error:nested") for v, o in zip(value, option)]
        bad = next((c for c in checks if not c["valid"]), None)
        if bad is None:
            return _verdict(True)
        result = bad
    return result


def _param_ok(param: str, value: Any, details: Mapping[str, Any], options: Sequence[Any]) -> dict[str, Any]:
    kinds = details.get("type")
    if isinstance(kinds, list) and kinds and all(isinstance(k, str) for k in kinds):
        # A JSON-schema list of types: the value passes as any one of them ("null" as a value to compare).
        verdicts = [_param_ok(param, value, {**details, "type": k}, options) for k in dict.fromkeys(kinds)]
        return next((v for v in verdicts if v["valid"]), verdicts[0])
    type_name = kinds if isinstance(kinds, str) else "unknown"
    expected = _PY_TYPES.get(type_name)  # BFCL's own checker reads "any" as str
    if expected is None:  # "null", a missing type or one BFCL's checker does not know: compare values only
        ok = _std(value) in [_std(o) for o in options]
        return _verdict(ok, "" if ok else f"Invalid value for parameter {param!r}: {value!r}. Expected one of "
                                          f"{list(options)}.", "value_error:others")
    nested = None
    if type_name in ("array", "tuple"):
        items = details.get("items") if isinstance(details.get("items"), Mapping) else {}
        nested = _PY_TYPES.get(items.get("type")) if isinstance(items.get("type"), str) else None
    if expected is list and isinstance(value, tuple):
        value = list(value)
    if type_name == "float" and type(value) is int:
        value = float(value)
    valid, is_variable = _type_ok(value, options, expected, nested)
    if not valid and type(value) is expected:
        inner = (details.get("items") or {}).get("type")
        return _verdict(False, f"Nested type checking failed for parameter {param!r}. Expected outer type "
                               f"{type_name} with inner type {inner}. Parameter value: {value!r}.", "type_error:nested")
    if not valid:
        return _verdict(False, f"Incorrect type for parameter {param!r}. Expected type {type_name}, got "
                               f"{type(value).__name__}. Parameter value: {value!r}.", "type_error:simple")
    if not is_variable:
        if expected is dict:
            return _dict_ok(param, value, options)
        if expected is list and nested is dict:
            return _list_dict_ok(param, value, options)
        if expected is str:
            ok = standardize_string(value) in [standardize_string(o) for o in options if isinstance(o, str)]
            return _verdict(ok, "" if ok else f"Invalid value for parameter {param!r}: {value!r}. Expected one of "
                                              f"{list(options)}. Case insensitive.", "value_error:string")
        if expected is list:
            std_options = [[_std(x) for x in o] if isinstance(o, list) else [] for o in options
                           if isinstance(o, list) or o == ""]
            ok = [_std(x) for x in value] in std_options
            return _verdict(ok, "" if ok else f"Invalid value for parameter {param!r}: {value!r}. Expected one of "
                                              f"{list(options)}.", "value_error:list/tuple")
    if value not in options:
        return _verdict(False, f"Invalid value for parameter {param!r}: {value!r}. Expected one of {list(options)}.",
                        "value_error:others")
    return _verdict(True)


def _describe(functions: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((f for f in functions if f.get("name") == name), None)


def _check_one(functions: Sequence[Mapping[str, Any]], call: Mapping[str, Any],
               expected: Mapping[str, Any], description: Mapping[str, Any] | None = None) -> dict[str, Any]:
    (name, answers), = expected.items()
    description = description or _describe(functions, name)
    if description is None:
        return _verdict(False, f"the expected function {name!r} is not among the entry's functions",
                        "simple_function_checker:unknown_function")
    if call["name"] != name:
        return _verdict(False, f"Function name {name!r} not found in model output (got {call['name']!r}).",
                        "simple_function_checker:wrong_func_name")
    schema = description.get("parameters") or {}
    properties = schema.get("properties") or {}
    arguments = call.get("arguments") or {}
    for param in schema.get("required") or []:
        if param not in arguments:
            return _verdict(False, f"Missing required parameter: {param!r}.",
                            "simple_function_checker:missing_required")
    for param, value in arguments.items():
        if param not in properties or param not in answers:
            return _verdict(False, f"Unexpected parameter: {param!r}.", "simple_function_checker:unexpected_param")
        result = _param_ok(param, value, properties[param], answers[param])
        if not result["valid"]:
            return result
    for param, options in answers.items():
        if param not in arguments and "" not in options:
            return _verdict(False, f"Optional parameter {param!r} not provided and not marked as optional.",
                            "simple_function_checker:missing_optional")
    return _verdict(True)


def _perfect_matching(ok: list[list[bool]]) -> list[int | None]:
    """For each expected call, the output index it is matched to (augmenting paths; None: unmatched)."""
    owner: dict[int, int] = {}

    def assign(i: int, seen: set[int]) -> bool:
        for j, fits in enumerate(ok[i]):
            if fits and j not in seen:
                seen.add(j)
                if j not in owner or assign(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    for i in range(len(ok)):
        assign(i, set())
    by_expected: list[int | None] = [None] * len(ok)
    for j, i in owner.items():
        by_expected[i] = j
    return by_expected


def check_bfcl(
    category: str,
    functions: Sequence[Mapping[str, Any]],
    calls: Sequence[Mapping[str, Any]],
    ground_truth: Sequence[Mapping[str, Any]] | None,
    *,
    answered: bool = True,
) -> dict[str, Any]:
    """BFCL's AST verdict for one entry: ``{"valid", "error": [...], "error_type"}``.

    ``calls`` are ``{"name", "arguments"}``; ``answered`` says the turn was a well-formed reply (a malformed
    reply fails every category, irrelevance included).

    Example:
        >>> fn = [{"name": "area", "parameters": {"type": "dict", "properties": {"r": {"type": "float"},
        ...        "unit": {"type": "string"}}, "required": ["r"]}}]
        >>> gt = [{"area": {"r": [2.0], "unit": ["cm", ""]}}]
        >>> check_bfcl("simple", fn, [{"name": "area", "arguments": {"r": 2}}], gt)["valid"]
        True
        >>> check_bfcl("simple", fn, [{"name": "area", "arguments": {"r": "2"}}], gt)["error_type"]
        'type_error:simple'
    """
    if not answered:
        return _verdict(False, "the reply was malformed (neither function calls nor a text answer)",
                        "format_error")
    if "irrelevance" in category:
        if calls:
            return _verdict(False, f"expected no function call, got {len(calls)}", "irrelevance_error:decoder_success")
        return _verdict(True)
    expected = list(ground_truth or [])
    if "parallel" in category:
        if len(calls) != len(expected):
            return _verdict(False, f"Wrong number of functions: expected {len(expected)}, got {len(calls)}.",
                            "parallel_function_checker_no_order:wrong_count")
        results = [[_check_one(functions, call, exp) for call in calls] for exp in expected]
        matching = _perfect_matching([[r["valid"] for r in row] for row in results])
        errors = []
        for i, j in enumerate(matching):
            if j is None:
                (name, _), = expected[i].items()
                reasons = "; ".join(e for k, r in enumerate(results[i]) for e in r["error"][:1]
                                    if calls[k]["name"] == name) or "no call of that function"
                errors.append(f"no call matches expected call {i} ({name}): {reasons}")
        if errors:
            return {"valid": False, "error": errors,
                    "error_type": "parallel_function_checker_no_order:cannot_find_match"}
        return _verdict(True)
    if len(calls) != len(expected) or not expected:
        kind = "multiple_function_checker" if "multiple" in category else "simple_function_checker"
        return _verdict(False, f"Wrong number of functions: expected {len(expected)}, got {len(calls)}.",
                        f"{kind}:wrong_count")
    if "multiple" in category:
        return _check_one(functions, calls[0], expected[0])
    return _check_one(functions, calls[0], expected[0], functions[0] if functions else None)


def step_scores(
    functions: Sequence[Mapping[str, Any]],
    calls: Sequence[Mapping[str, Any]],
    ground_truth: Sequence[Mapping[str, Any]] | None,
) -> dict[str, float]:
    """ToolRL components of a BFCL turn: name Jaccard, parameter-name Jaccard, share of values BFCL accepts.

    Parameters expected of a call are the non-optional ones of its possible answer plus the optional ones the
    agent gave.

    Example:
        >>> fn = [{"name": "f", "parameters": {"type": "dict", "properties": {"a": {"type": "integer"}}}}]
        >>> step_scores(fn, [{"name": "f", "arguments": {"a": 2}}], [{"f": {"a": [1]}}])
        {'tool_name': 1.0, 'param_names': 1.0, 'param_values': 0.0}
    """
    expected = list(ground_truth or [])
    if not calls and not expected:
        return {"tool_name": 1.0, "param_names": 1.0, "param_values": 1.0}
    names = multiset_jaccard([c["name"] for c in calls], [next(iter(e)) for e in expected])
    free = list(range(len(calls)))
    name_total, value_hits, value_total = 0.0, 0, 0
    for exp in expected:
        (name, answers), = exp.items()
        required = {p for p, options in answers.items() if "" not in options}
        properties = ((_describe(functions, name) or {}).get("parameters") or {}).get("properties") or {}

        def accepted(arguments: Mapping[str, Any], wanted: set[str], properties: Mapping[str, Any] = properties,
                     answers: Mapping[str, Any] = answers) -> int:
            return sum(1 for p in wanted if p in arguments and p in properties
                       and _param_ok(p, arguments[p], properties[p], answers[p])["valid"])

        # Pair the expected call with the same-name call BFCL accepts most arguments of.
        same = [k for k in free if calls[k]["name"] == name]
        if not same:
            value_total += len(required)
            continue
        j = max(same, key=lambda k: (accepted(calls[k].get("arguments") or {},
                                              required | (set(calls[k].get("arguments") or {}) & set(answers))), -k))
        free.remove(j)
        arguments = calls[j].get("arguments") or {}
        wanted = required | (set(arguments) & set(answers))
        given = set(arguments)
        name_total += 1.0 if not wanted and not given else len(wanted & given) / len(wanted | given)
        value_total += len(wanted)
        value_hits += accepted(arguments, wanted)
    return {
        "tool_name": names,
        "param_names": name_total / max(len(calls), len(expected), 1),
        "param_values": value_hits / value_total if value_total else float(not free and bool(expected)),
    }
