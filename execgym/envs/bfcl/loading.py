"""BFCL (Berkeley Function-Calling Leaderboard) single-turn files: the ``bfcl:DIR`` loader and its checks.

``dataset="bfcl:DIR"`` with ``split=<category>`` reads ``DIR/BFCL_v4_<category>.json`` (or ``BFCL_v3_...``;
JSONL despite the suffix) and the matching ``DIR/possible_answer/`` file. Each entry becomes a one-step task
whose ``data["bfcl"]`` holds its category, functions, possible answer and system prompt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from execgym.core.tasks import Task
from execgym.envs.bfcl.grading import check_bfcl
from execgym.envs.bfcl.tools import bfcl_tools
from execgym.envs.tooluse.loading import InvalidRow, load_rows, read_rows

__all__ = ["CATEGORIES", "IRRELEVANCE_ANSWER", "load_bfcl"]

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
