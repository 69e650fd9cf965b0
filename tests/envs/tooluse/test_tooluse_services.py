"""The services behind the tool-use env: tools from typed methods, errors as ToolError, comparable state."""

from __future__ import annotations

import json

import pytest

from execgym.core.tools import ToolError
from execgym.envs.tooluse.services import SERVICES, Calendar, FileSystem, Mail, Shop


def shop() -> Shop:
    return Shop({
        "products": {"P-1": {"name": "Desk Lamp", "price": 24.99, "stock": 3},
                     "P-2": {"name": "Kettle", "price": 44.9, "stock": 0}},
        "customers": {"C-1": {"name": "Ann Lee", "email": "ann@mail.example", "address": "1 Elm St"}},
        "orders": {"O-1": {"customer_id": "C-1", "placed": "2025-02-01", "status": "pending", "address": "1 Elm St",
                           "items": [{"sku": "P-1", "name": "Desk Lamp", "quantity": 2, "price": 24.99,
                                      "refunded": 0}], "total": 49.98},
                   "O-2": {"customer_id": "C-1", "placed": "2025-02-03", "status": "delivered", "address": "1 Elm St",
                           "items": [{"sku": "P-2", "name": "Kettle", "quantity": 1, "price": 44.9, "refunded": 0}],
                           "total": 44.9}},
    })


def test_every_tool_schema_comes_from_the_signature_and_docstring():
    for cls in SERVICES.values():
        for tool in cls().tools():
            schema = tool.schema()["function"]
            assert schema["description"], tool.name
            params = schema["parameters"]
            assert params["type"] == "object" and params["additionalProperties"] is False
            for name, prop in params["properties"].items():
                assert prop.get("description"), f"{tool.name}.{name} has no description"
    cancel = {t.name: t for t in Shop().tools()}["cancel_order"].schema()["function"]["parameters"]
    assert cancel["properties"]["reason"]["enum"] == ["no_longer_needed", "ordered_by_mistake"]
    place = {t.name: t for t in Shop().tools()}["place_order"]
    assert place.validate({"customer_id": "C-1", "items": [{"sku": "P-1", "quantity": "2"}]})
    assert place.validate({"customer_id": "C-1", "items": [{"sku": "P-1", "quantity": 2}]}) is None


def test_shop_errors_are_tool_errors_and_leave_state_unchanged():
    s = shop()
    before = s.state()
    with pytest.raises(ToolError, match="^no order with that id$"):
        s.get_order("O-9")
    with pytest.raises(ToolError, match="insufficient stock for P-1"):
        s.place_order("C-1", [{"sku": "P-1", "quantity": 4}])
    with pytest.raises(ToolError, match="only pending orders can be cancelled"):
        s.cancel_order("O-2", "no_longer_needed")
    with pytest.raises(ToolError, match="only delivered orders can be refunded"):
        s.refund_item("O-1", "P-1", 1, "damaged")
    assert s.state() == before


def test_shop_cancel_restocks_and_refunds_and_refund_limits_units():
    s = shop()
    assert s.cancel_order("o-1", "ordered_by_mistake") == {"order_id": "O-1", "status": "cancelled", "refunded": 49.98}
    assert s.state()["products"]["P-1"]["stock"] == 5
    assert s.refund_item("O-2", "P-2", 1, "damaged")["refunded"] == 44.9
    with pytest.raises(ToolError, match="0 unit"):
        s.refund_item("O-2", "P-2", 1, "damaged")
    assert [r["amount"] for r in s.state()["refunds"]] == [49.98, 44.9]


def test_state_is_a_json_copy_and_comparable_state_ignores_runtime_ids():
    a, b = shop(), shop()
    state = a.state()
    state["products"]["P-1"]["stock"] = 99
    assert a.state()["products"]["P-1"]["stock"] == 3
    json.dumps(a.state())
    a.place_order("C-1", [{"sku": "P-1", "quantity": 1}])
    b.load({**b.state(), "next_order": 7000})  # another id counter: the same shop as far as anyone can tell
    b.place_order("C-1", [{"sku": "P-1", "quantity": 1}])
    assert a.comparable_state() == b.comparable_state()
    b.update_shipping_address(next(o for o in b.state()["orders"] if o not in {"O-1", "O-2"}), "2 Oak St")
    assert a.comparable_state() != b.comparable_state()


def test_file_system_moves_copies_and_refuses_what_a_shell_would():
    fs = FileSystem({"dirs": ["/a", "/b"], "files": {"/a/x.log": "1\n", "/a/y.txt": "hello world\n"}})
    assert fs.list_directory("/") == {"path": "/", "directories": ["a", "b"], "files": []}
    assert fs.find_files("*.log") == ["/a/x.log"]
    assert fs.search_files("WORLD") == [{"path": "/a/y.txt", "line": 1, "text": "hello world"}]
    assert fs.move_file("/a/x.log", "/b")["destination"] == "/b/x.log"
    with pytest.raises(ToolError, match="already exists"):
        fs.copy_file("/a/y.txt", "/a/y.txt")
    with pytest.raises(ToolError, match="use create_directory first"):
        fs.write_file("/c/new.txt", "x")
    fs.create_directory("/c/d")
    fs.write_file("/c/d/new.txt", "x")
    fs.append_line("/c/d/new.txt", "y")
    assert fs.read_file("c/d/new.txt") == "x\ny\n"
    with pytest.raises(ToolError, match="is a directory"):
        fs.delete_file("/c")
    assert "/c" in fs.state()["dirs"] and "/c/d" in fs.state()["dirs"]


def test_calendar_conflicts_free_slots_and_comparable_state():
    cal = Calendar({"events": {"E-1": {"title": "Standup", "date": "2025-03-10", "start": "09:00", "end": "10:00",
                                       "attendees": []}}})
    with pytest.raises(ToolError, match="conflicts with E-1 'Standup'"):
        cal.create_event("Review", "2025-03-10", "9:30", "10:30")
    with pytest.raises(ToolError, match="invalid date"):
        cal.list_events("10/03/2025")
    new = cal.create_event("Review", "2025-03-10", "10:00", "11:00", ["x@corp.example"])
    assert new["event_id"] == "E-200" and new["start"] == "10:00"
    assert cal.find_free_slots("2025-03-10", 120) == [{"start": "11:00", "end": "17:00"}]
    cal.reschedule_event("E-200", "2025-03-11", "9:00", "10:00")
    assert cal.get_event("E-200")["date"] == "2025-03-11"
    other = Calendar(cal.state())
    other.cancel_event("E-200")
    other.create_event("review ", "2025-03-11", "09:00", "10:00", ["X@corp.example"])
    assert other.comparable_state() == cal.comparable_state()


def test_mail_reading_never_changes_state_and_sending_does():
    mail = Mail({"contacts": [{"name": "Dana Lee", "email": "dana@corp.example"}],
                 "inbox": {"M-1": {"from": "dana@corp.example", "subject": "Q2 budget", "date": "2025-03-05",
                                   "body": "It is 500 EUR."}}})
    before = mail.comparable_state()
    assert mail.search_emails("budget")[0]["email_id"] == "M-1"
    assert mail.read_email("M-1")["body"] == "It is 500 EUR."
    assert mail.comparable_state() == before
    with pytest.raises(ToolError, match="invalid e-mail"):
        mail.send_email(["dana"], "x", "y")
    mail.send_email(["dana@corp.example"], "Re: budget", "Thanks!")
    assert mail.comparable_state() != before


@pytest.mark.parametrize("module", ["services", "grading", "gold", "scenario", "tasks", "toolrl", "env"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"execgym.envs.tooluse.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
