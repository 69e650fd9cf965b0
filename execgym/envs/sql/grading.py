"""Grading a submitted query against the gold query.

Execution match, two conventions:

* ``spider`` (default): Spider test-suite semantics. Two results are equal when both are empty, or when they
  have the same numbers of rows and columns and some permutation of the predicted columns makes them equal
  as multisets of rows (as lists when the gold query orders its result with a top-level ``ORDER BY``).
  The permutation search only pairs columns whose value multisets are equal and prunes any partial
  assignment whose projected rows already differ, so it never enumerates ``k!`` permutations blindly.
* ``bird``: BIRD's rule, the set of predicted rows equals the set of gold rows.

Floats are compared after rounding to 10 significant digits, so ``AVG(x)`` and ``SUM(x) * 1.0 / COUNT(x)``
agree; ``1`` and ``1.0`` are equal (as in Python and SQLite).

Partial signals (Reasoning-SQL), each paid only for a query SQLite compiles on the task's database that reads
at least one of its tables (so ``test``, ``42``, ``SELECT``, ``DROP TABLE x`` and ``SELECT 1`` earn nothing):
``schema_link`` (Jaccard of the tables and columns read, as SQLite's authorizer resolves them, against the
gold query's) and ``ngram`` (Jaccard of token bigrams of normalised SQL). Nothing here keeps a parse tree or
the agent's text: the only cache holds gold-query signals within a byte budget.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from execgym.envs.sql.cache import ByteLRU

__all__ = [
    "METRICS",
    "SIGNAL_CACHE_BYTES",
    "QuerySignals",
    "bird_eq",
    "cache_bytes",
    "clear_caches",
    "has_order_by",
    "jaccard",
    "ngram_similarity",
    "normalize_rows",
    "normalize_value",
    "query_signals",
    "result_eq",
    "results_match",
    "schema_items",
    "schema_link_similarity",
    "sql_tokens",
]

METRICS = ("spider", "bird")
_MAX_SEARCH_NODES = 200_000  # a backstop; pruning keeps real searches to a handful of nodes


def normalize_value(value: Any) -> Hashable:
    """A value as compared: finite floats rounded to 10 significant digits, everything else unchanged.

    Example:
        >>> normalize_value(0.1 + 0.2) == normalize_value(0.3), normalize_value(2.0) == 2, normalize_value(None)
        (True, True, None)
    """
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.10g}")
    return value


def normalize_rows(rows: Sequence[Sequence[Any]]) -> list[tuple[Hashable, ...]]:
    """Every row as a tuple of normalised values."""
    return [tuple(normalize_value(v) for v in row) for row in rows]


def result_eq(gold: Sequence[Sequence[Any]], pred: Sequence[Sequence[Any]], *, order_matters: bool) -> bool:
    """Spider test-suite equality of two query results (lists of rows).

    Example:
        >>> gold = [(1, "a"), (2, "b"), (2, "b")]
        >>> result_eq(gold, [("b", 2), ("a", 1), ("b", 2)], order_matters=False)   # columns swapped
        True
        >>> result_eq(gold, [("a", 1), ("b", 2)], order_matters=False)             # a duplicate missing
        False
        >>> result_eq([(1,), (2,)], [(2,), (1,)], order_matters=True)
        False
        >>> result_eq([], [], order_matters=True)
        True
    """
    if not gold and not pred:
        return True
    if len(gold) != len(pred):
        return False
    width = len(gold[0])
    if any(len(r) != width for r in gold) or any(len(r) != width for r in pred):
        return False
    g = normalize_rows(gold)
    p = normalize_rows(pred)
    if (g == p) if order_matters else (Counter(g) == Counter(p)):
        return True
    if width == 1:
        return False
    g_cols = list(zip(*g))
    p_cols = list(zip(*p))
    g_bags = [Counter(c) for c in g_cols]
    p_bags = [Counter(c) for c in p_cols]
    candidates = [[j for j in range(width) if p_bags[j] == g_bags[i]] for i in range(width)]
    if any(not c for c in candidates):
        return False
    # Identical predicted columns are interchangeable: trying one of them is enough.
    same_as: list[int] = []
    for j in range(width):
        same_as.append(next(k for k in range(j + 1) if p_cols[k] == p_cols[j]))
    order = sorted(range(width), key=lambda i: len(candidates[i]))
    assigned_gold: list[int] = []
    assigned_pred: list[int] = []
    used = [False] * width
    budget = [_MAX_SEARCH_NODES]

    def consistent() -> bool:
        g_proj = [tuple(row[i] for i in assigned_gold) for row in g]
        p_proj = [tuple(row[j] for j in assigned_pred) for row in p]
        return g_proj == p_proj if order_matters else Counter(g_proj) == Counter(p_proj)

    def search(depth: int) -> bool:
        if depth == width:
            return True
        i = order[depth]
        tried: set[int] = set()
        for j in candidates[i]:
            if used[j] or same_as[j] in tried:
                continue
            tried.add(same_as[j])
            budget[0] -= 1
            if budget[0] < 0:
                return False
            used[j] = True
            assigned_gold.append(i)
            assigned_pred.append(j)
            if consistent() and search(depth + 1):
                return True
            used[j] = False
            assigned_gold.pop()
            assigned_pred.pop()
        return False

    return search(0)


def bird_eq(gold: Sequence[Sequence[Any]], pred: Sequence[Sequence[Any]]) -> bool:
    """BIRD's execution match: the set of predicted rows equals the set of gold rows.

    Example:
        >>> bird_eq([(1, "a"), (1, "a")], [(1, "a")]), bird_eq([(1, "a")], [("a", 1)])
        (True, False)
    """
    return set(normalize_rows(gold)) == set(normalize_rows(pred))


def results_match(
    gold: Sequence[Sequence[Any]], pred: Sequence[Sequence[Any]], *, metric: str, order_matters: bool
) -> bool:
    """Execution match under ``metric`` (``"spider"`` or ``"bird"``)."""
    if metric == "spider":
        return result_eq(gold, pred, order_matters=order_matters)
    if metric == "bird":
        return bird_eq(gold, pred)
    raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}")


_SQLITE = sqlglot.Dialect.get_or_raise("sqlite")
_WORD = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\w+|[^\w\s]")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)
SIGNAL_CACHE_BYTES = 16_000_000
"""The memory the cache of gold-query signals may hold (the gold text, its tokens)."""


@dataclass(frozen=True)
class QuerySignals:
    """What grading reads from a gold query's text: its tokens (for ``ngram``) and whether it orders its result.

    Example:
        >>> query_signals("SELECT a FROM t ORDER BY a")
        QuerySignals(tokens=('select', 'a', 'from', 't', 'order by', 'a'), ordered=True)
    """

    tokens: tuple[str, ...]
    ordered: bool


def _signals_cost(sql: Hashable, value: QuerySignals) -> int:
    return 2 * len(str(sql)) + sum(56 + len(t) for t in value.tokens) + 200


_SIGNALS: ByteLRU[QuerySignals] = ByteLRU(SIGNAL_CACHE_BYTES, _signals_cost)


def sql_tokens(sql: str) -> tuple[str, ...]:
    """The normalised token sequence of a query: keywords and identifiers lower case, string literals quoted.

    Never raises: text sqlglot cannot tokenize is split with a plain regular expression.

    Example:
        >>> sql_tokens("SELECT Name FROM t WHERE x = 'Ab';")
        ('select', 'name', 'from', 't', 'where', 'x', '=', "'Ab'")
    """
    try:
        raw = _SQLITE.tokenize(sql)
    except Exception:  # sqlglot's tokenizer on hostile text: fall back to words
        return tuple(t.lower() if not t.startswith("'") else t for t in _WORD.findall(sql))
    tokens = []
    for tok in raw:
        if tok.token_type == sqlglot.TokenType.STRING:
            tokens.append(f"'{tok.text}'")
        elif tok.token_type != sqlglot.TokenType.SEMICOLON:
            tokens.append(tok.text.lower())
    return tuple(tokens)


def _ordered(sql: str, raw: list[Any] | None) -> bool:
    if raw is not None:
        try:
            trees = [t for t in _SQLITE.parser(error_level=ErrorLevel.RAISE).parse(raw, sql) if t is not None]
        except Exception:  # a parse failure of any kind: the test-suite's textual rule below
            trees = []
        if len(trees) == 1:
            tree = trees[0]
            while isinstance(tree, exp.Subquery):
                tree = tree.this
            return tree.args.get("order") is not None
    return _ORDER_BY.search(sql) is not None


def query_signals(sql: str) -> QuerySignals:
    """Tokens and top-level ``ORDER BY`` of a (gold) query, parsed once and cached within
    :data:`SIGNAL_CACHE_BYTES`; the parse tree itself is never kept."""
    cached = _SIGNALS.get(sql)
    if cached is not None:
        return cached
    try:
        raw = _SQLITE.tokenize(sql)
    except Exception:  # untokenizable: textual fallbacks
        raw = None
    signals = QuerySignals(sql_tokens(sql), _ordered(sql, raw))
    _SIGNALS.put(sql, signals)
    return signals


def has_order_by(sql: str) -> bool:
    """Whether the query's outermost result is ordered (a top-level ``ORDER BY``).

    An ``ORDER BY`` inside a subquery does not order the outer result. When sqlglot cannot parse the query,
    any ``ORDER BY`` counts (the test-suite's own rule).

    Example:
        >>> has_order_by("SELECT a FROM t ORDER BY a"), has_order_by("SELECT * FROM (SELECT a FROM t ORDER BY a)")
        (True, False)
    """
    return query_signals(sql).ordered


def clear_caches() -> None:
    """Empty the gold-signal cache (benchmarks start every round as a fresh process would)."""
    _SIGNALS.clear()


def cache_bytes() -> int:
    """The bytes the gold-signal cache holds now (never more than :data:`SIGNAL_CACHE_BYTES`)."""
    return _SIGNALS.nbytes


def schema_items(reads: Iterable[tuple[str, str]]) -> frozenset[str]:
    """The schema items a query reads, from SQLite's authorizer: ``table:<t>`` and ``column:<t>.<c>``.

    Example:
        >>> sorted(schema_items({("books", "title"), ("authors", "")}))
        ['column:books.title', 'table:authors', 'table:books']
    """
    items = set()
    for table, column in reads:
        items.add(f"table:{table}")
        if column:
            items.add(f"column:{table}.{column}")
    return frozenset(items)


def jaccard(a: frozenset[Any] | set[Any], b: frozenset[Any] | set[Any]) -> float:
    """Jaccard similarity: size of the intersection over size of the union; 1.0 when both are empty.

    Example:
        >>> jaccard({1, 2}, {2, 3})
        0.3333333333333333
    """
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def schema_link_similarity(pred: frozenset[str], gold: frozenset[str]) -> float:
    """Jaccard of the schema items two queries read (see :func:`schema_items`); 0 when the prediction reads none.

    Example:
        >>> gold = schema_items({("books", "title"), ("books", "price")})
        >>> schema_link_similarity(schema_items({("books", "title")}), gold)
        0.6666666666666666
        >>> schema_link_similarity(frozenset(), gold), schema_link_similarity(frozenset(), frozenset())
        (0.0, 0.0)
    """
    if not pred:
        return 0.0
    return jaccard(pred, gold)


def ngram_similarity(pred: Sequence[str], gold: Sequence[str], n: int = 2) -> float:
    """Jaccard of the token n-grams of two token sequences (unigrams when either is shorter than n).

    Example:
        >>> ngram_similarity(("select", "a", "from", "t"), ("select", "a", "from", "u"))
        0.5
    """
    if len(pred) < n or len(gold) < n:
        n = 1
    grams_p = {tuple(pred[i : i + n]) for i in range(len(pred) - n + 1)}
    grams_g = {tuple(gold[i : i + n]) for i in range(len(gold) - n + 1)}
    return jaccard(grams_p, grams_g)
