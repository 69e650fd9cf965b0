"""Seeded, template-based question / gold-SQL generator over the bundled databases.

Each template draws real values from its database (a genre that has books, an airline that flies from an
airport, a threshold just under an observed count) and renders a question and its gold query. A draw is
kept only if the gold query returns a non-empty, non-trivial result (and, for ``ORDER BY ... LIMIT k``
questions, no tie at the k-th row); otherwise the generator draws again from the same seeded stream, so a
seed always yields the same task.

A template is data: the values it draws (:class:`Draw`, in order) and two format strings over them, the
question and the gold query; one renderer serves every template.
"""

from __future__ import annotations

import calendar
import random
import string
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from execgym.core.tasks import DIFFICULTIES, Task
from execgym.envs.sql.cache import ByteLRU
from execgym.envs.sql.db import SafeDatabase
from execgym.envs.sql.tasks import bundled_db_path, make_task

__all__ = ["TEMPLATES", "Draft", "Draw", "QuestionGenerator", "Template", "Values"]


def lit(value: Any) -> str:
    """A SQL literal for a sampled value."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


@dataclass(frozen=True)
class Draft:
    """A rendered template: the question, its gold query and, for top-k questions, how to check ties.

    Example:
        >>> Draft("How many books?", "SELECT COUNT(*) FROM books").top_k is None
        True
    """

    question: str
    query: str
    top_k: int | None = None  # the query ends with "LIMIT {top_k}"
    key_index: int = -1  # the result column that orders it


def _column_cost(sql: Hashable, values: list[Any]) -> int:
    return sys.getsizeof(sql) + sys.getsizeof(values) + sum(sys.getsizeof(v) for v in values) + 200


class Values:
    """Cached value lists drawn from one database, for templates to sample from.

    Example:
        >>> values = Values(SafeDatabase(bundled_db_path("bookshop")))
        >>> values.pick(random.Random(0), "SELECT DISTINCT genre FROM books ORDER BY genre") in values.column(
        ...     "SELECT DISTINCT genre FROM books ORDER BY genre")
        True
        >>> values.db.close()
    """

    def __init__(self, db: SafeDatabase, cache_bytes: int = 16_000_000) -> None:
        self.db = db
        self._cache: ByteLRU[list[Any]] = ByteLRU(cache_bytes, _column_cost)

    def column(self, sql: str) -> list[Any]:
        """First column of ``sql``'s rows (cached; the query must order its rows so sampling is stable)."""
        values = self._cache.get(sql)
        if values is None:
            values = [r[0] for r in self.db.execute(sql, keep_rows=100_000).rows]
            self._cache.put(sql, values)
        return values

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, keep_rows=100_000).rows

    def pick(self, rng: random.Random, sql: str) -> Any:
        values = self.column(sql)
        if not values:
            raise LookupError(f"no values for {sql}")
        return rng.choice(values)


class _Quoting(string.Formatter):
    """``str.format`` with one more conversion, ``{name!q}``: the value as a SQL literal."""

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        return lit(value) if conversion == "q" else super().convert_field(value, conversion)


_FORMAT = _Quoting()


@dataclass(frozen=True)
class Draw:
    """How a template draws one or more named values from its database (or from constants), in order.

    ``kind`` is one of: ``"pick"`` (a value of ``sql``'s first column), ``"row"`` (a row of ``sql``, its
    columns into ``names``), ``"sample"`` (``len(names)`` distinct values of ``sql``'s first column),
    ``"choice"`` (one of ``options``), ``"randint"`` (an integer in ``options[0]..options[1]``) or
    ``"derived"`` (``then`` of the values drawn so far). ``sql`` may use earlier values (``{genre!q}``);
    ``then`` turns a drawn value into the one kept (``int``).

    Example:
        >>> Draw(("k",), "choice", options=(3, 5)).draw(random.Random(0), None, {})  # type: ignore[arg-type]
        {'k': 5}
    """

    names: tuple[str, ...]
    kind: str
    sql: str = ""
    options: tuple[Any, ...] = ()
    then: Callable[[Any], Any] | None = None

    def draw(self, rng: random.Random, values: Values, drawn: Mapping[str, Any]) -> dict[str, Any]:
        """The named values of this draw (``values``: the template's database; unused by constants)."""
        sql = _FORMAT.format(self.sql, **drawn)
        if self.kind == "pick":
            got: Sequence[Any] = (values.pick(rng, sql),)
        elif self.kind == "row":
            got = rng.choice(values.rows(sql))
        elif self.kind == "sample":
            got = rng.sample(values.column(sql), len(self.names))
        elif self.kind == "choice":
            got = (rng.choice(self.options),)
        elif self.kind == "randint":
            got = (rng.randint(*self.options),)
        elif self.kind == "derived":
            got = (drawn,)
        else:
            raise ValueError(f"unknown draw kind {self.kind!r}")
        if self.then is not None:
            got = tuple(self.then(value) for value in got)
        return dict(zip(self.names, got, strict=True))


def pick(name: str, sql: str, then: Callable[[Any], Any] | None = None) -> Draw:
    """A value of ``sql``'s first column (the query must order its rows so the draw is stable)."""
    return Draw((name,), "pick", sql, then=then)


def row(*names_and_sql: str) -> Draw:
    """A row of the query (the last argument), its columns into the names before it."""
    return Draw(tuple(names_and_sql[:-1]), "row", names_and_sql[-1])


def sample(*names_and_sql: str) -> Draw:
    """Distinct values of the query's first column (the last argument), one per name before it."""
    return Draw(tuple(names_and_sql[:-1]), "sample", names_and_sql[-1])


def choice(name: str, *options: Any) -> Draw:
    return Draw((name,), "choice", options=options)


def randint(name: str, low: int, high: int) -> Draw:
    return Draw((name,), "randint", options=(low, high))


def derived(name: str, fn: Callable[[Mapping[str, Any]], Any]) -> Draw:
    """A value computed from the values drawn before it (text that depends on them)."""
    return Draw((name,), "derived", then=fn)


@dataclass(frozen=True)
class Template:
    """One question pattern over one database: what it draws, then its question and gold query as format
    strings over the drawn values (``{name}`` as is, ``{name!q}`` as a SQL literal).

    ``top_k`` names the drawn value ``k`` of a query that ends with ``LIMIT {k}``, ``key_index`` the result
    column that orders it.

    Example:
        >>> t = next(t for t in TEMPLATES if t.name == "author_titles")
        >>> t.db_id, t.difficulty
        ('bookshop', 'medium')
    """

    name: str
    db_id: str
    difficulty: str
    draws: tuple[Draw, ...]
    question: str
    query: str
    top_k: str | None = None
    key_index: int = -1

    def render(self, rng: random.Random, values: Values) -> Draft:
        """Draw the values (in order, from ``rng``) and render the question and the gold query."""
        drawn: dict[str, Any] = {}
        for draw in self.draws:
            drawn.update(draw.draw(rng, values, drawn))
        return Draft(_FORMAT.format(self.question, **drawn), _FORMAT.format(self.query, **drawn),
                     top_k=drawn[self.top_k] if self.top_k else None, key_index=self.key_index)


MONTHS = list(calendar.month_name)
_GENRE = pick("genre", "SELECT DISTINCT genre FROM books ORDER BY genre")
_DEPT = pick("dept", "SELECT name FROM departments ORDER BY name")
_CITY = pick("city", "SELECT DISTINCT city FROM customers ORDER BY city")
_PATIENT_CITY = pick("city", "SELECT DISTINCT city FROM patients ORDER BY city")
_AIRPORT = pick("code", "SELECT airport_code FROM airports ORDER BY airport_code")
_NATIONALITY = pick("nationality", "SELECT DISTINCT nationality FROM passengers ORDER BY 1")
_MONTH = (randint("month", 1, 12), derived("month_name", lambda d: MONTHS[d["month"]]))


def _less_one(count: int) -> int:
    return max(1, count - 1)


TEMPLATES: tuple[Template, ...] = (
    # ----------------------------------------------------------------------------------- bookshop
    Template("count_genre_price", "bookshop", "easy",
             (_GENRE, pick("price", "SELECT price FROM books WHERE genre = {genre!q} ORDER BY price", int)),
             "How many {genre} books cost more than {price}?",
             "SELECT COUNT(*) FROM books WHERE genre = {genre!q} AND price > {price}"),
    Template("titles_genre_year", "bookshop", "easy",
             (_GENRE, pick("year", "SELECT DISTINCT substr(published_date, 1, 4) FROM books WHERE genre = {genre!q} "
                                   "ORDER BY 1")),
             "List the titles of the {genre} books published in {year}.",
             "SELECT title FROM books WHERE genre = {genre!q} AND strftime('%Y', published_date) = {year!q}"),
    Template("author_titles", "bookshop", "medium",
             (pick("author", "SELECT DISTINCT a.name FROM authors AS a JOIN books AS b ON b.author_id = a.author_id "
                             "ORDER BY a.name"),),
             "List the titles of the books written by {author}, in alphabetical order.",
             "SELECT b.title FROM books AS b JOIN authors AS a ON a.author_id = b.author_id "
             "WHERE a.name = {author!q} ORDER BY b.title"),
    Template("copies_by_genre", "bookshop", "medium",
             (_CITY, pick("year", "SELECT DISTINCT substr(order_date, 1, 4) FROM orders ORDER BY 1")),
             "How many copies of books of each genre did customers from {city} order in {year}? "
             "Give the genre and the number of copies.",
             "SELECT b.genre, SUM(oi.quantity) FROM order_items AS oi JOIN orders AS o ON o.order_id = oi.order_id "
             "JOIN customers AS c ON c.customer_id = o.customer_id JOIN books AS b ON b.book_id = oi.book_id "
             "WHERE c.city = {city!q} AND strftime('%Y', o.order_date) = {year!q} GROUP BY b.genre"),
    Template("top_sellers", "bookshop", "medium", (_GENRE, choice("k", 3, 5)),
             "Which {k} {genre} books sold the most copies in orders that were not cancelled? "
             "Give the title and the number of copies, best-selling first.",
             "SELECT b.title, SUM(oi.quantity) AS copies FROM order_items AS oi "
             "JOIN orders AS o ON o.order_id = oi.order_id "
             "JOIN books AS b ON b.book_id = oi.book_id WHERE o.status <> 'cancelled' AND b.genre = {genre!q} "
             "GROUP BY b.book_id ORDER BY copies DESC LIMIT {k}", top_k="k", key_index=1),
    Template("frequent_customers", "bookshop", "hard",
             (_CITY, pick("n", "SELECT COUNT(*) FROM orders AS o JOIN customers AS c ON c.customer_id = o.customer_id "
                               "WHERE c.city = {city!q} GROUP BY c.customer_id ORDER BY 1", _less_one)),
             "Which customers from {city} have placed more than {n} orders? Give the name and the number of orders.",
             "SELECT c.name, COUNT(*) FROM customers AS c JOIN orders AS o ON o.customer_id = c.customer_id "
             "WHERE c.city = {city!q} GROUP BY c.customer_id HAVING COUNT(*) > {n}"),
    Template("genre_except", "bookshop", "hard",
             (sample("first", "second", "SELECT DISTINCT genre FROM books ORDER BY genre"),),
             "Which authors have written {first} books but no {second} books? List their names.",
             "SELECT a.name FROM authors AS a JOIN books AS b ON b.author_id = a.author_id WHERE b.genre = "
             "{first!q} EXCEPT "
             "SELECT a.name FROM authors AS a JOIN books AS b ON b.author_id = a.author_id WHERE b.genre = "
             "{second!q}"),
    Template("above_genre_average", "bookshop", "hard",
             (_GENRE, pick("publisher", "SELECT name FROM publishers ORDER BY name")),
             "List the titles of the books published by {publisher} that cost more than the average price of "
             "{genre} books.",
             "SELECT b.title FROM books AS b JOIN publishers AS p ON p.publisher_id = b.publisher_id "
             "WHERE p.name = {publisher!q} AND b.price > (SELECT AVG(price) FROM books WHERE genre = {genre!q})"),
    # ----------------------------------------------------------------------------------- hospital
    Template("patients_city_born", "hospital", "easy",
             (_PATIENT_CITY,
              pick("year", "SELECT substr(birth_date, 1, 4) FROM patients WHERE city = {city!q} ORDER BY 1", int)),
             "How many patients from {city} were born before {year}?",
             "SELECT COUNT(*) FROM patients WHERE city = {city!q} AND birth_date < '{year}-01-01'"),
    Template("doctors_specialty_hired", "hospital", "easy",
             (pick("specialty", "SELECT DISTINCT specialty FROM doctors ORDER BY specialty"),
              pick("year", "SELECT substr(hire_date, 1, 4) FROM doctors WHERE specialty = {specialty!q} ORDER BY 1",
                   int)),
             "List the names of the doctors with the specialty {specialty} hired in {year} or later.",
             "SELECT name FROM doctors WHERE specialty = {specialty!q} AND hire_date >= '{year}-01-01'"),
    Template("completed_per_doctor", "hospital", "medium", (_DEPT, choice("year", "2022", "2023", "2024")),
             "How many completed appointments did each doctor of the {dept} department have in {year}? "
             "Give the doctor's name and the count.",
             "SELECT d.name, COUNT(*) FROM appointments AS a JOIN doctors AS d ON d.doctor_id = a.doctor_id "
             "JOIN departments AS dep ON dep.department_id = d.department_id "
             "WHERE dep.name = {dept!q} AND a.status = 'completed' AND a.appointment_time LIKE '{year}-%' "
             "GROUP BY d.doctor_id"),
    Template("admitted_with", "hospital", "medium",
             (row("dept", "diagnosis",
                  "SELECT DISTINCT dep.name, a.diagnosis FROM admissions AS a "
                  "JOIN departments AS dep ON dep.department_id = a.department_id ORDER BY 1, 2"),),
             "List the names of the patients admitted to the {dept} department with the diagnosis {diagnosis}.",
             "SELECT p.name FROM admissions AS a JOIN patients AS p ON p.patient_id = a.patient_id "
             "JOIN departments AS dep ON dep.department_id = a.department_id "
             "WHERE dep.name = {dept!q} AND a.diagnosis = {diagnosis!q}"),
    Template("top_medications", "hospital", "medium", (_DEPT, choice("k", 2, 3)),
             "Which {k} medications were prescribed most often by doctors of the {dept} department? "
             "Give the name and the number of prescriptions, most first.",
             "SELECT m.name, COUNT(*) AS n FROM prescriptions AS pr JOIN appointments AS a "
             "ON a.appointment_id = pr.appointment_id JOIN doctors AS d ON d.doctor_id = a.doctor_id "
             "JOIN departments AS dep ON dep.department_id = d.department_id "
             "JOIN medications AS m ON m.medication_id = pr.medication_id "
             "WHERE dep.name = {dept!q} GROUP BY m.medication_id ORDER BY n DESC LIMIT {k}", top_k="k", key_index=1),
    Template("readmitted_city", "hospital", "hard", (_PATIENT_CITY,),
             "Which patients from {city} have been admitted more than once? Give the name and the number of "
             "admissions.",
             "SELECT p.name, COUNT(*) FROM patients AS p JOIN admissions AS a ON a.patient_id = p.patient_id "
             "WHERE p.city = {city!q} GROUP BY p.patient_id HAVING COUNT(*) > 1"),
    Template("salary_above", "hospital", "hard", (_DEPT, randint("year", 2000, 2020)),
             "Which doctors of the {dept} department earn more than the average salary of the doctors hired before "
             "{year}? List their names.",
             "SELECT d.name FROM doctors AS d JOIN departments AS dep ON dep.department_id = d.department_id "
             "WHERE dep.name = {dept!q} AND d.salary > (SELECT AVG(salary) FROM doctors "
             "WHERE hire_date < '{year}-01-01')"),
    Template("seen_not_admitted", "hospital", "hard", (pick("doctor", "SELECT name FROM doctors ORDER BY name"),),
             "Which patients had an appointment with {doctor} but have never been admitted? List their names.",
             "SELECT p.name FROM patients AS p JOIN appointments AS a ON a.patient_id = p.patient_id "
             "JOIN doctors AS d ON d.doctor_id = a.doctor_id WHERE d.name = {doctor!q} "
             "EXCEPT SELECT p.name FROM patients AS p JOIN admissions AS ad ON ad.patient_id = p.patient_id"),
    # ----------------------------------------------------------------------------------- flights
    Template("departures_month", "flights", "easy", (_AIRPORT, *_MONTH),
             "How many flights departed from {code} in {month_name} 2024?",
             "SELECT COUNT(*) FROM flights WHERE origin = {code!q} "
             "AND strftime('%Y-%m', departure_time) = '2024-{month:02d}'"),
    Template("route_flights", "flights", "easy",
             (row("origin", "dest", "SELECT DISTINCT origin, destination FROM flights ORDER BY 1, 2"),),
             "List the flight numbers of the flights from {origin} to {dest}.",
             "SELECT flight_number FROM flights WHERE origin = {origin!q} AND destination = {dest!q}"),
    Template("classes_airline_origin", "flights", "medium",
             (row("airline", "code", "SELECT DISTINCT a.name, f.origin FROM flights AS f JOIN airlines AS a "
                                     "ON a.airline_id = f.airline_id ORDER BY 1, 2"),),
             "How many bookings of each travel class were made on {airline} flights departing from {code}?",
             "SELECT b.travel_class, COUNT(*) FROM bookings AS b JOIN flights AS f ON f.flight_id = b.flight_id "
             "JOIN airlines AS a ON a.airline_id = f.airline_id WHERE a.name = {airline!q} AND f.origin = {code!q} "
             "GROUP BY b.travel_class"),
    Template("top_destinations", "flights", "medium",
             (_AIRPORT, choice("k", 1, 2, 3),
              derived("which", lambda d: f"Which {d['k']} destination airports" if d["k"] > 1
                      else "Which destination airport"),
              derived("order", lambda d: ", most first." if d["k"] > 1 else ".")),
             "{which} received the most flights from {code}? Give the airport code and the number of flights{order}",
             "SELECT destination, COUNT(*) AS n FROM flights WHERE origin = {code!q} GROUP BY destination "
             "ORDER BY n DESC LIMIT {k}", top_k="k", key_index=1),
    Template("nationals_from", "flights", "medium", (_NATIONALITY, _AIRPORT),
             "List the names of the passengers of nationality {nationality} who booked a flight departing from "
             "{code}.",
             "SELECT DISTINCT p.name FROM passengers AS p JOIN bookings AS b ON b.passenger_id = p.passenger_id "
             "JOIN flights AS f ON f.flight_id = b.flight_id WHERE p.nationality = {nationality!q} "
             "AND f.origin = {code!q}"),
    Template("frequent_passengers", "flights", "hard",
             (_NATIONALITY,
              pick("n", "SELECT COUNT(*) FROM bookings AS b JOIN passengers AS p ON p.passenger_id = b.passenger_id "
                        "WHERE p.nationality = {nationality!q} GROUP BY p.passenger_id ORDER BY 1", _less_one)),
             "Which passengers of nationality {nationality} have booked more than {n} flights? "
             "Give the name and the number of bookings.",
             "SELECT p.name, COUNT(*) FROM passengers AS p JOIN bookings AS b ON b.passenger_id = p.passenger_id "
             "WHERE p.nationality = {nationality!q} GROUP BY p.passenger_id HAVING COUNT(*) > {n}"),
    Template("airlines_except", "flights", "hard",
             (sample("origin", "dest", "SELECT airport_code FROM airports ORDER BY airport_code"), *_MONTH),
             "Which airlines had flights departing from {origin} in {month_name} 2024 but no flights arriving at "
             "{dest} in that month? List their names.",
             "SELECT a.name FROM airlines AS a JOIN flights AS f ON f.airline_id = a.airline_id "
             "WHERE f.origin = {origin!q} AND strftime('%Y-%m', f.departure_time) = '2024-{month:02d}' "
             "EXCEPT SELECT a.name FROM airlines AS a JOIN flights AS f "
             "ON f.airline_id = a.airline_id WHERE f.destination = {dest!q} "
             "AND strftime('%Y-%m', f.departure_time) = '2024-{month:02d}'"),
    Template("revenue_above", "flights", "hard",
             (_AIRPORT, pick("airline", "SELECT name FROM airlines ORDER BY name")),
             "Which flights departing from {code} earned more booking revenue than the average revenue per booked "
             "{airline} flight? Give the flight number and its revenue.",
             "SELECT f.flight_number, SUM(b.price) AS revenue FROM flights AS f JOIN bookings AS b "
             "ON b.flight_id = f.flight_id WHERE f.origin = {code!q} GROUP BY f.flight_id "
             "HAVING revenue > (SELECT AVG(t) FROM (SELECT SUM(b2.price) AS t FROM bookings AS b2 "
             "JOIN flights AS f2 ON f2.flight_id = b2.flight_id JOIN airlines AS a ON a.airline_id = f2.airline_id "
             "WHERE a.name = {airline!q} GROUP BY f2.flight_id))"),
)


class QuestionGenerator:
    """``generator(seed, difficulty) -> Task``: unlimited template questions over the bundled databases.

    Args:
        templates: the templates to draw from (default: all of :data:`TEMPLATES`).
        max_attempts: draws per task before giving up (a draw is redrawn when its answer is empty or tied).

    Example:
        >>> gen = QuestionGenerator()
        >>> task = gen(7, "hard")
        >>> task.difficulty, task.oracle[0]["name"], gen(7, "hard").prompt == task.prompt
        ('hard', 'submit_sql', True)
        >>> gen.close()
    """

    def __init__(self, templates: tuple[Template, ...] = TEMPLATES, *, max_attempts: int = 200) -> None:
        self.templates = templates
        self.max_attempts = max_attempts
        self._values: dict[str, Values] = {}

    def _db(self, db_id: str) -> Values:
        if db_id not in self._values:
            self._values[db_id] = Values(SafeDatabase(bundled_db_path(db_id), timeout_s=10.0))
        return self._values[db_id]

    def accepts(self, draft: Draft, values: Values) -> bool:
        """Whether the gold query's answer is non-empty, non-trivial and (top-k) free of ties."""
        probe = draft.query
        if draft.top_k is not None:
            probe = draft.query.rsplit(" LIMIT ", 1)[0] + f" LIMIT {draft.top_k + 1}"
        rows = values.db.execute(probe, keep_rows=10_000).rows
        if not rows:
            return False
        if len(rows) == 1 and len(rows[0]) == 1 and rows[0][0] in (0, None):
            return False
        if draft.top_k is not None:
            # Row order is graded, so no two of the first k + 1 rows may tie on the ordering column.
            keys = [r[draft.key_index] for r in rows]
            return len(set(keys)) == len(keys)
        return True

    def __call__(self, seed: int, difficulty: str | None = None) -> Task:
        rng = random.Random(f"execgym-sql:{int(seed)}:{difficulty}")
        if difficulty is None:
            difficulty = rng.choice(DIFFICULTIES)
        pool = [t for t in self.templates if t.difficulty == difficulty]
        if not pool:
            raise ValueError(f"no templates for difficulty {difficulty!r} (use one of {DIFFICULTIES})")
        for _ in range(self.max_attempts):
            template = rng.choice(pool)
            values = self._db(template.db_id)
            try:
                draft = template.render(rng, values)
            except LookupError:
                continue
            if self.accepts(draft, values):
                return make_task(
                    f"gen-{difficulty}-{seed}",
                    db_id=template.db_id,
                    db_paths=[bundled_db_path(template.db_id)],
                    question=draft.question,
                    gold=draft.query,
                    difficulty=difficulty,
                    split="generated",
                    source="generated",
                    extra={"template": template.name},
                )
        raise RuntimeError(f"no acceptable question after {self.max_attempts} draws (seed {seed}, {difficulty})")

    def close(self) -> None:
        for values in self._values.values():
            values.db.close()
        self._values.clear()
