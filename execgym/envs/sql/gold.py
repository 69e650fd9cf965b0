"""Gold results computed once, when the bundled tasks are built, and shipped beside the bundled databases.

A task's gold result depends only on the task: its database file and its gold query. For the bundled tasks
it is computed ahead of time (``python -m execgym.envs.sql.gold``) into ``assets/sql/gold_results.json``,
so grading a submission runs the submission alone, even in a process that has never graded before.

A record is used only for the very file and query it was made from, by the same SQLite:

* the database is named by the SHA-256 of its bytes (hashed once per file signature), never by its path, so
  a rebuilt, edited or replaced file has no record;
* the gold text must be the same character for character;
* the SQLite library must be the version that computed it (row order of ties and float sums may differ
  between versions);
* its rows must fit the env's own caps (``max_result_rows`` and the gold value size).

A gold query that reads the clock is never precomputed. The date and time functions read it only for
``'now'`` (and the machine's time zone for ``'localtime'`` / ``'utc'``), or when called with no date: such
a query is precomputed only if its text holds none of those words, it calls no date function without a
date, and no column it reads holds one of those words as a value (checked by SQLite on the file). Any other
volatile function (``random()``, ``changes()``, ``current_date``...) keeps the query live.

Anything else (a loaded dataset, a generated task, a missing or unreadable records file) runs the gold
query live, as before. The records are package data the agent cannot reach; a test rebuilds them and
compares them with the shipped file, so a stale file fails CI instead of misgrading.

Example:
    >>> from execgym.envs.sql.tasks import bundled_tasks
    >>> task = bundled_tasks()[0]
    >>> record = shipped_records().lookup(task.data["db_paths"][0], task.data["gold"])
    >>> record is None or record.complete   # None only where this SQLite is not the one that built them
    True
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from execgym.envs.sql.db import QueryResult, SafeDatabase, file_signature, quote_identifier
from execgym.envs.sql.tasks import ASSETS_DIR

__all__ = ["RECORDS_PATH", "GoldRecords", "build_records", "clear_digests", "clock_free", "file_sha256",
           "shipped_records"]

RECORDS_PATH = ASSETS_DIR / "gold_results.json"
FORMAT = 1

# The date and time functions, pure but for the words below (as an argument or a stored value) or no date.
DATE_FUNCTIONS = frozenset({"date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff"})
CLOCK_WORDS = ("now", "localtime", "utc", "subsec")
_NO_DATE = re.compile(r"\b(?:date|time|datetime|julianday|unixepoch)\s*\(\s*\)|\bstrftime\s*\(\s*'[^']*'\s*\)",
                      re.IGNORECASE)

_digest_lock = threading.Lock()
_DIGESTS: LRUCache[tuple[str, tuple[int, ...]], str] = LRUCache(1024)


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """The SHA-256 of a file's bytes, computed once per (path, file signature); None when it cannot be read."""
    key_path = os.fspath(path)
    signature = file_signature(key_path)
    if signature is None:
        return None
    key = (key_path, signature)
    with _digest_lock:
        known = _DIGESTS.get(key)
    if known is not None:
        return known
    try:
        with open(key_path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None
    if file_signature(key_path) != signature:  # written while it was read: no identity to trust
        return None
    with _digest_lock:
        _DIGESTS[key] = digest
    return digest


def clear_digests() -> None:
    """Forget the file digests (benchmarks start each round as a fresh process would)."""
    with _digest_lock:
        _DIGESTS.clear()


def clock_free(db: SafeDatabase, sql: str, result: QueryResult) -> bool:
    """Whether a query whose only volatile calls are date functions gives the same result at any time and in
    any time zone on this file (see the module docstring).

    Example:
        >>> from execgym.envs.sql.tasks import bundled_db_path
        >>> db = SafeDatabase(bundled_db_path("bookshop"))
        >>> q = "SELECT COUNT(*) FROM orders WHERE strftime('%Y', order_date) = '2023'"
        >>> clock_free(db, q, db.execute(q)), clock_free(db, "SELECT date('now')", db.execute("SELECT date('now')"))
        (True, False)
    """
    if not result.volatile_calls <= DATE_FUNCTIONS:
        return False
    lowered = sql.lower()
    if any(word in lowered for word in CLOCK_WORDS) or _NO_DATE.search(sql):
        return False
    words = ", ".join(f"'{w}'" for w in CLOCK_WORDS)
    for table, column in sorted(result.reads):
        if not column:
            continue
        probe = (f"SELECT 1 FROM {quote_identifier(table)} WHERE lower(trim({quote_identifier(column)})) "
                 f"IN ({words}) LIMIT 1")
        if db.execute(probe, timeout_s=60.0).rows:
            return False
    return True


def _encode_value(value: Any) -> Any:
    return {"base64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value


def _decode_value(value: Any) -> Any:
    return base64.b64decode(value["base64"]) if isinstance(value, dict) else value


def _value_size(value: Any) -> int:
    return len(value) if isinstance(value, bytes) else len(value.encode("utf-8")) if isinstance(value, str) else 8


class GoldRecords:
    """Precomputed gold results, by database digest and gold text (see the module docstring).

    Example:
        >>> records = GoldRecords(Path("no-such-file.json"))
        >>> records.lookup("any.sqlite", "SELECT 1") is None and records.problem is not None
        True
    """

    def __init__(self, path: Path = RECORDS_PATH) -> None:
        self.path = Path(path)
        self.problem: str | None = None
        self._databases: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._databases is not None:
                return self._databases
            databases: dict[str, dict[str, Any]] = {}
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(data, dict) or data.get("format") != FORMAT:
                    self.problem = f"{self.path.name}: not a format-{FORMAT} records file"
                elif data.get("sqlite_version") != sqlite3.sqlite_version:
                    self.problem = (f"{self.path.name} was computed by SQLite {data.get('sqlite_version')}, this is "
                                    f"{sqlite3.sqlite_version}: gold queries run live")
                else:
                    databases = dict(data["databases"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.problem = f"{self.path.name} cannot be read: {type(exc).__name__}: {exc}"
            self._databases = databases
            return databases

    def lookup(self, db_path: str | os.PathLike[str], gold: str, *, max_rows: int = 100_000,
               max_value_bytes: int = 1_000_000) -> QueryResult | None:
        """The gold result of ``gold`` on the file at ``db_path``, or None when no record applies."""
        databases = self._load()
        if not databases:
            return None
        digest = file_sha256(db_path)
        entry = databases.get(digest) if digest is not None else None
        record = entry["results"].get(gold) if entry is not None else None
        if record is None or len(record["rows"]) > max_rows or record["max_value_bytes"] > max_value_bytes:
            return None
        rows = [tuple(_decode_value(v) for v in row) for row in record["rows"]]
        reads = frozenset((str(t), str(c)) for t, c in record["reads"])
        return QueryResult(list(record["columns"]), rows, len(rows), True, reads=reads, nbytes=record["nbytes"])


_SHIPPED: GoldRecords | None = None


def shipped_records() -> GoldRecords:
    """The records shipped with execgym (read on first use)."""
    global _SHIPPED
    if _SHIPPED is None:
        _SHIPPED = GoldRecords()
    return _SHIPPED


def build_records(items: Iterable[tuple[str | os.PathLike[str], str]], *, timeout_s: float = 60.0,
                  max_value_bytes: int = 1_000_000) -> dict[str, Any]:
    """Run each ``(database path, gold query)`` pair as grading does and return the records file's content.

    Raises:
        ValueError: a gold query fails, calls a volatile function or returns more than 100,000 rows.
    """
    databases: dict[str, dict[str, Any]] = {}
    opened: dict[str, SafeDatabase] = {}
    try:
        for db_path, gold in items:
            key = os.fspath(db_path)
            if key not in opened:
                opened[key] = SafeDatabase(key, timeout_s=timeout_s, max_value_bytes=max_value_bytes,
                                           allow_unbounded_functions=True)
            result = opened[key].execute(gold, keep_rows=100_000, timeout_s=timeout_s)
            if not result.complete:
                raise ValueError(f"the gold result is over 100,000 rows or the byte cap: {gold[:80]}")
            if not result.deterministic and not clock_free(opened[key], gold, result):
                continue  # reads the clock (or may): graded live
            digest = file_sha256(key)
            if digest is None:
                raise ValueError(f"{Path(key).name} cannot be read")
            entry = databases.setdefault(digest, {"name": Path(key).name, "results": {}})
            entry["results"][gold] = {
                "columns": result.columns,
                "rows": [[_encode_value(v) for v in row] for row in result.rows],
                "reads": sorted([t, c] for t, c in result.reads),
                "nbytes": result.nbytes,
                "max_value_bytes": max((_value_size(v) for row in result.rows for v in row), default=0),
            }
    finally:
        for db in opened.values():
            db.close()
    return {"format": FORMAT, "sqlite_version": sqlite3.sqlite_version, "databases": databases}


def bundled_items() -> list[tuple[str, str]]:
    """``(database path, gold query)`` of every bundled task."""
    from execgym.envs.sql.tasks import bundled_tasks

    return [(path, task.data["gold"]) for task in bundled_tasks() for path in task.data["db_paths"]]


def dumps(records: dict[str, Any]) -> str:
    """The records file's text: sorted, so that a rebuild from the same files writes the same bytes."""
    return json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Precompute the bundled tasks' gold results.")
    parser.add_argument("--out", type=Path, default=RECORDS_PATH, help="where to write (default: the shipped file)")
    parser.add_argument("--check", action="store_true", help="only compare a rebuild with the file; exit 1 if stale")
    args = parser.parse_args(argv)
    text = dumps(build_records(bundled_items()))
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out.name}: {'up to date' if same else 'stale: rebuild with python -m execgym.envs.sql.gold'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
