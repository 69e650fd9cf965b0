"""TextToSQLEnv: answer a question over a SQLite database by exploring it with tools and submitting a query.

Registered as ``execgym/TextToSQL-v0``. Tools: ``list_tables()``, ``describe_table(name)``,
``execute_sql(query)`` and ``submit_sql(query)`` (ends the episode). The submission is graded by executing it
and the gold query on every variant of the database (Spider test-suite or BIRD semantics); the partial
signals of Reasoning-SQL (``executed``, ``syntax``, ``schema_link``, ``ngram``) and ReEx-SQL's per-step
exploration signal (``executed``, ``returned_rows``) are reported as reward components.

What earns each component (the cheapest action that does is a real query over a real table):

* ``executed`` (step and submission): the query ran without error (on every variant, for the submission)
  and read at least one of the database's tables or views. ``SELECT 1`` or a query of ``sqlite_master``
  only earns 0.
* ``returned_rows`` (step): ``executed`` and at least one row came back.
* ``syntax`` (submission): SQLite compiles it, on this database, as one read-only ``SELECT`` / ``WITH``
  query that reads at least one of its tables (it may still fail at run time or time out). Text that is
  not such a query (``test``, ``42``, ``SELECT``, ``DROP TABLE x``, ``SELECT 1``) earns 0.
* ``schema_link`` (submission): 0 unless ``syntax``; then the Jaccard similarity of the tables and
  columns it reads with those the gold query reads, both as SQLite's authorizer resolves them.
* ``ngram`` (submission): 0 unless ``syntax``; then the Jaccard similarity of token bigrams of the two
  queries' normalised text.

Speed: connections stay open across steps and episodes; a deterministic query sent again on an unchanged
file (a GRPO group's next sample, the same peek in a later episode) is answered from a byte-bounded cache
keyed by the file's identity and a digest of the text; what grading reads from the gold text alone (its
tokens and top-level ``ORDER BY``) is computed once when the task starts; the bundled tasks' gold results
are computed ahead of time and shipped (:mod:`execgym.envs.sql.gold`), so a submission runs alone.

Who failed: an error of the agent's query (syntax, a refusal, a timeout, a value or result too big, text
that is not valid Unicode) is the agent's 0; a failure of the machinery (a database file missing, replaced
by a folder, corrupt or unreadable, a gold query that fails) raises :class:`~execgym.core.errors.InfraError`
(reported as the episode's ``infra_error``). Nothing the agent sends can cause the second.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Hashable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from execgym.core.env import AgentEnv, Grade
from execgym.core.errors import InfraError
from execgym.core.report import Unit
from execgym.core.tasks import Generator, Loader, Task
from execgym.core.tools import Tool, ToolError, ToolOutput
from execgym.envs.sql.cache import ByteLRU
from execgym.envs.sql.db import (
    QUERY_KEYWORDS,
    DatabaseFault,
    DatabasePool,
    QueryError,
    QueryResult,
    SafeDatabase,
    first_keyword,
    format_result,
    format_value,
)
from execgym.envs.sql.generator import QuestionGenerator
from execgym.envs.sql.grading import (
    METRICS,
    QuerySignals,
    constant_result,
    ngram_similarity,
    query_signals,
    results_match,
    schema_items,
    schema_link_similarity,
    sql_tokens,
)
from execgym.envs.sql.tasks import bundled_tasks, load_bird, load_jsonl, load_spider

__all__ = ["TextToSQLEnv"]

_ZERO_COMPONENTS = {"executed": 0.0, "syntax": 0.0, "schema_link": 0.0, "ngram": 0.0}


# Costs are what Python really holds, counted in O(1): a cache entry's tuples, its key's parts (the path, the
# file signature of five ints, a digest or the gold text) and the cache's own bookkeeping, about 600 bytes.
_ENTRY_OVERHEAD = 600


def _key_cost(key: Hashable) -> int:
    parts = key if isinstance(key, tuple) else (key,)
    return sum(sys.getsizeof(part) for part in parts)


def _result_cost(key: Hashable, result: QueryResult) -> int:
    # Past the payload ``nbytes`` counts: a tuple per row (56 bytes and up), an object per value (40 and up), the
    # column names, the (table, column) pairs read and the result object itself (about 700 bytes).
    cells = len(result.rows) * len(result.columns)
    names = sum(sys.getsizeof(c) for c in result.columns) + 160 * len(result.reads)
    return result.nbytes + 56 * len(result.rows) + 40 * cells + names + _key_cost(key) + 700 + _ENTRY_OVERHEAD


def _shown_cost(key: Hashable, shown: tuple[str, bool, int]) -> int:
    return sys.getsizeof(shown[0]) + _key_cost(key) + _ENTRY_OVERHEAD


_CHECKED_SOURCES = tuple(f"{name}:" for name in ("spider", "bird", "jsonl"))


def _match_evidence(passed: bool, rows: int, gold_rows: int) -> str:
    verdict = "matches" if passed else "does not match"
    return f"the result ({rows:,} rows) {verdict} the gold result ({gold_rows:,} rows)"


def _open(pool: DatabasePool, path: str, source: str = "") -> SafeDatabase:
    """The pool's connection to a task's database. A loaded dataset's paths were stored resolved and checked:
    such a path must still resolve to itself (no symlink swapped in since loading)."""
    if path not in pool and source.startswith(_CHECKED_SOURCES) and os.path.realpath(path) != path:
        raise DatabaseFault(f"database file {Path(path).name!r} now resolves elsewhere than when it was loaded")
    return pool.get(path)


class TextToSQLEnv(AgentEnv):
    """Text-to-SQL over SQLite: explore with tools, submit one query, graded by execution.

    Args:
        metric: ``"spider"`` (test-suite execution match, the default) or ``"bird"`` (set equality of rows).
        max_rows_shown: rows ``execute_sql`` shows (the total row count is always stated).
        query_timeout_s: time limit of one ``execute_sql`` query.
        grading_timeout_s: time limit of each query run while grading (gold and submission).
        max_result_rows: the most rows a graded result may have (a larger submission result does not match).
        count_rows_up_to: ``execute_sql`` counts result rows up to this many.
        max_cell_chars: longer values are cut in what the agent sees.
        include_schema: put the ``CREATE TABLE`` statements in the task statement.
        max_open_databases: connections kept open (per role), least recently used closed first.
        max_query_chars: the longest query ``execute_sql`` runs and ``submit_sql`` grades (a longer one is
            refused and scores 0; it is never parsed).
        max_value_bytes: the longest string or blob the agent's queries may read or build (SQLite's length
            limit, 100 KB: it also bounds the cost of one call of ``instr()``, ``trim()`` or ``replace()``).
        max_gold_value_bytes: the same for the gold queries (at least ``max_value_bytes``).
        gold_cache_bytes: memory the cache of gold-query results may hold.
        step_cache_bytes: memory the cache of ``execute_sql`` results may hold (0: none). A query sent again
            on an unchanged file (the same text, in any episode) is answered from it unless it calls one of
            :data:`~execgym.envs.sql.db.VOLATILE_FUNCTIONS`; it is keyed by a digest, never the text.
        gold_records: grade the bundled tasks against their gold results computed ahead of time
            (:mod:`execgym.envs.sql.gold`: only for the very database file, by digest, the same gold text and
            the same SQLite); False runs every gold query live.
        allow_paths_outside_dataset: every database file a loaded dataset names must resolve (symlinks
            followed) inside the dataset's own folder; ``~``, absolute paths, ``..`` and symlinks that leave
            it are errors at load time. A list of folders allows those as well; ``True`` allows any path.
        skip_invalid_rows: skip malformed rows of a loaded dataset (counted in one warning and listed in
            ``skipped_rows``) instead of failing at construction on the first.
        **kwargs: :class:`~execgym.core.env.AgentEnv` arguments (``dataset``, ``split``, ``max_turns``, ...).

    Example:
        >>> from execgym.core import report as R
        >>> env = TextToSQLEnv(dataset="bundled")
        >>> obs, info = env.reset(options={R.TASK_ID: "bookshop-001"})
        >>> info[R.EXTRA]
        {'db_id': 'bookshop'}
        >>> print(obs.splitlines()[1])
        Question: How many authors are from Nigeria?
        >>> obs, *_ = env.step('<tool_call>{"name": "execute_sql", "arguments": '
        ...                    '{"query": "SELECT COUNT(*) FROM authors"}}</tool_call>')
        >>> print(obs)
        COUNT(*)
        80
        (1 row)
        >>> gold = "SELECT COUNT(*) FROM authors WHERE country = 'Nigeria'"
        >>> call = {"name": "submit_sql", "arguments": {"query": gold}}
        >>> obs, reward, terminated, truncated, info = env.step(call)
        >>> reward, terminated, info[R.REWARD_COMPONENTS]["executed"]
        (1.0, True, 1.0)
        >>> env.close()
    """

    description = "Text-to-SQL: explore a SQLite database with tools, submit one query; graded by execution."
    default_max_turns = 10
    loaders = {"spider": load_spider, "bird": load_bird, "jsonl": load_jsonl}

    def __init__(
        self,
        *,
        metric: str = "spider",
        max_rows_shown: int = 20,
        query_timeout_s: float = 5.0,
        grading_timeout_s: float = 10.0,
        max_result_rows: int = 100_000,
        count_rows_up_to: int = 100_000,
        max_cell_chars: int = 200,
        include_schema: bool = False,
        max_open_databases: int = 16,
        max_query_chars: int = 20_000,
        max_value_bytes: int = 100_000,
        max_gold_value_bytes: int = 1_000_000,
        gold_cache_bytes: int = 64_000_000,
        step_cache_bytes: int = 16_000_000,
        gold_records: bool = True,
        allow_paths_outside_dataset: bool | Sequence[str | os.PathLike[str]] = False,
        skip_invalid_rows: bool = False,
        **kwargs: Any,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if max_rows_shown < 1:
            raise ValueError(f"max_rows_shown must be >= 1, got {max_rows_shown}")
        self.metric = metric
        self.max_rows_shown = int(max_rows_shown)
        self.query_timeout_s = float(query_timeout_s)
        self.grading_timeout_s = float(grading_timeout_s)
        self.max_result_rows = int(max_result_rows)
        self.count_rows_up_to = int(count_rows_up_to)
        self.max_cell_chars = int(max_cell_chars)
        self.include_schema = bool(include_schema)
        self.max_query_chars = int(max_query_chars)
        if isinstance(allow_paths_outside_dataset, (str, bytes, os.PathLike)):
            raise TypeError("allow_paths_outside_dataset must be True/False or a list of folders")
        allowed: tuple[Path, ...] | None = None
        if allow_paths_outside_dataset is not True:
            allowed = tuple(Path(d).expanduser().resolve() for d in (allow_paths_outside_dataset or ()))
        self.allow_paths_outside_dataset = allow_paths_outside_dataset
        self.skipped_rows: list[str] = []
        self._allowed_dirs = allowed
        self._skip_invalid_rows = bool(skip_invalid_rows)
        # The agent's queries and the gold queries never share a connection.
        self._agent_dbs = DatabasePool(max_open=max_open_databases, timeout_s=self.query_timeout_s,
                                       max_value_bytes=max_value_bytes, max_sql_chars=self.max_query_chars)
        # The gold queries are the operator's: they may call printf() and read bigger values.
        self._gold_dbs = DatabasePool(max_open=max_open_databases, timeout_s=self.grading_timeout_s,
                                      max_value_bytes=max(max_value_bytes, max_gold_value_bytes),
                                      allow_unbounded_functions=True)
        self._gold_results: ByteLRU[QueryResult] = ByteLRU(gold_cache_bytes, _result_cost)
        self.gold_records = bool(gold_records)
        self._gold_value_bytes = max(max_value_bytes, max_gold_value_bytes)
        # What execute_sql showed for a deterministic query: (text shown, executed, rows), by file and digest.
        self._shown: ByteLRU[tuple[str, bool, int]] = ByteLRU(step_cache_bytes, _shown_cost)
        self._db: SafeDatabase | None = None
        self._submission: str | None = None
        super().__init__(**kwargs)

    # ----------------------------------------------------------------- task sources
    def bundled_tasks(self) -> list[Task]:
        return bundled_tasks()

    def task_generator(self) -> Generator | None:
        return QuestionGenerator()

    def task_loaders(self) -> Mapping[str, Loader]:
        # The loaders get this env's path policy and row policy (the class attribute holds the bare ones).
        return {name: partial(fn, allowed_dirs=self._allowed_dirs, skip_invalid_rows=self._skip_invalid_rows,
                              skipped=self.skipped_rows)
                for name, fn in self.loaders.items()}

    # ----------------------------------------------------------------- episode hooks
    def _reset_extra(self, task: Task) -> Mapping[str, Any]:
        return {"db_id": task.data["db_id"]}

    def _begin(self, task: Task) -> str:
        paths = task.data["db_paths"]
        if not paths:
            raise ValueError(f"task {task.id!r} names no database file")
        self._db = _open(self._agent_dbs, paths[0], task.source)
        self._submission = None
        # What grading reads from the gold text alone (tokens, top-level ORDER BY) is computed as the task
        # starts, once per gold text while it stays in the signal cache.
        query_signals(task.data["gold"])
        statement = task.prompt
        if self.include_schema:
            statement += "\n\nSchema:\n" + self._db.schema_sql()
        return statement

    def _system_prompt(self, task: Task) -> str:
        return (
            "You answer questions about a SQLite database by writing SQL. Call a tool by writing "
            '<tool_call>{"name": <tool>, "arguments": {...}}</tool_call>. Tools: list_tables() lists the tables; '
            "describe_table(name) shows a table's columns, keys and sample rows; execute_sql(query) runs one "
            f"read-only query and shows up to {self.max_rows_shown} rows of its result; submit_sql(query) submits "
            "your final query and ends the episode. A reply with no tool call but a ```sql fenced block runs that "
            "block with execute_sql. The submitted query's result is compared with the correct answer's result."
        )

    def _tools_key(self, task: Task) -> Hashable:
        return "sql"  # the same four tools for every task: built once per env, not once per task

    def _tools(self, task: Task) -> list[Tool]:
        # Built once by the core: the tools read the episode's database from self when called.
        return [
            Tool.from_function(self.list_tables),
            Tool.from_function(self.describe_table),
            Tool.from_function(
                self.execute_sql,
                description=(
                    f"Run one read-only SQLite query and see its result (at most {self.max_rows_shown} rows "
                    "shown, with the total row count) or the database's error message."
                ),
                code_arg="query",
            ),
            Tool.from_function(self.submit_sql, terminal=True),
        ]

    def _snapshot_state(self) -> dict[str, Any]:
        # The database never changes: the episode's state is which database and what was submitted.
        return {"submission": self._submission}

    def _restore_state(self, state: dict[str, Any]) -> None:
        assert self.task is not None
        self._db = _open(self._agent_dbs, self.task.data["db_paths"][0], self.task.source)
        self._submission = state["submission"]

    def _end(self) -> None:
        # Connections stay open across episodes (same database, next task): only the episode's state goes.
        self._db = None
        self._submission = None

    def close(self) -> None:
        super().close()
        self._agent_dbs.close()
        self._gold_dbs.close()
        self._gold_results.clear()
        self._shown.clear()
        generator = getattr(self.tasks, "generator", None)
        if isinstance(generator, QuestionGenerator):
            generator.close()

    # ----------------------------------------------------------------- tools
    def _database(self) -> SafeDatabase:
        if self._db is None:
            raise ToolError("no episode is running: call reset() first")
        return self._db

    def list_tables(self) -> str:
        """List the database's tables with their row counts."""
        db = self._database()
        lines = []
        # Counting rows of a big table takes a full scan: the whole listing gets a two-second budget.
        deadline = time.perf_counter() + 2.0
        for table in db.tables():
            remaining = deadline - time.perf_counter()
            count = db.row_count(table, timeout_s=min(1.0, remaining)) if remaining > 0 else None
            lines.append(f"{table} ({'?' if count is None else f'{count:,}'} rows)")
        return "\n".join(lines) if lines else "(the database has no tables)"

    def describe_table(self, name: str) -> str:
        """Show a table's columns (types, keys), its foreign keys and three sample rows.

        Args:
            name: the table's name (as listed by list_tables).
        """
        db = self._database()
        table = db.resolve_table(name)
        if table is None:
            raise ToolError(f"no table named {name!r}; tables: {', '.join(db.tables())}")
        try:
            info = db.describe(table)
        except QueryError as exc:
            raise ToolError(f"could not describe {table!r}: {exc}") from None
        count = db.row_count(table)
        lines = [f"Table {table} ({'?' if count is None else f'{count:,}'} rows)", "Columns:"]
        pk = [c["name"] for c in sorted(info.columns, key=lambda c: c["pk"]) if c["pk"]]
        for col in info.columns:
            flags = []
            if col["pk"] and len(pk) == 1:
                flags.append("PRIMARY KEY")
            if col["notnull"]:
                flags.append("NOT NULL")
            if [col["name"]] in info.unique:
                flags.append("UNIQUE")
            if col["default"] is not None:
                flags.append(f"DEFAULT {col['default']}")
            lines.append(f"  {col['name']} {col['type'] or '(no type)'}" + (" " + " ".join(flags) if flags else ""))
        if len(pk) > 1:
            lines.append(f"Primary key: ({', '.join(pk)})")
        for cols in info.unique:
            if len(cols) > 1:
                lines.append(f"Unique: ({', '.join(cols)})")
        if info.foreign_keys:
            lines.append("Foreign keys:")
            lines.extend(f"  {fk['column']} -> {fk['table']}.{fk['to']}" for fk in info.foreign_keys)
        if info.sample is not None:
            lines.append(f"Sample rows ({len(info.sample.rows)}):")
            header = " | ".join(info.sample.columns)
            lines.append(header)
            lines.extend(" | ".join(format_value(v, 80) for v in row) for row in info.sample.rows)
        return "\n".join(lines)

    def execute_sql(self, query: str) -> ToolOutput:
        """Run one read-only SQLite query and see its result or the database's error message.

        Args:
            query: one SQLite statement (SELECT or WITH).
        """
        db = self._database()
        key: tuple[Any, ...] | None = None
        if self._shown.max_bytes > 0 and isinstance(query, str):
            signature = db.file_signature()
            if signature is not None:
                digest = hashlib.blake2b(query.encode("utf-8", "surrogatepass"), digest_size=16).digest()
                key = (str(db.path), signature, digest)
                shown = self._shown.get(key)
                if shown is not None:
                    return self._shown_output(*shown, elapsed_s=0.0, cached=True)
        try:
            result = db.execute(query, keep_rows=self.max_rows_shown, count_rows_up_to=self.count_rows_up_to,
                                max_bytes=4_000_000)
        except QueryError as exc:
            return ToolOutput(f"Error: {exc}", components={"executed": 0.0, "returned_rows": 0.0}, is_error=True,
                              data={"error_kind": exc.kind})
        executed = result.reads_database
        output = format_result(result, self.max_cell_chars)
        if not executed:
            output += "\n(this query reads none of the database's tables)"
        if key is not None and result.deterministic:
            self._shown.put(key, (output, executed, result.total_rows))
        return self._shown_output(output, executed, result.total_rows, elapsed_s=result.elapsed_s, cached=False)

    @staticmethod
    def _shown_output(output: str, executed: bool, rows: int, *, elapsed_s: float, cached: bool) -> ToolOutput:
        return ToolOutput(
            output,
            components={"executed": float(executed), "returned_rows": float(executed and rows > 0)},
            data={"rows": rows, "elapsed_s": elapsed_s, "cached": cached},
        )

    def submit_sql(self, query: str) -> str:
        """Submit your final SQL query. This ends the episode; the query is graded by running it.

        Args:
            query: one SQLite statement whose result answers the question.
        """
        self._submission = query
        return "Submitted. The episode is over."

    # ----------------------------------------------------------------- grading
    def _gold_result(self, path: str, gold: str) -> QueryResult:
        assert self.task is not None
        name = Path(path).name
        if self.gold_records and not self.task.source.startswith(_CHECKED_SOURCES):
            # Precomputed for this very file (by content digest), query and SQLite: nothing to run. (Imported
            # here so that ``python -m execgym.envs.sql.gold`` finds its module not yet imported.)
            from execgym.envs.sql.gold import shipped_records

            record = shipped_records().lookup(path, gold, max_rows=self.max_result_rows,
                                              max_value_bytes=self._gold_value_bytes)
            if record is not None:
                return record
        try:
            gold_db = _open(self._gold_dbs, path, self.task.source)
        except InfraError:
            raise
        except Exception as exc:
            raise InfraError(f"the gold database {name} could not be opened: {type(exc).__name__}: {exc}") from None
        # Keyed by the file's signature too: a database changed since is graded against its new contents.
        signature = gold_db.file_signature()
        key = (path, signature, gold)
        cached = self._gold_results.get(key) if signature is not None else None
        if cached is not None:
            return cached
        try:
            result = gold_db.execute(gold, keep_rows=self.max_result_rows,
                                                         timeout_s=self.grading_timeout_s)
        except InfraError:
            raise
        except QueryError as exc:
            raise InfraError(f"the gold query fails on {name}: {exc}") from None
        except Exception as exc:  # any other failure of the gold side is the machinery's, never the agent's
            raise InfraError(f"the gold query could not be run on {name}: {type(exc).__name__}: {exc}") from None
        if not result.complete:
            raise InfraError(f"the gold result on {name} exceeds {self.max_result_rows:,} rows or the byte cap")
        if signature is not None and result.deterministic:
            self._gold_results.put(key, result)
        return result

    def _grade(self, submitted: bool) -> Grade:
        assert self.task is not None
        data = self.task.data
        details: dict[str, Any] = {"db_id": data["db_id"], "metric": self.metric}
        query = self._submission
        if not submitted or query is None:
            details["error"] = "no query was submitted"
            return Grade(outcome=0.0, components=dict(_ZERO_COMPONENTS), details=details)
        gold = data["gold"]
        gold_signals = query_signals(gold)
        details["order_matters"] = gold_signals.ordered
        paths: list[str] = list(data["db_paths"])
        # The gold side first: if the machinery cannot grade, nothing the agent sent is judged.
        gold_results = [self._gold_result(path, gold) for path in paths]
        try:
            return self._grade_submission(query, paths, gold_results, gold_signals, details)
        except (MemoryError, RecursionError, OverflowError, UnicodeError) as exc:
            # what the submission's own text or rows can set off (huge or deep results, odd text): its 0
            details["error"] = f"grading the submission failed: {type(exc).__name__}: {exc}"
            return Grade(outcome=0.0, components=dict(_ZERO_COMPONENTS), details=details)
        except InfraError:
            raise
        except Exception as exc:  # anything else is a fault of the grader, never a 0 of the policy's
            raise InfraError(f"SQL grading failed: {type(exc).__name__}: {exc}") from exc

    def _grade_submission(self, query: str, paths: list[str], gold_results: list[QueryResult],
                          gold_signals: QuerySignals, details: dict[str, Any]) -> Grade:
        assert self.task is not None
        units: list[Unit] = []
        executed = True
        compiled = False
        reads: frozenset[tuple[str, str]] = frozenset()
        for path, gold_result in zip(paths, gold_results):
            unit_id = Path(path).name
            db = _open(self._agent_dbs, path, self.task.source)
            try:
                pred = db.execute(query, keep_rows=self.max_result_rows, timeout_s=self.grading_timeout_s)
            except QueryError as exc:
                executed = False
                # A timeout or a run-time error means it compiled; otherwise ask SQLite without running it.
                compiled = compiled or exc.kind == "timeout" or (exc.kind == "sql" and db.compiles(query))
                reads = reads or (db.last_reads if compiled else frozenset())
                details["error"] = str(exc)
                units.append(Unit(unit_id, False, str(exc)))
                # Test-suite semantics: an error on any variant fails the whole submission.
                units.extend(Unit(Path(p).name, False, "not run") for p in paths[len(units):])
                break
            compiled = True
            reads = reads or pred.reads
            if not pred.complete:
                units.append(Unit(unit_id, False, f"result exceeds {self.max_result_rows:,} rows or the byte cap"))
                continue
            passed = results_match(gold_result.rows, pred.rows, metric=self.metric,
                                   order_matters=gold_signals.ordered)
            units.append(Unit(unit_id, passed, _match_evidence(passed, len(pred.rows), len(gold_result.rows)),
                              extra={"rows": len(pred.rows), "gold_rows": len(gold_result.rows)}))
        outcome = float(bool(units) and all(u.passed for u in units))
        gold_items = schema_items(gold_results[0].reads)
        pred_items = schema_items(reads)
        hack_flags = []
        if compiled and pred_items and constant_result(query) and not constant_result(self.task.data["gold"]):
            # Every result column is a literal: the tables it reads only make the written-out answer legal, so
            # they earn nothing (no syntax, schema_link or ngram) and the answer scores 0, flagged.
            hack_flags.append("the submitted query's result columns are all literals: the answer is written out "
                              "(the tables it reads do not make it a query of the data)")
            outcome = 0.0
            pred_items = frozenset()
        is_query = first_keyword(query) in QUERY_KEYWORDS
        syntax = compiled and is_query and bool(pred_items)
        if outcome and gold_items and not pred_items:
            hack_flags.append("the submitted query reads no table: the answer is written out as literals")
        components = {
            "executed": float(executed and syntax),
            "syntax": float(syntax),
            "schema_link": schema_link_similarity(pred_items, gold_items) if syntax else 0.0,
            "ngram": ngram_similarity(sql_tokens(query), gold_signals.tokens) if syntax else 0.0,
        }
        return Grade(outcome=outcome, components=components, units=units, hack_flags=hack_flags, details=details)
