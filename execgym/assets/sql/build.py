"""Build the bundled Text-to-SQL databases: ``bookshop``, ``hospital`` and ``flights``.

Deterministic: every value comes from ``random.Random(seed)``, so running it again writes the same rows.
Run it from anywhere; it writes ``<db_id>/<db_id>.sqlite`` beside itself (or under ``--out``)::

    python -m execgym.assets.sql.build            # or: python execgym/assets/sql/build.py --out /tmp/dbs

The question file (``questions.json``) is written by hand against these rows; rebuilding with another seed
would invalidate it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["DATABASES", "INDEXES", "build_all", "build_database"]

SEED = 20240611

FIRST_NAMES = [
    "Ada", "Alan", "Alice", "Amara", "Anton", "Aria", "Arjun", "Beatriz", "Bruno", "Carla", "Chen", "Clara",
    "Daniel", "Dara", "Diego", "Elena", "Elif", "Emil", "Erik", "Fatima", "Felix", "Freya", "Gabriel", "Grace",
    "Hana", "Hugo", "Ines", "Ivan", "Jonas", "Julia", "Kai", "Kenji", "Lara", "Leo", "Lina", "Luca", "Maya",
    "Marco", "Mei", "Nadia", "Nina", "Noah", "Omar", "Oscar", "Paula", "Priya", "Rafael", "Rosa", "Sami",
    "Sara", "Sofia", "Tariq", "Theo", "Uma", "Victor", "Wen", "Yara", "Yusuf", "Zoe", "Zofia",
]
LAST_NAMES = [
    "Abbott", "Almeida", "Baker", "Berg", "Costa", "Dalton", "Diaz", "Ekström", "Fischer", "Fontaine", "Garcia",
    "Haddad", "Hansen", "Ibrahim", "Ito", "Jensen", "Kaur", "Keller", "Kowalski", "Larsen", "Lopez", "Moreau",
    "Murphy", "Nakamura", "Novak", "Okafor", "Olsen", "Park", "Petrov", "Quinn", "Rossi", "Santos", "Schmidt",
    "Silva", "Singh", "Tanaka", "Torres", "Varga", "Walsh", "Weber", "Yilmaz", "Zhang",
]
CITIES = ["Lisbon", "Porto", "Madrid", "Berlin", "Hamburg", "Paris", "Lyon", "Rome", "Milan", "Vienna", "Oslo",
          "Dublin", "Prague", "Warsaw", "Athens"]


def _unique_names(rng: random.Random, count: int) -> list[str]:
    pairs = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES]
    return rng.sample(pairs, count)


def _date(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange((end - start).days + 1))


def _iso(d: dt.date) -> str:
    return d.isoformat()


def _create(conn: sqlite3.Connection, ddl: str, table: str, rows: Sequence[Sequence[object]]) -> None:
    conn.execute(ddl)
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


# --------------------------------------------------------------------------------------------- bookshop
def build_bookshop(conn: sqlite3.Connection, rng: random.Random) -> None:
    """A bookshop: authors, publishers, books, customers, orders, order items and reviews."""
    countries = ["Portugal", "Spain", "France", "Germany", "Italy", "Ireland", "Norway", "Japan", "Brazil",
                 "Nigeria", "India", "Canada"]
    author_names = _unique_names(rng, 80)
    authors = []
    for i, name in enumerate(author_names, 1):
        birth = None if rng.random() < 0.1 else rng.randint(1930, 1995)
        authors.append((i, name, rng.choice(countries), birth))
    _create(conn, """CREATE TABLE authors (
        author_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        country TEXT NOT NULL,
        birth_year INTEGER
    )""", "authors", authors)

    publisher_names = ["Harbor House", "Northwind Press", "Blue Lantern", "Quill & Ink", "Meridian Books",
                       "Atlas Editions", "Copperleaf", "Red Fern Press", "Silverline", "Old Mill Publishing",
                       "Tidewater", "Lighthouse Books"]
    publishers = [(i, n, rng.choice(CITIES), rng.randint(1890, 2015)) for i, n in enumerate(publisher_names, 1)]
    _create(conn, """CREATE TABLE publishers (
        publisher_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        city TEXT NOT NULL,
        founded_year INTEGER NOT NULL
    )""", "publishers", publishers)

    genres = ["Fantasy", "Mystery", "Romance", "Science Fiction", "History", "Biography", "Poetry", "Travel"]
    adjectives = ["Silent", "Hidden", "Golden", "Broken", "Distant", "Burning", "Frozen", "Crimson", "Endless",
                  "Forgotten", "Quiet", "Wild", "Last", "Secret", "Bright", "Hollow", "Iron", "Paper", "Salt",
                  "Velvet"]
    nouns = ["River", "Garden", "Harbor", "Mirror", "Forest", "Lantern", "Kingdom", "Voyage", "Letter", "Island",
             "Orchard", "Tower", "Compass", "Winter", "Archive", "Storm", "Bridge", "Meadow", "Atlas", "Clock"]
    titles: set[str] = set()
    books = []
    start, end = dt.date(1990, 1, 1), dt.date(2024, 6, 30)
    author_weights = [rng.choice([1, 1, 2, 3, 5]) for _ in authors]
    while len(books) < 400:
        form = rng.random()
        adj, noun = rng.choice(adjectives), rng.choice(nouns)
        if form < 0.5:
            title = f"The {adj} {noun}"
        elif form < 0.8:
            title = f"{adj} {noun}{'es' if noun.endswith('s') else 's'}"
        else:
            title = f"The {noun} of {rng.choice(CITIES)}"
        if title in titles:
            continue
        titles.add(title)
        book_id = len(books) + 1
        author_id = rng.choices(range(1, len(authors) + 1), weights=author_weights)[0]
        publisher_id = None if rng.random() < 0.05 else rng.randint(1, len(publishers))
        published = _iso(_date(rng, start, end))
        price = round(rng.uniform(6, 45), 2)
        pages = None if rng.random() < 0.08 else rng.randint(90, 880)
        books.append((book_id, title, author_id, publisher_id, rng.choice(genres), published, price, pages))
    _create(conn, """CREATE TABLE books (
        book_id INTEGER PRIMARY KEY,
        title TEXT NOT NULL UNIQUE,
        author_id INTEGER NOT NULL REFERENCES authors(author_id),
        publisher_id INTEGER REFERENCES publishers(publisher_id),
        genre TEXT NOT NULL,
        published_date TEXT NOT NULL,
        price REAL NOT NULL,
        pages INTEGER
    )""", "books", books)

    customer_names = _unique_names(rng, 500)
    customers = []
    for i, name in enumerate(customer_names, 1):
        email = None if rng.random() < 0.15 else name.lower().replace(" ", ".").replace("ö", "o") + "@example.com"
        joined = _iso(_date(rng, dt.date(2018, 1, 1), dt.date(2023, 12, 31)))
        customers.append((i, name, email, rng.choice(CITIES), joined))
    _create(conn, """CREATE TABLE customers (
        customer_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        email TEXT,
        city TEXT NOT NULL,
        joined_date TEXT NOT NULL
    )""", "customers", customers)

    orders, items = [], []
    statuses = ["delivered", "shipped", "pending", "cancelled"]
    book_weights = [rng.choice([1, 1, 1, 2, 4, 8]) for _ in books]
    for order_id in range(1, 2001):
        cust = rng.randint(1, len(customers))
        joined = dt.date.fromisoformat(customers[cust - 1][4])
        order_date = _date(rng, joined, dt.date(2024, 12, 31))
        status = rng.choices(statuses, weights=[70, 10, 8, 12])[0]
        orders.append((order_id, cust, _iso(order_date), status))
        chosen: set[int] = set()
        for _ in range(rng.choices([1, 2, 3, 4], weights=[45, 30, 15, 10])[0]):
            chosen.add(rng.choices(range(1, len(books) + 1), weights=book_weights)[0])
        for book_id in sorted(chosen):
            price = books[book_id - 1][6]
            unit = round(price * 0.9, 2) if rng.random() < 0.2 else price
            items.append((order_id, book_id, rng.choices([1, 2, 3], weights=[75, 18, 7])[0], unit))
    _create(conn, """CREATE TABLE orders (
        order_id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
        order_date TEXT NOT NULL,
        status TEXT NOT NULL
    )""", "orders", orders)
    _create(conn, """CREATE TABLE order_items (
        order_id INTEGER NOT NULL REFERENCES orders(order_id),
        book_id INTEGER NOT NULL REFERENCES books(book_id),
        quantity INTEGER NOT NULL,
        unit_price REAL NOT NULL,
        PRIMARY KEY (order_id, book_id)
    )""", "order_items", items)

    comments = ["Loved it", "Could not put it down", "Too long", "A slow start but worth it", "Disappointing ending",
                "Beautiful prose", "Not my kind of book", "Great gift", "Would read again", "Overrated"]
    reviews, seen = [], set()
    while len(reviews) < 1500:
        book_id = rng.choices(range(1, len(books) + 1), weights=book_weights)[0]
        cust = rng.randint(1, len(customers))
        if (book_id, cust) in seen:
            continue
        seen.add((book_id, cust))
        rating = rng.choices([1, 2, 3, 4, 5], weights=[6, 9, 20, 35, 30])[0]
        comment = None if rng.random() < 0.4 else rng.choice(comments)
        date = _iso(_date(rng, dt.date(2019, 1, 1), dt.date(2024, 12, 31)))
        reviews.append((len(reviews) + 1, book_id, cust, rating, date, comment))
    _create(conn, """CREATE TABLE reviews (
        review_id INTEGER PRIMARY KEY,
        book_id INTEGER NOT NULL REFERENCES books(book_id),
        customer_id INTEGER NOT NULL REFERENCES customers(customer_id),
        rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
        review_date TEXT NOT NULL,
        comment TEXT
    )""", "reviews", reviews)


# --------------------------------------------------------------------------------------------- hospital
def build_hospital(conn: sqlite3.Connection, rng: random.Random) -> None:
    """A hospital: departments, doctors, patients, appointments, admissions, medications, prescriptions."""
    dept_specs = [("Cardiology", 3, ["Cardiologist", "Cardiac Surgeon"]),
                  ("Neurology", 4, ["Neurologist"]),
                  ("Oncology", 5, ["Oncologist", "Radiation Oncologist"]),
                  ("Pediatrics", 2, ["Pediatrician"]),
                  ("Orthopedics", 3, ["Orthopedic Surgeon", "Physiotherapist"]),
                  ("Emergency", 1, ["Emergency Physician"]),
                  ("Dermatology", 2, ["Dermatologist"]),
                  ("Radiology", 1, ["Radiologist"])]
    doctor_names = _unique_names(rng, 48)
    doctors = []
    for i, name in enumerate(doctor_names, 1):
        dept = (i - 1) % len(dept_specs) + 1 if i <= len(dept_specs) else rng.randint(1, len(dept_specs))
        specialty = rng.choice(dept_specs[dept - 1][2])
        hire = _iso(_date(rng, dt.date(1995, 1, 1), dt.date(2024, 6, 30)))
        salary = rng.randrange(90_000, 260_000, 500)
        doctors.append((i, name, specialty, dept, hire, salary))
    heads = {}
    for dept_id in range(1, len(dept_specs) + 1):
        if dept_specs[dept_id - 1][0] == "Radiology":
            heads[dept_id] = None  # the head of radiology has retired and not been replaced
            continue
        members = [d[0] for d in doctors if d[3] == dept_id]
        heads[dept_id] = rng.choice(members)
    departments = [(i, n, floor, heads[i]) for i, (n, floor, _) in enumerate(dept_specs, 1)]
    _create(conn, """CREATE TABLE departments (
        department_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        floor INTEGER NOT NULL,
        head_doctor_id INTEGER REFERENCES doctors(doctor_id)
    )""", "departments", departments)
    _create(conn, """CREATE TABLE doctors (
        doctor_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        specialty TEXT NOT NULL,
        department_id INTEGER NOT NULL REFERENCES departments(department_id),
        hire_date TEXT NOT NULL,
        salary INTEGER NOT NULL
    )""", "doctors", doctors)

    insurers = ["MediCare Plus", "HealthFirst", "SafeLife", "Unity Health"]
    patient_names = _unique_names(rng, 800)
    patients = []
    for i, name in enumerate(patient_names, 1):
        birth = _iso(_date(rng, dt.date(1930, 1, 1), dt.date(2022, 12, 31)))
        insurance = None if rng.random() < 0.2 else rng.choice(insurers)
        patients.append((i, name, birth, rng.choice(["F", "M"]), rng.choice(CITIES), insurance))
    _create(conn, """CREATE TABLE patients (
        patient_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        birth_date TEXT NOT NULL,
        sex TEXT NOT NULL CHECK (sex IN ('F', 'M')),
        city TEXT NOT NULL,
        insurance TEXT
    )""", "patients", patients)

    appointments = []
    doctor_weights = [rng.choice([1, 2, 3, 4]) for _ in doctors]
    for i in range(1, 3001):
        patient = rng.randint(1, len(patients))
        doctor = rng.choices(range(1, len(doctors) + 1), weights=doctor_weights)[0]
        day = _date(rng, dt.date(2022, 1, 1), dt.date(2024, 12, 31))
        when = f"{day.isoformat()} {rng.randint(8, 17):02d}:{rng.choice([0, 15, 30, 45]):02d}"
        status = rng.choices(["completed", "cancelled", "no-show"], weights=[80, 12, 8])[0]
        fee = rng.choice([60, 80, 95, 120, 150, 200])
        appointments.append((i, patient, doctor, when, status, fee))
    _create(conn, """CREATE TABLE appointments (
        appointment_id INTEGER PRIMARY KEY,
        patient_id INTEGER NOT NULL REFERENCES patients(patient_id),
        doctor_id INTEGER NOT NULL REFERENCES doctors(doctor_id),
        appointment_time TEXT NOT NULL,
        status TEXT NOT NULL,
        fee REAL NOT NULL
    )""", "appointments", appointments)

    diagnoses = ["Pneumonia", "Fracture", "Appendicitis", "Heart failure", "Stroke", "Migraine", "Asthma",
                 "Concussion", "Dehydration", "Sepsis", "Kidney stones", "Cellulitis"]
    admissions = []
    for i in range(1, 601):
        patient = rng.randint(1, len(patients))
        dept = rng.randint(1, len(dept_specs))
        admit = _date(rng, dt.date(2022, 1, 1), dt.date(2024, 12, 20))
        discharge = None if rng.random() < 0.08 else _iso(admit + dt.timedelta(days=rng.randint(0, 21)))
        admissions.append((i, patient, dept, _iso(admit), discharge, rng.choice(diagnoses)))
    _create(conn, """CREATE TABLE admissions (
        admission_id INTEGER PRIMARY KEY,
        patient_id INTEGER NOT NULL REFERENCES patients(patient_id),
        department_id INTEGER NOT NULL REFERENCES departments(department_id),
        admit_date TEXT NOT NULL,
        discharge_date TEXT,
        diagnosis TEXT NOT NULL
    )""", "admissions", admissions)

    med_names = ["Amoxicillin", "Ibuprofen", "Paracetamol", "Metformin", "Atorvastatin", "Lisinopril",
                 "Omeprazole", "Amlodipine", "Salbutamol", "Prednisone", "Warfarin", "Insulin glargine",
                 "Levothyroxine", "Sertraline", "Gabapentin", "Ciprofloxacin", "Doxycycline", "Furosemide",
                 "Clopidogrel", "Morphine", "Codeine", "Diazepam", "Loratadine", "Hydrocortisone cream",
                 "Tamoxifen", "Methotrexate", "Azithromycin", "Bisoprolol", "Ramipril", "Heparin"]
    medications = [(i, n, round(rng.uniform(0.05, 12.0), 2)) for i, n in enumerate(med_names, 1)]
    _create(conn, """CREATE TABLE medications (
        medication_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        unit_price REAL NOT NULL
    )""", "medications", medications)

    prescriptions = []
    completed = [a[0] for a in appointments if a[4] == "completed"]
    for i in range(1, 2001):
        appt = rng.choice(completed)
        med = rng.randint(1, len(medications))
        prescriptions.append((i, appt, med, rng.choice([5, 10, 20, 50, 100, 250, 500]), rng.choice([3, 5, 7, 10,
                                                                                                     14, 30])))
    _create(conn, """CREATE TABLE prescriptions (
        prescription_id INTEGER PRIMARY KEY,
        appointment_id INTEGER NOT NULL REFERENCES appointments(appointment_id),
        medication_id INTEGER NOT NULL REFERENCES medications(medication_id),
        dosage_mg INTEGER NOT NULL,
        days INTEGER NOT NULL
    )""", "prescriptions", prescriptions)


# --------------------------------------------------------------------------------------------- flights
def build_flights(conn: sqlite3.Connection, rng: random.Random) -> None:
    """An air-travel network: airports, airlines, aircraft, flights, passengers and bookings."""
    airport_specs = [
        ("LIS", "Humberto Delgado", "Lisbon", "Portugal", 374), ("OPO", "Francisco Sá Carneiro", "Porto",
                                                                  "Portugal", 228),
        ("MAD", "Adolfo Suárez Barajas", "Madrid", "Spain", 1998), ("BCN", "El Prat", "Barcelona", "Spain", 12),
        ("CDG", "Charles de Gaulle", "Paris", "France", 392), ("ORY", "Orly", "Paris", "France", 291),
        ("LYS", "Saint-Exupéry", "Lyon", "France", 821), ("FRA", "Frankfurt", "Frankfurt", "Germany", 364),
        ("MUC", "Franz Josef Strauss", "Munich", "Germany", 1487), ("BER", "Brandenburg", "Berlin", "Germany", 157),
        ("FCO", "Fiumicino", "Rome", "Italy", 13), ("MXP", "Malpensa", "Milan", "Italy", 768),
        ("VIE", "Schwechat", "Vienna", "Austria", 600), ("ZRH", "Kloten", "Zurich", "Switzerland", 1416),
        ("AMS", "Schiphol", "Amsterdam", "Netherlands", -11), ("BRU", "Zaventem", "Brussels", "Belgium", 184),
        ("DUB", "Dublin", "Dublin", "Ireland", 242), ("LHR", "Heathrow", "London", "United Kingdom", 83),
        ("LGW", "Gatwick", "London", "United Kingdom", 202), ("EDI", "Edinburgh", "Edinburgh", "United Kingdom", 135),
        ("CPH", "Kastrup", "Copenhagen", "Denmark", 17), ("OSL", "Gardermoen", "Oslo", "Norway", 681),
        ("ARN", "Arlanda", "Stockholm", "Sweden", 137), ("HEL", "Vantaa", "Helsinki", "Finland", 179),
        ("WAW", "Chopin", "Warsaw", "Poland", 361), ("PRG", "Václav Havel", "Prague", "Czechia", 1247),
        ("ATH", "Eleftherios Venizelos", "Athens", "Greece", 308), ("IST", "Istanbul", "Istanbul", "Turkey", None),
        ("JFK", "John F. Kennedy", "New York", "United States", 13), ("YUL", "Trudeau", "Montreal", "Canada", None),
    ]
    _create(conn, """CREATE TABLE airports (
        airport_code TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        city TEXT NOT NULL,
        country TEXT NOT NULL,
        elevation_ft INTEGER
    )""", "airports", airport_specs)

    airline_specs = [("Atlantic Blue", "AB", "Portugal", 1962), ("Iberwings", "IW", "Spain", 1988),
                     ("Aero Lumière", "AL", "France", 1971), ("Nordflug", "NF", "Germany", 1995),
                     ("Alpine Air", "AA", "Switzerland", None), ("Celtic Skies", "CS", "Ireland", 2004),
                     ("Baltic Jet", "BJ", "Poland", 2010), ("Aegean Star", "AS", "Greece", None),
                     ("Fjord Air", "FA", "Norway", 1999), ("Transocean", "TO", "United States", 1948)]
    airlines = [(i, n, code, c, y) for i, (n, code, c, y) in enumerate(airline_specs, 1)]
    _create(conn, """CREATE TABLE airlines (
        airline_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        iata_code TEXT NOT NULL UNIQUE,
        country TEXT NOT NULL,
        founded_year INTEGER
    )""", "airlines", airlines)

    models = [("A320neo", "Airbus", 180), ("A321neo", "Airbus", 220), ("A350-900", "Airbus", 315),
              ("737-800", "Boeing", 189), ("787-9", "Boeing", 290), ("E195-E2", "Embraer", 136),
              ("ATR 72-600", "ATR", 70)]
    aircraft = []
    regs: set[str] = set()
    for i in range(1, 61):
        airline = (i - 1) % len(airlines) + 1 if i <= len(airlines) else rng.randint(1, len(airlines))
        model, maker, seats = rng.choice(models)
        while True:
            reg = "CS-" + "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3))
            if reg not in regs:
                regs.add(reg)
                break
        in_service = _iso(_date(rng, dt.date(2005, 1, 1), dt.date(2023, 12, 31)))
        aircraft.append((i, reg, model, maker, seats, airline, in_service))
    _create(conn, """CREATE TABLE aircraft (
        aircraft_id INTEGER PRIMARY KEY,
        registration TEXT NOT NULL UNIQUE,
        model TEXT NOT NULL,
        manufacturer TEXT NOT NULL,
        seats INTEGER NOT NULL,
        airline_id INTEGER NOT NULL REFERENCES airlines(airline_id),
        in_service_date TEXT NOT NULL
    )""", "aircraft", aircraft)

    codes = [a[0] for a in airport_specs]
    hub_weights = [6 if c in {"LIS", "MAD", "CDG", "FRA", "LHR", "AMS"} else 2 for c in codes]
    fleet: dict[int, list[int]] = {}
    for a in aircraft:
        fleet.setdefault(a[5], []).append(a[0])
    flights = []
    numbers: set[str] = set()
    for i in range(1, 2501):
        airline = rng.randint(1, len(airlines))
        origin = rng.choices(codes, weights=hub_weights)[0]
        dest = origin
        while dest == origin:
            dest = rng.choices(codes, weights=hub_weights)[0]
        while True:
            number = f"{airline_specs[airline - 1][1]}{rng.randint(100, 9999)}"
            if number not in numbers:
                numbers.add(number)
                break
        day = _date(rng, dt.date(2024, 1, 1), dt.date(2024, 12, 31))
        dep = dt.datetime.combine(day, dt.time(rng.randint(5, 22), rng.choice([0, 10, 20, 30, 40, 50])))
        arr = dep + dt.timedelta(minutes=rng.randint(45, 420))
        status = rng.choices(["on time", "delayed", "cancelled"], weights=[72, 22, 6])[0]
        delay = rng.randint(5, 240) if status == "delayed" else None
        flights.append((i, number, airline, rng.choice(fleet[airline]), origin, dest,
                        dep.strftime("%Y-%m-%d %H:%M"), arr.strftime("%Y-%m-%d %H:%M"), status, delay))
    _create(conn, """CREATE TABLE flights (
        flight_id INTEGER PRIMARY KEY,
        flight_number TEXT NOT NULL UNIQUE,
        airline_id INTEGER NOT NULL REFERENCES airlines(airline_id),
        aircraft_id INTEGER NOT NULL REFERENCES aircraft(aircraft_id),
        origin TEXT NOT NULL REFERENCES airports(airport_code),
        destination TEXT NOT NULL REFERENCES airports(airport_code),
        departure_time TEXT NOT NULL,
        arrival_time TEXT NOT NULL,
        status TEXT NOT NULL,
        delay_minutes INTEGER
    )""", "flights", flights)

    nationalities = ["Portugal", "Spain", "France", "Germany", "Italy", "Ireland", "Norway", "Poland", "Greece",
                     "United States", "Canada", "Brazil", "Japan", "India"]
    passenger_names = _unique_names(rng, 1000)
    passengers = []
    for i, name in enumerate(passenger_names, 1):
        birth = None if rng.random() < 0.1 else _iso(_date(rng, dt.date(1940, 1, 1), dt.date(2010, 12, 31)))
        ff = None if rng.random() < 0.6 else f"FF{100000 + i * 7:06d}"
        passengers.append((i, name, rng.choice(nationalities), birth, ff))
    _create(conn, """CREATE TABLE passengers (
        passenger_id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        nationality TEXT NOT NULL,
        birth_date TEXT,
        frequent_flyer_no TEXT UNIQUE
    )""", "passengers", passengers)

    bookings, seen = [], set()
    base_price = {"economy": 90.0, "business": 420.0, "first": 1100.0}
    while len(bookings) < 6000:
        flight = rng.randint(1, len(flights))
        passenger = rng.randint(1, len(passengers))
        if (flight, passenger) in seen:
            continue
        seen.add((flight, passenger))
        cls = rng.choices(["economy", "business", "first"], weights=[82, 14, 4])[0]
        price = round(base_price[cls] * rng.uniform(0.6, 2.2), 2)
        dep = dt.date.fromisoformat(flights[flight - 1][6][:10])
        booked = _iso(dep - dt.timedelta(days=rng.randint(0, 180)))
        seat = f"{rng.randint(1, 40)}{rng.choice('ABCDEF')}"
        bookings.append((len(bookings) + 1, flight, passenger, seat, cls, price, booked))
    _create(conn, """CREATE TABLE bookings (
        booking_id INTEGER PRIMARY KEY,
        flight_id INTEGER NOT NULL REFERENCES flights(flight_id),
        passenger_id INTEGER NOT NULL REFERENCES passengers(passenger_id),
        seat TEXT NOT NULL,
        travel_class TEXT NOT NULL,
        price REAL NOT NULL,
        booked_date TEXT NOT NULL
    )""", "bookings", bookings)


# Foreign-key columns are indexed, as in a database someone maintains (primary keys are indexed already).
INDEXES = {
    "bookshop": ["books(author_id)", "books(publisher_id)", "orders(customer_id)", "order_items(book_id)",
                 "reviews(book_id)", "reviews(customer_id)"],
    "hospital": ["doctors(department_id)", "appointments(patient_id)", "appointments(doctor_id)",
                 "admissions(patient_id)", "admissions(department_id)", "prescriptions(appointment_id)",
                 "prescriptions(medication_id)"],
    "flights": ["aircraft(airline_id)", "flights(airline_id)", "flights(origin)", "flights(destination)",
                "bookings(flight_id)", "bookings(passenger_id)"],
}

DATABASES: dict[str, Callable[[sqlite3.Connection, random.Random], None]] = {
    "bookshop": build_bookshop,
    "hospital": build_hospital,
    "flights": build_flights,
}


def build_database(db_id: str, out_dir: Path, seed: int = SEED) -> Path:
    """Write ``out_dir/<db_id>/<db_id>.sqlite`` (replacing it atomically) and return its path."""
    target = out_dir / db_id / f"{db_id}.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".sqlite.tmp")
    tmp.unlink(missing_ok=True)
    # One seed per database, derived by name, so adding a database does not change the others.
    rng = random.Random(f"{seed}:{db_id}")
    conn = sqlite3.connect(tmp)
    try:
        # departments and doctors reference each other: check every key once all rows are in.
        with conn:
            DATABASES[db_id](conn, rng)
            for indexed in INDEXES[db_id]:
                table, column = indexed.rstrip(")").split("(")
                conn.execute(f"CREATE INDEX idx_{table}_{column} ON {indexed}")
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise RuntimeError(f"{db_id}: foreign key violations: {problems[:5]}")
        conn.execute("VACUUM")
    finally:
        conn.close()
    os.replace(tmp, target)
    return target


def build_all(out_dir: Path, seed: int = SEED) -> list[Path]:
    """Build every bundled database under ``out_dir``."""
    return [build_database(db_id, out_dir, seed) for db_id in DATABASES]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to write <db_id>/<db_id>.sqlite into (default: beside this script)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    for path in build_all(args.out, args.seed):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if args.out.resolve() == Path(__file__).resolve().parent:
        # The shipped gold results name the databases by digest: rebuilt files need them rebuilt too.
        from execgym.envs.sql.gold import main as build_gold

        build_gold([])


if __name__ == "__main__":
    main()
