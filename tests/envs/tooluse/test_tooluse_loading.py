"""Task files: the ToolUse ``jsonl:`` loader checks every row when loaded, not at reset()."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from execgym.envs.tooluse.env import ToolUseEnv
from execgym.envs.tooluse.loading import InvalidRow, validate_task_data
from execgym.envs.tooluse.tasks import _to_row, build_bundled

ROWS = [_to_row(t) for t in build_bundled(per_template=1)]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_task_file_in_the_bundled_format_loads_and_its_oracle_wins(tmp_path):
    path = _jsonl(tmp_path / "tasks.jsonl", ROWS)
    env = ToolUseEnv(dataset=f"jsonl:{path}")
    assert len(env.tasks) == len(ROWS)
    for task in env.tasks:
        env.reset(options={"task_id": task.id})
        for action in task.oracle:
            *_, info = env.step(action)
        assert info["outcome"] == 1.0, task.id
    rows = [{**r, "split": "test" if i % 2 else "train"} for i, r in enumerate(ROWS)]
    path = _jsonl(tmp_path / "split.jsonl", rows)
    assert len(ToolUseEnv(dataset=f"jsonl:{path}", split="test").tasks) == len(rows) // 2


def test_optional_fields_take_defaults_and_the_default_oracle_answers_with_the_outputs(tmp_path):
    row = copy.deepcopy(next(r for r in ROWS if r["data"]["template"] == "shop-status"))
    for key in ("prompt", "oracle", "difficulty", "split"):
        del row[key]
    del row["data"]["domain"]
    env = ToolUseEnv(dataset=f"jsonl:{_jsonl(tmp_path / 't.jsonl', [row])}")
    task = env.tasks.get(row["id"])
    assert task.prompt == row["data"]["turns"][0]["user"] and task.split == "test"
    env.reset(options={"task_id": task.id})
    for action in task.oracle:
        *_, info = env.step(action)
    assert info["outcome"] == 1.0


@pytest.mark.parametrize("field, value, expected", [
    (("id",), None, "id: must be a string or an integer, got NoneType"),
    (("data", "services"), ["bank"], "data.services[0]: unknown service 'bank'"),
    (("data", "turns"), [], "data.turns: needs at least one user turn"),
    (("data", "turns", 0, "user"), 7, "data.turns[0].user: must be a string, got int"),
    (("data", "turns", 0, "gold", 0, 0, "arguments"), "x", "gold[0][0].arguments: must be an object, got str"),
    (("data", "checklist", 0, "turn"), 9, "data.checklist[0].turn: is 9, but the task has 1 user turn(s)"),
    (("data", "checklist", 0, "kind"), "maybe", "data.checklist[0].kind: is 'maybe'"),
    (("data", "checklist", 0, "weight"), True, "data.checklist[0].weight: must be a number, got a boolean"),
    (("data", "world", "shop", "orders"), [], "data.world.shop.orders: Input should be a valid dictionary"),
])
def test_a_malformed_row_is_refused_at_load_naming_file_line_and_field(tmp_path, field, value, expected):
    row = copy.deepcopy(next(r for r in ROWS if r["data"]["template"] == "shop-status"))
    target = row
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    path = _jsonl(tmp_path / "tasks.jsonl", [ROWS[1], row])
    with pytest.raises(InvalidRow) as caught:
        ToolUseEnv(dataset=f"jsonl:{path}")
    message = str(caught.value)
    assert message.startswith(f"{path}:2: task") and expected in message and "\n" not in message


def test_a_world_the_gold_calls_cannot_run_on_is_refused():
    data = copy.deepcopy(next(r for r in ROWS if r["data"]["template"] == "shop-cancel")["data"])
    order = data["turns"][0]["gold"][0][0]["arguments"]["order_id"]
    del data["world"]["shop"]["orders"][order]["items"][0]["sku"]
    with pytest.raises(InvalidRow, match=r"world\.shop\.orders\..*\.items\.0\.sku: Field required"):
        validate_task_data(data)


def test_duplicate_ids_and_unreadable_lines_are_named(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[0]) + "\n", encoding="utf-8")
    with pytest.raises(InvalidRow, match=rf"^{path}:2: task '{ROWS[0]['id']}': id .* is already used on line 1$"):
        ToolUseEnv(dataset=f"jsonl:{path}")
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(InvalidRow, match=rf"^{path}:2: task: not valid JSON"):
        ToolUseEnv(dataset=f"jsonl:{path}")
    path.write_text("[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(InvalidRow, match=rf"^{path}:1: task: not valid JSON"):
        ToolUseEnv(dataset=f"jsonl:{path}")


def test_outputs_of_a_task_file_without_said_criteria_must_still_come_from_a_lookup(tmp_path):
    """A loaded row that lists outputs but no checklist gets grounded criteria from its gold results."""
    row = copy.deepcopy(next(r for r in ROWS if r["data"]["template"] == "shop-status"))
    row["data"]["checklist"] = []
    env = ToolUseEnv(dataset=f"jsonl:{_jsonl(tmp_path / 't.jsonl', [row])}")
    task = env.tasks.get(row["id"])
    gold_answer = next(a for a in task.oracle if isinstance(a, str))
    env.reset(options={"task_id": task.id})
    env.step({"name": "search_products", "arguments": {"query": "zzzz"}})
    *_, info = env.step(gold_answer)
    assert info["outcome"] == 0.0 and "in no tool result" in info["units"][1]["evidence"]
    env.reset(options={"task_id": task.id})
    for action in task.oracle:
        *_, info = env.step(action)
    assert info["outcome"] == 1.0


# --------------------------------------------------------------------------- numbers, times, gold schemas
def _shop_status_text(**changes: str) -> str:
    """The shop-status row as JSON text with literal replacements (numbers json.dumps cannot write)."""
    text = json.dumps(next(r for r in ROWS if r["data"]["template"] == "shop-status"))
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


@pytest.mark.parametrize("where, literal, expected", [
    ('"weight"', "9" * 400, "not valid JSON: an integer of 400 digits"),  # was a bare OverflowError
    ('"weight"', "9" * 5000, "not valid JSON: an integer of 5000 digits"),  # was a bare ValueError
    ('"weight"', "9" * 40, "weight: must be a finite number from 0 to"),
    ('"weight"', "1e400", "weight: must be a finite number from 0 to"),
    ('"next_order"', "9" * 5000, "not valid JSON: an integer of 5000 digits"),
    ('"price"', "1e400", "price: Input should be a finite number"),  # was loaded and shown as Infinity
    ('"price"', "1e300", "price: Input should be less than or equal to"),
    ('"stock"', "9" * 40, "stock: Input should be less than or equal to"),
    ('"stock"', "-1", "stock: Input should be greater than or equal to 0"),
])
def test_out_of_range_numbers_are_one_line_refusals_that_skip_invalid_rows_skips(tmp_path, where, literal, expected):
    row = json.loads(_shop_status_text())
    if where == '"weight"':
        row["data"]["checklist"][0]["weight"] = "<n>"
    text = json.dumps(row)
    if where == '"weight"':
        text = text.replace('"<n>"', literal)
    else:
        key = where
        start = text.index(key + ": ") + len(key) + 2
        end = min(i for i in (text.find(",", start), text.find("}", start)) if i > 0)
        text = text[:start] + literal + text[end:]
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(ROWS[1]) + "\n" + text + "\n", encoding="utf-8")
    with pytest.raises(InvalidRow) as caught:
        ToolUseEnv(dataset=f"jsonl:{path}")
    message = str(caught.value)
    assert message.startswith(f"{path}:2: task") and expected in message and "\n" not in message, message
    with pytest.warns(UserWarning, match=r"skipped 1 malformed task\(s\)"):
        env = ToolUseEnv(dataset=f"jsonl:{path}", skip_invalid_rows=True)
    assert env.tasks.ids() == [ROWS[1]["id"]]


def _office_row(template: str) -> dict:
    return copy.deepcopy(next(r for r in ROWS if r["data"]["template"] == template))


@pytest.mark.parametrize("change, expected", [
    (lambda cal: cal.update(work_hours=["nine", "five"]), "calendar.work_hours.0: Value error, 'nine' is not a time"),
    (lambda cal: cal.update(work_hours=["17:00", "09:00"]), "calendar.work_hours: the end must be after the start"),
    (lambda cal: next(iter(cal["events"].values())).update(start="noon"), "start: Value error, 'noon' is not a time"),
    (lambda cal: next(iter(cal["events"].values())).update(end="24:00"), "end: Value error, '24:00' is not a time"),
    (lambda cal: next(iter(cal["events"].values())).update(date="2025-02-30"), "date: Value error, '2025-02-30'"),
    (lambda cal: next(iter(cal["events"].values())).update(start="16:59", end="09:00"),
     "the end must be after the start"),
])
def test_calendar_times_and_dates_are_validated_at_load(tmp_path, change, expected):
    """Before, "noon" and ["nine", "five"] loaded and the agent's calls then failed on the task's data."""
    row = _office_row("cal-agenda")
    change(row["data"]["world"]["calendar"])
    path = _jsonl(tmp_path / "t.jsonl", [row])
    with pytest.raises(InvalidRow) as caught:
        ToolUseEnv(dataset=f"jsonl:{path}")
    assert str(caught.value).startswith(f"{path}:1: task") and expected in str(caught.value), str(caught.value)


def test_gold_calls_go_through_the_tool_schema_the_agent_gets(tmp_path):
    """A gold cancel_order(reason="because") loaded, and its own oracle was then refused through the schema."""
    row = copy.deepcopy(next(r for r in ROWS if r["data"]["template"] == "shop-cancel"))
    for call in (c for turn in row["data"]["turns"] for step in turn["gold"] for c in step):
        if call["name"] == "cancel_order":
            call["arguments"]["reason"] = "because"
    path = _jsonl(tmp_path / "t.jsonl", [row])
    with pytest.raises(InvalidRow, match=r"^.*:1: task .*gold\[0\]\[0\]\.arguments: the schema of cancel_order "
                                         r"refuses them \(argument 'reason': 'because' is not one of"):
        ToolUseEnv(dataset=f"jsonl:{path}")
    row["data"]["turns"][0]["gold"][0][0]["arguments"]["extra"] = 1
    row["data"]["turns"][0]["gold"][0][0]["arguments"]["reason"] = "no_longer_needed"
    with pytest.raises(InvalidRow, match=r"the schema of cancel_order refuses them"):
        ToolUseEnv(dataset=f"jsonl:{_jsonl(tmp_path / 'u.jsonl', [row])}")
