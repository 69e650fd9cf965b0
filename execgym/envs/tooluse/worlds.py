"""The worlds tool-use tasks start from: a shop, an office (calendar and mail), a file system; and their pools.

Every world is drawn from a :class:`~execgym.envs.tooluse.scenario.Rng`, so a seed gives the same world on
every Python version.
"""

from __future__ import annotations

from typing import Any

from execgym.envs.tooluse.scenario import Rng

__all__ = ["WORLDS", "files_world", "hm", "mins", "money", "office_world", "shop_world"]

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


def money(x: float) -> str:
    return f"{x:.2f}"


def hm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def mins(clock: str) -> int:
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
            events[f"E-{next_id}"] = {"title": title, "date": date, "start": hm(start), "end": hm(start + length),
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


WORLDS = {"shop": shop_world, "office": office_world, "files": files_world}
"""The world builder of each domain."""
