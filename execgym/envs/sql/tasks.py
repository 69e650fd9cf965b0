"""Text-to-SQL tasks: the bundled question set, and loaders for Spider, BIRD and JSONL files.

A task's ``data`` holds what the env and its grader need::

    {"db_id": "bookshop", "db_paths": ["/.../bookshop.sqlite", ...], "gold": "SELECT ...",
     "question": "...", "evidence": "..." | None}

``db_paths`` lists every variant of the database (Spider test-suite convention: all ``.sqlite`` files in the
db folder); the agent explores the first, the grader compares on all of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from execgym.core.tasks import Task, read_json_or_jsonl
from execgym.envs.sql.db import DatabaseFault, DatabasePool

__all__ = [
    "ASSETS_DIR",
    "BIRD_DIFFICULTY",
    "MAX_GOLD_CHARS",
    "DatasetRowError",
    "bundled_db_path",
    "bundled_tasks",
    "db_variants",
    "estimate_difficulty",
    "load_bird",
    "load_jsonl",
    "load_spider",
    "make_task",
    "stable_split",
    "task_statement",
]

ASSETS_DIR = Path(__file__).resolve().parent.parent.parent / "assets" / "sql"
"""Where the bundled databases (``<db_id>/<db_id>.sqlite``) and ``questions.json`` live."""

BIRD_DIFFICULTY = {"simple": "easy", "moderate": "medium", "challenging": "hard"}
_TEST_SHARE = 77  # of 256: about 30% of the bundled tasks are in the test split


def task_statement(db_id: str, question: str, evidence: str | None = None) -> str:
    """The first observation of an episode: the database, the question and (BIRD) the evidence.

    Example:
        >>> print(task_statement("shop", "How many books?", "book = a row of books"))
        Database: shop (SQLite)
        Question: How many books?
        Evidence: book = a row of books
        Explore the database with list_tables, describe_table and execute_sql.
        Then call submit_sql with one SQLite query whose result answers the question; this ends the episode.
    """
    lines = [f"Database: {db_id} (SQLite)", f"Question: {question.strip()}"]
    if evidence and evidence.strip():
        lines.append(f"Evidence: {evidence.strip()}")
    lines.append(
        "Explore the database with list_tables, describe_table and execute_sql.\n"
        "Then call submit_sql with one SQLite query whose result answers the question; this ends the episode."
    )
    return "\n".join(lines)


def make_task(
    task_id: str,
    *,
    db_id: str,
    db_paths: Sequence[str | Path],
    question: str,
    gold: str,
    evidence: str | None = None,
    difficulty: str = "easy",
    split: str = "test",
    source: str = "bundled",
    extra: Mapping[str, Any] | None = None,
) -> Task:
    """A Text-to-SQL task whose oracle submits the gold query.

    Example:
        >>> t = make_task("t1", db_id="shop", db_paths=["shop.sqlite"], question="How many?", gold="SELECT 1")
        >>> t.oracle
        ({'name': 'submit_sql', 'arguments': {'query': 'SELECT 1'}},)
    """
    data: dict[str, Any] = {
        "db_id": db_id,
        "db_paths": [str(Path(p).resolve()) for p in db_paths],
        "question": question,
        "gold": gold,
        "evidence": evidence or None,
    }
    if extra:
        data.update(extra)
    return Task(
        id=task_id,
        prompt=task_statement(db_id, question, evidence),
        data=data,
        oracle=({"name": "submit_sql", "arguments": {"query": gold}},),
        difficulty=difficulty,
        split=split,
        source=source,
    )


def stable_split(task_id: str) -> str:
    """``"test"`` for about 30% of ids, ``"train"`` for the rest; the same on every machine.

    Example:
        >>> stable_split("bookshop-001") in {"train", "test"}
        True
    """
    return "test" if hashlib.sha256(task_id.encode("utf-8")).digest()[0] < _TEST_SHARE else "train"


def bundled_db_path(db_id: str) -> Path:
    """Path of a bundled database (``bookshop``, ``hospital`` or ``flights``)."""
    path = ASSETS_DIR / db_id / f"{db_id}.sqlite"
    if not path.is_file():
        raise FileNotFoundError(f"no bundled database {db_id!r} (looked for {path})")
    return path


@lru_cache(maxsize=1)
def _bundled() -> tuple[Task, ...]:
    entries = read_json_or_jsonl(ASSETS_DIR / "questions.json")
    tasks = []
    for i, entry in enumerate(entries):
        where = f"questions.json: entry {i}"
        _require(entry, ("id", "db_id", "question", "query", "difficulty"), where)
        tasks.append(
            make_task(
                str(entry["id"]),
                db_id=entry["db_id"],
                db_paths=[bundled_db_path(entry["db_id"])],
                question=entry["question"],
                gold=entry["query"],
                evidence=entry.get("evidence"),
                difficulty=entry["difficulty"],
                split=stable_split(str(entry["id"])),
            )
        )
    return tuple(tasks)


def bundled_tasks() -> list[Task]:
    """The bundled question / gold-SQL pairs over the bundled databases (split into train / test by id hash)."""
    return list(_bundled())


# ------------------------------------------------------------------------------------------- loaders
class DatasetRowError(ValueError):
    """A malformed row of a dataset file; the message names the file and the row in one line."""


class _MissingDatabase(DatasetRowError, FileNotFoundError):
    """A row names a database that is not there."""


class _Rows:
    """The rows of one dataset file, with the policy for bad ones: raise on the first (default), or skip and count.

    A row's problem is raised (or recorded) as one line, ``<file>: <row>: <problem>``.
    """

    def __init__(self, file: Path, *, skip: bool, skipped: list[str] | None) -> None:
        self.file = file
        self.skip = skip
        self.skipped = skipped if skipped is not None else []
        self.problems: list[str] = []
        self.total = 0

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        for where, entry in _read_rows(self.file):
            self.total += 1
            if isinstance(entry, DatasetRowError):
                self.reject(entry)
                continue
            yield where, entry

    def reject(self, error: DatasetRowError) -> None:
        if not self.skip:
            raise error
        self.problems.append(str(error))

    def finish(self) -> None:
        """Warn once with the count of skipped rows (skip mode)."""
        if self.problems:
            self.skipped.extend(self.problems)
            warnings.warn(f"{self.file}: skipped {len(self.problems)} of {self.total} rows with problems "
                          f"(first: {self.problems[0]})", stacklevel=4)


def _read_rows(file: Path) -> Iterator[tuple[str, Any]]:
    """``(where, entry)`` for every row of a JSON list or JSONL file; a JSONL line that is not JSON comes as a
    :class:`DatasetRowError` in place of its entry, so it can be skipped like any other bad row."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"{file}: cannot be read: {exc.strerror or exc}") from None
    if file.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{file}: line {lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                yield where, DatasetRowError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})")
            except RecursionError:
                yield where, DatasetRowError(f"{where}: the JSON is nested too deeply")
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not valid JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:
        raise ValueError(f"{file}: the JSON is nested too deeply") from None
    if not isinstance(data, list):
        raise ValueError(f"{file}: expected a JSON list of objects, got {type(data).__name__}")
    for i, entry in enumerate(data):
        yield f"{file}: entry {i}", entry


def _require(entry: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(entry, Mapping):
        raise DatasetRowError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    for key in keys:
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            got = "missing" if key not in entry else f"{type(value).__name__} {_short(value)}"
            raise DatasetRowError(f"{where}: field {key!r} must be a non-empty string ({got}); needs {list(keys)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _check_fields(entry: Mapping[str, Any], where: str, *, optional_text: Sequence[str], id_key: str) -> None:
    """Types of the optional fields, and text that is valid Unicode (no lone surrogate, no NUL)."""
    for key in optional_text:
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            raise DatasetRowError(f"{where}: field {key!r} must be a string or null, got {type(value).__name__} "
                                  f"{_short(value)}")
    ident = entry.get(id_key)
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, (str, int))):
        raise DatasetRowError(f"{where}: field {id_key!r} must be a string or an integer, got "
                              f"{type(ident).__name__} {_short(ident)}")
    for key, value in entry.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise DatasetRowError(f"{where}: field {key!r} is not valid Unicode (a lone surrogate at "
                                      f"character {exc.start})") from None
            if "\x00" in value:
                raise DatasetRowError(f"{where}: field {key!r} holds a NUL character")
    if len(entry.get("query") or entry.get("SQL") or "") > MAX_GOLD_CHARS:
        raise DatasetRowError(f"{where}: the gold query is longer than {MAX_GOLD_CHARS:,} characters")


MAX_GOLD_CHARS = 100_000
"""The longest gold query a dataset row may hold."""


def _task_id(entry: Mapping[str, Any], key: str, fallback: str, seen: dict[str, str], where: str) -> str:
    value = entry.get(key)
    task_id = str(value) if value not in (None, "") else fallback
    if task_id in seen:
        raise DatasetRowError(f"{where}: duplicate id {task_id!r} (first at {seen[task_id].rsplit(': ', 1)[-1]})")
    seen[task_id] = where
    return task_id


def _confined(path: Path, roots: Sequence[Path] | None, where: str, what: str) -> Path:
    """``path`` resolved (symlinks followed); it must lie inside one of ``roots`` (None: anywhere)."""
    resolved = path.resolve()
    if roots is not None and not any(resolved.is_relative_to(root) for root in roots):
        raise DatasetRowError(
            f"{where}: {what} {str(path)!r} resolves outside the dataset folder {str(roots[0])!r} "
            "(allow_paths_outside_dataset=[folder, ...] allows other folders)"
        )
    if roots is not None:
        try:
            links = os.stat(resolved).st_nlink if resolved.is_file() else 1
        except OSError:
            links = 1
        if links > 1:
            raise DatasetRowError(
                f"{where}: {what} {str(path)!r} has {links} hard links, so it may be a file outside the dataset "
                "folder that no path check can see (allow_paths_outside_dataset=True allows it)"
            )
    return resolved


def _roots(dataset_root: Path, allowed_dirs: Sequence[str | Path] | None) -> list[Path] | None:
    if allowed_dirs is None:
        return None
    return [dataset_root.resolve(), *(Path(d).expanduser().resolve() for d in allowed_dirs)]


class _GoldChecker:
    """Compiles every gold query on its database at load time (nothing is run), on a bounded pool of connections
    (a dataset may name thousands of databases)."""

    def __init__(self) -> None:
        self._dbs = DatabasePool(max_open=16, timeout_s=10.0, allow_unbounded_functions=True)

    def check(self, path: Path, gold: str, where: str) -> None:
        try:
            error = self._dbs.get(path).compile_error(gold)
        except DatabaseFault as exc:
            raise DatasetRowError(f"{where}: {exc}") from None
        if error is not None:
            raise DatasetRowError(f"{where}: the gold query does not compile on {path.name}: {error}")

    def close(self) -> None:
        self._dbs.close()


def db_variants(folder: Path, db_id: str | None = None) -> list[Path]:
    """Every ``.sqlite`` file in ``folder``, ``<db_id>.sqlite`` first, the rest in name order.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp())
        >>> for name in ["b.sqlite", "shop.sqlite", "a.sqlite"]: _ = (d / name).write_bytes(b"")
        >>> [p.name for p in db_variants(d, "shop")]
        ['shop.sqlite', 'a.sqlite', 'b.sqlite']
    """
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix == ".sqlite" and p.is_file())
    files.sort(key=lambda p: (p.stem != db_id, p.name))
    return files


def _db_folder(root: Path, db_id: str, where: str) -> Path:
    if "/" in db_id or "\\" in db_id or db_id.strip() in {".", ".."} or db_id != db_id.strip():
        raise DatasetRowError(f"{where}: db_id {db_id!r} is not a plain name")
    return root / db_id


def _plain_split(split: str) -> str:
    if not split or "/" in split or "\\" in split or split in {".", ".."} or "\x00" in split:
        raise ValueError(f"split {split!r} is not a plain name (it names <split>.json in the dataset folder)")
    return split


def _split_file(root: Path, split: str, fallbacks: Sequence[str] = ()) -> Path:
    _plain_split(split)
    for name in (f"{split}.json", f"{split}.jsonl", *fallbacks):
        if (root / name).is_file():
            return root / name
    found = sorted(p.name for p in root.glob("*.json*")) if root.is_dir() else []
    raise FileNotFoundError(f"no {split}.json in {root} (split {split!r}); JSON files there: {found or 'none'}")


_NESTED = re.compile(r"\(\s*select\b", re.IGNORECASE)
_SET_OPS = re.compile(r"\b(union|intersect|except)\b", re.IGNORECASE)
_JOIN = re.compile(r"\bjoin\b", re.IGNORECASE)


def estimate_difficulty(sql: str) -> str:
    """A quick easy / medium / hard label from the query's shape (joins, nesting, grouping, set operations).

    Example:
        >>> estimate_difficulty("SELECT name FROM t"), estimate_difficulty(
        ...     "SELECT a, COUNT(*) FROM t JOIN u ON t.x = u.x GROUP BY a")
        ('easy', 'medium')
    """
    low = sql.lower()
    score = len(_JOIN.findall(sql)) + 2 * len(_NESTED.findall(sql)) + 2 * len(_SET_OPS.findall(sql))
    score += int("group by" in low) + int("having" in low) + int("order by" in low and "limit" in low)
    return "easy" if score <= 1 else "medium" if score <= 3 else "hard"


@dataclass(frozen=True)
class _Format:
    """What a dataset format's rows hold: the required text fields, the optional ones, and which keys name the
    row's id and its gold query."""

    required: tuple[str, ...]
    optional_text: tuple[str, ...]
    id_key: str
    gold_key: str


_SPIDER = _Format(("db_id", "question", "query"), ("evidence", "difficulty"), "id", "query")
_BIRD = _Format(("db_id", "question", "SQL"), ("evidence", "difficulty"), "question_id", "SQL")
_JSONL = _Format(("db_path", "question", "query"), ("evidence", "difficulty", "db_id"), "id", "query")

# A row's databases, found from the row: its db_id and every variant's resolved path.
_Locate = Callable[[Mapping[str, Any], str], tuple[str, list[Path]]]


class _ByDbId:
    """Finds a db_id's databases once per file; a failure is kept and raised again for every row that names it."""

    def __init__(self, find: Callable[[str, str], list[Path]]) -> None:
        self._find = find
        self._found: dict[str, list[Path] | DatasetRowError] = {}

    def __call__(self, entry: Mapping[str, Any], where: str) -> tuple[str, list[Path]]:
        db_id = entry["db_id"]
        if db_id not in self._found:
            try:
                self._found[db_id] = self._find(db_id, where)
            except DatasetRowError as exc:
                self._found[db_id] = exc
        found = self._found[db_id]
        if isinstance(found, DatasetRowError):
            raise type(found)(f"{where}: {str(found).split(': ', 2)[-1]}")
        return db_id, found


def _load_rows(file: Path, split: str, source: str, fmt: _Format, locate: _Locate, *,
               difficulty: Callable[[Mapping[str, Any]], tuple[str, dict[str, Any] | None]],
               skip_invalid_rows: bool, skipped: list[str] | None) -> list[Task]:
    """The tasks of one dataset file: every row checked (fields, databases, gold compiles, unique id), a bad one
    raised or skipped by the row policy; ``difficulty(entry)`` gives the label and the task's extra data."""
    rows = _Rows(file, skip=skip_invalid_rows, skipped=skipped)
    seen: dict[str, str] = {}
    gold = _GoldChecker()
    tasks = []
    try:
        for i, (where, entry) in enumerate(rows):
            try:
                _require(entry, fmt.required, where)
                _check_fields(entry, where, optional_text=fmt.optional_text, id_key=fmt.id_key)
                db_id, paths = locate(entry, where)
                gold.check(paths[0], entry[fmt.gold_key], where)
                task_id = _task_id(entry, fmt.id_key, f"{split}-{i}", seen, where)
            except DatasetRowError as exc:
                rows.reject(exc)
                continue
            label, extra = difficulty(entry)
            tasks.append(make_task(task_id, db_id=db_id, db_paths=paths, question=entry["question"],
                                   gold=entry[fmt.gold_key], evidence=entry.get("evidence"), difficulty=label,
                                   split=split, source=source, extra=extra))
    finally:
        gold.close()
    rows.finish()
    return tasks


def _stated_or_estimated(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    return entry.get("difficulty") or estimate_difficulty(entry["query"]), None


def _bird_difficulty(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    label = entry.get("difficulty") or ""
    difficulty = BIRD_DIFFICULTY.get(label, label or estimate_difficulty(entry["SQL"]))
    return difficulty, ({"bird_difficulty": label} if label else None)


def load_spider(path: Path, split: str | None, *, allowed_dirs: Sequence[str | Path] | None = (),
                skip_invalid_rows: bool = False, skipped: list[str] | None = None) -> list[Task]:
    """Spider format: ``<split>.json`` (default ``dev``) of ``{"db_id", "question", "query"}`` entries;
    databases at ``database/<db_id>/*.sqlite`` (every ``.sqlite`` file there is a test-suite variant).

    Every database file must resolve (symlinks followed) inside ``path`` or one of ``allowed_dirs`` (None:
    anywhere). A
    malformed row (missing or mistyped fields, a duplicate id, a database that is missing, outside, or not
    SQLite, a gold query SQLite does not compile) is an error naming the file and the row, or, with
    ``skip_invalid_rows``, is skipped and counted (its one-line reason appended to ``skipped``).
    """
    split = _plain_split(split or "dev")
    file = _split_file(path, split, ("train_spider.json",) if split == "train" else ())
    db_root = path / "database"
    if split == "test" and (path / "test_database").is_dir():
        db_root = path / "test_database"
    roots = _roots(path, allowed_dirs)

    def variants(db_id: str, where: str) -> list[Path]:
        folder = _db_folder(db_root, db_id, where)
        found = [_confined(p, roots, where, "database") for p in db_variants(folder, db_id)]
        if not found:
            raise _MissingDatabase(f"{where}: no .sqlite file for db_id {db_id!r} in {folder}")
        return found

    return _load_rows(file, split, f"spider:{path}", _SPIDER, _ByDbId(variants), difficulty=_stated_or_estimated,
                      skip_invalid_rows=skip_invalid_rows, skipped=skipped)


def load_bird(path: Path, split: str | None, *, allowed_dirs: Sequence[str | Path] | None = (),
              skip_invalid_rows: bool = False, skipped: list[str] | None = None) -> list[Task]:
    """BIRD format: ``<split>.json`` (default ``dev``) of ``{"question_id", "db_id", "question", "evidence",
    "SQL", "difficulty"}`` entries; databases at ``<split>_databases/<db_id>/<db_id>.sqlite``.

    Paths and malformed rows are handled as in :func:`load_spider`.
    """
    split = _plain_split(split or "dev")
    file = _split_file(path, split)
    db_root = path / f"{split}_databases"
    roots = _roots(path, allowed_dirs)

    def database(db_id: str, where: str) -> list[Path]:
        db_file = _db_folder(db_root, db_id, where) / f"{db_id}.sqlite"
        if not db_file.is_file():
            raise _MissingDatabase(f"{where}: database {db_id!r} not found at {db_file}")
        return [_confined(db_file, roots, where, "database")]

    return _load_rows(file, split, f"bird:{path}", _BIRD, _ByDbId(database), difficulty=_bird_difficulty,
                      skip_invalid_rows=skip_invalid_rows, skipped=skipped)


def load_jsonl(path: Path, split: str | None, *, allowed_dirs: Sequence[str | Path] | None = (),
               skip_invalid_rows: bool = False, skipped: list[str] | None = None) -> list[Task]:
    """JSONL: one ``{"id", "db_path", "question", "query"}`` per line (optional ``evidence``, ``difficulty``,
    ``db_id``). ``db_path`` is a ``.sqlite`` file or a folder of variants, relative to the file's folder.
    ``path`` may be a folder, then ``<split>.jsonl`` in it is read (default ``test``).

    ``db_path`` must resolve (``~``, absolute paths, ``..`` and symlinks followed) inside the file's folder
    or one of ``allowed_dirs``. Malformed rows are handled as in :func:`load_spider`.
    """
    if path.is_dir():
        file = path / f"{_plain_split(split or 'test')}.jsonl"
        if not file.is_file():
            raise FileNotFoundError(f"no {file.name} in {path} (split {split!r})")
    else:
        file = path
    roots = _roots(file.parent, allowed_dirs)

    def databases(entry: Mapping[str, Any], where: str) -> tuple[str, list[Path]]:
        db_path = Path(entry["db_path"]).expanduser()
        if not db_path.is_absolute():
            db_path = file.parent / db_path
        resolved = _confined(db_path, roots, where, "db_path")
        if resolved.is_dir():
            paths = [_confined(p, roots, where, "database") for p in db_variants(resolved, entry.get("db_id"))]
            if not paths:
                raise _MissingDatabase(f"{where}: no .sqlite file in the folder {db_path}")
        elif resolved.is_file():
            paths = [resolved]
        else:
            raise _MissingDatabase(f"{where}: database {str(db_path)!r} does not exist")
        return entry.get("db_id") or (resolved.name if resolved.is_dir() else resolved.stem), paths

    return _load_rows(file, split or "test", f"jsonl:{file}", _JSONL, databases, difficulty=_stated_or_estimated,
                      skip_invalid_rows=skip_invalid_rows, skipped=skipped)
