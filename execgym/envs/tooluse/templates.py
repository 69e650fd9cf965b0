"""The 26 tool-use task templates (shop; office = calendar + mail; files), each a function over a Scenario.

A template is registered with :func:`template`, which gives it a :class:`~execgym.envs.tooluse.scenario.Scenario`
over a fresh world of its domain (the world may still be shaped before the first user message). The order
of definition is the order of :data:`TEMPLATES`, which the seeded generator and the bundled file rely on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from execgym.envs.tooluse.scenario import Retry, Rng, Scenario
from execgym.envs.tooluse.worlds import (
    CANCEL_REASONS,
    CITIES,
    DAYS,
    ERRORS,
    NEW_TITLES,
    REFUND_REASONS,
    STATUSES,
    STREETS,
    TODO,
    WORLDS,
    hm,
    mins,
    money,
)

__all__ = ["TEMPLATES", "Template", "template"]


Write = Callable[[Scenario, dict[str, Any], Rng], None]
"""A template's body: it writes the scenario over the world (the world may be shaped before the first message)."""


@dataclass(frozen=True)
class Template:
    """A task template: an id, a domain, a difficulty and the function that writes its scenario."""

    id: str
    domain: str
    difficulty: str
    write: Write

    def build(self, rng: Rng) -> Scenario:
        """The template's scenario over a world of its domain drawn from ``rng``."""
        sc = Scenario(self.domain, WORLDS[self.domain](rng))
        self.write(sc, sc.world, rng)
        return sc


_REGISTERED: list[Template] = []


def template(template_id: str, domain: str, difficulty: str) -> Callable[[Write], Write]:
    """Register the decorated function as the template ``template_id`` of ``domain`` and ``difficulty``."""

    def register(write: Write) -> Write:
        _REGISTERED.append(Template(template_id, domain, difficulty, write))
        return write

    return register


# ---------------------------------------------------------------------------------------------------------- shop
def _customer_with(shop: dict[str, Any], rng: Rng, status: str) -> tuple[str, dict[str, Any], str]:
    """A random customer and one of their orders, forced to ``status``."""
    oid = rng.choice(sorted(shop["orders"]))
    order = shop["orders"][oid]
    order["status"] = status
    return order["customer_id"], shop["customers"][order["customer_id"]], oid


@template("shop-status", "shop", "easy")
def t_shop_status(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    oid = rng.choice(sorted(world["shop"]["orders"]))
    sc.user(f"Hi, what's the status of my order {oid}, and how much did I pay for it?")
    order = sc.call("get_order", order_id=oid)
    sc.check("called", tool="get_order", args={"order_id": oid})
    sc.check("not_called", tool="cancel_order")
    sc.reply(f"Order {oid} is {order['status']}; you paid {money(order['total'])}.", order["status"],
             money(order["total"]))
    sc.distractors(*STATUSES)


@template("shop-cancel", "shop", "easy")
def t_shop_cancel(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    _, _, oid = _customer_with(world["shop"], rng, "pending")
    reason = rng.choice(sorted(CANCEL_REASONS))
    sc.user(f"Please cancel order {oid}, {CANCEL_REASONS[reason]}.")
    result = sc.call("cancel_order", order_id=oid, reason=reason)
    sc.check("state", path=["shop", "orders", oid, "status"], equals="cancelled")
    sc.reply(f"Order {oid} is cancelled and {money(result['refunded'])} will be refunded.",
             money(result["refunded"]))


@template("shop-stock", "shop", "easy")
def t_shop_stock(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    sku = rng.choice(sorted(world["shop"]["products"]))
    product = world["shop"]["products"][sku]
    product["stock"] = max(product["stock"], 1)
    sc.user(f"Do you have the {product['name']} in stock? How many units, and what does it cost?")
    hits = sc.call("search_products", query=product["name"].lower())
    hit = next(h for h in hits if h["sku"] == sku)
    sc.check("not_called", tool="place_order")
    sc.reply(f"Yes: {hit['stock']} units of the {hit['name']} are in stock at {money(hit['price'])} each.",
             str(hit["stock"]), money(hit["price"]))
    others = [p for s, p in sorted(world["shop"]["products"].items()) if s != sku]
    sc.distractors(*[money(p["price"]) for p in others], *[p["stock"] for p in others])


@template("shop-cancel-shipped", "shop", "medium")
def t_shop_cancel_shipped(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    status = rng.choice(["shipped", "delivered"])
    _, _, oid = _customer_with(world["shop"], rng, status)
    sc.user(f"Cancel order {oid} please, {CANCEL_REASONS['no_longer_needed']}.")
    order = sc.call("get_order", order_id=oid)
    sc.check("state", path=["shop", "orders", oid, "status"], equals=status)
    sc.reply(f"I'm sorry, order {oid} is already {order['status']}, so it can no longer be cancelled.",
             order["status"])
    sc.distractors("shipped" if order["status"] == "delivered" else "delivered")


@template("shop-cancel-latest", "shop", "medium")
def t_shop_cancel_latest(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    _, customer, _ = _customer_with(world["shop"], rng, "pending")
    reason = rng.choice(sorted(CANCEL_REASONS))
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
    sc.reply(f"I cancelled your latest pending order {latest}; {money(result['refunded'])} will be refunded.",
             latest, money(result["refunded"]))


@template("shop-refund", "shop", "medium")
def t_shop_refund(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    _, _, oid = _customer_with(world["shop"], rng, "delivered")
    line = rng.choice(world["shop"]["orders"][oid]["items"])
    reason = rng.choice(sorted(REFUND_REASONS))
    units = "the unit" if line["quantity"] == 1 else f"all {line['quantity']} units"
    sc.user(f"My order {oid} came, but the {line['name']} {REFUND_REASONS[reason]}. "
            f"Please refund {units} of it.")
    order = sc.call("get_order", order_id=oid)
    sku = next(li["sku"] for li in order["items"] if li["name"] == line["name"])
    result = sc.call("refund_item", order_id=oid, sku=sku, quantity=line["quantity"], reason=reason)
    sc.check("not_called", tool="cancel_order")
    sc.reply(f"Done: {money(result['refunded'])} is refunded for the {line['name']}.", money(result["refunded"]))


@template("shop-place", "shop", "hard")
def t_shop_place(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    shop = world["shop"]
    cid = rng.choice(sorted(shop["customers"]))
    email = shop["customers"][cid]["email"]
    skus = rng.sample(sorted(shop["products"]), 2)
    want = [rng.randint(1, 3) for _ in skus]
    for sku, n in zip(skus, want):
        shop["products"][sku]["stock"] = max(shop["products"][sku]["stock"], n)
    names = [shop["products"][s]["name"] for s in skus]
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
    sc.reply(f"Your order {order['order_id']} is placed; the total is {money(order['total'])}.",
             order["order_id"], money(order["total"]))


@template("shop-short-stock", "shop", "hard")
def t_shop_short_stock(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    shop = world["shop"]
    cid = rng.choice(sorted(shop["customers"]))
    email = shop["customers"][cid]["email"]
    sku = rng.choice(sorted(shop["products"]))
    product = shop["products"][sku]
    product["stock"] = rng.randint(2, 4)
    want = product["stock"] + rng.randint(2, 5)
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
    sc.reply(f"Done: order {order['order_id']} for {stock} units, total {money(order['total'])}.",
             money(order["total"]))


@template("shop-pending-session", "shop", "hard")
def t_shop_pending_session(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    shop = world["shop"]
    cid, customer, oid = _customer_with(shop, rng, "pending")
    for other_id, other in shop["orders"].items():
        if other["customer_id"] == cid and other_id != oid and other["status"] == "pending":
            other["status"] = "delivered"
    new_address = f"{rng.randint(100, 400)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
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
    sc.reply(f"Order {pending[0]} is cancelled; {money(result['refunded'])} will be refunded.",
             money(result["refunded"]))


# ------------------------------------------------------------------------------------- office: calendar and mail
def _day(rng: Rng) -> tuple[str, str]:
    date = rng.choice(sorted(DAYS))
    return date, f"{DAYS[date]} {date}"


def _free_hour(world: dict[str, Any], date: str, rng: Rng, length: int = 60) -> int | None:
    busy = [(mins(e["start"]), mins(e["end"])) for e in world["calendar"]["events"].values() if e["date"] == date]
    options = [s for s in range(9 * 60, 17 * 60 - length + 1, 30)
               if all(s + length <= lo or hi <= s for lo, hi in busy)]
    return rng.choice(options) if options else None


def _mail_of(world: dict[str, Any], subject: str) -> tuple[str, dict[str, Any]] | None:
    return next(((i, m) for i, m in world["mail"]["inbox"].items() if m["subject"] == subject), None)


_FACTS = {"Q2 budget": ("budget", "the approved Q2 budget", lambda b: b.split("is ")[1].split(" EUR")[0]),
          "Room for the workshop": ("room", "the room booked for the workshop",
                                    lambda b: b.split("room ")[1].split(" for")[0]),
          "Report deadline": ("deadline", "the new report deadline", lambda b: b.split("moved to ")[1].split(".")[0])}


def _fact_mail(world: dict[str, Any], rng: Rng) -> tuple[str, str, str, str, dict[str, Any]]:
    present = [s for s in _FACTS if _mail_of(world, s)]
    if not present:
        raise Retry("no e-mail with a fact")
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


@template("cal-agenda", "office", "easy")
def t_cal_agenda(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    date, day = _day(rng)
    sc.user(f"What's on my calendar on {day}?")
    events = sc.call("list_events", date=date)
    sc.check("called", tool="list_events", args={"date": date})
    sc.check("not_called", tool="cancel_event")
    listing = "; ".join(f"{e['start']}-{e['end']} {e['title']}" for e in events)
    sc.reply(f"On {day} you have: {listing}.", *[e["title"] for e in events])
    # Meetings of other days are wrong here: an answer that lists every title is no answer.
    for title in sorted({e["title"] for e in world["calendar"]["events"].values()} - {e["title"] for e in events}):
        sc.check("not_said", text=title)


@template("cal-cancel", "office", "easy")
def t_cal_cancel(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    date, day = _day(rng)
    target_id = rng.choice(sorted(i for i, e in world["calendar"]["events"].items() if e["date"] == date))
    title = world["calendar"]["events"][target_id]["title"]
    sc.user(f"Please cancel my {title} on {day}.")
    events = sc.call("list_events", date=date)
    event_id = next(e["event_id"] for e in events if e["title"] == title)
    sc.call("cancel_event", event_id=event_id)
    sc.check("state", path=["calendar", "events", event_id], exists=False)
    for other in events:
        if other["event_id"] != event_id:
            sc.check("not_called", tool="cancel_event", args={"event_id": other["event_id"]})
    sc.reply(f"Your {title} on {day} is cancelled.")


@template("mail-fact", "office", "easy")
def t_mail_fact(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    subject, keyword, what, _, message = _fact_mail(world, rng)
    sender = next(c["name"] for c in world["mail"]["contacts"] if c["email"] == message["from"])
    sc.user(f"{sender.split()[0]} e-mailed me about the {keyword}. What is {what}?")
    hits = sc.call("search_emails", query=keyword)
    full = sc.call("read_email", email_id=hits[0]["email_id"])
    fact = _FACTS[subject][2](full["body"])
    sc.check("called", tool="read_email", args={"email_id": hits[0]["email_id"]})
    sc.check("not_called", tool="send_email")
    sc.reply(f"According to {sender}'s e-mail, {what} is {fact}.", fact)
    sc.distractors(*_other_facts(world, subject))


@template("cal-schedule", "office", "medium")
def t_cal_schedule(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    date, day = _day(rng)
    start = _free_hour(world, date, rng)
    if start is None:
        raise Retry("no free hour")
    contact = rng.choice(world["mail"]["contacts"])
    title = rng.choice(NEW_TITLES)
    sc.user(f"Schedule a '{title}' with {contact['name']} on {day} from {hm(start)} to {hm(start + 60)}, "
            "and invite them.")
    hits = sc.call("search_contacts", name=contact["name"].split()[0])
    email = next(h["email"] for h in hits if h["name"] == contact["name"])
    event = sc.call("create_event", title=title, date=date, start=hm(start), end=hm(start + 60), attendees=[email])
    sc.reply(f"'{title}' is booked on {day}, {event['start']}-{event['end']}, and {contact['name']} is invited.")


@template("cal-first-free", "office", "medium")
def t_cal_first_free(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    date, day = _day(rng)
    length = rng.choice([30, 60, 90])
    title = rng.choice(NEW_TITLES)
    sc.user(f"Book a {length}-minute '{title}' at the earliest free time on {day}.")
    slots = sc.call("find_free_slots", date=date, duration_minutes=length)
    if not slots:
        raise Retry("the day is full")
    start = mins(slots[0]["start"])
    event = sc.call("create_event", title=title, date=date, start=hm(start), end=hm(start + length))
    sc.reply(f"Booked '{title}' on {day} from {event['start']} to {event['end']}.", event["start"])


@template("cal-invite", "office", "medium")
def t_cal_invite(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    date, day = _day(rng)
    target = rng.choice(sorted(i for i, e in world["calendar"]["events"].items() if e["date"] == date))
    event = world["calendar"]["events"][target]
    contact = rng.choice([c for c in world["mail"]["contacts"] if c["email"] not in event["attendees"]])
    sc.user(f"Add {contact['name']} to my {event['title']} on {day}.")
    hits, events = sc.step(("search_contacts", {"name": contact["name"].split()[0]}), ("list_events", {"date": date}))
    email = next(h["email"] for h in hits if h["name"] == contact["name"])
    event_id = next(e["event_id"] for e in events if e["title"] == event["title"])
    sc.call("invite_attendees", event_id=event_id, emails=[email])
    sc.reply(f"{contact['name']} is invited to the {event['title']}.")


@template("mail-forward", "office", "medium")
def t_mail_forward(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    subject, keyword, what, _, message = _fact_mail(world, rng)
    recipient = rng.choice([c for c in world["mail"]["contacts"] if c["email"] != message["from"]])
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


@template("cal-conflict", "office", "hard")
def t_cal_conflict(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    date, day = _day(rng)
    events = world["calendar"]["events"]
    blocker_id = rng.choice(sorted(i for i, e in events.items() if e["date"] == date))
    blocker = events[blocker_id]
    length = 60
    after = mins(blocker["end"])
    if any(e["date"] == date and i != blocker_id and mins(e["start"]) < after + length and after < mins(e["end"])
           for i, e in events.items()) or after + length > 17 * 60:
        raise Retry("no room after the blocker")
    title = rng.choice(NEW_TITLES)
    asked = mins(blocker["start"])
    sc.user(f"Book '{title}' on {day} from {hm(asked)} to {hm(asked + length)}.")
    listed = sc.call("list_events", date=date)
    clash = next(e for e in listed if e["event_id"] == blocker_id)
    sc.check("not_called", tool="cancel_event")
    sc.reply(f"That time is taken by your {clash['title']} ({clash['start']}-{clash['end']}). "
             "Shall I book it right after?", clash["title"])
    sc.distractors(*[e["title"] for e in listed if e["event_id"] != blocker_id])
    sc.user(f"Yes, book it right after the {clash['title']} ends, for an hour.")
    sc.call("create_event", title=title, date=date, start=clash["end"], end=hm(after + length))
    sc.reply(f"Booked '{title}' from {clash['end']} to {hm(after + length)}.", hm(after + length))


@template("office-reschedule", "office", "hard")
def t_office_reschedule(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    date, day = _day(rng)
    target = rng.choice(sorted(i for i, e in world["calendar"]["events"].items() if e["date"] == date))
    event = world["calendar"]["events"][target]
    length = mins(event["end"]) - mins(event["start"])
    others = {i: e for i, e in world["calendar"]["events"].items() if i != target}
    busy = [(mins(e["start"]), mins(e["end"])) for e in others.values() if e["date"] == date]
    options = [s for s in range(9 * 60, 17 * 60 - length + 1, 30)
               if s != mins(event["start"]) and all(s + length <= lo or hi <= s for lo, hi in busy)]
    if not options:
        raise Retry("no time to move to")
    new_start = rng.choice(options)
    contact = rng.choice(world["mail"]["contacts"])
    world["mail"]["inbox"]["M-9"] = {
        "from": contact["email"], "subject": f"Moving our {event['title']}", "date": "2025-03-09",
        "body": f"Hi,\n\ncould we move our {event['title']} on {date} to {hm(new_start)}? Same length.\n\n"
                f"{contact['name'].split()[0]}"}
    sc.user(f"{contact['name']} wants to move our {event['title']}. What time do they propose?")
    hits = sc.call("search_emails", query=event["title"])
    message = sc.call("read_email", email_id=hits[0]["email_id"])
    proposed = message["body"].split(" to ")[1].split("?")[0]
    sc.reply(f"{contact['name']} proposes {proposed} on {day}.", proposed)
    sc.user("OK, move the meeting to that time.")
    events = sc.call("list_events", date=date)
    event_id = next(e["event_id"] for e in events if e["title"] == event["title"])
    start = mins(proposed)
    sc.call("reschedule_event", event_id=event_id, date=date, start=hm(start), end=hm(start + length))
    sc.check("state", path=["calendar", "events", event_id, "start"], equals=hm(start))
    sc.reply(f"The {event['title']} now runs {hm(start)}-{hm(start + length)} on {day}.", hm(start + length))
    sc.user("Great, please let them know by e-mail.")
    sc.call("send_email", to=[contact["email"]], subject=f"Re: Moving our {event['title']}",
            body=f"Done: the {event['title']} on {date} is moved to {hm(start)}.")
    sc.check("state", path=["mail", "sent"], match={"to": [contact["email"]]}, contains=hm(start))
    sc.check("not_called", tool="cancel_event")
    sc.reply(f"I e-mailed {contact['name']} to confirm.")


# --------------------------------------------------------------------------------------------------------- files
def _project(world: dict[str, Any], rng: Rng) -> str:
    return rng.choice(sorted(d.rsplit("/", 1)[1] for d in world["files"]["dirs"] if d.startswith("/home/projects/")))


@template("fs-port", "files", "easy")
def t_fs_port(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    project = _project(world, rng)
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


@template("fs-delete", "files", "easy")
def t_fs_delete(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    logs = sorted(f for f in world["files"]["files"] if f.startswith("/tmp/"))
    target = rng.choice(logs)
    sc.user(f"Delete {target}, I don't need it any more. Leave the other files alone.")
    sc.call("delete_file", path=target)
    sc.check("state", path=["files", "files", target], exists=False)
    for other in logs:
        if other != target:
            sc.check("not_called", tool="delete_file", args={"path": other})
    sc.reply(f"{target} is deleted.")


@template("fs-rename", "files", "easy")
def t_fs_rename(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    new_name = rng.choice(["report_final.txt", "quarterly_report.txt", "report_v2.txt"])
    sc.user(f"Rename /home/docs/report_draft.txt to {new_name} (same folder).")
    sc.call("move_file", source="/home/docs/report_draft.txt", destination=f"/home/docs/{new_name}")
    sc.check("state", path=["files", "files", f"/home/docs/{new_name}"], exists=True)
    sc.check("not_called", tool="delete_file")
    sc.reply(f"Renamed it to /home/docs/{new_name}.")


@template("fs-errors", "files", "medium")
def t_fs_errors(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    logs = [f for f, text in world["files"]["files"].items() if f.endswith(".log") and " ERROR " in text]
    if not logs:
        raise Retry("no log has errors")
    log = rng.choice(sorted(logs))
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


@template("fs-invoice", "files", "medium")
def t_fs_invoice(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    scan = rng.choice(sorted(f for f in world["files"]["files"] if "/scan_" in f))
    number = world["files"]["files"][scan].split("\n")[0].split(" ")[1]
    sc.user(f"Find the scanned document for invoice {number}, copy it into /home/shared and tell me the file name.")
    hits = sc.call("search_files", text=number, path="/home")
    found = hits[0]["path"]
    sc.call("copy_file", source=found, destination="/home/shared")
    name = found.rsplit("/", 1)[1]
    sc.check("state", path=["files", "files", f"/home/shared/{name}"], exists=True)
    sc.check("state", path=["files", "files", found], exists=True)
    sc.reply(f"It's {name}; a copy is now in /home/shared.", name)
    sc.distractors(*[f.rsplit("/", 1)[1] for f in sorted(world["files"]["files"]) if "/scan_" in f and f != found])


@template("fs-note", "files", "medium")
def t_fs_note(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    folder = rng.choice(["/home/notes/meetings", "/home/notes/2025", "/home/docs/letters"])
    name = rng.choice(["kickoff.txt", "summary.txt", "followup.txt"])
    text = rng.choice(["Bring the signed contract.", "Budget approved, start hiring in April.",
                       "Call the landlord about the heating."])
    sc.user(f"Create the file {folder}/{name} containing exactly this line: {text}")
    sc.call("create_directory", path=folder)
    sc.call("write_file", path=f"{folder}/{name}", content=text + "\n")
    sc.check("state", path=["files", "files", f"{folder}/{name}"], contains=text)
    sc.reply(f"Created {folder}/{name}.")


@template("fs-archive", "files", "hard")
def t_fs_archive(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    dest = rng.choice(["/home/archive/logs", "/home/backup/logs", "/home/old_logs"])
    sc.user(f"Move every .log file in /tmp into {dest} (create the folder if needed). How many did you move?")
    logs = sc.call("find_files", pattern="*.log", path="/tmp")
    sc.call("create_directory", path=dest)
    sc.step(*[("move_file", {"source": path, "destination": dest}) for path in logs])
    sc.check("state", path=["files", "files", "/tmp/cache.tmp"], exists=True)
    sc.check("not_called", tool="delete_file")
    sc.reply(f"I moved {len(logs)} log files into {dest}.", str(len(logs)))
    sc.distractors(*range(1, 9))


@template("fs-todo", "files", "hard")
def t_fs_todo(sc: Scenario, world: dict[str, Any], rng: Rng) -> None:
    todo = world["files"]["files"]["/home/notes/todo.md"]
    current = [line[2:] for line in todo.splitlines() if line.startswith("- ")]
    new_item = rng.choice([t for t in TODO if t not in current])
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


TEMPLATES: tuple[Template, ...] = tuple(_REGISTERED)
"""Every template, by domain (shop; office = calendar + mail; files) and difficulty."""
