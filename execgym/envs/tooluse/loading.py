"""Task files for the tool-use env: the row format, its validation, and the ``jsonl:FILE`` loader.

A row is what ``python -m execgym.envs.tooluse.tasks`` writes into the bundled file::

    {"id": "shop-status-00", "prompt": "...", "difficulty": "easy", "split": "train", "oracle": [...],
     "data": {"domain": "shop", "services": ["shop"], "world": {"shop": {...}}, "turns": [...],
              "checklist": [...]}}

``prompt`` (default: the first user message), ``difficulty`` (``medium``), ``split`` (the loader's split, or
``test``) and ``oracle`` (default: each turn's gold steps, then an answer listing its outputs) may be left
out. Every field the env reads later is checked here, and the task is dry-run (the gold calls replayed on
its world, every criterion evaluated on the result), so a malformed row is refused when the file is loaded,
with the file, the line and the field in one line, never by ``reset()`` or the grader halfway through a run.
``skip_invalid=True`` skips such rows instead and warns once with their count.
"""

from __future__ import annotations

import functools
import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import date as Date
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired

import pydantic
from typing_extensions import TypedDict

from execgym.core.tasks import Task
from execgym.core.tools import Tool
from execgym.envs.tooluse.gold import GoldCallFailed, gold_calls, replay_gold
from execgym.envs.tooluse.grading import CRITERION_KINDS, STATE_OPS, evaluate_criterion
from execgym.envs.tooluse.services import SERVICES

__all__ = ["InvalidRow", "load_tooluse_jsonl", "read_rows", "task_from_row", "validate_task_data"]


class InvalidRow(ValueError):
    r"""A row of a task file that the env could not use; the message names the file, the row and the field.

    The message is one line: control characters from the file (a key holding a newline) are escaped.

    Example:
        >>> print(InvalidRow("data.world.a" + chr(10) + "b: bad"))
        data.world.a\nb: bad
    """

    def __init__(self, message: str) -> None:
        super().__init__(_CONTROL.sub(lambda m: repr(m.group())[1:-1], message))


_STRICT = pydantic.ConfigDict(strict=True, allow_inf_nan=False)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
_MAX_DIGITS = 100
"""An integer literal longer than this is refused while parsing (Python refuses 4,300 digits with a bare error)."""
_MAX_WEIGHT = 1e6
_MAX_INT = 10**15


def _check_time(value: str) -> str:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value)
    if match is None:
        raise ValueError(f"{value!r} is not a time HH:MM (24-hour)")
    return value


def _check_date(value: str) -> str:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        Date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date YYYY-MM-DD") from None
    return value


# Field types of the worlds: what the services compute with, in the ranges they can show and add up.
_Time = Annotated[str, pydantic.AfterValidator(_check_time)]
_Day = Annotated[str, pydantic.AfterValidator(_check_date)]
_Money = Annotated[float, pydantic.Field(ge=0, le=1e9)]
_Count = Annotated[int, pydantic.Field(ge=0, le=10**9)]
_Counter = Annotated[int, pydantic.Field(ge=0, le=_MAX_INT)]


# ----------------------------------------------------------------------------------- service state schemas
@pydantic.with_config(_STRICT)
class _Product(TypedDict):
    name: str
    price: _Money
    stock: _Count


@pydantic.with_config(_STRICT)
class _Customer(TypedDict):
    name: str
    email: str
    address: str


@pydantic.with_config(_STRICT)
class _Line(TypedDict):
    sku: str
    name: str
    quantity: _Count
    price: _Money
    refunded: _Count


@pydantic.with_config(_STRICT)
class _Order(TypedDict):
    customer_id: str
    placed: _Day
    status: Literal["pending", "shipped", "delivered", "cancelled"]
    items: list[_Line]
    address: str
    total: _Money


@pydantic.with_config(_STRICT)
class _Refund(TypedDict):
    order_id: str
    amount: _Money
    reason: str
    sku: NotRequired[str]
    quantity: NotRequired[_Count]


@pydantic.with_config(_STRICT)
class _ShopState(TypedDict, total=False):
    today: _Day
    products: dict[str, _Product]
    customers: dict[str, _Customer]
    orders: dict[str, _Order]
    refunds: list[_Refund]
    next_order: _Counter


@pydantic.with_config(_STRICT)
class _Event(TypedDict):
    title: str
    date: _Day
    start: _Time
    end: _Time
    attendees: list[str]


@pydantic.with_config(_STRICT)
class _CalendarState(TypedDict, total=False):
    work_hours: Annotated[list[_Time], pydantic.Field(min_length=2, max_length=2)]
    events: dict[str, _Event]
    next_id: _Counter


@pydantic.with_config(_STRICT)
class _Contact(TypedDict):
    name: str
    email: str


# "from" is a keyword: the functional form is the only way to name the field.
_Received = TypedDict("_Received", {"from": str, "subject": str, "date": str, "body": str})
_Received.__pydantic_config__ = _STRICT  # type: ignore[attr-defined]


@pydantic.with_config(_STRICT)
class _Sent(TypedDict):
    id: str
    to: list[str]
    subject: str
    body: str


@pydantic.with_config(_STRICT)
class _MailState(TypedDict, total=False):
    address: str
    contacts: list[_Contact]
    inbox: dict[str, _Received]
    sent: list[_Sent]
    next_id: _Counter


@pydantic.with_config(_STRICT)
class _FilesState(TypedDict, total=False):
    dirs: list[str]
    files: dict[str, str]


_STATE_SCHEMAS: dict[str, pydantic.TypeAdapter[Any]] = {
    "shop": pydantic.TypeAdapter(_ShopState),
    "calendar": pydantic.TypeAdapter(_CalendarState),
    "mail": pydantic.TypeAdapter(_MailState),
    "files": pydantic.TypeAdapter(_FilesState),
}
_TOOLS = {name: set(cls.tool_names) for name, cls in SERVICES.items()}


# ------------------------------------------------------------------------------------------------ checks
def _fail(where: str, problem: str) -> InvalidRow:
    return InvalidRow(f"{where}: {problem}" if where else problem)


def _need(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    # bool is an int in Python; a JSON true is never a number or an id here.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _fail(where, f"must be {what}, got a boolean")
    if not isinstance(value, kind):
        raise _fail(where, f"must be {what}, got {type(value).__name__}")
    return value


def _text(value: Any, where: str, *, empty: bool = False) -> str:
    _need(value, str, where, "a string")
    if not empty and not value.strip():
        raise _fail(where, "is empty")
    return value


def _number(value: Any, where: str, lo: float, hi: float) -> Any:
    """A number in ``[lo, hi]``; the comparisons are exact for any int, so no size of number raises."""
    _need(value, (int, float), where, "a number")
    if (isinstance(value, float) and not math.isfinite(value)) or not lo <= value <= hi:
        raise _fail(where, f"must be a finite number from {lo:g} to {hi:g}")
    return value


def _scalar(value: Any, where: str) -> Any:
    _need(value, (str, int, float), where, "a string or a number")
    if not isinstance(value, str):
        _number(value, where, -_MAX_INT, _MAX_INT)
    if isinstance(value, str) and not value.strip():
        raise _fail(where, "is empty")
    return value


def _call(value: Any, where: str, tools: set[str]) -> None:
    _need(value, dict, where, "a call object {name, arguments}")
    name = _text(value.get("name"), f"{where}.name")
    if name not in tools:
        raise _fail(f"{where}.name", f"unknown tool {name!r} for the task's services "
                                     f"(tools: {', '.join(sorted(tools))})")
    _need(value.get("arguments"), dict, f"{where}.arguments", "an object")


def _criterion(c: Any, where: str, turns: int, tools: set[str]) -> None:
    _need(c, dict, where, "an object")
    _text(c.get("id"), f"{where}.id")
    turn = _need(c.get("turn"), int, f"{where}.turn", "an integer")
    if not 1 <= turn <= turns:
        shown = turn if abs(turn) < _MAX_INT else "out of range"
        raise _fail(f"{where}.turn", f"is {shown}, but the task has {turns} user turn(s)")
    kind = c.get("kind")
    if kind not in CRITERION_KINDS:
        raise _fail(f"{where}.kind", f"is {kind!r}; use one of {', '.join(CRITERION_KINDS)}")
    _number(c.get("weight", 1.0), f"{where}.weight", 0, _MAX_WEIGHT)
    for flag in ("required", "grounded"):
        if flag in c:
            _need(c[flag], bool, f"{where}.{flag}", "true or false")
    if "description" in c:
        _text(c["description"], f"{where}.description", empty=True)
    if kind in ("called", "not_called"):
        tool = _text(c.get("tool"), f"{where}.tool")
        if tool not in tools:
            raise _fail(f"{where}.tool", f"unknown tool {tool!r} for the task's services")
        _need(c.get("args", {}), dict, f"{where}.args", "an object")
    elif kind in ("said", "not_said"):
        _scalar(c.get("text"), f"{where}.text")
    else:
        path = _need(c.get("path"), list, f"{where}.path", "a list of keys")
        if not path:
            raise _fail(f"{where}.path", "is empty")
        for i, key in enumerate(path):
            _need(key, (str, int), f"{where}.path[{i}]", "a string or an integer")
        ops = [op for op in STATE_OPS if op in c]
        if not ops or (len(ops) > 1 and sorted(ops) != ["contains", "match"]):
            raise _fail(where, f"a state criterion needs exactly one of {', '.join(STATE_OPS)} (or match with "
                               f"contains), got {ops or 'none'}")
        if "exists" in c:
            _need(c["exists"], bool, f"{where}.exists", "true or false")
        if "match" in c:
            _need(c["match"], dict, f"{where}.match", "an object")
        if "contains" in c:
            _scalar(c["contains"], f"{where}.contains")


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


@functools.cache
def _schemas(service: str) -> dict[str, Tool]:
    """The tools of a service as the agent gets them (their schemas validate the gold calls too)."""
    return {tool.name: tool for tool in SERVICES[service]().tools()}


def validate_task_data(data: Any, where: str = "data") -> None:
    """Check every field of a task's ``data`` that the env and its grader read; raise :class:`InvalidRow`.

    The task is also dry-run: the gold calls are replayed on its world (a call may fail with the service's
    own error, as a real API would; any other exception means the world is malformed) and every criterion is
    evaluated on the resulting state.

    Example:
        >>> validate_task_data({"services": ["shop"], "world": {}, "turns": [{"user": "Hi", "gold": []}]})
        >>> validate_task_data({"services": ["shop"], "world": {}, "turns": []})
        Traceback (most recent call last):
        ...
        execgym.envs.tooluse.loading.InvalidRow: data.turns: needs at least one user turn
    """
    _need(data, dict, where, "an object")
    services = _need(data.get("services"), list, f"{where}.services", "a list of service names")
    if not services:
        raise _fail(f"{where}.services", "is empty")
    for i, name in enumerate(services):
        if not isinstance(name, str) or name not in SERVICES:
            raise _fail(f"{where}.services[{i}]", f"unknown service {name!r} (services: {', '.join(SERVICES)})")
    if len(set(services)) != len(services):
        raise _fail(f"{where}.services", "lists a service twice")
    for key in ("domain", "template"):
        if key in data:
            _text(data[key], f"{where}.{key}", empty=True)
    world = _need(data.get("world", {}), dict, f"{where}.world", "an object")
    for name, state in world.items():
        if name not in services:
            raise _fail(f"{where}.world.{name}", f"is not one of the task's services {services}")
        try:
            _STATE_SCHEMAS[name].validate_python(state)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise _fail(f"{where}.world.{name}" + (f".{loc}" if loc else ""), first["msg"]) from None
    calendar = world.get("calendar") or {}
    hours = calendar.get("work_hours")
    if hours is not None and _minutes(hours[0]) >= _minutes(hours[1]):
        raise _fail(f"{where}.world.calendar.work_hours", "the end must be after the start")
    for event_id, event in (calendar.get("events") or {}).items():
        if _minutes(event["start"]) >= _minutes(event["end"]):
            raise _fail(f"{where}.world.calendar.events.{event_id}", "the end must be after the start")
    tools = {tool for name in services for tool in _TOOLS[name]}
    turns = _need(data.get("turns"), list, f"{where}.turns", "a list of user turns")
    if not turns:
        raise _fail(f"{where}.turns", "needs at least one user turn")
    for t, turn in enumerate(turns):
        at = f"{where}.turns[{t}]"
        _need(turn, dict, at, "an object {user, gold, outputs}")
        _text(turn.get("user"), f"{at}.user")
        gold = _need(turn.get("gold", []), list, f"{at}.gold", "a list of steps (each a list of calls)")
        for s, step in enumerate(gold):
            _need(step, list, f"{at}.gold[{s}]", "a list of calls")
            for c, call in enumerate(step):
                _call(call, f"{at}.gold[{s}][{c}]", tools)
        outputs = _need(turn.get("outputs", []), list, f"{at}.outputs", "a list")
        for o, output in enumerate(outputs):
            _scalar(output, f"{at}.outputs[{o}]")
    checklist = _need(data.get("checklist", []), list, f"{where}.checklist", "a list of criteria")
    seen: set[str] = set()
    for i, criterion in enumerate(checklist):
        _criterion(criterion, f"{where}.checklist[{i}]", len(turns), tools)
        if criterion["id"] in seen:
            raise _fail(f"{where}.checklist[{i}].id", f"{criterion['id']!r} is used twice")
        seen.add(criterion["id"])
    _dry_run(data, where)


def _dry_run(data: Mapping[str, Any], where: str) -> None:
    tools = {tool: schema for name in data["services"] for tool, schema in _schemas(name).items()}
    for at, _turn, call in gold_calls(data):
        # The gold calls go through the same schema as the agent's: a gold call the agent could not make
        # would leave a task no one can win.
        refused = tools[call["name"]].validate(call.get("arguments", {}))
        if refused is not None:
            raise _fail(f"{where}.{at}.arguments", f"the schema of {call['name']} refuses them ({refused})")
    try:
        services = replay_gold(data)
    except GoldCallFailed as exc:
        raise _fail(f"{where}.{exc.where}", exc.problem) from None
    try:
        state = {name: s.view() for name, s in services.items()}
        for s in services.values():
            s.comparable_state()
        for criterion in data.get("checklist", []):
            evaluate_criterion(criterion, [], "", state)
    except Exception as exc:
        raise _fail(where, f"the grader cannot evaluate this task ({type(exc).__name__}: {exc})") from None


def _default_oracle(data: Mapping[str, Any]) -> tuple[Any, ...]:
    actions: list[Any] = []
    for turn in data["turns"]:
        actions.extend(step for step in turn.get("gold", []) if step)
        outputs = "; ".join(str(o) for o in turn.get("outputs", []))
        actions.append(f"Done. {outputs}".strip())
    return tuple(actions)


def _oracle(value: Any, where: str) -> tuple[Any, ...]:
    _need(value, list, where, "a list of actions")
    for i, action in enumerate(value):
        at = f"{where}[{i}]"
        if isinstance(action, str):
            continue
        calls = action if isinstance(action, list) else [action]
        for c, call in enumerate(calls):
            _need(call, dict, f"{at}[{c}]" if isinstance(action, list) else at, "a reply, a call or a list of calls")
            _text(call.get("name"), f"{at}.name")
            _need(call.get("arguments", {}), dict, f"{at}.arguments", "an object")
    return tuple(value)


def task_from_row(row: Any, *, source: str, split: str | None = None) -> Task:
    """A task from one row of a task file; raises :class:`InvalidRow` naming the field."""
    _need(row, dict, "", "a JSON object")
    task_id = row.get("id")
    _need(task_id, (str, int), "id", "a string or an integer")
    task_id = str(task_id)
    if not task_id.strip():
        raise _fail("id", "is empty")
    data = row.get("data")
    validate_task_data(data)
    # The env reads these keys directly: fill the optional ones once, here.
    data = {**data, "domain": data.get("domain", ""), "world": data.get("world", {}),
            "checklist": data.get("checklist", []),
            "turns": [{**turn, "gold": turn.get("gold", []), "outputs": turn.get("outputs", [])}
                      for turn in data["turns"]]}
    prompt = _text(row.get("prompt", data["turns"][0]["user"]), "prompt")
    difficulty = _text(row.get("difficulty", "medium"), "difficulty")
    task_split = _text(row.get("split", split or "test"), "split")
    oracle = _oracle(row["oracle"], "oracle") if "oracle" in row else _default_oracle(data)
    return Task(id=task_id, prompt=prompt, data=data, oracle=oracle, difficulty=difficulty, split=task_split,
                source=source)


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > _MAX_DIGITS:
        raise ValueError(f"an integer of {len(digits.lstrip('-'))} digits (at most {_MAX_DIGITS})")
    return int(digits)


def _parse(text: str) -> Any:
    return json.loads(text, parse_int=_parse_int)


def _reason(exc: BaseException) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:300]


def read_rows(path: Path) -> list[tuple[int, Any]]:
    """``(line, row)`` pairs of a JSONL file or a JSON list (line = the row's 1-based index there)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRow(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix != ".jsonl" and text.lstrip().startswith("["):  # BFCL's .json files are JSONL or a list
        try:
            rows = _parse(text)
        except (ValueError, RecursionError) as exc:
            where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise InvalidRow(f"{path}: not valid JSON{where}: {_reason(exc)}") from None
        if not isinstance(rows, list):
            raise InvalidRow(f"{path}: a JSON file of rows must hold a list")
        return list(enumerate(rows, 1))
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((lineno, _parse(line)))
            except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError, as is a huge integer
                out.append((lineno, _Unreadable(f"not valid JSON: {_reason(exc)}")))
    return out


class _Unreadable:
    """A line that is not JSON: refused (or skipped) like any other malformed row."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def load_rows(
    path: Path,
    make: Callable[[int, Any], Task],
    *,
    skip_invalid: bool,
    what: str = "row",
) -> list[Task]:
    """Build a task per row with ``make(line, row)``; a bad row raises one line naming ``path`` and its line.

    With ``skip_invalid`` bad rows are left out and one warning gives their count and the first reason.
    """
    tasks: list[Task] = []
    skipped: list[str] = []
    ids: dict[str, int] = {}
    for lineno, row in read_rows(path):
        try:
            if isinstance(row, _Unreadable):
                raise InvalidRow(row.reason)
            task = make(lineno, row)
            if task.id in ids:
                raise InvalidRow(f"id {task.id!r} is already used on line {ids[task.id]}")
        except (InvalidRow, RecursionError, ValueError, TypeError, OverflowError) as exc:
            reason = str(exc) if isinstance(exc, InvalidRow) else (
                "nested too deeply" if isinstance(exc, RecursionError) else f"{type(exc).__name__}: {_reason(exc)}")
            label = row.get("id") if isinstance(row, dict) and isinstance(row.get("id"), str | int) else None
            message = f"{path}:{lineno}: {what}" + (f" {label!r}" if label is not None else "") + f": {reason}"
            if not skip_invalid:
                raise InvalidRow(message) from None
            skipped.append(message)
            continue
        ids[task.id] = lineno
        tasks.append(task)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} malformed {what}(s) of {path}; first: {skipped[0]}", stacklevel=3)
    return tasks


def load_tooluse_jsonl(path: Path, split: str | None, *, skip_invalid: bool = False) -> Sequence[Task]:
    """``dataset="jsonl:FILE"``: tasks in the bundled row format (a directory: ``<split>.jsonl`` in it)."""
    path = Path(path)
    if path.is_dir():
        if split is None:
            raise FileNotFoundError(f"{path} is a directory: give split=<name> to read {path}/<name>.jsonl")
        path = path / f"{split}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"no {path.name} in {path.parent}")
        split = None
    source = f"jsonl:{path}"
    tasks = load_rows(path, lambda _line, row: task_from_row(row, source=source, split=split),
                      skip_invalid=skip_invalid, what="task")
    if split is not None:
        tasks = [t for t in tasks if t.split == split]
    return tasks
