"""Execution-match semantics (Spider test-suite and BIRD) and the partial reward signals."""

from __future__ import annotations

import doctest
import itertools
import random

import pytest

from execgym.envs.sql import cache, db, generator, grading, tasks
from execgym.envs.sql import env as env_module
from execgym.envs.sql.grading import (
    bird_eq,
    has_order_by,
    jaccard,
    ngram_similarity,
    normalize_value,
    result_eq,
    results_match,
    schema_items,
    schema_link_similarity,
    sql_tokens,
)


@pytest.mark.parametrize("module", [cache, db, grading, tasks, generator, env_module])
def test_doctests_run(module):
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


# ------------------------------------------------------------------------------------------ result_eq
def test_both_empty_are_equal_whatever_the_columns():
    assert result_eq([], [], order_matters=False)
    assert result_eq([], [], order_matters=True)


def test_one_empty_is_not_equal():
    assert not result_eq([(1,)], [], order_matters=False)
    assert not result_eq([], [(1,)], order_matters=False)


def test_row_and_column_counts_must_match():
    assert not result_eq([(1,), (2,)], [(1,)], order_matters=False)
    assert not result_eq([(1, 2)], [(1, 2, 3)], order_matters=False)
    assert not result_eq([(1, 2)], [(1,)], order_matters=False)


def test_column_permutation_is_accepted():
    gold = [(1, "a", 2.5), (2, "b", 3.5)]
    pred = [("a", 2.5, 1), ("b", 3.5, 2)]
    assert result_eq(gold, pred, order_matters=False)
    assert result_eq(gold, pred, order_matters=True)


def test_column_permutation_must_keep_rows_together():
    # Each column of pred has the same values as a column of gold, but the pairing across columns differs.
    gold = [(1, "a"), (2, "b")]
    pred = [(1, "b"), (2, "a")]
    assert not result_eq(gold, pred, order_matters=False)


def test_columns_with_equal_value_multisets_are_disambiguated():
    gold = [(1, 2), (2, 1), (1, 1)]
    swapped = [(2, 1), (1, 2), (1, 1)]
    assert result_eq(gold, swapped, order_matters=False)
    assert not result_eq(gold, [(1, 2), (1, 2), (1, 1)], order_matters=False)


def test_duplicates_count_as_multisets():
    assert result_eq([(1,), (1,), (2,)], [(2,), (1,), (1,)], order_matters=False)
    assert not result_eq([(1,), (1,), (2,)], [(1,), (2,), (2,)], order_matters=False)
    assert not result_eq([(1,), (2,)], [(1,), (1,)], order_matters=False)


def test_row_order_counts_only_when_ordered():
    gold = [(1, "x"), (2, "y"), (3, "z")]
    shuffled = [(3, "z"), (1, "x"), (2, "y")]
    assert result_eq(gold, shuffled, order_matters=False)
    assert not result_eq(gold, shuffled, order_matters=True)
    assert result_eq(gold, [("x", 1), ("y", 2), ("z", 3)], order_matters=True)


def test_nulls_compare_equal_to_nulls_only():
    assert result_eq([(None, 1), (2, None)], [(2, None), (None, 1)], order_matters=False)
    assert not result_eq([(None,)], [(0,)], order_matters=False)
    assert not result_eq([(None,)], [("",)], order_matters=False)
    assert result_eq([(None, None)], [(None, None)], order_matters=True)


def test_floats_are_compared_after_rounding():
    assert result_eq([(0.1 + 0.2,)], [(0.3,)], order_matters=False)
    assert result_eq([(81697.3900000001,)], [(81697.39,)], order_matters=False)
    assert result_eq([(2,)], [(2.0,)], order_matters=False)
    assert not result_eq([(0.5,)], [(0.50001,)], order_matters=False)
    assert normalize_value(float("inf")) == float("inf")


def test_mixed_types_do_not_crash():
    assert not result_eq([(1, "1")], [("1", 1.5)], order_matters=False)
    assert result_eq([(b"\x00", 1)], [(1, b"\x00")], order_matters=False)


@pytest.mark.timeout(120)  # a hang guard: a blind search would take hours (12! permutations)
def test_wide_tables_with_identical_columns_are_fast():
    gold = [tuple([i] * 12) for i in range(50)]
    pred = list(reversed(gold))
    assert result_eq(gold, pred, order_matters=False)
    assert not result_eq(gold, [*pred[:-1], tuple([99] * 12)], order_matters=False)


@pytest.mark.timeout(120)  # a hang guard, not a timing assertion
def test_wide_tables_with_shuffled_columns_are_fast():
    rng = random.Random(0)
    rows = [tuple(rng.randint(0, 3) for _ in range(10)) for _ in range(200)]
    perm = list(range(10))
    rng.shuffle(perm)
    pred = [tuple(r[j] for j in perm) for r in rows]
    assert result_eq(rows, pred, order_matters=False)


def test_matches_brute_force_on_random_small_results():
    rng = random.Random(1)

    def brute(gold, pred, ordered):
        if not gold and not pred:
            return True
        if len(gold) != len(pred) or len(gold[0]) != len(pred[0]):
            return False
        for perm in itertools.permutations(range(len(gold[0]))):
            permuted = [tuple(r[j] for j in perm) for r in pred]
            if (gold == permuted) if ordered else (sorted(gold) == sorted(permuted)):
                return True
        return False

    for _ in range(400):
        width, height = rng.randint(1, 4), rng.randint(0, 4)
        gold = [tuple(rng.randint(0, 2) for _ in range(width)) for _ in range(height)]
        pred = [tuple(rng.randint(0, 2) for _ in range(width)) for _ in range(height)]
        if rng.random() < 0.5 and gold:
            perm = list(range(width))
            rng.shuffle(perm)
            pred = [tuple(r[j] for j in perm) for r in gold]
            if rng.random() < 0.5:
                rng.shuffle(pred)
        for ordered in (False, True):
            assert result_eq(gold, pred, order_matters=ordered) == brute(gold, pred, ordered), (gold, pred)


# ------------------------------------------------------------------------------------------ BIRD
def test_bird_compares_sets_of_rows():
    assert bird_eq([(1,), (1,), (2,)], [(2,), (1,)])
    assert not bird_eq([(1, "a")], [("a", 1)])
    assert bird_eq([], [])
    assert not bird_eq([(None,)], [])
    assert results_match([(1, 2)], [(2, 1)], metric="spider", order_matters=False)
    assert not results_match([(1, 2)], [(2, 1)], metric="bird", order_matters=False)
    with pytest.raises(ValueError, match="unknown metric"):
        results_match([], [], metric="exact", order_matters=False)


# ------------------------------------------------------------------------------------------ ORDER BY
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a FROM t ORDER BY a", True),
        ("select a from t order by a desc limit 3", True),
        ("SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 3)", False),
        ("SELECT a FROM t WHERE a IN (SELECT b FROM u ORDER BY b LIMIT 1)", False),
        ("SELECT a FROM t UNION SELECT b FROM u ORDER BY 1", True),
        ("WITH c AS (SELECT 1 AS x) SELECT x FROM c ORDER BY x", True),
        ("SELECT a FROM t", False),
        ("SELEC broken ORDER BY x", True),  # unparseable: any ORDER BY counts
        ("(SELECT a FROM t ORDER BY a)", True),  # wrapped whole in parentheses
        ("SELECT a FROM t ORDER /* why */ BY a", True),
        ("SELECT a FROM t ORDER\nBY a", True),
        ("SELECT row_number() OVER (ORDER BY a) FROM t", False),  # a window's order
        ("SELECT a FROM t WINDOW w AS (ORDER BY a)", False),
        ("SELECT group_concat(a ORDER BY a) FROM t", False),  # an aggregate's argument order
        ("WITH c AS (SELECT x FROM t ORDER BY x) SELECT * FROM c", False),
        ("SELECT 'order by' FROM t", False),  # text, not syntax
        ('SELECT "order", [order by] FROM t', False),
        ("SELECT a FROM t -- order by a", False),
        ("SELECT a FROM t WHERE b = ')' ORDER BY a", True),  # a quoted parenthesis is not nesting
    ],
)
def test_has_order_by(sql, expected):
    assert has_order_by(sql) is expected


# ------------------------------------------------------------------------------------------ partial signals
def _reads(sql: str) -> frozenset[str]:
    database = db.SafeDatabase(tasks.bundled_db_path("bookshop"))
    try:
        return schema_items(database.execute(sql, keep_rows=1).reads)
    finally:
        database.close()


def test_schema_items_come_from_sqlite_tables_columns_views_and_ctes():
    items = _reads("WITH big AS (SELECT book_id FROM books WHERE price > 10) SELECT b.title FROM books AS b "
                   "JOIN big ON big.book_id = b.book_id")
    assert items == {"table:books", "column:books.book_id", "column:books.price", "column:books.title"}
    assert _reads("SELECT COUNT(*) FROM authors") == {"table:authors"}
    assert _reads("SELECT 1") == frozenset()
    assert _reads("SELECT name FROM sqlite_master") == frozenset()


def test_schema_link_similarity():
    gold = _reads("SELECT title FROM books WHERE price > 1")
    assert schema_link_similarity(gold, gold) == 1.0
    partial = _reads("SELECT title FROM books")
    assert 0 < schema_link_similarity(partial, gold) < 1
    assert schema_link_similarity(_reads("SELECT name FROM authors"), gold) == 0.0
    assert schema_link_similarity(frozenset(), gold) == 0.0
    assert schema_link_similarity(frozenset(), frozenset()) == 0.0


def test_ngram_similarity():
    a = sql_tokens("SELECT name FROM items WHERE price > 1")
    b = sql_tokens("select NAME from ITEMS where PRICE > 1")
    assert ngram_similarity(a, b) == 1.0
    c = sql_tokens("SELECT COUNT(*) FROM sales")
    assert ngram_similarity(a, c) < 0.3
    assert ngram_similarity(("x",), ("x",)) == 1.0
    assert jaccard(set(), set()) == 1.0
    # Hostile text never raises: it falls back to plain words.
    assert sql_tokens("SELECT 'unterminated") and sql_tokens("\ud800 ((((") is not None


def _sqlglot_tokens(sql: str) -> tuple[str, ...]:
    import sqlglot

    out = []
    for tok in sqlglot.Dialect.get_or_raise("sqlite").tokenize(sql):
        if tok.token_type == sqlglot.TokenType.STRING:
            out.append(f"'{tok.text}'")
        elif tok.token_type != sqlglot.TokenType.SEMICOLON:
            out.append(tok.text.lower())
    return tuple(out)


def test_the_plain_sql_tokenizer_gives_sqlglots_tokens():
    import random

    from execgym.envs.sql.grading import _plain_tokens

    golds = [t.data["gold"] for t in tasks.bundled_tasks()]
    assert sum(_plain_tokens(q) is not None for q in golds) > 0.9 * len(golds)  # the fast path is the usual one
    rng = random.Random(7)
    alphabet = "aSELECTbyORDER_ 09\n(),.*=<>!+-/%|;'\"`[]"
    corpus = [*golds, "select a from t group   by a", "SELECT 2., 1.5, 1e5 FROM t", "a!==b", "t1.c", "a..b",
              "'a''b'", 'select "A""b", [x Y], `q` from t', "order order by", "a||b|c", "x=-1"]
    for q in golds:
        for _ in range(15):
            chars = list(q)
            i = rng.randrange(len(chars))
            if rng.random() < 0.5:
                chars.insert(i, rng.choice(alphabet))
            else:
                chars[i] = rng.choice(alphabet)
            corpus.append("".join(chars))
    corpus += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 25))) for _ in range(3000)]
    checked = 0
    for sql in corpus:
        plain = _plain_tokens(sql)
        if plain is not None:
            checked += 1
            assert plain == _sqlglot_tokens(sql), sql
    assert checked > 1000
    assert sql_tokens("SELECT a -- note\nFROM t") == _sqlglot_tokens("SELECT a -- note\nFROM t")  # sqlglot's path
