"""Safe, fast SQLite access for the Text-to-SQL env.

Every query the agent (or the grader) sends runs on a connection that is opened read-only (URI
``mode=ro``), has ``query_only`` on, an authorizer that allows reads only (no writes, ``ATTACH``, pragma
changes, temp objects or extension loading), a progress handler that enforces a per-query time limit, and
SQLite's own limits on the length of a value, of the SQL text and on the number of result columns, so a
single row holds at most ``columns x max_value_bytes`` bytes. Results are read one row at a time and capped
in rows and bytes; rows past the cap are counted and dropped at once, never held in a batch. The authorizer
also records which tables and columns a query reads (``QueryResult.reads``), resolved by SQLite itself.

Errors are split by who caused them: the query's own (syntax, a refusal, a timeout, a value too big: a
:class:`QueryError`) and the database file's (missing, a directory, not a database, corrupt, unreadable: a
:class:`DatabaseFault`, an :class:`~execgym.core.errors.InfraError`). A read-only query cannot make an
intact file fail, so a policy cannot raise a ``DatabaseFault`` at will.

Connections stay open: :class:`DatabasePool` keeps one per database file and role, so a step costs one
query, not a connection, a thread or a process.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from execgym.core.errors import InfraError

__all__ = [
    "UNBOUNDED_FUNCTIONS",
    "VOLATILE_FUNCTIONS",
    "DatabaseFault",
    "DatabasePool",
    "QueryError",
    "QueryResult",
    "SafeDatabase",
    "TableInfo",
    "file_signature",
    "first_keyword",
    "format_result",
    "format_value",
    "split_statements",
]

# Statements that write or change the connection are refused before SQLite sees them. The authorizer is the
# real guard; this gives a clear message. Unknown words go to SQLite, whose own syntax error is clearest.
WRITE_KEYWORDS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "CREATE", "DROP", "ALTER",
                            "ATTACH", "DETACH", "VACUUM", "REINDEX", "ANALYZE", "BEGIN", "COMMIT", "END",
                            "ROLLBACK", "SAVEPOINT", "RELEASE"})
# Pragmas that only report on the schema: their argument names a table or index, never a new value.
SCHEMA_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
                            "foreign_key_list", "table_list"})
DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})
# Built-ins one call of which can run for minutes whatever the value-size limit: printf's width and precision
# (``printf('%.*c', 2000000000, 'x')``) repeat a character billions of times inside one VM instruction, where
# neither the progress handler nor ``interrupt()`` can stop it (measured: 14 s, and ``interrupt()`` is seen
# only after the call). Refused unless ``allow_unbounded_functions`` (the operator's own gold queries). SQLite's
# ``instr`` and ``replace`` are O(n*m) (about 40 ms a call on two 100 KB values, and a query can chain a
# thousand calls in one row, between which neither stop is looked at): on untrusted connections they are
# replaced by linear-time versions with the same results. The rest are O(n) in values capped by the length
# limit (``substr``, ``char``, ``zeroblob``, ``trim``, the json functions); LIKE and GLOB patterns are capped.
UNBOUNDED_FUNCTIONS = frozenset({"printf", "format"})
# Built-ins whose value is not fixed by the database file: randomness, the clock (the date and time functions
# read it for 'now', which may also come from a stored value) and connection state. A query that calls one
# is not deterministic, so its result is never reused (``QueryResult.deterministic``).
VOLATILE_FUNCTIONS = frozenset({"random", "randomblob", "changes", "total_changes", "last_insert_rowid",
                                "current_date", "current_time", "current_timestamp", "date", "time",
                                "datetime", "julianday", "unixepoch", "strftime", "timediff"})
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
_ACTION_NAMES = {
    sqlite3.SQLITE_INSERT: "INSERT", sqlite3.SQLITE_UPDATE: "UPDATE", sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_ATTACH: "ATTACH / VACUUM", sqlite3.SQLITE_DETACH: "DETACH",
    sqlite3.SQLITE_PRAGMA: "PRAGMA", sqlite3.SQLITE_TRANSACTION: "transaction control",
    sqlite3.SQLITE_SAVEPOINT: "SAVEPOINT", sqlite3.SQLITE_ANALYZE: "ANALYZE", sqlite3.SQLITE_REINDEX: "REINDEX",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE", sqlite3.SQLITE_FUNCTION: "function",
    sqlite3.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE", sqlite3.SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE",
}
# VM instructions between deadline checks, about 0.1-0.5 ms of a query: the soft stop. The hard one is the
# watchdog's ``interrupt()``, seen at the next instruction; a check every 2,000 cost a typical query 20% more.
_PROGRESS_EVERY = 50_000
# SQLite result codes (the low byte of the extended code) that mean the file or the machine failed. A read-only
# query on an intact file never yields one, so these can never be the policy's doing.
_FAULT_CODES = {
    3: "SQLITE_PERM", 5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 10: "SQLITE_IOERR", 11: "SQLITE_CORRUPT",
    14: "SQLITE_CANTOPEN", 15: "SQLITE_PROTOCOL", 16: "SQLITE_EMPTY", 17: "SQLITE_SCHEMA", 22: "SQLITE_NOLFS",
    24: "SQLITE_FORMAT", 26: "SQLITE_NOTADB",
}
_MAX_LIKE_PATTERN = 10_000  # bytes of a LIKE or GLOB pattern (SQLite's default is 50,000)
_MIN_RESULT_COLUMNS = 64  # raised to the widest table of a database, so every table stays readable
QUERY_KEYWORDS = frozenset({"SELECT", "WITH", "VALUES"})
"""First keywords of a query that returns rows (what ``syntax`` and ``executed`` accept)."""


class DatabaseFault(InfraError):
    """The database file failed, not the query: missing, not a regular file, not SQLite, corrupt, unreadable.

    Example:
        >>> try:
        ...     SafeDatabase("/nonexistent/db.sqlite")
        ... except DatabaseFault as exc:
        ...     print(exc)
        database file 'db.sqlite' does not exist
    """


class QueryError(Exception):
    """A query failed: SQLite's own message, a refusal (writes, several statements) or a timeout.

    Attributes:
        kind: ``"sql"`` (SQLite's error), ``"refused"`` or ``"timeout"``.

    Example:
        >>> err = QueryError("refused: the database is read-only", "refused")
        >>> err.kind, str(err)
        ('refused', 'refused: the database is read-only')
    """

    def __init__(self, message: str, kind: str = "sql") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class QueryResult:
    """The (possibly capped) result of one query.

    Attributes:
        columns: column names.
        rows: the rows kept (at most the ``keep_rows`` asked for, and within the byte cap).
        total_rows: rows the query returned, counted up to the counting cap.
        complete: every row was kept (``rows`` is the whole result).
        total_is_lower_bound: counting stopped at the cap: there are more than ``total_rows`` rows.
        elapsed_s: wall time of the query.
        reads: the ``(table, column)`` pairs of the database's own tables and views the query reads, lower
            case, as SQLite's authorizer reports them (column ``""``: the table is read for its rows only,
            as by ``COUNT(*)``). Empty for ``SELECT 1`` or a query of the schema table only.
        nbytes: the estimated size of the rows kept.
        deterministic: the query calls none of :data:`VOLATILE_FUNCTIONS`, so on an unchanged file it
            returns this same result every time.
        volatile_calls: which of :data:`VOLATILE_FUNCTIONS` it calls (lower case).

    Example:
        >>> r = QueryResult(["n"], [(1,), (2,)], total_rows=7, complete=False)
        >>> len(r.rows) < r.total_rows and not r.complete
        True
    """

    columns: list[str]
    rows: list[tuple[Any, ...]]
    total_rows: int
    complete: bool
    total_is_lower_bound: bool = False
    elapsed_s: float = 0.0
    reads: frozenset[tuple[str, str]] = frozenset()
    nbytes: int = 0
    deterministic: bool = True
    volatile_calls: frozenset[str] = frozenset()

    @property
    def reads_database(self) -> bool:
        """The query read at least one of the database's tables or views."""
        return bool(self.reads)


@dataclass
class TableInfo:
    """What ``describe_table`` reports about one table (see :meth:`SafeDatabase.describe`).

    Example:
        >>> info = TableInfo("t", [{"name": "id", "type": "INTEGER", "notnull": False, "default": None, "pk": 1}],
        ...                  foreign_keys=[{"column": "u_id", "table": "u", "to": "id"}])
        >>> info.columns[0]["pk"], info.foreign_keys[0]["table"]
        (1, 'u')
    """

    name: str
    columns: list[dict[str, Any]]
    foreign_keys: list[dict[str, str]]
    unique: list[list[str]] = field(default_factory=list)
    sample: QueryResult | None = None


# Quoted strings and identifiers (an unterminated one runs to the end), comments, and statement separators.
_LEXEME = re.compile(
    r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?|--[^\n]*|/\*.*?(?:\*/|\Z)|;""",
    re.DOTALL,
)
_FIRST_WORD = re.compile(r"[\s(]*([A-Za-z_]+)")


def split_statements(sql: str) -> list[str]:
    """Split SQL text into statements on top-level ``;`` (quotes and comments respected); drop empty ones.

    Example:
        >>> split_statements("SELECT ';' AS x; -- done")
        ["SELECT ';' AS x"]
        >>> len(split_statements("SELECT 1; DROP TABLE t"))
        2
    """
    if ";" not in sql:
        return [sql.strip()] if _strip_comments(sql).strip() else []
    statements: list[str] = []
    start = 0
    for match in _LEXEME.finditer(sql):
        if match.group() == ";":
            statements.append(sql[start : match.start()])
            start = match.end()
    statements.append(sql[start:])
    return [s.strip() for s in statements if _strip_comments(s).strip()]


def _strip_comments(sql: str) -> str:
    if "--" not in sql and "/*" not in sql:
        return sql
    return _LEXEME.sub(lambda m: " " if m.group().startswith(("--", "/*")) else m.group(), sql)


def first_keyword(sql: str) -> str:
    """The statement's first keyword, upper-cased (comments and opening parentheses skipped).

    Example:
        >>> first_keyword("  /* hi */ (select 1)")
        'SELECT'
    """
    match = _FIRST_WORD.match(_strip_comments(sql))
    return match.group(1).upper() if match else ""


def format_value(value: Any, max_chars: int = 200) -> str:
    """One cell as the agent sees it: NULL, numbers without noise, long text cut.

    Example:
        >>> format_value(None), format_value(0.1 + 0.2), format_value(b"xyz"), format_value("a" * 9, 5)
        ('NULL', '0.3', '<blob 3 bytes>', 'aaaa…')
    """
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.10g}" if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return f"<blob {len(value)} bytes>"
    text = str(value).replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def format_result(result: QueryResult, max_cell_chars: int = 200) -> str:
    """A compact text table: a header, one line per row, and a line that states the row count.

    Example:
        >>> r = QueryResult(["id", "name"], [(1, "Ada"), (2, None)], total_rows=5, complete=False)
        >>> print(format_result(r))
        id | name
        1 | Ada
        2 | NULL
        (5 rows; showing the first 2)
    """
    lines = [" | ".join(result.columns)] if result.columns else []
    lines.extend(" | ".join(format_value(v, max_cell_chars) for v in row) for row in result.rows)
    total = f"more than {result.total_rows:,}" if result.total_is_lower_bound else f"{result.total_rows:,}"
    noun = "row" if result.total_rows == 1 and not result.total_is_lower_bound else "rows"
    if len(result.rows) < result.total_rows or result.total_is_lower_bound:
        lines.append(f"({total} {noun}; showing the first {len(result.rows)})")
    else:
        lines.append(f"({total} {noun})")
    return "\n".join(lines)


def _decode_leniently(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _sql_text(value: Any) -> bytes:
    """A value as SQLite casts it to text, as UTF-8 bytes (a REAL as ``%!.15g``: ``1.0``, ``1.0e+20``)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, float):
        if math.isinf(value):
            return b"Inf" if value > 0 else b"-Inf"
        text = f"{value:.15g}"
        mantissa, e, exponent = text.partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return (mantissa + e + exponent).encode()
    return str(value).encode("utf-8", "surrogatepass")


class _LinearStringFunctions:
    """``instr(X, Y)`` and ``replace(X, Y, Z)`` with SQLite's results in linear time (CPython's string search),
    for connections that run untrusted queries. Output longer than the length limit fails as SQLite's does."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.too_big = False

    def instr(self, haystack: Any, needle: Any) -> int | None:
        if haystack is None or needle is None:
            return None
        if isinstance(haystack, bytes) and isinstance(needle, bytes):
            return haystack.find(needle) + 1
        h, n = _sql_text(haystack), _sql_text(needle)
        at = h.find(n)
        return 0 if at < 0 else len(h[:at].decode("utf-8", "replace")) + 1

    def replace(self, text: Any, old: Any, new: Any) -> str | None:
        if text is None or old is None or new is None:
            return None
        t, o, n = _sql_text(text), _sql_text(old), _sql_text(new)
        if not o:
            return t.decode("utf-8", "replace")
        if len(n) > len(o) and len(t) + t.count(o) * (len(n) - len(o)) > self.max_bytes:
            self.too_big = True
            raise OverflowError("string or blob too big")
        return t.replace(o, n).decode("utf-8", "replace")


def _value_bytes(row: Sequence[Any]) -> int:
    size = 8
    for v in row:
        size += len(v) if isinstance(v, (str, bytes)) else 8
    return size


class _Watchdog:
    """One daemon thread for every query of the process: calls each armed callback once its deadline passes.

    Arming and disarming cost a heap push and a dict operation, not a thread per query (a ``threading.Timer``
    per ``execute_sql`` cost about 135 µs, half of a typical step).

    Example:
        >>> fired = threading.Event()
        >>> handle = WATCHDOG.arm(time.monotonic() + 0.01, fired.set)
        >>> fired.wait(5)
        True
        >>> WATCHDOG.disarm(WATCHDOG.arm(time.monotonic() + 60, fired.clear))
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Any] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float, callback: Any) -> int:
        """Call ``callback()`` at ``deadline`` (``time.monotonic()``) unless disarmed first; returns a handle."""
        handle = next(self._ids)
        with self._cond:
            self._armed[handle] = callback
            heapq.heappush(self._heap, (deadline, handle))
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._loop, name="execgym-sql-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0][1] == handle:  # only a new earliest deadline needs the thread to wake up
                self._cond.notify()
        return handle

    def disarm(self, handle: int) -> None:
        """Forget ``handle``'s callback (its heap entry is skipped when it comes up)."""
        with self._cond:
            self._armed.pop(handle, None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, handle = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                callback = self._armed.pop(handle, None)
            if callback is not None:
                callback()


WATCHDOG = _Watchdog()


class SafeDatabase:
    """One read-only, guarded SQLite connection to one database file.

    Args:
        path: the ``.sqlite`` file.
        timeout_s: default time limit per query.
        max_value_bytes: the longest string or blob a query may read or build (SQLite's length limit; a stored
            value longer than this cannot be read either).
        max_sql_chars: the longest query text accepted.
        allow_unbounded_functions: allow :data:`UNBOUNDED_FUNCTIONS` (only for trusted queries: one call of
            one of them can run far past the time limit).

    Raises:
        DatabaseFault: the file is missing, not a regular file, or not a readable SQLite database.

    Example:
        >>> import sqlite3, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "t.sqlite")
        >>> with sqlite3.connect(path) as c:
        ...     _ = c.execute("CREATE TABLE t (x INTEGER)")
        ...     _ = c.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(50)])
        >>> db = SafeDatabase(path)
        >>> r = db.execute("SELECT x FROM t ORDER BY x", keep_rows=3, count_rows_up_to=1000)
        >>> r.rows, r.total_rows, sorted(r.reads)
        ([(0,), (1,), (2,)], 50, [('t', 'x')])
        >>> try:
        ...     db.execute("DELETE FROM t")
        ... except QueryError as exc:
        ...     print(exc.kind, exc)
        refused refused: only read-only queries are allowed (SELECT or WITH); this one starts with DELETE
        >>> db.close()
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 5.0, max_value_bytes: int = 1_000_000,
                 max_sql_chars: int = 1_000_000, allow_unbounded_functions: bool = False) -> None:
        self.path = Path(path)
        name = self.path.name
        if not self.path.exists():
            raise DatabaseFault(f"database file {name!r} does not exist")
        if not self.path.is_file():
            raise DatabaseFault(f"database file {name!r} is not a regular file")
        self.timeout_s = float(timeout_s)
        self.max_sql_chars = int(max_sql_chars)
        self._deadline = math.inf
        self._denied_functions = DENIED_FUNCTIONS | (frozenset() if allow_unbounded_functions else UNBOUNDED_FUNCTIONS)
        self._watch_lock = threading.Lock()
        self._watch_token: object | None = None
        self._denied: str | None = None
        self._denied_message: str | None = None
        self._reads: set[tuple[str, str]] = set()
        self._volatile = False
        self._volatile_calls: set[str] = set()
        self._row_counts: dict[str, int | None] = {}
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            # No statement cache: every query is prepared, so the authorizer sees (and records) every read.
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                        cached_statements=0)
        except sqlite3.Error as exc:
            raise DatabaseFault(f"database file {name!r} cannot be opened: {exc}") from None
        try:
            self.conn.execute("PRAGMA query_only = ON")
            # Reading the schema proves the file is a database; the widest table sets the column limit.
            objects = self.conn.execute(
                "SELECT m.name, m.type, CASE m.type WHEN 'table' THEN (SELECT COUNT(*) FROM pragma_table_info(m.name)) "
                "END FROM sqlite_master AS m WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite_%' "
                "ORDER BY m.rowid"
            ).fetchall()
        except sqlite3.Error as exc:
            self.conn.close()
            raise DatabaseFault(f"database file {name!r} is not a readable SQLite database: {exc}") from None
        self._tables = [n for n, kind, _ in objects if kind == "table"]
        self._relations = {n.lower() for n, _, _ in objects}
        widest = max((int(c or 0) for _, _, c in objects), default=0)
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, int(max_value_bytes))
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * self.max_sql_chars + 64)
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, max(_MIN_RESULT_COLUMNS, widest))
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, _MAX_LIKE_PATTERN)
        self._linear = _LinearStringFunctions(int(max_value_bytes))
        if not allow_unbounded_functions:
            self.conn.create_function("instr", 2, self._linear.instr, deterministic=True)
            self.conn.create_function("replace", 3, self._linear.replace, deterministic=True)
        self.conn.set_authorizer(self._authorize)
        self.conn.set_progress_handler(self._progress, _PROGRESS_EVERY)

    # ------------------------------------------------------------------ guards
    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        if action == sqlite3.SQLITE_READ:
            if arg1 is not None and arg1.lower() in self._relations:
                self._reads.add((arg1.lower(), (arg2 or "").lower()))
            return sqlite3.SQLITE_OK
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            function = (arg2 or "").lower()
            if function not in self._denied_functions:
                if function in VOLATILE_FUNCTIONS:
                    self._volatile = True
                    self._volatile_calls.add(function)
                return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in SCHEMA_PRAGMAS:
            return sqlite3.SQLITE_OK
        what = _ACTION_NAMES.get(action, "writing or changing the schema")
        if action == sqlite3.SQLITE_FUNCTION:
            what = f"the function {arg2}()"
            if (arg2 or "").lower() in UNBOUNDED_FUNCTIONS:
                self._denied_message = (f"refused: the function {arg2}() is not allowed: one call of it can run "
                                        "far past the time limit (use || and substr() to build text)")
        elif action == sqlite3.SQLITE_UPDATE and (arg1 or "").lower() in ("sqlite_master", "sqlite_schema"):
            # SQLite asks to write the schema table when a query sets up a table-valued function.
            self._denied_message = ("refused: table-valued functions such as json_each(), json_tree() or "
                                    "generate_series() are not available here (the pragma_*() ones are)")
        elif action == sqlite3.SQLITE_PRAGMA:
            what = f"PRAGMA {arg1}" + (f" = {arg2}" if arg2 else "")
        elif action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE) and arg1:
            what = f"{what} on {arg1}"
        self._denied = what
        return sqlite3.SQLITE_DENY

    def _progress(self) -> int:
        return 1 if time.perf_counter() > self._deadline else 0

    def _watchdog(self, token: object) -> None:
        # The hard stop: ``interrupt()`` is seen at the next VM instruction, where the progress handler only
        # looks every few thousand (one instruction can be one costly function call). Only the query that
        # started this timer is interrupted; one that ended meanwhile has cleared the token.
        with self._watch_lock:
            if self._watch_token is token:
                self.conn.interrupt()

    def _check_text(self, sql: str) -> str:
        if not isinstance(sql, str) or not sql.strip():
            raise QueryError("refused: the query is empty", "refused")
        if len(sql) > self.max_sql_chars:
            raise QueryError(f"refused: the query is {len(sql):,} characters long, over the limit of "
                             f"{self.max_sql_chars:,}", "refused")
        if not sql.isascii():
            try:
                sql.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise QueryError(f"refused: the query is not valid Unicode text (a lone surrogate "
                                 f"{sql[exc.start]!r} at character {exc.start})", "refused") from None
        if "\x00" in sql:
            raise QueryError(f"refused: the query holds a NUL character (at character {sql.index(chr(0))})",
                             "refused")
        statements = split_statements(sql)
        if not statements:
            raise QueryError("refused: the query holds only comments", "refused")
        if len(statements) > 1:
            raise QueryError(
                f"refused: only one SQL statement per query, found {len(statements)} "
                f"(the second starts with {first_keyword(statements[1]) or statements[1][:20]!r})",
                "refused",
            )
        keyword = first_keyword(statements[0])
        if keyword in WRITE_KEYWORDS:
            raise QueryError(
                f"refused: only read-only queries are allowed (SELECT or WITH); this one starts with {keyword}",
                "refused",
            )
        return statements[0]

    # ------------------------------------------------------------------ queries
    def execute(
        self,
        sql: str,
        *,
        keep_rows: int = 100_000,
        count_rows_up_to: int | None = None,
        max_bytes: int = 64_000_000,
        timeout_s: float | None = None,
        params: Sequence[Any] = (),
    ) -> QueryResult:
        """Run one read-only statement; keep at most ``keep_rows`` rows (and ``max_bytes``).

        Rows past what is kept are still counted, up to ``count_rows_up_to`` (default: ``keep_rows``), so
        the result can state how many rows there were without holding them.

        Raises:
            QueryError: SQLite's error message, a refusal, or a timeout: the query's own failure.
            DatabaseFault: the database file failed (corrupt, unreadable, gone).
        """
        statement = self._check_text(sql)
        count_cap = max(keep_rows, count_rows_up_to if count_rows_up_to is not None else keep_rows)
        limit = self.timeout_s if timeout_s is None else float(timeout_s)
        try:
            return self._run(statement, params, keep_rows, count_cap, max_bytes, limit)
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith("Could not decode to UTF-8"):
                raise self._translate(exc, limit) from None
        except sqlite3.Error as exc:
            raise self._translate(exc, limit) from None
        except (MemoryError, OverflowError, ValueError, TypeError, RecursionError) as exc:
            raise QueryError(f"the query failed: {type(exc).__name__}: {exc}", "sql") from None
        # Real-world databases (BIRD) hold some text that is not valid UTF-8: show it rather than fail. The
        # lenient decoder costs a Python call per value, so it is only used for the queries that need it.
        self.conn.text_factory = _decode_leniently
        try:
            return self._run(statement, params, keep_rows, count_cap, max_bytes, limit)
        except sqlite3.Error as exc:
            raise self._translate(exc, limit) from None
        except (MemoryError, OverflowError, ValueError, TypeError, RecursionError) as exc:
            raise QueryError(f"the query failed: {type(exc).__name__}: {exc}", "sql") from None
        finally:
            self.conn.text_factory = str

    def compiles(self, sql: str, timeout_s: float | None = None) -> bool:
        """Whether SQLite compiles ``sql`` (one read-only statement) on this database, without running it."""
        return self.compile_error(sql, timeout_s) is None

    def compile_error(self, sql: str, timeout_s: float | None = None) -> str | None:
        """None when SQLite compiles ``sql`` (one read-only statement) here, else why not (nothing is run).

        Raises:
            DatabaseFault: the database file failed.
        """
        try:
            statement = self._check_text(sql)
        except QueryError as exc:
            return str(exc)
        limit = self.timeout_s if timeout_s is None else float(timeout_s)
        self._deadline = time.perf_counter() + limit
        self._denied = None
        self._denied_message = None
        self._linear.too_big = False
        self._reads = set()
        self._volatile = False
        self._volatile_calls = set()
        try:
            cursor = self.conn.execute("EXPLAIN " + statement)
            deque(cursor, maxlen=0)
            cursor.close()
        except sqlite3.Error as exc:
            error = self._translate(exc, limit)
            if isinstance(error, DatabaseFault):
                raise error from None
            return str(error)
        except (MemoryError, OverflowError, ValueError, TypeError, RecursionError) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            self._deadline = math.inf
            self._denied = None
        return None

    @property
    def last_reads(self) -> frozenset[tuple[str, str]]:
        """What the last query prepared on this connection reads (also after it failed at run time)."""
        return frozenset(self._reads)

    def _run(self, statement: str, params: Sequence[Any], keep_rows: int, count_cap: int, max_bytes: int,
             limit: float) -> QueryResult:
        start = time.perf_counter()
        self._deadline = start + limit
        self._denied = None
        self._denied_message = None
        self._linear.too_big = False
        self._reads = set()
        self._volatile = False
        self._volatile_calls = set()
        rows: list[tuple[Any, ...]] = []
        size = 0
        complete = True
        lower_bound = False
        token = object()
        self._watch_token = token
        watchdog = (WATCHDOG.arm(time.monotonic() + max(0.0, limit), lambda: self._watchdog(token))
                    if math.isfinite(limit) else None)
        try:
            cursor = self.conn.execute(statement, params)
            columns = [d[0] for d in cursor.description] if cursor.description else []
            # One row at a time: a row is the most ever held beyond what is kept (a batch of rows of big
            # values would hold hundreds of megabytes before any cap could be checked).
            for row in cursor:
                row_bytes = _value_bytes(row)
                if len(rows) >= keep_rows or size + row_bytes > max_bytes:
                    complete = False
                    del row  # not kept: let it go before the next one is made
                    break
                size += row_bytes
                rows.append(row)
            total = len(rows)
            if not complete:
                # Count the rest without keeping them: each row is dropped as soon as it is made.
                counter = itertools.count()
                deque(zip(itertools.islice(cursor, count_cap - total + 1), counter), maxlen=0)
                total += 1 + next(counter)
                if total > count_cap:
                    lower_bound = True
                    total = count_cap
            cursor.close()
        finally:
            with self._watch_lock:
                self._watch_token = None
            if watchdog is not None:
                WATCHDOG.disarm(watchdog)
            self._deadline = math.inf
        reads = frozenset(self._reads)
        return QueryResult(columns, rows, total, complete, lower_bound, time.perf_counter() - start, reads, size,
                           not self._volatile, frozenset(self._volatile_calls))

    def _fault(self, exc: sqlite3.Error) -> DatabaseFault | None:
        code = getattr(exc, "sqlite_errorcode", None)
        name = _FAULT_CODES.get(code & 0xFF) if isinstance(code, int) else None
        if name is None:
            return None
        return DatabaseFault(f"database file {self.path.name!r} failed ({name}): {exc}")

    def _translate(self, exc: sqlite3.Error, limit: float) -> QueryError | DatabaseFault:
        message = str(exc)
        fault = self._fault(exc)
        if fault is not None:
            self._denied = None
            return fault
        if self._linear.too_big:
            self._linear.too_big = False
            return QueryError("string or blob too big", "sql")
        if isinstance(exc, sqlite3.OperationalError) and message == "interrupted":
            return QueryError(f"the query ran past the time limit of {limit:g} s and was stopped", "timeout")
        if self._denied is not None or "not authorized" in message or "authorization denied" in message:
            what = self._denied or "this statement"
            self._denied = None
            message, self._denied_message = self._denied_message, None
            return QueryError(message or f"refused: the database is read-only ({what} is not allowed)", "refused")
        if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in message:
            return QueryError("refused: only one SQL statement per query", "refused")
        return QueryError(message, "sql")

    def file_signature(self) -> tuple[int, int, int, int, int] | None:
        """This database's :func:`file_signature`."""
        return file_signature(self.path)

    # ------------------------------------------------------------------ schema
    def tables(self) -> list[str]:
        """Names of the user tables, in schema order."""
        return list(self._tables)

    def resolve_table(self, name: str) -> str | None:
        """The table's name as stored, matched case-insensitively (quotes stripped), or None."""
        wanted = name.strip().strip('"`[]').lower()
        for table in self.tables():
            if table.lower() == wanted:
                return table
        return None

    def row_count(self, table: str, timeout_s: float = 1.0) -> int | None:
        """Rows in ``table`` (cached), or None when counting takes too long."""
        if table not in self._row_counts:
            try:
                result = self.execute(f"SELECT COUNT(*) FROM {quote_identifier(table)}", timeout_s=timeout_s)
                self._row_counts[table] = int(result.rows[0][0])
            except QueryError:
                self._row_counts[table] = None
        return self._row_counts[table]

    def describe(self, table: str, sample_rows: int = 3) -> TableInfo:
        """Columns (type, NOT NULL, default, primary key), foreign keys, unique keys and sample rows."""
        quoted = quote_identifier(table)
        info = self.execute(f"PRAGMA table_info({quoted})").rows
        columns = [
            {"name": r[1], "type": r[2] or "", "notnull": bool(r[3]), "default": r[4], "pk": int(r[5])}
            for r in info
        ]
        fks = [
            {"column": r[3], "table": r[2], "to": r[4] if r[4] is not None else "(primary key)"}
            for r in self.execute(f"PRAGMA foreign_key_list({quoted})").rows
        ]
        unique: list[list[str]] = []
        for r in self.execute(f"PRAGMA index_list({quoted})").rows:
            if r[2] and r[3] == "u":
                cols = [c[2] for c in self.execute(f"PRAGMA index_info({quote_identifier(r[1])})").rows]
                unique.append(cols)
        sample = self.execute(f"SELECT * FROM {quoted} LIMIT {int(sample_rows)}", keep_rows=sample_rows)
        return TableInfo(table, columns, fks, unique, sample)

    def schema_sql(self) -> str:
        """The ``CREATE TABLE`` statements of the user tables."""
        rows = self.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).rows
        return "\n".join(r[0].strip() + ";" for r in rows if r[0])

    def close(self) -> None:
        self.conn.close()


def file_signature(path: str | os.PathLike[str]) -> tuple[int, int, int, int, int] | None:
    """A file's device, inode, size, modification and change time (None when it cannot be read): what a
    result reused across queries is keyed on, so a file replaced or rewritten since is queried afresh (the
    change time is set by the kernel on every write, so restoring the mtime does not hide a rewrite).

    Example:
        >>> file_signature("no-such-file.sqlite") is None
        True
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def quote_identifier(name: str) -> str:
    """Quote an identifier for SQLite.

    Example:
        >>> quote_identifier('a"b')
        '"a""b"'
    """
    return '"' + name.replace('"', '""') + '"'


class _ClosingLRU(LRUCache):
    """An LRU of open connections that closes the one it evicts."""

    def popitem(self) -> tuple[str, SafeDatabase]:
        key, db = super().popitem()
        db.close()
        return key, db


class DatabasePool:
    """Open :class:`SafeDatabase` connections, one per file, least recently used closed past ``max_open``.

    Keyword arguments other than ``max_open`` are passed to every :class:`SafeDatabase` it opens.

    Example:
        >>> pool = DatabasePool(max_open=2)
        >>> len(pool)
        0
        >>> pool.close()
    """

    def __init__(self, *, max_open: int = 32, timeout_s: float = 5.0, **options: Any) -> None:
        self.max_open = max(1, int(max_open))
        self.timeout_s = timeout_s
        self.options = options
        self._open: LRUCache[str, SafeDatabase] = _ClosingLRU(self.max_open)

    def get(self, path: str | Path) -> SafeDatabase:
        """The open connection to ``path``, opening it (and closing the least recently used) if needed.

        Raises:
            DatabaseFault: the file cannot be opened as a SQLite database.
        """
        key = str(path)
        db = self._open.get(key)
        if db is None:
            db = self._open[key] = SafeDatabase(path, timeout_s=self.timeout_s, **self.options)
        return db

    def __contains__(self, path: object) -> bool:
        return str(path) in self._open

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[SafeDatabase]:
        return iter(list(self._open.values()))

    def close(self) -> None:
        """Close every open connection."""
        while self._open:
            self._open.popitem()
