"""Stateful services whose typed, documented methods are the tool-use env's tools.

Each service is a plain Python class over a JSON-able state (``state()``), loaded from a task's world data.
Its public methods listed in ``tool_names`` become tools with :meth:`Tool.from_function`, so the schema the
agent sees is generated from the signature and the docstring, never written twice. Errors the caller caused
(an unknown order, a full calendar slot) raise :class:`ToolError` and come back to the agent as the tool's
result. ``comparable_state()`` is what the grader compares with the state the task's gold calls produce:
the state without runtime-assigned ids and counters, with strings case- and whitespace-folded.
"""

# No "from __future__ import annotations": Tool.from_function reads these hints at runtime.
import fnmatch
import json
import marshal
import posixpath
import re
from collections.abc import Mapping
from datetime import date as Date
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from execgym.core.tools import Tool, ToolError

__all__ = [
    "SERVICES",
    "Calendar",
    "FileSystem",
    "Mail",
    "OrderLine",
    "Service",
    "Shop",
    "fold_strings",
]


def _copy(value: Any) -> Any:
    """A deep copy that also proves the value is JSON-able (and is faster than ``copy.deepcopy``)."""
    return json.loads(json.dumps(value))


def fold_strings(value: Any) -> Any:
    """Case- and whitespace-fold every string value (not keys) of a JSON-able value.

    Example:
        >>> fold_strings({"Title": "  Budget  Review ", "n": [1, "A b"]})
        {'Title': 'budget review', 'n': [1, 'a b']}
    """
    kind = type(value)
    if kind is str:
        return " ".join(value.split()).casefold()
    if kind is dict:
        return {k: fold_strings(v) for k, v in value.items()}
    if kind is list:
        return [fold_strings(v) for v in value]
    return value


def _sorted_records(records: list[Any]) -> list[Any]:
    return sorted(records, key=lambda r: json.dumps(r, sort_keys=True))


class Service:
    """A stateful service: JSON-able state, tools from its documented methods, a comparable snapshot.

    Subclasses set ``name`` (the key of their state in a task's world), ``tool_names`` and
    ``empty_state()``. The state given to ``load`` is copied, so the caller's data is never changed.

    Example:
        >>> shop = Shop(Shop.empty_state())
        >>> shop.state() == Shop.empty_state(), [t.name for t in shop.tools()][:2]
        (True, ['find_customer', 'list_orders'])
    """

    name: ClassVar[str] = ""
    tool_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = {}
        self.load(state if state is not None else self.empty_state())

    @classmethod
    def empty_state(cls) -> dict[str, Any]:
        """The state of an empty service (every key the service uses)."""
        raise NotImplementedError

    def load(self, state: Mapping[str, Any]) -> None:
        """Replace the service's state with a copy of ``state`` (missing keys take their empty value)."""
        data = self.empty_state()
        # marshal copies plain JSON data several times faster than a JSON round trip (resets are hot).
        data.update(marshal.loads(marshal.dumps(dict(state))))
        self._data = data
        self._on_load()

    def _on_load(self) -> None:
        """Remember what the grader needs about the initial state."""

    def state(self) -> dict[str, Any]:
        """A JSON-able copy of the full state."""
        return _copy(self._data)

    def view(self) -> Mapping[str, Any]:
        """The live state, for read-only inspection by graders (no copy)."""
        return self._data

    def comparable_state(self) -> dict[str, Any]:
        """The state the grader compares: runtime ids and counters dropped, strings folded."""
        return fold_strings(self._data)

    def tools(self) -> list[Tool]:
        """This service's tools, generated from the methods named in ``tool_names``."""
        return [Tool.from_function(getattr(self, name)) for name in self.tool_names]


# ----------------------------------------------------------------------------------------------- files
class FileSystem(Service):
    """An in-memory file system of directories and text files.

    State: ``{"dirs": ["/docs", ...], "files": {"/docs/a.txt": "text", ...}}`` (``/`` always exists).

    Example:
        >>> fs = FileSystem({"dirs": ["/docs"], "files": {"/docs/a.txt": "hello"}})
        >>> fs.read_file("/docs/a.txt")
        'hello'
        >>> fs.move_file("/docs/a.txt", "/")["destination"]
        '/a.txt'
        >>> fs.read_file("/docs/a.txt")
        Traceback (most recent call last):
        ...
        execgym.core.tools.ToolError: no such file
    """

    name = "files"
    tool_names = (
        "list_directory",
        "read_file",
        "find_files",
        "search_files",
        "write_file",
        "append_line",
        "create_directory",
        "move_file",
        "copy_file",
        "delete_file",
    )

    @classmethod
    def empty_state(cls) -> dict[str, Any]:
        return {"dirs": [], "files": {}}

    # helpers
    @staticmethod
    def _norm(path: str) -> str:
        path = path.strip()
        if not path:
            raise ToolError("the path is empty")
        if not path.startswith("/"):
            path = "/" + path
        path = posixpath.normpath(path)
        return "/" + path.lstrip("/")

    def _is_dir(self, path: str) -> bool:
        return path == "/" or path in self._data["dirs"]

    def _is_file(self, path: str) -> bool:
        return path in self._data["files"]

    def _need_file(self, path: str) -> str:
        path = self._norm(path)
        if self._is_dir(path):
            raise ToolError("that path is a directory, not a file")
        if not self._is_file(path):
            raise ToolError("no such file")
        return path

    def _need_parent(self, path: str) -> None:
        parent = posixpath.dirname(path)
        if not self._is_dir(parent):
            what = "a file" if self._is_file(parent) else "missing"
            raise ToolError(f"cannot create the file: its directory is {what} (use create_directory first)")

    def _under(self, path: str, root: str) -> bool:
        return root == "/" or path.startswith(root + "/")

    def _target(self, source: str, destination: str) -> tuple[str, str]:
        src = self._need_file(source)
        dst = self._norm(destination)
        if self._is_dir(dst):
            dst = posixpath.join(dst, posixpath.basename(src))
        if self._is_dir(dst):
            raise ToolError("the destination is a directory")
        if self._is_file(dst):
            raise ToolError("the destination already exists; delete it first or choose another name")
        self._need_parent(dst)
        return src, dst

    # tools
    def list_directory(self, path: str = "/") -> dict[str, Any]:
        """List the subdirectories and files directly inside a directory.

        Args:
            path: absolute path of the directory, e.g. "/projects".
        """
        path = self._norm(path)
        if not self._is_dir(path):
            raise ToolError("that path is a file, not a directory" if self._is_file(path) else "no such directory")
        dirs = sorted(posixpath.basename(d) for d in self._data["dirs"] if d != path and posixpath.dirname(d) == path)
        files = sorted(
            (posixpath.basename(f), len(c)) for f, c in self._data["files"].items() if posixpath.dirname(f) == path
        )
        return {"path": path, "directories": dirs, "files": [{"name": n, "size": s} for n, s in files]}

    def read_file(self, path: str) -> str:
        """Read a text file and return its whole content.

        Args:
            path: absolute path of the file, e.g. "/notes/todo.md".
        """
        return self._data["files"][self._need_file(path)]

    def find_files(self, pattern: str, path: str = "/") -> list[str]:
        """Find files whose name matches a shell-style pattern, searching a directory recursively.

        Args:
            pattern: a file-name pattern such as "*.log" or "report*".
            path: the directory to search in (default: everything).
        """
        root = self._norm(path)
        if not self._is_dir(root):
            raise ToolError("no such directory")
        return sorted(
            f for f in self._data["files"] if self._under(f, root) and fnmatch.fnmatch(posixpath.basename(f), pattern)
        )

    def search_files(self, text: str, path: str = "/") -> list[dict[str, Any]]:
        """Search the content of files for a text (case-insensitive) and return the matching lines.

        Args:
            text: the text to look for.
            path: the directory to search in, recursively (default: everything).
        """
        root = self._norm(path)
        if not self._is_dir(root):
            raise ToolError("no such directory")
        if not text.strip():
            raise ToolError("the search text is empty")
        needle = text.casefold()
        hits = []
        for name in sorted(self._data["files"]):
            if not self._under(name, root):
                continue
            for lineno, line in enumerate(self._data["files"][name].splitlines(), 1):
                if needle in line.casefold():
                    hits.append({"path": name, "line": lineno, "text": line})
        return hits[:50]

    def write_file(self, path: str, content: str) -> dict[str, Any]:
        """Create a file, or replace the whole content of an existing file.

        Args:
            path: absolute path of the file; its directory must exist.
            content: the complete new content.
        """
        path = self._norm(path)
        if self._is_dir(path):
            raise ToolError("that path is a directory")
        self._need_parent(path)
        created = not self._is_file(path)
        self._data["files"][path] = content
        return {"path": path, "size": len(content), "created": created}

    def append_line(self, path: str, line: str) -> dict[str, Any]:
        """Add one line at the end of an existing text file.

        Args:
            path: absolute path of the file.
            line: the line to add (without a newline character).
        """
        path = self._need_file(path)
        if "\n" in line:
            raise ToolError("the line must not contain a newline; call append_line once per line")
        content = self._data["files"][path]
        if content and not content.endswith("\n"):
            content += "\n"
        self._data["files"][path] = content + line + "\n"
        return {"path": path, "size": len(self._data["files"][path])}

    def create_directory(self, path: str) -> dict[str, Any]:
        """Create a directory and any missing parent directories (nothing happens if it exists).

        Args:
            path: absolute path of the directory.
        """
        path = self._norm(path)
        if self._is_file(path):
            raise ToolError("that path is a file")
        created = []
        current = path
        while current != "/" and not self._is_dir(current):
            if self._is_file(current):
                raise ToolError("a parent of that path is a file")
            created.append(current)
            current = posixpath.dirname(current)
        self._data["dirs"] = sorted({*self._data["dirs"], *created})
        return {"path": path, "created": bool(created)}

    def move_file(self, source: str, destination: str) -> dict[str, Any]:
        """Move or rename a file. If the destination is an existing directory the file keeps its name.

        Args:
            source: absolute path of the file to move.
            destination: the new absolute path, or an existing directory to move it into.
        """
        src, dst = self._target(source, destination)
        self._data["files"][dst] = self._data["files"].pop(src)
        return {"source": src, "destination": dst}

    def copy_file(self, source: str, destination: str) -> dict[str, Any]:
        """Copy a file. If the destination is an existing directory the copy keeps the file's name.

        Args:
            source: absolute path of the file to copy.
            destination: the absolute path of the copy, or an existing directory to copy it into.
        """
        src, dst = self._target(source, destination)
        self._data["files"][dst] = self._data["files"][src]
        return {"source": src, "destination": dst}

    def delete_file(self, path: str) -> dict[str, Any]:
        """Delete a file permanently.

        Args:
            path: absolute path of the file.
        """
        path = self._need_file(path)
        del self._data["files"][path]
        return {"deleted": path}

    def comparable_state(self) -> dict[str, Any]:
        # Spacing is not content the user asked for ("a\n" equals "a"), but case is: "exactly this line".
        files = {path: " ".join(text.split()) for path, text in sorted(self._data["files"].items())}
        return {"dirs": sorted(self._data["dirs"]), "files": files}


# -------------------------------------------------------------------------------------- calendar + mail
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


def _check_date(value: str) -> str:
    value = value.strip()
    try:
        if not _DATE.match(value):
            raise ValueError
        Date.fromisoformat(value)
    except ValueError:
        raise ToolError("invalid date: use YYYY-MM-DD") from None
    return value


def _minutes(value: str) -> int:
    match = _TIME.match(value.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ToolError("invalid time: use HH:MM (24-hour)")
    return int(match.group(1)) * 60 + int(match.group(2))


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _check_emails(emails: list[str]) -> list[str]:
    out = []
    for email in emails:
        email = email.strip()
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise ToolError("invalid e-mail address: use name@domain.tld")
        out.append(email)
    return out


class Calendar(Service):
    """The user's calendar: events with a date, a start and end time, and attendees.

    State: ``{"work_hours": ["09:00", "17:00"], "events": {"E-101": {"title", "date", "start", "end",
    "attendees"}}, "next_id": 200}``. Events may not overlap (the API refuses a double booking).

    Example:
        >>> cal = Calendar({"events": {"E-1": {"title": "Standup", "date": "2025-03-10", "start": "09:00",
        ...                 "end": "09:30", "attendees": []}}})
        >>> cal.find_free_slots("2025-03-10", 60)[0]
        {'start': '09:30', 'end': '17:00'}
        >>> cal.create_event("Review", "2025-03-10", "09:15", "10:00")
        Traceback (most recent call last):
        ...
        execgym.core.tools.ToolError: that time conflicts with E-1 'Standup' (09:00-09:30)
    """

    name = "calendar"
    tool_names = (
        "list_events",
        "get_event",
        "find_free_slots",
        "create_event",
        "reschedule_event",
        "invite_attendees",
        "cancel_event",
    )

    @classmethod
    def empty_state(cls) -> dict[str, Any]:
        return {"work_hours": ["09:00", "17:00"], "events": {}, "next_id": 200}

    def _event(self, event_id: str) -> dict[str, Any]:
        event = self._data["events"].get(event_id.strip())
        if event is None:
            raise ToolError("no event with that id")
        return event

    def _slot(self, date: str, start: str, end: str, ignore: str | None = None) -> tuple[str, int, int]:
        date = _check_date(date)
        lo, hi = _minutes(start), _minutes(end)
        if hi <= lo:
            raise ToolError("the end time must be after the start time")
        for eid, ev in sorted(self._data["events"].items()):
            if eid == ignore or ev["date"] != date:
                continue
            if _minutes(ev["start"]) < hi and lo < _minutes(ev["end"]):
                raise ToolError(
                    f"that time conflicts with {eid} '{ev['title']}' "
                    f"({ev['start']}-{ev['end']})"
                )
        return date, lo, hi

    def list_events(self, date: str) -> list[dict[str, Any]]:
        """List the events on one day, in time order.

        Args:
            date: the day, as YYYY-MM-DD.
        """
        date = _check_date(date)
        events = [{"event_id": eid, **ev} for eid, ev in self._data["events"].items() if ev["date"] == date]
        return sorted(events, key=lambda e: (e["start"], e["event_id"]))

    def get_event(self, event_id: str) -> dict[str, Any]:
        """Get one event by its id.

        Args:
            event_id: the event's id, e.g. "E-104".
        """
        return {"event_id": event_id.strip(), **self._event(event_id)}

    def find_free_slots(self, date: str, duration_minutes: int) -> list[dict[str, str]]:
        """Find the free periods of a day, within working hours, that are at least as long as a duration.

        Args:
            date: the day, as YYYY-MM-DD.
            duration_minutes: the minimum length of a free period, in minutes.
        """
        date = _check_date(date)
        if duration_minutes <= 0:
            raise ToolError("duration_minutes must be positive")
        day_start, day_end = (_minutes(t) for t in self._data["work_hours"])
        busy = sorted(
            (_minutes(ev["start"]), _minutes(ev["end"])) for ev in self._data["events"].values() if ev["date"] == date
        )
        free, cursor = [], day_start
        for lo, hi in [*busy, (day_end, day_end)]:
            lo, hi = max(lo, day_start), min(hi, day_end)
            if lo - cursor >= duration_minutes:
                free.append({"start": _clock(cursor), "end": _clock(lo)})
            cursor = max(cursor, hi)
        return free

    def create_event(
        self, title: str, date: str, start: str, end: str, attendees: list[str] | None = None
    ) -> dict[str, Any]:
        """Create an event. It fails if it overlaps an existing event.

        Args:
            title: the event's title.
            date: the day, as YYYY-MM-DD.
            start: start time, HH:MM (24-hour).
            end: end time, HH:MM (24-hour).
            attendees: e-mail addresses of the people to invite.
        """
        if not title.strip():
            raise ToolError("the title is empty")
        date, lo, hi = self._slot(date, start, end)
        event_id = f"E-{self._data['next_id']}"
        self._data["next_id"] += 1
        event = {"title": title.strip(), "date": date, "start": _clock(lo), "end": _clock(hi),
                 "attendees": _check_emails(list(attendees or []))}
        self._data["events"][event_id] = event
        return {"event_id": event_id, **_copy(event)}

    def reschedule_event(self, event_id: str, date: str, start: str, end: str) -> dict[str, Any]:
        """Move an event to a new day and time. It fails if the new time overlaps another event.

        Args:
            event_id: the event's id.
            date: the new day, as YYYY-MM-DD.
            start: the new start time, HH:MM.
            end: the new end time, HH:MM.
        """
        event = self._event(event_id)
        date, lo, hi = self._slot(date, start, end, ignore=event_id.strip())
        event.update(date=date, start=_clock(lo), end=_clock(hi))
        return {"event_id": event_id.strip(), **_copy(event)}

    def invite_attendees(self, event_id: str, emails: list[str]) -> dict[str, Any]:
        """Invite more people to an event.

        Args:
            event_id: the event's id.
            emails: e-mail addresses to add to the attendees.
        """
        event = self._event(event_id)
        if not emails:
            raise ToolError("no e-mail addresses given")
        for email in _check_emails(emails):
            if email.casefold() not in {a.casefold() for a in event["attendees"]}:
                event["attendees"].append(email)
        return {"event_id": event_id.strip(), "attendees": list(event["attendees"])}

    def cancel_event(self, event_id: str) -> dict[str, Any]:
        """Cancel (delete) an event.

        Args:
            event_id: the event's id.
        """
        event = self._event(event_id)
        del self._data["events"][event_id.strip()]
        return {"event_id": event_id.strip(), "cancelled": True, "title": event["title"]}

    def comparable_state(self) -> dict[str, Any]:
        # Event ids are handles the API hands out; the calendar the user sees is the set of events.
        events = [{**ev, "attendees": sorted(a.casefold() for a in ev["attendees"])}
                  for ev in self._data["events"].values()]
        return fold_strings({"work_hours": self._data["work_hours"], "events": _sorted_records(events)})


class Mail(Service):
    """The user's mailbox: contacts, received e-mails, and the e-mails the agent sends.

    State: ``{"address": ..., "contacts": [{"name", "email"}], "inbox": {"M-1": {"from", "subject", "date",
    "body"}}, "sent": [{"id", "to", "subject", "body"}], "next_id": 1}``. Reading never changes the state.

    Example:
        >>> mail = Mail({"contacts": [{"name": "Dana Lee", "email": "dana@corp.example"}]})
        >>> mail.search_contacts("dana")
        [{'name': 'Dana Lee', 'email': 'dana@corp.example'}]
        >>> mail.send_email(["dana@corp.example"], "Hi", "See you at 3.")["message_id"]
        'S-1'
    """

    name = "mail"
    tool_names = ("search_contacts", "list_inbox", "search_emails", "read_email", "send_email")

    @classmethod
    def empty_state(cls) -> dict[str, Any]:
        return {"address": "me@corp.example", "contacts": [], "inbox": {}, "sent": [], "next_id": 1}

    def _summaries(self, ids: list[str]) -> list[dict[str, Any]]:
        inbox = self._data["inbox"]
        ids = sorted(ids, key=lambda i: (inbox[i]["date"], i), reverse=True)
        return [{"email_id": i, "from": inbox[i]["from"], "subject": inbox[i]["subject"], "date": inbox[i]["date"]}
                for i in ids]

    def search_contacts(self, name: str) -> list[dict[str, str]]:
        """Look up contacts whose name or e-mail address contains a text (case-insensitive).

        Args:
            name: part of the person's name or address, e.g. "Dana".
        """
        needle = name.strip().casefold()
        if not needle:
            raise ToolError("the name is empty")
        return [dict(c) for c in self._data["contacts"]
                if needle in c["name"].casefold() or needle in c["email"].casefold()]

    def list_inbox(self, limit: int = 10) -> list[dict[str, Any]]:
        """List the most recent received e-mails (newest first): id, sender, subject and date.

        Args:
            limit: how many e-mails to list.
        """
        if limit <= 0:
            raise ToolError("limit must be positive")
        return self._summaries(list(self._data["inbox"]))[:limit]

    def search_emails(self, query: str) -> list[dict[str, Any]]:
        """Find received e-mails whose sender, subject or body contains a text (case-insensitive), newest first.

        Args:
            query: the text to look for.
        """
        needle = query.strip().casefold()
        if not needle:
            raise ToolError("the query is empty")
        inbox = self._data["inbox"]
        return self._summaries([i for i, m in inbox.items()
                                if needle in f"{m['from']}\n{m['subject']}\n{m['body']}".casefold()])

    def read_email(self, email_id: str) -> dict[str, Any]:
        """Read a received e-mail in full.

        Args:
            email_id: the e-mail's id, e.g. "M-3".
        """
        message = self._data["inbox"].get(email_id.strip())
        if message is None:
            raise ToolError("no e-mail with that id")
        return {"email_id": email_id.strip(), **message}

    def send_email(self, to: list[str], subject: str, body: str) -> dict[str, Any]:
        """Send an e-mail from the user's address.

        Args:
            to: the recipients' e-mail addresses.
            subject: the subject line.
            body: the message text.
        """
        if not to:
            raise ToolError("no recipients given")
        if not body.strip():
            raise ToolError("the body is empty")
        message_id = f"S-{self._data['next_id']}"
        self._data["next_id"] += 1
        self._data["sent"].append({"id": message_id, "to": _check_emails(to), "subject": subject, "body": body})
        return {"message_id": message_id, "to": list(to), "status": "sent"}

    def comparable_state(self) -> dict[str, Any]:
        # Subject and body are free text: the checklist judges what they say; the state fixes who got mail.
        sent = _sorted_records([sorted(a.casefold() for a in m["to"]) for m in self._data["sent"]])
        return fold_strings({"address": self._data["address"], "contacts": self._data["contacts"],
                             "inbox": self._data["inbox"], "sent": sent})


# ------------------------------------------------------------------------------------------------ shop
@with_config(ConfigDict(extra="forbid"))
class OrderLine(TypedDict):
    """One line of a new order (no other keys: an unknown key is refused before the call runs)."""

    sku: str
    quantity: int


CancelReason = Literal["no_longer_needed", "ordered_by_mistake"]
RefundReason = Literal["damaged", "wrong_item", "not_as_described"]


def _money(value: float) -> float:
    return round(value + 1e-9, 2)


class Shop(Service):
    """An online shop's back office: products and stock, customers, orders and refunds.

    State: ``{"products": {sku: {"name", "price", "stock"}}, "customers": {id: {"name", "email", "address"}},
    "orders": {id: {"customer_id", "placed", "status", "items": [{"sku", "name", "quantity", "price",
    "refunded"}], "address", "total"}}, "refunds": [{"order_id", "amount", "reason", ...}], "next_order": n}``.
    Order status is ``pending`` (can be changed or cancelled), ``shipped``, ``delivered`` (items can be
    refunded) or ``cancelled``.

    Example:
        >>> shop = Shop({"products": {"P-1": {"name": "Lamp", "price": 20.0, "stock": 1}},
        ...              "customers": {"C-1": {"name": "Ann", "email": "ann@x.example", "address": "1 Elm St"}}})
        >>> shop.place_order("C-1", [{"sku": "P-1", "quantity": 2}])
        Traceback (most recent call last):
        ...
        execgym.core.tools.ToolError: insufficient stock for P-1 (Lamp): 1 available
        >>> shop.place_order("C-1", [{"sku": "P-1", "quantity": 1}])["total"]
        20.0
    """

    name = "shop"
    tool_names = (
        "find_customer",
        "list_orders",
        "get_order",
        "search_products",
        "place_order",
        "cancel_order",
        "refund_item",
        "update_shipping_address",
    )

    @classmethod
    def empty_state(cls) -> dict[str, Any]:
        return {"today": "2025-03-10", "products": {}, "customers": {}, "orders": {}, "refunds": [],
                "next_order": 5001}

    def _on_load(self) -> None:
        self._initial_orders = frozenset(self._data["orders"])

    def _order(self, order_id: str) -> dict[str, Any]:
        order = self._data["orders"].get(order_id.strip().upper())
        if order is None:
            raise ToolError("no order with that id")
        return order

    def _customer(self, customer_id: str) -> dict[str, Any]:
        customer = self._data["customers"].get(customer_id.strip().upper())
        if customer is None:
            raise ToolError("no customer with that id")
        return customer

    def find_customer(self, email: str) -> dict[str, Any]:
        """Find a customer by e-mail address.

        Args:
            email: the customer's e-mail address.
        """
        needle = email.strip().casefold()
        for cid, customer in self._data["customers"].items():
            if customer["email"].casefold() == needle:
                return {"customer_id": cid, **customer}
        raise ToolError("no customer with that e-mail address")

    def list_orders(self, customer_id: str) -> list[dict[str, Any]]:
        """List a customer's orders, oldest first: id, date placed, status and total.

        Args:
            customer_id: the customer's id, e.g. "C-12".
        """
        self._customer(customer_id)
        cid = customer_id.strip().upper()
        orders = [{"order_id": oid, "placed": o["placed"], "status": o["status"], "total": o["total"]}
                  for oid, o in self._data["orders"].items() if o["customer_id"] == cid]
        return sorted(orders, key=lambda o: (o["placed"], o["order_id"]))

    def get_order(self, order_id: str) -> dict[str, Any]:
        """Get an order's details: status, items (with quantities already refunded), address and total.

        Args:
            order_id: the order's id, e.g. "O-1042".
        """
        return {"order_id": order_id.strip().upper(), **_copy(self._order(order_id))}

    def search_products(self, query: str) -> list[dict[str, Any]]:
        """Search the catalogue: products whose name contains every word of the query, with price and stock.

        Args:
            query: words from the product's name, e.g. "desk lamp".
        """
        words = query.casefold().split()
        if not words:
            raise ToolError("the query is empty")
        return [{"sku": sku, **p} for sku, p in sorted(self._data["products"].items())
                if all(w in p["name"].casefold() for w in words)]

    def place_order(self, customer_id: str, items: list[OrderLine]) -> dict[str, Any]:
        """Place a new order for a customer, shipped to the customer's address. Stock is reserved at once.

        Args:
            customer_id: the customer's id.
            items: the products to order, each with its sku and a quantity of at least 1.
        """
        customer = self._customer(customer_id)
        if not items:
            raise ToolError("an order needs at least one item")
        wanted: dict[str, int] = {}
        for line in items:
            sku, quantity = str(line["sku"]).strip().upper(), int(line["quantity"])
            if sku not in self._data["products"]:
                raise ToolError("unknown product sku")
            if quantity < 1:
                raise ToolError(f"quantity for {sku} must be at least 1")
            wanted[sku] = wanted.get(sku, 0) + quantity
        for sku, quantity in wanted.items():
            product = self._data["products"][sku]
            if product["stock"] < quantity:
                raise ToolError(f"insufficient stock for {sku} ({product['name']}): {product['stock']} available")
        lines = []
        for sku, quantity in wanted.items():
            product = self._data["products"][sku]
            product["stock"] -= quantity
            lines.append({"sku": sku, "name": product["name"], "quantity": quantity, "price": product["price"],
                          "refunded": 0})
        order_id = f"O-{self._data['next_order']}"
        self._data["next_order"] += 1
        order = {"customer_id": customer_id.strip().upper(), "placed": self._data["today"], "status": "pending",
                 "items": lines, "address": customer["address"],
                 "total": _money(sum(li["price"] * li["quantity"] for li in lines))}
        self._data["orders"][order_id] = order
        return {"order_id": order_id, **_copy(order)}

    def cancel_order(self, order_id: str, reason: CancelReason) -> dict[str, Any]:
        """Cancel a pending order: its items go back to stock and its total is refunded in full.

        Args:
            order_id: the order's id.
            reason: why the customer cancels.
        """
        order = self._order(order_id)
        if order["status"] != "pending":
            raise ToolError(f"order {order_id.strip().upper()} is {order['status']}; only pending orders can be "
                            "cancelled")
        for line in order["items"]:
            if line["sku"] in self._data["products"]:
                self._data["products"][line["sku"]]["stock"] += line["quantity"]
        order["status"] = "cancelled"
        self._data["refunds"].append({"order_id": order_id.strip().upper(), "amount": order["total"],
                                      "reason": reason})
        return {"order_id": order_id.strip().upper(), "status": "cancelled", "refunded": order["total"]}

    def refund_item(self, order_id: str, sku: str, quantity: int, reason: RefundReason) -> dict[str, Any]:
        """Refund units of one item of a delivered order, at the price paid.

        Args:
            order_id: the order's id.
            sku: the item's product sku.
            quantity: how many units to refund.
            reason: what was wrong with the item.
        """
        order = self._order(order_id)
        oid = order_id.strip().upper()
        if order["status"] != "delivered":
            raise ToolError(f"order {oid} is {order['status']}; only delivered orders can be refunded")
        line = next((li for li in order["items"] if li["sku"] == sku.strip().upper()), None)
        if line is None:
            raise ToolError(f"order {oid} has no item with that sku")
        if quantity < 1 or line["refunded"] + quantity > line["quantity"]:
            left = line["quantity"] - line["refunded"]
            raise ToolError(f"cannot refund that many of {line['sku']}: {left} unit(s) left to refund")
        line["refunded"] += quantity
        amount = _money(line["price"] * quantity)
        self._data["refunds"].append({"order_id": oid, "sku": line["sku"], "quantity": quantity, "amount": amount,
                                      "reason": reason})
        return {"order_id": oid, "sku": line["sku"], "quantity": quantity, "refunded": amount}

    def update_shipping_address(self, order_id: str, address: str) -> dict[str, Any]:
        """Change the shipping address of a pending order.

        Args:
            order_id: the order's id.
            address: the full new address.
        """
        order = self._order(order_id)
        oid = order_id.strip().upper()
        if order["status"] != "pending":
            raise ToolError(f"order {oid} is {order['status']}; only pending orders can change address")
        if not address.strip():
            raise ToolError("the address is empty")
        order["address"] = address.strip()
        return {"order_id": oid, "address": order["address"]}

    def comparable_state(self) -> dict[str, Any]:
        # Orders placed during the episode get ids from a counter: compare them as a set of orders.
        orders = self._data["orders"]
        known = {oid: o for oid, o in orders.items() if oid in self._initial_orders}
        new = _sorted_records([o for oid, o in orders.items() if oid not in self._initial_orders])
        refunds = _sorted_records([{**r, "order_id": r["order_id"] if r["order_id"] in self._initial_orders
                                    else "<new>"} for r in self._data["refunds"]])
        return fold_strings({"today": self._data["today"], "products": self._data["products"],
                             "customers": self._data["customers"], "orders": known, "new_orders": new,
                             "refunds": refunds})


SERVICES: dict[str, type[Service]] = {cls.name: cls for cls in (FileSystem, Calendar, Mail, Shop)}
"""Every service class by the name its state has in a task's world."""
