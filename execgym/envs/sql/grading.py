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

from execgym.envs.sql.cache import ByteLRU

__all__ = [
    "METRICS",
    "SIGNAL_CACHE_BYTES",
    "QuerySignals",
    "bird_eq",
    "cache_bytes",
    "clear_caches",
    "constant_result",
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
_ORDER_WORD = re.compile(r"\border\b", re.IGNORECASE)
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


# The plain SQL most queries are written in, tokenized by one regular expression exactly as sqlglot's SQLite
# tokenizer does (words and quoted identifiers lower case, strings quoted, two-word keywords joined by one
# space, semicolons dropped); anything else (comments, unusual operators, non-ASCII, ...) goes to sqlglot.
_PLAIN_SQL = re.compile(r"""[A-Za-z0-9_\s(),.*=<>!+\-/%|;'"`\[\]]*""")
_PLAIN_UNSURE = re.compile(r"""--|/\*|<=>|->|<<|>>|=>|\|>|-\|-|!(?!=)|(?<!\w)\d+(?:\.\d*)?[A-Za-z_]""")
_PLAIN_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<word>[A-Za-z_]\w*)|(?P<num>\d+(?:\.\d*)?)|'(?P<str>(?:[^']|'')*)'"""
    r"""|"(?P<dq>(?:[^"]|"")*)"|`(?P<bq>(?:[^`]|``)*)`|\[(?P<br>[^\]]*)\]"""
    r"""|(?P<op>!=|<=|>=|<>|==|\|\||[(),.*=<>+\-/%|;])"""
)
_TWO_WORD_KEYWORDS = frozenset(
    k.lower() for k in _SQLITE.tokenizer_class.KEYWORDS if k.count(" ") == 1 and k.replace(" ", "").isalpha()
)


def _plain_tokens(sql: str) -> tuple[str, ...] | None:
    """``sql_tokens`` by one regular expression, or None when the text is not plain enough to be sure."""
    if _PLAIN_SQL.fullmatch(sql) is None or _PLAIN_UNSURE.search(sql) is not None:
        return None
    tokens: list[str] = []
    last_word = False  # the previous token is a bare word with nothing but whitespace since
    pos = 0
    for match in _PLAIN_TOKEN.finditer(sql):
        if match.start() != pos:
            return None  # an unterminated quote, or a character no branch takes
        pos = match.end()
        kind = match.lastgroup
        text = match.group(kind) if kind else ""
        if kind == "ws":
            continue
        if kind == "word":
            word = text.lower()
            if last_word and f"{tokens[-1]} {word}" in _TWO_WORD_KEYWORDS:
                tokens[-1] = f"{tokens[-1]} {word}"
                last_word = False
                continue
            tokens.append(word)
            last_word = True
            continue
        last_word = False
        if kind == "num":
            tokens.append(text)
        elif kind == "str":
            tokens.append("'" + text.replace("''", "'") + "'")
        elif kind == "dq":
            tokens.append(text.replace('""', '"').lower())
        elif kind == "bq":
            tokens.append(text.replace("``", "`").lower())
        elif kind == "br":
            tokens.append(text.lower())
        elif text != ";":
            tokens.append(text)
    if pos != len(sql):
        return None
    return tuple(tokens)


def sql_tokens(sql: str) -> tuple[str, ...]:
    """The normalised token sequence of a query: keywords and identifiers lower case, string literals quoted.

    Plain SQL is tokenized by one regular expression (the same tokens sqlglot's SQLite tokenizer gives, at a
    tenth of the time); other text by sqlglot. Never raises: text sqlglot cannot tokenize is split with a plain
    regular expression.

    Example:
        >>> sql_tokens("SELECT Name FROM t WHERE x = 'Ab';")
        ('select', 'name', 'from', 't', 'where', 'x', '=', "'Ab'")
    """
    plain = _plain_tokens(sql)
    if plain is not None:
        return plain
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


# Quoted strings and identifiers (an unterminated one runs to the end), comments, parentheses and words: all a
# scan for the outermost ORDER BY needs to tell nesting from text.
_ORDER_LEXEME = re.compile(
    r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?|--[^\n]*|/\*.*?(?:\*/|\Z)|[()]|[A-Za-z_]\w*|\S""",
    re.DOTALL,
)


def _ordered(sql: str) -> bool:
    """Whether ``ORDER BY`` occurs at the outermost nesting level of the statement (outside every subquery,
    CTE body, window or aggregate argument list), read from the text in one pass without a parse tree.

    The outermost level is the shallowest one any word sits at, so a statement wrapped whole in parentheses
    still counts as ordered. Text that is not SQL is read the same way: any ``ORDER BY`` at its top counts
    (the test-suite's own textual rule).
    """
    if _ORDER_WORD.search(sql) is None:
        return False
    depth = 0
    base: int | None = None
    after_order: int | None = None  # the depth an ORDER keyword was just seen at
    for match in _ORDER_LEXEME.finditer(sql):
        text = match.group()
        first = text[0]
        if first == "(":
            depth += 1
            after_order = None
            continue
        if first == ")":
            depth = max(0, depth - 1)
            after_order = None
            continue
        if text.startswith(("--", "/*")):
            continue  # comments separate words but are not words
        if base is None or depth < base:
            base = depth
        word = text.lower()
        if word == "by" and after_order is not None and after_order == depth == base:
            return True
        after_order = depth if word == "order" else None
    return False


_AGGREGATES = frozenset({"count", "sum", "avg", "min", "max", "total", "group_concat", "string_agg",
                         "json_group_array", "json_group_object", "jsonb_group_array", "jsonb_group_object"})
_EXPRESSION_WORDS = frozenset({"null", "true", "false", "case", "when", "then", "else", "end", "and", "or", "not",
                               "is", "in", "between", "like", "glob", "cast", "as", "collate", "escape", "distinct",
                               "all", "isnull", "notnull", "nocase", "binary", "rtrim"})
_LIST_ENDS = frozenset({"from", "where", "group", "having", "window", "order", "limit", "union", "intersect",
                        "except"})
_NAME_START = re.compile(r"""[A-Za-z_"`\[]""")


def _constant_item(item: list[str]) -> bool:
    """Whether one result expression (its lexemes) is built from literals only: no column, star, subquery,
    aggregate or window; a trailing alias and CAST's type name are names, not columns."""
    for i, lex in enumerate(item):
        low = lex.lower()
        prev = item[i - 1].lower() if i else ""
        nxt = item[i + 1] if i + 1 < len(item) else ""
        if lex.startswith("'") or lex in ("(", ")", ","):
            continue
        if not _NAME_START.match(lex):
            if lex in ("*", "?", ":", "@", "$"):
                return False
            continue
        if prev == "as":
            continue  # an alias or a type name
        if low in ("select", "values", "over", "filter"):
            return False
        if low in _EXPRESSION_WORDS:
            continue
        if nxt == "(" and lex[0].isalpha():
            if low in _AGGREGATES:
                return False
            continue  # a scalar function of what follows
        if i and (item[i - 1].isdigit() or item[i - 1] == ".") and re.fullmatch(r"[eE]\d*|[xX][0-9A-Fa-f]*", lex):
            continue  # 1e5, 0x1F
        if low == "x" and nxt.startswith("'"):
            continue  # a blob literal
        if i == len(item) - 1 and i and (prev in ("end", "null", ")") or prev[-1:].isdigit() or prev.startswith("'")):
            continue  # a bare alias
        return False
    return True


def constant_result(sql: str) -> bool:
    """Whether every result column of the statement is built from literals only (``SELECT 11 FROM t``,
    ``VALUES (1)``, ``SELECT 'a' AS x UNION SELECT 'b'``), however many tables it reads: such a result is the
    answer written out. False when any column may come from the data, or the text cannot be read.

    Example:
        >>> constant_result("SELECT 11 AS n FROM authors WHERE country = 'Nigeria' LIMIT 1")
        True
        >>> constant_result("SELECT COUNT(*) FROM authors"), constant_result("SELECT a.name, 1 FROM authors a")
        (False, False)
    """
    lexemes = [m.group() for m in _ORDER_LEXEME.finditer(sql) if not m.group().startswith(("--", "/*"))]
    depths = []
    depth = 0
    for lex in lexemes:
        if lex == ")":
            depth -= 1
        depths.append(depth)
        if lex == "(":
            depth += 1
    words = [d for lex, d in zip(lexemes, depths) if _NAME_START.match(lex)]
    if not words:
        return False
    base = min(words)
    lists: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for lex, d in zip(lexemes, depths):
        low = lex.lower()
        if d == base and low in ("select", "values"):
            current = [[]]
            lists.append(current)
            if low == "values":
                current[0].append("(")  # a VALUES row: its expressions, read as one item
            continue
        if current is None:
            continue
        if d == base and low in _LIST_ENDS:
            current = None
        elif d == base and lex == ",":
            current.append([])
        elif d >= base:
            current[-1].append(lex)
    if not lists:
        return False
    return all(item and _constant_item(item) for items in lists for item in items)


def query_signals(sql: str) -> QuerySignals:
    """Tokens and top-level ``ORDER BY`` of a (gold) query, computed once and cached within
    :data:`SIGNAL_CACHE_BYTES` (a task's gold is read when its episode starts); no parse tree is made."""
    cached = _SIGNALS.get(sql)
    if cached is not None:
        return cached
    signals = QuerySignals(sql_tokens(sql), _ordered(sql))
    _SIGNALS.put(sql, signals)
    return signals


def has_order_by(sql: str) -> bool:
    """Whether the query's outermost result is ordered (a top-level ``ORDER BY``).

    An ``ORDER BY`` inside a subquery, a CTE, a window or an aggregate's arguments does not order the outer
    result; one at the top level of text that is not SQL still counts (the test-suite's own textual rule).

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
