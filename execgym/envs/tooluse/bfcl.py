"""BFCL (Berkeley Function-Calling Leaderboard) single-turn categories: loading, schemas and the AST checker.

``dataset="bfcl:DIR"`` with ``split=<category>`` reads ``DIR/BFCL_v4_<category>.json`` (or ``BFCL_v3_...``;
JSONL despite the suffix) and the matching ``DIR/possible_answer/`` file. Each entry is a one-step episode:
the tools are the entry's functions (calling one only records the call), and the verdict follows the rules
of BFCL's published AST checker (``bfcl_eval/eval_checker/ast_eval/ast_checker.py``), re-implemented here:

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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from execgym.core.tasks import Task
from execgym.core.tools import Tool
from execgym.envs.tooluse.grading import multiset_jaccard
from execgym.envs.tooluse.loading import InvalidRow, load_rows, read_rows

__all__ = [
    "CATEGORIES",
    "RecordingTool",
    "bfcl_tools",
    "check_bfcl",
    "load_bfcl",
    "standardize_string",
    "step_scores",
    "to_json_schema",
]

CATEGORIES: dict[str, tuple[str, ...]] = {
    "simple": ("simple_python", "simple"),
    "simple_python": ("simple_python", "simple"),
    "multiple": ("multiple",),
    "parallel": ("parallel",),
    "parallel_multiple": ("parallel_multiple",),
    "live_simple": ("live_simple",),
    "live_multiple": ("live_multiple",),
    "live_parallel": ("live_parallel",),
    "live_parallel_multiple": ("live_parallel_multiple",),
    "irrelevance": ("irrelevance",),
    "live_irrelevance": ("live_irrelevance",),
}
"""Supported categories: the split name -> the file stems tried (v4 names first, then v3)."""

_DIFFICULTY = {"simple": "easy", "irrelevance": "easy", "multiple": "medium", "parallel": "medium",
               "parallel_multiple": "hard"}

IRRELEVANCE_ANSWER = "None of the provided functions can be used for this request, so I will not call any."


# ------------------------------------------------------------------------------------------------ files
def _find_file(root: Path, category: str) -> Path | None:
    for folder in (root, root / "data"):
        for version in ("v4", "v3"):
            for stem in CATEGORIES[category]:
                candidate = folder / f"BFCL_{version}_{stem}.json"
                if candidate.is_file():
                    return candidate
    return None


def _category_of(path: Path) -> str:
    match = re.fullmatch(r"BFCL_v\d+_(.+)\.json", path.name)
    if not match or match.group(1) not in CATEGORIES:
        raise ValueError(f"{path.name}: not a supported BFCL file (categories: {', '.join(CATEGORIES)})")
    return match.group(1)


def _concrete(value: Any) -> Any:
    """One concrete value out of a possible-answer value (first option of every nested choice)."""
    if isinstance(value, dict):
        out = {}
        for key, options in value.items():
            options = options if isinstance(options, list) else [options]
            chosen = next((o for o in options if o != ""), None)
            if chosen is not None:
                out[key] = _concrete(chosen)
        return out
    if isinstance(value, list):
        return [_concrete(v) for v in value]
    return value


def _oracle_calls(ground_truth: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    calls = []
    for expected in ground_truth:
        (name, params), = expected.items()
        arguments = {}
        for param, options in params.items():
            chosen = next((o for o in options if o != ""), None)
            if chosen is not None:
                arguments[param] = _concrete(chosen)
        calls.append({"name": name, "arguments": arguments})
    return calls


def _need(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidRow(f"{where}: must be {what}, got {type(value).__name__}")
    return value


def _messages(row: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    turns = _need(row.get("question"), list, "question", "a list of messages (or of turns of messages)")
    messages = turns[0] if turns and isinstance(turns[0], list) else turns
    for i, message in enumerate(messages):
        _need(message, dict, f"question[{i}]", "a message object {role, content}")
        _need(message.get("role"), str, f"question[{i}].role", "a string")
        _need(message.get("content"), str, f"question[{i}].content", "a string")
    if not any(m["role"] != "system" and m["content"].strip() for m in messages):
        raise InvalidRow("question: has no user message in its first turn")
    return messages


def _functions(row: Mapping[str, Any], underscore: set[str]) -> list[dict[str, Any]]:
    value = row.get("function")
    functions = [value] if isinstance(value, dict) else _need(value, list, "function", "a list of functions")
    names: set[str] = set()
    for i, fn in enumerate(functions):
        at = f"function[{i}]"
        _need(fn, dict, at, "a function object {name, description, parameters}")
        name = _need(fn.get("name"), str, f"{at}.name", "a string")
        if not name.strip():
            raise InvalidRow(f"{at}.name: is empty")
        if name in names or name.replace(".", "_") in underscore:
            raise InvalidRow(f"{at}.name: {name!r} is given twice (or twice once dots become underscores)")
        names.add(name)
        underscore.add(name.replace(".", "_"))
        if "description" in fn and not isinstance(fn["description"], str | None):
            raise InvalidRow(f"{at}.description: must be a string, got {type(fn['description']).__name__}")
        params = fn.get("parameters")
        if params is None:
            continue
        _need(params, dict, f"{at}.parameters", "a parameter schema object")
        props = _need(params.get("properties", {}), dict, f"{at}.parameters.properties", "an object")
        for key, prop in props.items():
            _need(prop, dict, f"{at}.parameters.properties.{key}", "a schema object")
        required = _need(params.get("required", []), list, f"{at}.parameters.required", "a list of names")
        for r in required:
            if not isinstance(r, str) or r not in props:
                raise InvalidRow(f"{at}.parameters.required: {r!r} is not one of its properties")
    return functions


def _ground_truth(value: Any, functions: Sequence[Mapping[str, Any]], where: str) -> list[dict[str, Any]]:
    expected = _need(value, list, where, "a list of expected calls")
    if not expected:
        raise InvalidRow(f"{where}: is empty")
    known = {fn["name"] for fn in functions}
    for i, call in enumerate(expected):
        at = f"{where}[{i}]"
        if not isinstance(call, dict) or len(call) != 1:
            raise InvalidRow(f"{at}: must be one {{function name: {{parameter: [options]}}}} object")
        (name, params), = call.items()
        if name not in known:
            raise InvalidRow(f"{at}: expects {name!r}, which is not among the entry's functions")
        _need(params, dict, f"{at}.{name}", "an object of parameter options")
        for param, options in params.items():
            _need(options, list, f"{at}.{name}.{param}", "a list of possible values")
    return expected


def _tasks_from_file(path: Path, category: str, answer_root: Path, source: str, *,
                     skip_invalid: bool = False) -> list[Task]:
    irrelevance = "irrelevance" in category
    answers: dict[str, tuple[int, Any]] = {}
    answer_path = answer_root / path.name
    if not irrelevance:
        if not answer_path.is_file():
            raise FileNotFoundError(f"BFCL category {category!r} needs its possible answers at {answer_path}")
        for lineno, row in read_rows(answer_path):
            if not isinstance(row, dict) or not isinstance(row.get("id"), str | int) or isinstance(row.get("id"), bool):
                message = f"{answer_path}:{lineno}: a possible answer needs an \"id\" and a \"ground_truth\""
                if skip_invalid:
                    continue
                raise InvalidRow(message)
            answers[str(row["id"])] = (lineno, row.get("ground_truth"))
    level = _DIFFICULTY.get(category.removeprefix("live_").removesuffix("_python"), "medium")

    def make(_line: int, row: Any) -> Task:
        _need(row, dict, "entry", "a JSON object")
        raw_id = row.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
            raise InvalidRow("id: must be a non-empty string or integer")
        task_id = str(raw_id)
        messages = _messages(row)
        system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
        prompt = "\n\n".join(m["content"] for m in messages if m.get("role") != "system")
        functions = _functions(row, set())
        ground_truth = None
        if not irrelevance:
            if task_id not in answers:
                raise InvalidRow(f"has no possible answer in {answer_path}")
            lineno, value = answers[task_id]
            try:
                ground_truth = _ground_truth(value, functions, "ground_truth")
            except InvalidRow as exc:
                raise InvalidRow(f"{exc} (possible answer at {answer_path}:{lineno})") from None
        try:
            bfcl_tools(functions, lambda name, args: "", underscore_names=True)
            oracle_calls = _oracle_calls(ground_truth or [])
            verdict = check_bfcl(category, functions, oracle_calls, ground_truth) if not irrelevance else None
        except InvalidRow:
            raise
        except Exception as exc:  # a schema jsonschema refuses, a value the checker cannot compare
            raise InvalidRow(f"cannot be served or graded ({type(exc).__name__}: {exc})") from None
        if verdict is not None and not verdict["valid"]:
            raise InvalidRow(f"no call can meet its possible answer: {'; '.join(verdict['error'])}")
        oracle: tuple[Any, ...] = (IRRELEVANCE_ANSWER,) if irrelevance else (oracle_calls,)
        return Task(
            id=task_id,
            prompt=prompt,
            data={"bfcl": {"category": category, "functions": functions, "ground_truth": ground_truth,
                           "system": system}},
            oracle=oracle,
            difficulty=level,
            split=category,
            source=source,
        )

    return load_rows(path, make, skip_invalid=skip_invalid, what="entry")


def load_bfcl(path: Path, split: str | None, *, skip_invalid: bool = False) -> list[Task]:
    """Load BFCL single-turn tasks: ``path`` is the data folder (or one ``BFCL_v*_<category>.json`` file).

    ``split`` names the category (``simple``, ``multiple``, ``parallel``, ``parallel_multiple``, their
    ``live_`` versions, ``irrelevance``, ``live_irrelevance``); None loads every supported category found.
    Every entry is checked here (question, functions and their schemas, possible answer, and that the
    possible answer can be met at all): a malformed one is refused with the file, line and field in one
    line, or, with ``skip_invalid``, left out with a warning that counts them.
    """
    path = Path(path)
    source = f"bfcl:{path}"
    if path.is_file():
        category = _category_of(path)
        if split is not None and split != category and split not in CATEGORIES.get(category, ()):
            raise ValueError(f"{path.name} holds category {category!r}, not {split!r}")
        return _tasks_from_file(path, category, path.parent / "possible_answer", source, skip_invalid=skip_invalid)
    if split is not None and split not in CATEGORIES:
        raise ValueError(f"unsupported BFCL category {split!r}; supported: {', '.join(CATEGORIES)}")
    wanted = [split] if split is not None else [c for c in CATEGORIES if c != "simple_python"]
    tasks: list[Task] = []
    for category in wanted:
        found = _find_file(path, category)
        if found is None:
            if split is not None:
                names = ", ".join(f"BFCL_v4_{s}.json" for s in CATEGORIES[category])
                raise FileNotFoundError(f"no BFCL file for category {category!r} in {path} (looked for {names} "
                                        "and the v3 names)")
            continue
        tasks.extend(_tasks_from_file(found, category, found.parent / "possible_answer", source,
                                      skip_invalid=skip_invalid))
    if not tasks:
        raise FileNotFoundError(f"no BFCL_v4_*.json / BFCL_v3_*.json files of a supported category in {path}")
    return tasks


# ---------------------------------------------------------------------------------------------- schemas
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


# ---------------------------------------------------------------------------------------------- checker
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
