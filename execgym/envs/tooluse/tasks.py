"""Tool-use tasks: parametrised templates over random worlds, a seeded generator and the bundled set.

A task's ``data`` is plain JSON::

    {"domain": "shop", "template": "shop-cancel", "services": ["shop"], "world": {"shop": {...}},
     "turns": [{"user": "...", "gold": [[{"name", "arguments"}, ...], ...], "outputs": ["59.97"]}, ...],
     "checklist": [{"id", "turn", "kind", ...}, ...]}

``world`` is the initial state of each service; each turn holds the user's message, the gold calls per
agent step and the information the answer must give. ``Task.oracle`` plays, for every turn, the gold steps
and then a plain-text answer that holds the required outputs.

Templates build a task by *running* the gold calls on the real services (a :class:`Scenario`), so the
outputs and checks come from what the services return, never from a second copy of their logic. The bundled
tasks (``execgym/assets/tooluse/tasks.jsonl``) are written by this module::

    python -m execgym.envs.tooluse.tasks            # rewrite the bundled file
    python -m execgym.envs.tooluse.tasks --check    # fail if the file is out of date
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from execgym.core.tasks import DIFFICULTIES, Task
from execgym.core.tools import ToolError
from execgym.envs.tooluse.grading import mentions, normalize_text, result_text, shown_texts
from execgym.envs.tooluse.services import SERVICES, Service

__all__ = [
    "BUNDLED_PATH",
    "TEMPLATES",
    "Rng",
    "Scenario",
    "Template",
    "build_bundled",
    "bundled_tasks",
    "generate_task",
    "must_be_looked_up",
    "replay_gold",
]

BUNDLED_PATH = Path(__file__).resolve().parents[2] / "assets" / "tooluse" / "tasks.jsonl"
PER_TEMPLATE = 6
_ATTEMPTS = 50


class Rng:
    """A seeded random source that gives the same draws on every Python version.

    Only ``random.Random.random()`` is guaranteed stable across versions, so every draw is built on it.

    Example:
        >>> r = Rng("demo", 1)
        >>> r.below(10) == Rng("demo", 1).below(10), sorted(r.sample(range(5), 5))
        (True, [0, 1, 2, 3, 4])
    """

    def __init__(self, *seed: Any) -> None:
        self._random = random.Random(json.dumps(seed))

    def below(self, n: int) -> int:
        return min(int(self._random.random() * n), n - 1)

    def randint(self, lo: int, hi: int) -> int:
        return lo + self.below(hi - lo + 1)

    def choice(self, items: Sequence[Any]) -> Any:
        return items[self.below(len(items))]

    def sample(self, items: Sequence[Any] | range, k: int) -> list[Any]:
        pool = list(items)
        for i in range(k):
            j = i + self.below(len(pool) - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]

    def chance(self, p: float) -> bool:
        return self._random.random() < p


class _Retry(Exception):
    """The drawn world does not fit the template (e.g. an answer would appear in the question)."""


WRITE_TOOLS = {
    "write_file", "append_line", "create_directory", "move_file", "copy_file", "delete_file",
    "create_event", "reschedule_event", "invite_attendees", "cancel_event", "send_email",
    "place_order", "cancel_order", "refund_item", "update_shipping_address",
}
# The arguments a "called" criterion pins for a write: free text and equivalent spellings are left out.
_KEY_ARGS = {
    "move_file": ("source",),
    "copy_file": ("source",),
    "write_file": ("path",),
    "send_email": ("to",),
    "create_event": ("title", "date", "start", "end", "attendees"),
}


class Scenario:
    """Builds one task by running its gold calls on live services.

    ``user`` opens a turn, ``step`` runs one agent step's calls (several = parallel calls) and records them
    as gold, ``reply`` closes the turn with the answer and the outputs it must hold, ``check`` adds a
    checklist criterion to the current turn. Write calls get a ``called`` criterion automatically.

    Example:
        >>> sc = Scenario("shop", {"shop": {"orders": {"O-1": {"customer_id": "C-1", "placed": "2025-03-01",
        ...     "status": "shipped", "items": [], "address": "x", "total": 5.0}}}})
        >>> sc.user("Where is my order O-1?")
        >>> sc.call("get_order", order_id="O-1")["status"]
        'shipped'
        >>> sc.reply("Order O-1 has shipped.", "shipped")
        >>> sc.build("demo", "easy")[1]
        ([{'name': 'get_order', 'arguments': {'order_id': 'O-1'}}], 'Order O-1 has shipped.')
    """

    def __init__(self, domain: str, world: dict[str, Any]) -> None:
        self.domain = domain
        self.world = json.loads(json.dumps(world))
        self.services: dict[str, Service] = {name: SERVICES[name](state) for name, state in self.world.items()}
        self.world = {name: service.state() for name, service in self.services.items()}
        self._owner = {tool: s for s in self.services.values() for tool in s.tool_names}
        self.turns: list[dict[str, Any]] = []
        self.checklist: list[dict[str, Any]] = []
        self._ran: list[dict[str, Any]] = []  # every gold call so far: its arguments and the text it returned

    def user(self, text: str) -> None:
        if self.turns and self.turns[-1]["reply"] is None:
            raise ValueError("the previous turn has no reply")
        self.turns.append({"user": text, "gold": [], "outputs": [], "reply": None})

    def step(self, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
        results, recorded = [], []
        for name, arguments in calls:
            arguments = json.loads(json.dumps(arguments))
            result = getattr(self._owner[name], name)(**json.loads(json.dumps(arguments)))
            results.append(result)
            self._ran.append({"turn": len(self.turns), "arguments": arguments, "text": result_text(result)})
            recorded.append({"name": name, "arguments": arguments})
            if name in WRITE_TOOLS:
                keys = _KEY_ARGS.get(name, tuple(arguments))
                self.check("called", tool=name, args={k: arguments[k] for k in keys if k in arguments})
        self.turns[-1]["gold"].append(recorded)
        return results

    def call(self, tool: str, /, **arguments: Any) -> Any:
        return self.step((tool, arguments))[0]

    def reply(self, text: str, *outputs: Any) -> None:
        """Close the turn with the gold answer; each output gets a ``said`` criterion.

        An output that a gold result shows (a status, a price) must come from what the agent's calls showed
        (``grounded``, see :func:`must_be_looked_up`); one the gold answer computes (a count) or writes (an
        end time) needs only to be said.
        """
        turn = self.turns[-1]
        outputs_text = [str(o) for o in outputs]
        for output in outputs_text:
            if not mentions(text, output)[0]:
                raise ValueError(f"the gold reply {text!r} does not mention {output!r}")
            self.check("said", text=output, grounded=must_be_looked_up(output, self._ran, len(self.turns)))
        turn["reply"], turn["outputs"] = text, outputs_text

    def distractors(self, *values: Any) -> None:
        """Refuse an answer of the current turn that also names these competing values (``not_said``).

        The values of the kind the answer asks for that are wrong here (the other project's port, another
        e-mail's fact, another product's price): an answer that lists every value a lookup showed is no
        answer. Call after :meth:`reply`; a value the gold answer or the user's messages mention, or that
        mentions an output, is left out, so an honest answer is never refused.
        """
        turn = self.turns[-1]
        said = "\n".join([turn["reply"] or "", *turn["outputs"], *(t["user"] for t in self.turns)])
        done = {normalize_text(str(c["text"])) for c in self.checklist
                if c["kind"] == "not_said" and c["turn"] == len(self.turns)}
        for value in dict.fromkeys(str(v) for v in values):
            if (not normalize_text(value) or normalize_text(value) in done or mentions(said, value)[0]
                    or any(mentions(value, o)[0] for o in turn["outputs"])):
                continue
            done.add(normalize_text(value))
            self.check("not_said", text=value)

    def check(self, kind: str, **fields: Any) -> None:
        """Add a criterion to the current turn; a ``called`` one on a read-only tool only shapes (not required)."""
        if kind == "called" and fields.get("tool") not in WRITE_TOOLS:
            fields.setdefault("required", False)
        turn = len(self.turns)
        number = sum(1 for c in self.checklist if c["turn"] == turn) + 1
        self.checklist.append({"id": f"t{turn}-{number}-{kind}", "turn": turn, "kind": kind, **fields})

    def build(self, template: str, difficulty: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
        """The task's data and oracle; raises _Retry when the world makes a poor task."""
        if not self.turns or self.turns[-1]["reply"] is None:
            raise ValueError("every turn needs a reply")
        for i, turn in enumerate(self.turns):
            # Later messages may repeat what the agent said; up to the turn, the answer must be news.
            asked = "\n".join(t["user"] for t in self.turns[: i + 1])
            for output in turn["outputs"]:
                if mentions(asked, output)[0]:
                    raise _Retry(f"output {output!r} appears in the user's messages")
        final = {name: s.comparable_state() for name, s in self.services.items()}
        initial = {name: SERVICES[name](state).comparable_state() for name, state in self.world.items()}
        if final == initial and not any(t["outputs"] for t in self.turns):
            raise _Retry("the task neither changes the world nor asks for information")
        data = {
            "domain": self.domain,
            "template": template,
            "services": sorted(self.world),
            "world": self.world,
            "turns": [{"user": t["user"], "gold": t["gold"], "outputs": t["outputs"]} for t in self.turns],
            "checklist": self.checklist,
        }
        oracle: list[Any] = []
        for turn in self.turns:
            oracle.extend(turn["gold"])
            oracle.append(turn["reply"])
        return data, tuple(oracle)


def replay_gold(data: dict[str, Any], ran: list[dict[str, Any]] | None = None) -> dict[str, Service]:
    """Fresh services from a task's world with every gold call replayed, in order (errors are ignored).

    ``ran``, when given, receives each gold call as ``{"turn", "arguments", "text"}`` (``text``: its result
    or error, as the agent would read it), for :func:`must_be_looked_up`.

    Example:
        >>> task = generate_task(0, "easy")
        >>> sorted(replay_gold(task.data)) == task.data["services"]
        True
    """
    services = {name: SERVICES[name](data["world"].get(name, {})) for name in data["services"]}
    owner = {tool: s for s in services.values() for tool in s.tool_names}
    for number, turn in enumerate(data["turns"], 1):
        for step in turn["gold"]:
            for call in step:
                record: dict[str, Any] = {"turn": number, "arguments": call["arguments"]}
                if ran is not None:
                    ran.append(record)
                try:
                    value = getattr(owner[call["name"]], call["name"])(**json.loads(json.dumps(call["arguments"])))
                except ToolError as exc:  # a failing gold call leaves the state as the API would
                    record["text"] = f"Error: {exc}"
                    continue
                except Exception:
                    continue
                record["text"] = result_text(value)
    return services


def must_be_looked_up(output: str, ran: Sequence[Mapping[str, Any]], turn: int) -> bool:
    """Whether an answer's ``output`` in user turn ``turn`` must come from a lookup (``grounded``).

    ``ran`` are the gold calls as :func:`replay_gold` records them. The output must be looked up when a gold
    call's result up to the turn shows it, except when the turn's gold calls send it themselves (an end time
    the solution computes, then books) and no call of the same turn showed it before: a value the solution
    writes is checked by the state, and an agent may well compute it without reading it anywhere.

    Example:
        >>> ran = [{"turn": 1, "arguments": {"id": "O-1"}, "text": '{"status": "shipped"}'},
        ...        {"turn": 1, "arguments": {"start": "10:00"}, "text": '{"end": "11:00"}'}]
        >>> must_be_looked_up("shipped", ran, 1), must_be_looked_up("11:00", ran, 1)
        (True, True)
        >>> must_be_looked_up("10:00", ran, 1)
        False
    """
    upto = [r for r in ran if r["turn"] <= turn]
    shown = shown_texts(upto)
    texts = [(r, t) for r, t in zip([r for r in upto if "text" in r], shown)]
    sends = next((k for k, r in enumerate(upto) if r["turn"] == turn
                  and mentions(json.dumps(r["arguments"], ensure_ascii=False), output)[0]), None)
    if sends is None:
        return mentions("\n".join(shown), output)[0]
    before = [t for r, t in texts if r["turn"] == turn and upto.index(r) < sends]
    return mentions("\n".join(before), output)[0]


# ------------------------------------------------------------------------------------------------ pools
FIRST = ["Ana", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kavya", "Liam",
         "Mei", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yara"]
LAST = ["Adams", "Brooks", "Costa", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jensen", "Kowalski",
        "Lopez", "Moreau", "Novak", "Okafor", "Patel", "Rossi", "Silva", "Tanaka", "Vargas", "Weber", "Young"]
STREETS = ["Oak Street", "Maple Avenue", "River Road", "Hill Lane", "Station Road", "Park Drive", "Cedar Court",
           "Lake View", "Mill Way", "Orchard Row"]
CITIES = ["Springfield", "Riverton", "Lakeside", "Fairview", "Brookfield", "Greenville", "Ashford", "Northgate"]
PRODUCTS = [("Desk Lamp", 24.99), ("Ergonomic Chair", 189.0), ("Wireless Mouse", 19.5), ("Mechanical Keyboard", 89.9),
            ("USB Hub", 34.99), ("Noise Cancelling Headphones", 149.0), ("Standing Desk", 399.0),
            ("Monitor Arm", 59.95), ("Webcam", 49.99), ("Laptop Stand", 29.9), ("Cable Organizer", 9.99),
            ("Portable SSD", 119.0), ("Bluetooth Speaker", 39.95), ("Smart Plug", 12.49), ("Water Bottle", 17.5),
            ("Backpack", 64.0), ("Notebook Set", 11.25), ("Fountain Pen", 45.0), ("Coffee Grinder", 79.0),
            ("French Press", 27.5), ("Yoga Mat", 32.0), ("Kettle", 44.9)]
TITLES = ["Budget Review", "Design Sync", "Hiring Panel", "Quarterly Planning", "Client Call", "Roadmap Review",
          "Team Retro", "Vendor Demo", "Security Briefing", "Sprint Planning", "Product Demo", "Board Prep",
          "Marketing Sync", "Architecture Review"]
NEW_TITLES = ["Offsite Planning", "Onboarding Session", "Partner Check-in", "Launch Rehearsal", "Pricing Workshop",
              "Customer Interview", "Data Review", "Strategy Lunch"]
DAYS = {"2025-03-10": "Monday", "2025-03-11": "Tuesday", "2025-03-12": "Wednesday", "2025-03-13": "Thursday",
        "2025-03-14": "Friday"}
ROOMS = ["Aurora", "Borealis", "Cedar", "Delta", "Everest", "Fjord", "Granite", "Harbor"]
PROJECTS = ["atlas", "borealis", "cobalt", "delta", "ember", "falcon", "gemini", "helix", "iris", "juniper"]
APPS = ["api", "worker", "billing", "auth", "scheduler", "mailer", "search", "gateway"]
ERRORS = ["disk quota exceeded", "connection refused by database", "timeout calling payment gateway",
          "invalid token signature", "out of memory in worker pool", "certificate has expired",
          "too many open files", "schema migration failed"]
TODO = ["Renew passport", "Call the plumber", "Book dentist appointment", "Pay electricity bill",
        "Buy birthday gift for Mei", "Send tax documents", "Fix bike brakes", "Water the plants",
        "Cancel gym membership", "Order printer ink"]
STATUSES = ("pending", "shipped", "delivered", "cancelled")
CANCEL_REASONS = {"no_longer_needed": "I no longer need it", "ordered_by_mistake": "I ordered it by mistake"}
REFUND_REASONS = {"damaged": "arrived damaged", "wrong_item": "is the wrong item (not what I ordered)",
                  "not_as_described": "is not as described on the website"}


def _money(x: float) -> str:
    return f"{x:.2f}"


def _hm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _mins(clock: str) -> int:
    h, m = clock.split(":")
    return int(h) * 60 + int(m)


# ------------------------------------------------------------------------------------------------ worlds
def shop_world(rng: Rng) -> dict[str, Any]:
    """A shop with 8 products, 4 customers and 2-3 orders each."""
    products = {}
    for i, (name, price) in enumerate(rng.sample(PRODUCTS, 8)):
        products[f"P-{101 + 7 * i + rng.below(7)}"] = {"name": name, "price": price, "stock": rng.randint(0, 12)}
    skus = list(products)
    customers, orders = {}, {}
    names = rng.sample(range(len(FIRST)), 4)
    lasts = rng.sample(range(len(LAST)), 4)
    order_no = 1001 + rng.below(800)
    plan = []
    for i, (fi, li) in enumerate(zip(names, lasts)):
        cid = f"C-{11 + 13 * i + rng.below(13)}"
        first, last = FIRST[fi], LAST[li]
        customers[cid] = {"name": f"{first} {last}", "email": f"{first}.{last}@mail.example".lower(),
                          "address": f"{rng.randint(2, 98)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"}
        plan.extend([cid] * rng.randint(2, 3))
    plan = rng.sample(plan, len(plan))
    for k, cid in enumerate(plan):
        lines = []
        for sku in rng.sample(skus, rng.randint(1, 3)):
            product = products[sku]
            lines.append({"sku": sku, "name": product["name"], "quantity": rng.randint(1, 3),
                          "price": product["price"], "refunded": 0})
        status = rng.choice(["pending", "shipped", "delivered", "delivered", "cancelled"])
        orders[f"O-{order_no}"] = {
            "customer_id": cid, "placed": f"2025-{1 + k // 6:02d}-{1 + (k * 4) % 24 + rng.below(4):02d}",
            "status": status, "items": lines, "address": customers[cid]["address"],
            "total": round(sum(li["price"] * li["quantity"] for li in lines) + 1e-9, 2)}
        order_no += rng.randint(1, 40)
    return {"shop": {"today": "2025-03-10", "products": products, "customers": customers, "orders": orders,
                     "refunds": [], "next_order": order_no + 1}}


def _email(first: str, last: str) -> str:
    return f"{first}.{last}@corp.example".lower()


def office_world(rng: Rng) -> dict[str, Any]:
    """A calendar for one work week and a mailbox with six contacts and a handful of e-mails."""
    people = [(FIRST[f], LAST[la]) for f, la in zip(rng.sample(range(len(FIRST)), 6), rng.sample(range(len(LAST)), 6))]
    contacts = [{"name": f"{f} {la}", "email": _email(f, la)} for f, la in people]
    events, next_id = {}, 101
    for date in DAYS:
        titles = rng.sample(TITLES, rng.randint(2, 3))
        hours = sorted(rng.sample([9, 10, 11, 13, 14, 15], len(titles)))
        for title, hour in zip(titles, hours):
            start = hour * 60 + rng.choice([0, 0, 30])
            length = rng.choice([30, 30, 60])
            guests = [c["email"] for c in rng.sample(contacts, rng.randint(0, 2))]
            events[f"E-{next_id}"] = {"title": title, "date": date, "start": _hm(start), "end": _hm(start + length),
                                      "attendees": guests}
            next_id += rng.randint(1, 3)
    inbox = {}
    kinds = rng.sample(["budget", "room", "deadline", "lunch", "newsletter", "travel"], 5)
    for n, kind in enumerate(kinds, 1):
        first, last = people[(n + rng.below(6)) % 6]
        day = f"2025-03-{rng.randint(3, 9):02d}"
        if kind == "budget":
            subject, body = "Q2 budget", (f"Hi,\n\nthe approved budget for Q2 is {rng.randint(12, 90) * 500} EUR. "
                                          "Let me know if you need the breakdown.\n\n" + first)
        elif kind == "room":
            subject, body = "Room for the workshop", (f"Hello,\n\nwe booked room {rng.choice(ROOMS)} "
                                                      f"{rng.randint(2, 9)} for the workshop.\n\n{first}")
        elif kind == "deadline":
            subject, body = "Report deadline", (f"Hi,\n\nthe quarterly report deadline moved to "
                                                f"2025-03-{rng.randint(17, 28)}.\n\nThanks, {first}")
        elif kind == "lunch":
            subject, body = "Lunch?", f"Fancy lunch at {rng.choice(['noon', 'one'])} this week?\n\n{first}"
        elif kind == "newsletter":
            subject, body = "Company newsletter", "This month: new coffee machines and the spring party."
        else:
            subject, body = "Travel plans", f"I will be travelling to {rng.choice(CITIES)} next week.\n\n{first}"
        inbox[f"M-{n}"] = {"from": _email(first, last), "subject": subject, "date": day, "body": body}
    return {"calendar": {"work_hours": ["09:00", "17:00"], "events": events, "next_id": next_id + 50},
            "mail": {"address": "me@corp.example", "contacts": contacts, "inbox": inbox, "sent": [], "next_id": 1}}


def files_world(rng: Rng) -> dict[str, Any]:
    """A home folder with projects, notes, scanned invoices, and logs in /tmp."""
    projects = rng.sample(PROJECTS, 2)
    dirs = ["/home", "/home/docs", "/home/notes", "/home/projects", "/home/shared", "/tmp"]
    files: dict[str, str] = {}
    for project in projects:
        root = f"/home/projects/{project}"
        dirs.append(root)
        files[f"{root}/settings.ini"] = (f"[server]\nhost = 0.0.0.0\nport = {rng.randint(3000, 9800)}\n\n"
                                         f"[database]\nname = {project}_db\npool = {rng.randint(2, 20)}\n")
        files[f"{root}/README.md"] = f"# {project.title()}\n\nInternal service. See settings.ini for the port.\n"
        files[f"{root}/main.py"] = f"print('{project} starting')\n"
    items = rng.sample(TODO, 4)
    files["/home/notes/todo.md"] = "# To do\n" + "".join(f"- {item}\n" for item in items)
    files["/home/notes/ideas.txt"] = "Ideas:\nA garden bench.\nA reading lamp.\n"
    for k in range(1, 4):
        files[f"/home/docs/scan_{k:02d}.txt"] = (f"Invoice INV-{rng.randint(1000, 9999)}\nCustomer: "
                                                f"{rng.choice(FIRST)} {rng.choice(LAST)}\nAmount due: "
                                                f"{rng.randint(40, 900)}.00 EUR\n")
    files["/home/docs/report_draft.txt"] = "Quarterly report (draft)\n\nSales grew in every region.\n"
    for app in rng.sample(APPS, rng.randint(2, 4)):
        lines = []
        for minute in range(rng.randint(4, 8)):
            level = rng.choice(["INFO", "INFO", "WARN", "ERROR"])
            message = rng.choice(ERRORS) if level == "ERROR" else f"{app} heartbeat {minute}"
            lines.append(f"2025-03-09 10:{minute:02d}:00 {level} {message}")
        files[f"/tmp/{app}.log"] = "\n".join(lines) + "\n"
    files["/tmp/cache.tmp"] = "cached\n"
    return {"files": {"dirs": sorted(dirs), "files": files}}


# --------------------------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class Template:
    """A task template: an id, a domain, a difficulty and the function that builds it from an rng."""

    id: str
    domain: str
    difficulty: str
    build: Callable[[Rng], Scenario]


def _customer_with(shop: dict[str, Any], rng: Rng, status: str) -> tuple[str, dict[str, Any], str]:
    """A random customer and one of their orders, forced to ``status``."""
    oid = rng.choice(sorted(shop["orders"]))
    order = shop["orders"][oid]
    order["status"] = status
    return order["customer_id"], shop["customers"][order["customer_id"]], oid


def t_shop_status(rng: Rng) -> Scenario:
    world = shop_world(rng)
    oid = rng.choice(sorted(world["shop"]["orders"]))
    sc = Scenario("shop", world)
    sc.user(f"Hi, what's the status of my order {oid}, and how much did I pay for it?")
    order = sc.call("get_order", order_id=oid)
    sc.check("called", tool="get_order", args={"order_id": oid})
    sc.check("not_called", tool="cancel_order")
    sc.reply(f"Order {oid} is {order['status']}; you paid {_money(order['total'])}.", order["status"],
             _money(order["total"]))
    sc.distractors(*STATUSES)
    return sc


def t_shop_cancel(rng: Rng) -> Scenario:
    world = shop_world(rng)
    _, _, oid = _customer_with(world["shop"], rng, "pending")
    reason = rng.choice(sorted(CANCEL_REASONS))
    sc = Scenario("shop", world)
    sc.user(f"Please cancel order {oid}, {CANCEL_REASONS[reason]}.")
    result = sc.call("cancel_order", order_id=oid, reason=reason)
    sc.check("state", path=["shop", "orders", oid, "status"], equals="cancelled")
    sc.reply(f"Order {oid} is cancelled and {_money(result['refunded'])} will be refunded.",
             _money(result["refunded"]))
    return sc


def t_shop_stock(rng: Rng) -> Scenario:
    world = shop_world(rng)
    sku = rng.choice(sorted(world["shop"]["products"]))
    product = world["shop"]["products"][sku]
    product["stock"] = max(product["stock"], 1)
    sc = Scenario("shop", world)
    sc.user(f"Do you have the {product['name']} in stock? How many units, and what does it cost?")
    hits = sc.call("search_products", query=product["name"].lower())
    hit = next(h for h in hits if h["sku"] == sku)
    sc.check("not_called", tool="place_order")
    sc.reply(f"Yes: {hit['stock']} units of the {hit['name']} are in stock at {_money(hit['price'])} each.",
             str(hit["stock"]), _money(hit["price"]))
    others = [p for s, p in sorted(world["shop"]["products"].items()) if s != sku]
    sc.distractors(*[_money(p["price"]) for p in others], *[p["stock"] for p in others])
    return sc


def t_shop_cancel_latest(rng: Rng) -> Scenario:
    world = shop_world(rng)
    _, customer, _ = _customer_with(world["shop"], rng, "pending")
    reason = rng.choice(sorted(CANCEL_REASONS))
    sc = Scenario("shop", world)
    sc.user(f"Hi, I'm {customer['email']}. Please cancel my most recent pending order: "
            f"{CANCEL_REASONS[reason]}.")
    found = sc.call("find_customer", email=customer["email"])
    orders = sc.call("list_orders", customer_id=found["customer_id"])
    pending = [o for o in orders if o["status"] == "pending"]
    latest = pending[-1]["order_id"]
    result = sc.call("cancel_order", order_id=latest, reason=reason)
    sc.check("called", tool="find_customer", args={"email": customer["email"]})
    for other in pending[:-1]:
        sc.check("not_called", tool="cancel_order", args={"order_id": other["order_id"]})
    sc.reply(f"I cancelled your latest pending order {latest}; {_money(result['refunded'])} will be refunded.",
             latest, _money(result["refunded"]))
    return sc


def t_shop_refund(rng: Rng) -> Scenario:
    world = shop_world(rng)
    _, _, oid = _customer_with(world["shop"], rng, "delivered")
    line = rng.choice(world["shop"]["orders"][oid]["items"])
    reason = rng.choice(sorted(REFUND_REASONS))
    sc = Scenario("shop", world)
    units = "the unit" if line["quantity"] == 1 else f"all {line['quantity']} units"
    sc.user(f"My order {oid} came, but the {line['name']} {REFUND_REASONS[reason]}. "
            f"Please refund {units} of it.")
    order = sc.call("get_order", order_id=oid)
    sku = next(li["sku"] for li in order["items"] if li["name"] == line["name"])
    result = sc.call("refund_item", order_id=oid, sku=sku, quantity=line["quantity"], reason=reason)
    sc.check("not_called", tool="cancel_order")
    sc.reply(f"Done: {_money(result['refunded'])} is refunded for the {line['name']}.", _money(result["refunded"]))
    return sc


def t_shop_cancel_shipped(rng: Rng) -> Scenario:
    world = shop_world(rng)
    status = rng.choice(["shipped", "delivered"])
    _, _, oid = _customer_with(world["shop"], rng, status)
    sc = Scenario("shop", world)
    sc.user(f"Cancel order {oid} please, {CANCEL_REASONS['no_longer_needed']}.")
    order = sc.call("get_order", order_id=oid)
    sc.check("state", path=["shop", "orders", oid, "status"], equals=status)
    sc.reply(f"I'm sorry, order {oid} is already {order['status']}, so it can no longer be cancelled.",
             order["status"])
    sc.distractors("shipped" if order["status"] == "delivered" else "delivered")
    return sc


def t_shop_place(rng: Rng) -> Scenario:
    world = shop_world(rng)
    shop = world["shop"]
    cid = rng.choice(sorted(shop["customers"]))
    email = shop["customers"][cid]["email"]
    skus = rng.sample(sorted(shop["products"]), 2)
    want = [rng.randint(1, 3) for _ in skus]
    for sku, n in zip(skus, want):
        shop["products"][sku]["stock"] = max(shop["products"][sku]["stock"], n)
    names = [shop["products"][s]["name"] for s in skus]
    sc = Scenario("shop", world)
    sc.user(f"Hello, this is {email}. I'd like to order {want[0]} x {names[0]} and {want[1]} x {names[1]}, "
            "shipped to my address on file.")
    found, hits_a, hits_b = sc.step(("find_customer", {"email": email}),
                                    ("search_products", {"query": names[0].lower()}),
                                    ("search_products", {"query": names[1].lower()}))
    lines = [{"sku": next(h["sku"] for h in hits if h["name"] == name), "quantity": n}
             for hits, name, n in zip((hits_a, hits_b), names, want)]
    order = sc.call("place_order", customer_id=found["customer_id"], items=lines)
    sc.check("state", path=["shop", "orders"], match={"customer_id": cid, "status": "pending",
                                                      "total": order["total"]})
    sc.reply(f"Your order {order['order_id']} is placed; the total is {_money(order['total'])}.",
             order["order_id"], _money(order["total"]))
    return sc


def t_shop_short_stock(rng: Rng) -> Scenario:
    world = shop_world(rng)
    shop = world["shop"]
    cid = rng.choice(sorted(shop["customers"]))
    email = shop["customers"][cid]["email"]
    sku = rng.choice(sorted(shop["products"]))
    product = shop["products"][sku]
    product["stock"] = rng.randint(2, 4)
    want = product["stock"] + rng.randint(2, 5)
    sc = Scenario("shop", world)
    sc.user(f"Hi, I'm {email}. Can you order {want} units of the {product['name']} for me?")
    found, hits = sc.step(("find_customer", {"email": email}), ("search_products", {"query": product["name"].lower()}))
    stock = next(h["stock"] for h in hits if h["sku"] == sku)
    sc.check("not_called", tool="place_order", args={"items": [{"sku": sku, "quantity": stock}]})
    sc.reply(f"Sorry, only {stock} units of the {product['name']} are in stock, so I can't order {want}. "
             "Shall I order the ones we have?", str(stock))
    sc.distractors(*[p["stock"] for s, p in sorted(shop["products"].items()) if s != sku])
    sc.user("Yes, order all the units you have.")
    order = sc.call("place_order", customer_id=found["customer_id"], items=[{"sku": sku, "quantity": stock}])
    sc.check("state", path=["shop", "products", sku, "stock"], equals=0)
    sc.reply(f"Done: order {order['order_id']} for {stock} units, total {_money(order['total'])}.",
             _money(order["total"]))
    return sc


def t_shop_pending_session(rng: Rng) -> Scenario:
    world = shop_world(rng)
    shop = world["shop"]
    cid, customer, oid = _customer_with(shop, rng, "pending")
    for other_id, other in shop["orders"].items():
        if other["customer_id"] == cid and other_id != oid and other["status"] == "pending":
            other["status"] = "delivered"
    new_address = f"{rng.randint(100, 400)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
    sc = Scenario("shop", world)
    sc.user(f"Hi, I'm {customer['email']}. Which of my orders is still pending?")
    found = sc.call("find_customer", email=customer["email"])
    orders = sc.call("list_orders", customer_id=found["customer_id"])
    pending = [o["order_id"] for o in orders if o["status"] == "pending"]
    sc.check("not_called", tool="cancel_order")
    sc.reply(f"Your pending order is {pending[0]}.", pending[0])
    sc.distractors(*[o["order_id"] for o in orders if o["order_id"] != pending[0]])
    sc.user(f"Please ship it to {new_address} instead.")
    sc.call("update_shipping_address", order_id=pending[0], address=new_address)
    sc.check("state", path=["shop", "orders", pending[0], "address"], equals=new_address)
    sc.reply("The shipping address is updated.")
    sc.user("On second thought, just cancel that order. I ordered it by mistake.")
    result = sc.call("cancel_order", order_id=pending[0], reason="ordered_by_mistake")
    sc.reply(f"Order {pending[0]} is cancelled; {_money(result['refunded'])} will be refunded.",
             _money(result["refunded"]))
    return sc


def _day(rng: Rng) -> tuple[str, str]:
    date = rng.choice(sorted(DAYS))
    return date, f"{DAYS[date]} {date}"


def t_cal_agenda(rng: Rng) -> Scenario:
    world = office_world(rng)
    date, day = _day(rng)
    sc = Scenario("office", world)
    sc.user(f"What's on my calendar on {day}?")
    events = sc.call("list_events", date=date)
    sc.check("called", tool="list_events", args={"date": date})
    sc.check("not_called", tool="cancel_event")
    listing = "; ".join(f"{e['start']}-{e['end']} {e['title']}" for e in events)
    sc.reply(f"On {day} you have: {listing}.", *[e["title"] for e in events])
    # Meetings of other days are wrong here: an answer that lists every title is no answer.
    for title in sorted({e["title"] for e in world["calendar"]["events"].values()} - {e["title"] for e in events}):
        sc.check("not_said", text=title)
    return sc


def t_cal_cancel(rng: Rng) -> Scenario:
    world = office_world(rng)
    date, day = _day(rng)
    target_id = rng.choice(sorted(i for i, e in world["calendar"]["events"].items() if e["date"] == date))
    title = world["calendar"]["events"][target_id]["title"]
    sc = Scenario("office", world)
    sc.user(f"Please cancel my {title} on {day}.")
    events = sc.call("list_events", date=date)
    event_id = next(e["event_id"] for e in events if e["title"] == title)
    sc.call("cancel_event", event_id=event_id)
    sc.check("state", path=["calendar", "events", event_id], exists=False)
    for other in events:
        if other["event_id"] != event_id:
            sc.check("not_called", tool="cancel_event", args={"event_id": other["event_id"]})
    sc.reply(f"Your {title} on {day} is cancelled.")
    return sc


def _free_hour(world: dict[str, Any], date: str, rng: Rng, length: int = 60) -> int | None:
    busy = [(_mins(e["start"]), _mins(e["end"])) for e in world["calendar"]["events"].values() if e["date"] == date]
    options = [s for s in range(9 * 60, 17 * 60 - length + 1, 30)
               if all(s + length <= lo or hi <= s for lo, hi in busy)]
    return rng.choice(options) if options else None


def t_cal_schedule(rng: Rng) -> Scenario:
    world = office_world(rng)
    date, day = _day(rng)
    start = _free_hour(world, date, rng)
    if start is None:
        raise _Retry("no free hour")
    contact = rng.choice(world["mail"]["contacts"])
    title = rng.choice(NEW_TITLES)
    sc = Scenario("office", world)
    sc.user(f"Schedule a '{title}' with {contact['name']} on {day} from {_hm(start)} to {_hm(start + 60)}, "
            "and invite them.")
    hits = sc.call("search_contacts", name=contact["name"].split()[0])
    email = next(h["email"] for h in hits if h["name"] == contact["name"])
    event = sc.call("create_event", title=title, date=date, start=_hm(start), end=_hm(start + 60), attendees=[email])
    sc.reply(f"'{title}' is booked on {day}, {event['start']}-{event['end']}, and {contact['name']} is invited.")
    return sc


def t_cal_first_free(rng: Rng) -> Scenario:
    world = office_world(rng)
    date, day = _day(rng)
    length = rng.choice([30, 60, 90])
    title = rng.choice(NEW_TITLES)
    sc = Scenario("office", world)
    sc.user(f"Book a {length}-minute '{title}' at the earliest free time on {day}.")
    slots = sc.call("find_free_slots", date=date, duration_minutes=length)
    if not slots:
        raise _Retry("the day is full")
    start = _mins(slots[0]["start"])
    event = sc.call("create_event", title=title, date=date, start=_hm(start), end=_hm(start + length))
    sc.reply(f"Booked '{title}' on {day} from {event['start']} to {event['end']}.", event["start"])
    return sc


def t_cal_invite(rng: Rng) -> Scenario:
    world = office_world(rng)
    date, day = _day(rng)
    target = rng.choice(sorted(i for i, e in world["calendar"]["events"].items() if e["date"] == date))
    event = world["calendar"]["events"][target]
    contact = rng.choice([c for c in world["mail"]["contacts"] if c["email"] not in event["attendees"]])
    sc = Scenario("office", world)
    sc.user(f"Add {contact['name']} to my {event['title']} on {day}.")
    hits, events = sc.step(("search_contacts", {"name": contact["name"].split()[0]}), ("list_events", {"date": date}))
    email = next(h["email"] for h in hits if h["name"] == contact["name"])
    event_id = next(e["event_id"] for e in events if e["title"] == event["title"])
    sc.call("invite_attendees", event_id=event_id, emails=[email])
    sc.reply(f"{contact['name']} is invited to the {event['title']}.")
    return sc


def _mail_of(world: dict[str, Any], subject: str) -> tuple[str, dict[str, Any]] | None:
    return next(((i, m) for i, m in world["mail"]["inbox"].items() if m["subject"] == subject), None)


_FACTS = {"Q2 budget": ("budget", "the approved Q2 budget", lambda b: b.split("is ")[1].split(" EUR")[0]),
          "Room for the workshop": ("room", "the room booked for the workshop",
                                    lambda b: b.split("room ")[1].split(" for")[0]),
          "Report deadline": ("deadline", "the new report deadline", lambda b: b.split("moved to ")[1].split(".")[0])}


def _fact_mail(world: dict[str, Any], rng: Rng) -> tuple[str, str, str, str, dict[str, Any]]:
    present = [s for s in _FACTS if _mail_of(world, s)]
    if not present:
        raise _Retry("no e-mail with a fact")
    subject = rng.choice(present)
    email_id, message = _mail_of(world, subject)  # type: ignore[misc]
    keyword, what, _ = _FACTS[subject]
    return subject, keyword, what, email_id, message


def _other_facts(world: dict[str, Any], subject: str) -> list[str]:
    """The facts of the inbox's other fact e-mails: wrong answers to a question about ``subject``'s."""
    facts = []
    for other in _FACTS:
        found = _mail_of(world, other) if other != subject else None
        if found is not None:
            facts.append(_FACTS[other][2](found[1]["body"]))
    return facts


def t_mail_fact(rng: Rng) -> Scenario:
    world = office_world(rng)
    subject, keyword, what, _, message = _fact_mail(world, rng)
    sender = next(c["name"] for c in world["mail"]["contacts"] if c["email"] == message["from"])
    sc = Scenario("office", world)
    sc.user(f"{sender.split()[0]} e-mailed me about the {keyword}. What is {what}?")
    hits = sc.call("search_emails", query=keyword)
    full = sc.call("read_email", email_id=hits[0]["email_id"])
    fact = _FACTS[subject][2](full["body"])
    sc.check("called", tool="read_email", args={"email_id": hits[0]["email_id"]})
    sc.check("not_called", tool="send_email")
    sc.reply(f"According to {sender}'s e-mail, {what} is {fact}.", fact)
    sc.distractors(*_other_facts(world, subject))
    return sc


def t_mail_forward(rng: Rng) -> Scenario:
    world = office_world(rng)
    subject, keyword, what, _, message = _fact_mail(world, rng)
    recipient = rng.choice([c for c in world["mail"]["contacts"] if c["email"] != message["from"]])
    sc = Scenario("office", world)
    sc.user(f"Please e-mail {recipient['name']} {what}. It's in an e-mail I got about the {keyword}.")
    hits_c, hits_m = sc.step(("search_contacts", {"name": recipient["name"].split()[0]}),
                             ("search_emails", {"query": keyword}))
    full = sc.call("read_email", email_id=hits_m[0]["email_id"])
    fact = _FACTS[subject][2](full["body"])
    email = next(h["email"] for h in hits_c if h["name"] == recipient["name"])
    sc.call("send_email", to=[email], subject=subject, body=f"Hi {recipient['name'].split()[0]}, {what} is {fact}.")
    sc.check("state", path=["mail", "sent"], match={"to": [email]}, contains=fact)
    sc.reply(f"I sent {recipient['name']} an e-mail saying that {what} is {fact}.", fact)
    sc.distractors(*_other_facts(world, subject))
    return sc


def t_office_reschedule(rng: Rng) -> Scenario:
    world = office_world(rng)
    date, day = _day(rng)
    target = rng.choice(sorted(i for i, e in world["calendar"]["events"].items() if e["date"] == date))
    event = world["calendar"]["events"][target]
    length = _mins(event["end"]) - _mins(event["start"])
    others = {i: e for i, e in world["calendar"]["events"].items() if i != target}
    busy = [(_mins(e["start"]), _mins(e["end"])) for e in others.values() if e["date"] == date]
    options = [s for s in range(9 * 60, 17 * 60 - length + 1, 30)
               if s != _mins(event["start"]) and all(s + length <= lo or hi <= s for lo, hi in busy)]
    if not options:
        raise _Retry("no time to move to")
    new_start = rng.choice(options)
    contact = rng.choice(world["mail"]["contacts"])
    world["mail"]["inbox"]["M-9"] = {
        "from": contact["email"], "subject": f"Moving our {event['title']}", "date": "2025-03-09",
        "body": f"Hi,\n\ncould we move our {event['title']} on {date} to {_hm(new_start)}? Same length.\n\n"
                f"{contact['name'].split()[0]}"}
    sc = Scenario("office", world)
    sc.user(f"{contact['name']} wants to move our {event['title']}. What time do they propose?")
    hits = sc.call("search_emails", query=event["title"])
    message = sc.call("read_email", email_id=hits[0]["email_id"])
    proposed = message["body"].split(" to ")[1].split("?")[0]
    sc.reply(f"{contact['name']} proposes {proposed} on {day}.", proposed)
    sc.user("OK, move the meeting to that time.")
    events = sc.call("list_events", date=date)
    event_id = next(e["event_id"] for e in events if e["title"] == event["title"])
    start = _mins(proposed)
    sc.call("reschedule_event", event_id=event_id, date=date, start=_hm(start), end=_hm(start + length))
    sc.check("state", path=["calendar", "events", event_id, "start"], equals=_hm(start))
    sc.reply(f"The {event['title']} now runs {_hm(start)}-{_hm(start + length)} on {day}.", _hm(start + length))
    sc.user("Great, please let them know by e-mail.")
    sc.call("send_email", to=[contact["email"]], subject=f"Re: Moving our {event['title']}",
            body=f"Done: the {event['title']} on {date} is moved to {_hm(start)}.")
    sc.check("state", path=["mail", "sent"], match={"to": [contact["email"]]}, contains=_hm(start))
    sc.check("not_called", tool="cancel_event")
    sc.reply(f"I e-mailed {contact['name']} to confirm.")
    return sc


def t_cal_conflict(rng: Rng) -> Scenario:
    world = office_world(rng)
    date, day = _day(rng)
    events = world["calendar"]["events"]
    blocker_id = rng.choice(sorted(i for i, e in events.items() if e["date"] == date))
    blocker = events[blocker_id]
    length = 60
    after = _mins(blocker["end"])
    if any(e["date"] == date and i != blocker_id and _mins(e["start"]) < after + length and after < _mins(e["end"])
           for i, e in events.items()) or after + length > 17 * 60:
        raise _Retry("no room after the blocker")
    title = rng.choice(NEW_TITLES)
    asked = _mins(blocker["start"])
    sc = Scenario("office", world)
    sc.user(f"Book '{title}' on {day} from {_hm(asked)} to {_hm(asked + length)}.")
    listed = sc.call("list_events", date=date)
    clash = next(e for e in listed if e["event_id"] == blocker_id)
    sc.check("not_called", tool="cancel_event")
    sc.reply(f"That time is taken by your {clash['title']} ({clash['start']}-{clash['end']}). "
             "Shall I book it right after?", clash["title"])
    sc.distractors(*[e["title"] for e in listed if e["event_id"] != blocker_id])
    sc.user(f"Yes, book it right after the {clash['title']} ends, for an hour.")
    sc.call("create_event", title=title, date=date, start=clash["end"], end=_hm(after + length))
    sc.reply(f"Booked '{title}' from {clash['end']} to {_hm(after + length)}.", _hm(after + length))
    return sc


def _project(world: dict[str, Any], rng: Rng) -> str:
    return rng.choice(sorted(d.rsplit("/", 1)[1] for d in world["files"]["dirs"] if d.startswith("/home/projects/")))


def t_fs_port(rng: Rng) -> Scenario:
    world = files_world(rng)
    project = _project(world, rng)
    sc = Scenario("files", world)
    sc.user(f"Which port is the {project} service configured to listen on? Its files are in /home/projects/{project}.")
    listing = sc.call("list_directory", path=f"/home/projects/{project}")
    settings = next(f["name"] for f in listing["files"] if f["name"].endswith(".ini"))
    text = sc.call("read_file", path=f"/home/projects/{project}/{settings}")
    port = text.split("port = ")[1].split("\n")[0]
    sc.check("called", tool="read_file", args={"path": f"/home/projects/{project}/{settings}"})
    sc.check("not_called", tool="write_file")
    sc.reply(f"{project} listens on port {port} (from {settings}).", port)
    sc.distractors(*[text.split("port = ")[1].split("\n")[0] for path, text in sorted(world["files"]["files"].items())
                     if path.endswith("/settings.ini") and not path.startswith(f"/home/projects/{project}/")])
    return sc


def t_fs_delete(rng: Rng) -> Scenario:
    world = files_world(rng)
    logs = sorted(f for f in world["files"]["files"] if f.startswith("/tmp/"))
    target = rng.choice(logs)
    sc = Scenario("files", world)
    sc.user(f"Delete {target}, I don't need it any more. Leave the other files alone.")
    sc.call("delete_file", path=target)
    sc.check("state", path=["files", "files", target], exists=False)
    for other in logs:
        if other != target:
            sc.check("not_called", tool="delete_file", args={"path": other})
    sc.reply(f"{target} is deleted.")
    return sc


def t_fs_rename(rng: Rng) -> Scenario:
    world = files_world(rng)
    new_name = rng.choice(["report_final.txt", "quarterly_report.txt", "report_v2.txt"])
    sc = Scenario("files", world)
    sc.user(f"Rename /home/docs/report_draft.txt to {new_name} (same folder).")
    sc.call("move_file", source="/home/docs/report_draft.txt", destination=f"/home/docs/{new_name}")
    sc.check("state", path=["files", "files", f"/home/docs/{new_name}"], exists=True)
    sc.check("not_called", tool="delete_file")
    sc.reply(f"Renamed it to /home/docs/{new_name}.")
    return sc


def t_fs_archive(rng: Rng) -> Scenario:
    world = files_world(rng)
    dest = rng.choice(["/home/archive/logs", "/home/backup/logs", "/home/old_logs"])
    sc = Scenario("files", world)
    sc.user(f"Move every .log file in /tmp into {dest} (create the folder if needed). How many did you move?")
    logs = sc.call("find_files", pattern="*.log", path="/tmp")
    sc.call("create_directory", path=dest)
    sc.step(*[("move_file", {"source": path, "destination": dest}) for path in logs])
    sc.check("state", path=["files", "files", "/tmp/cache.tmp"], exists=True)
    sc.check("not_called", tool="delete_file")
    sc.reply(f"I moved {len(logs)} log files into {dest}.", str(len(logs)))
    sc.distractors(*range(1, 9))
    return sc


def t_fs_invoice(rng: Rng) -> Scenario:
    world = files_world(rng)
    scan = rng.choice(sorted(f for f in world["files"]["files"] if "/scan_" in f))
    number = world["files"]["files"][scan].split("\n")[0].split(" ")[1]
    sc = Scenario("files", world)
    sc.user(f"Find the scanned document for invoice {number}, copy it into /home/shared and tell me the file name.")
    hits = sc.call("search_files", text=number, path="/home")
    found = hits[0]["path"]
    sc.call("copy_file", source=found, destination="/home/shared")
    name = found.rsplit("/", 1)[1]
    sc.check("state", path=["files", "files", f"/home/shared/{name}"], exists=True)
    sc.check("state", path=["files", "files", found], exists=True)
    sc.reply(f"It's {name}; a copy is now in /home/shared.", name)
    sc.distractors(*[f.rsplit("/", 1)[1] for f in sorted(world["files"]["files"]) if "/scan_" in f and f != found])
    return sc


def t_fs_errors(rng: Rng) -> Scenario:
    world = files_world(rng)
    logs = [f for f, text in world["files"]["files"].items() if f.endswith(".log") and " ERROR " in text]
    if not logs:
        raise _Retry("no log has errors")
    log = rng.choice(sorted(logs))
    sc = Scenario("files", world)
    sc.user(f"How many ERROR lines are in {log}, and what does the first one say?")
    text = sc.call("read_file", path=log)
    errors = [line for line in text.splitlines() if " ERROR " in line]
    first = errors[0].split(" ERROR ")[1]
    sc.check("not_called", tool="delete_file")
    for message in ERRORS:  # errors this log does not hold: naming them all is no answer
        if message not in text:
            sc.check("not_said", text=message)
    sc.reply(f"{log} has {len(errors)} ERROR line(s); the first says: {first}.", str(len(errors)), first)
    # The other counts, and the log's other errors: listing them all hedges over which is the first.
    sc.distractors(*range(1, 9), *[line.split(" ERROR ")[1] for line in errors])
    return sc


def t_fs_note(rng: Rng) -> Scenario:
    world = files_world(rng)
    folder = rng.choice(["/home/notes/meetings", "/home/notes/2025", "/home/docs/letters"])
    name = rng.choice(["kickoff.txt", "summary.txt", "followup.txt"])
    text = rng.choice(["Bring the signed contract.", "Budget approved, start hiring in April.",
                       "Call the landlord about the heating."])
    sc = Scenario("files", world)
    sc.user(f"Create the file {folder}/{name} containing exactly this line: {text}")
    sc.call("create_directory", path=folder)
    sc.call("write_file", path=f"{folder}/{name}", content=text + "\n")
    sc.check("state", path=["files", "files", f"{folder}/{name}"], contains=text)
    sc.reply(f"Created {folder}/{name}.")
    return sc


def t_fs_todo(rng: Rng) -> Scenario:
    world = files_world(rng)
    todo = world["files"]["files"]["/home/notes/todo.md"]
    current = [line[2:] for line in todo.splitlines() if line.startswith("- ")]
    new_item = rng.choice([t for t in TODO if t not in current])
    sc = Scenario("files", world)
    sc.user("What's the first item on my to-do list? It's /home/notes/todo.md.")
    text = sc.call("read_file", path="/home/notes/todo.md")
    first = next(line[2:] for line in text.splitlines() if line.startswith("- "))
    sc.reply(f"The first item is: {first}.", first)
    sc.distractors(*[line[2:] for line in text.splitlines() if line.startswith("- ") and line[2:] != first])
    sc.user(f"Add the line '- {new_item}' at the end of the list.")
    sc.call("append_line", path="/home/notes/todo.md", line=f"- {new_item}")
    sc.check("not_called", tool="write_file")
    sc.reply("Added.")
    sc.user("Now save a copy of the list as /home/notes/todo_backup.md.")
    sc.call("copy_file", source="/home/notes/todo.md", destination="/home/notes/todo_backup.md")
    sc.check("state", path=["files", "files", "/home/notes/todo_backup.md"], contains=new_item)
    sc.reply("The backup is saved as /home/notes/todo_backup.md.")
    return sc


TEMPLATES: tuple[Template, ...] = (
    Template("shop-status", "shop", "easy", t_shop_status),
    Template("shop-cancel", "shop", "easy", t_shop_cancel),
    Template("shop-stock", "shop", "easy", t_shop_stock),
    Template("shop-cancel-shipped", "shop", "medium", t_shop_cancel_shipped),
    Template("shop-cancel-latest", "shop", "medium", t_shop_cancel_latest),
    Template("shop-refund", "shop", "medium", t_shop_refund),
    Template("shop-place", "shop", "hard", t_shop_place),
    Template("shop-short-stock", "shop", "hard", t_shop_short_stock),
    Template("shop-pending-session", "shop", "hard", t_shop_pending_session),
    Template("cal-agenda", "office", "easy", t_cal_agenda),
    Template("cal-cancel", "office", "easy", t_cal_cancel),
    Template("mail-fact", "office", "easy", t_mail_fact),
    Template("cal-schedule", "office", "medium", t_cal_schedule),
    Template("cal-first-free", "office", "medium", t_cal_first_free),
    Template("cal-invite", "office", "medium", t_cal_invite),
    Template("mail-forward", "office", "medium", t_mail_forward),
    Template("cal-conflict", "office", "hard", t_cal_conflict),
    Template("office-reschedule", "office", "hard", t_office_reschedule),
    Template("fs-port", "files", "easy", t_fs_port),
    Template("fs-delete", "files", "easy", t_fs_delete),
    Template("fs-rename", "files", "easy", t_fs_rename),
    Template("fs-errors", "files", "medium", t_fs_errors),
    Template("fs-invoice", "files", "medium", t_fs_invoice),
    Template("fs-note", "files", "medium", t_fs_note),
    Template("fs-archive", "files", "hard", t_fs_archive),
    Template("fs-todo", "files", "hard", t_fs_todo),
)
"""Every template, by domain (shop; office = calendar + mail; files) and difficulty."""


def _make(template: Template, task_id: str, split: str, source: str, *seed: Any) -> Task:
    problem = None
    for attempt in range(_ATTEMPTS):
        try:
            scenario = template.build(Rng(*seed, attempt))
            data, oracle = scenario.build(template.id, template.difficulty)
        except _Retry as exc:
            problem = exc
            continue
        return Task(id=task_id, prompt=data["turns"][0]["user"], data=data, oracle=oracle,
                    difficulty=template.difficulty, split=split, source=source)
    raise RuntimeError(f"template {template.id} found no fitting world for seed {seed} ({problem})")


def generate_task(seed: int, difficulty: str | None = None) -> Task:
    """A generated task: the seed picks the template (of ``difficulty``, if given) and the world.

    Example:
        >>> t = generate_task(7, "hard")
        >>> t.difficulty, t.data == generate_task(7, "hard").data, len(t.data["turns"]) >= 1
        ('hard', True, True)
    """
    rng = Rng("generated", seed)
    if difficulty is None:
        difficulty = DIFFICULTIES[rng.below(len(DIFFICULTIES))]
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r} (use one of {DIFFICULTIES})")
    template = rng.choice([t for t in TEMPLATES if t.difficulty == difficulty])
    return _make(template, f"{template.id}-gen-{seed}", "generated", "generated", "generated", seed, difficulty)


def build_bundled(per_template: int = PER_TEMPLATE) -> list[Task]:
    """The bundled tasks, built from the templates (``per_template`` each; every 3rd one is in ``test``)."""
    tasks = []
    for template in TEMPLATES:
        for k in range(per_template):
            split = "test" if k % 3 == 2 else "train"
            tasks.append(_make(template, f"{template.id}-{k:02d}", split, "bundled", "bundled", template.id, k))
    return tasks


def _to_row(task: Task) -> dict[str, Any]:
    return {"id": task.id, "difficulty": task.difficulty, "split": task.split, "prompt": task.prompt,
            "oracle": list(task.oracle), "data": task.data}


@cache
def _load_bundled(path: str) -> tuple[Task, ...]:
    from execgym.envs.tooluse.loading import load_rows, task_from_row  # loading imports this module's peers

    return tuple(load_rows(Path(path), lambda _line, row: task_from_row(row, source="bundled"),
                           skip_invalid=False, what="task"))


def bundled_tasks() -> list[Task]:
    """The bundled tasks, read from ``execgym/assets/tooluse/tasks.jsonl``."""
    if not BUNDLED_PATH.is_file():
        raise FileNotFoundError(f"the bundled tool-use tasks are missing ({BUNDLED_PATH}); "
                                "write them with: python -m execgym.envs.tooluse.tasks")
    return list(_load_bundled(str(BUNDLED_PATH)))


def _dump(tasks: Sequence[Task]) -> str:
    return "".join(json.dumps(_to_row(t), ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
                   for t in tasks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or check) the bundled tool-use tasks.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the bundled file is out of date")
    parser.add_argument("--out", type=Path, default=BUNDLED_PATH, help="where to write the JSONL file")
    args = parser.parse_args(argv)
    text = _dump(build_bundled())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m execgym.envs.tooluse.tasks", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} tasks to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
