"""AST-level bug injection in the style of SWE-smith.

:func:`find_mutations` lists every place in a file's functions where one of the mutation kinds applies;
:func:`apply_mutations` injects a chosen few. The mutated node (an expression, or a statement for the
statement-level kinds) is rewritten with :func:`ast.unparse` and spliced over its own source span, so every
other byte of the file stays as it was: the bug's diff is as small as the bug. Each splice is checked by
re-parsing the file and comparing the mutated function's tree with the intended one; sites where the text
cannot be spliced faithfully (a statement sharing its line, a multi-line string) are not offered.

Kinds:

=======================  ==============================================================================
``operator_swap``        ``+``/``-``, ``*``/``/``, ``//``/``%`` ... in an expression, ``and``/``or``, ``+=``
``comparison_flip``      ``<`` <-> ``>``, ``<=`` <-> ``>=``, ``==`` <-> ``!=``, ``in``/``not in``, ``is``/``is not``
``boundary_shift``       ``<`` <-> ``<=``, ``>`` <-> ``>=`` (off-by-one at a boundary)
``off_by_one``           an integer constant ``n`` becomes ``n - 1`` (``n + 1`` for 0)
``inverted_condition``   the test of an ``if``, ``while``, conditional expression or comprehension is negated
``removed_statement``    an assignment, call, ``raise`` or ``del`` is deleted
``wrong_return``         ``return x`` returns ``None`` (a boolean result is negated instead)
``swapped_arguments``    the first two different positional arguments of a call change places
``removed_branch``       an ``if`` without ``else`` is deleted, or an ``else``/``elif`` branch is dropped
``removed_loop``         a ``for``/``while`` loop is deleted
=======================  ==============================================================================

Example:
    >>> src = "def area(w, h):\\n    return w * h\\n"
    >>> muts = find_mutations("geo.py", src)
    >>> sorted(m.kind for m in muts)
    ['operator_swap', 'wrong_return']
    >>> swap = next(m for m in muts if m.kind == "operator_swap")
    >>> print(apply_mutations({"geo.py": src}, [swap])["geo.py"], end="")
    def area(w, h):
        return w / h
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from execgym.envs.swe.grading import parse_python

__all__ = [
    "KINDS",
    "OPERATORS",
    "Mutation",
    "MutationError",
    "MutationOperator",
    "apply_mutations",
    "find_mutations",
    "function_spans",
]

_BINOP_SWAP: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mod,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}
_FLIP: dict[type, type] = {
    ast.Lt: ast.Gt,
    ast.Gt: ast.Lt,
    ast.LtE: ast.GtE,
    ast.GtE: ast.LtE,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BOUNDARY: dict[type, type] = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_REMOVABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Raise, ast.Delete)
_BODY_FIELDS = ("body", "orelse", "finalbody")

Path = tuple[tuple[str, int | None], ...]


class MutationError(ValueError):
    """A mutation does not fit the source it is applied to."""


@dataclass(frozen=True)
class Mutation:
    """One injectable bug: the ``index``-th site of ``kind`` in function ``function`` of file ``path``.

    Example:
        >>> m = Mutation("pkg/mod.py", "Box.area", "operator_swap", 0, "* -> /")
        >>> m.id
        'pkg/mod.py::Box.area::operator_swap::0'
        >>> Mutation.from_id(m.id) == Mutation("pkg/mod.py", "Box.area", "operator_swap", 0)
        True
    """

    path: str
    function: str
    kind: str
    index: int
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.path}::{self.function}::{self.kind}::{self.index}"

    @classmethod
    def from_id(cls, mutation_id: str) -> Mutation:
        path, function, kind, index = mutation_id.rsplit("::", 3)
        return cls(path, function, kind, int(index))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mutation) and self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True)
class _Site:
    kind: str
    path: Path  # from the function node to the anchor (an expression, or a statement in a list)
    label: str
    arg: int = 0


# ------------------------------------------------------------------------------------------ tree walk


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its dotted qualified name (``Class.method``, ``outer.inner``)."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, Any]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                yield name, child
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            elif not isinstance(child, ast.Lambda):
                yield from walk(child, prefix)

    yield from walk(tree, "")


def _is_docstring(parent: ast.AST, field: str, index: int | None, node: ast.AST) -> bool:
    return (
        field == "body"
        and index == 0
        and isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module))
        and isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _seg(node: ast.AST) -> str:
    return ast.unparse(node)


def _is_elif(node: ast.If) -> bool:
    inner = node.orelse[0]
    return inner.col_offset == node.col_offset  # `elif` keeps the outer indentation; `else: if` does not


def _has_elif(node: ast.If) -> bool:
    """Whether the ``if`` continues with an ``elif`` (not an ``else:`` holding an ``if``)."""
    return len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If) and _is_elif(node)


def _is_boolean(node: ast.AST) -> bool:
    return isinstance(node, (ast.Compare, ast.BoolOp)) or (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    )


def _off_by_one(value: int) -> int:
    return value - 1 if value > 0 else value + 1


def _op(op: ast.AST) -> str:
    symbols = {
        ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
        ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<", ast.RShift: ">>",
        ast.Lt: "<", ast.Gt: ">", ast.LtE: "<=", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
        ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
    }  # fmt: skip
    return symbols.get(type(op), type(op).__name__)


def _short(node: ast.AST) -> str:
    text = ast.unparse(node).splitlines()[0]
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------- path get / transform


def _get(root: ast.AST, path: Path) -> Any:
    node: Any = root
    for field, index in path:
        node = getattr(node, field)
        if index is not None:
            node = node[index]
    return node


def _negate(test: ast.expr) -> ast.expr:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand
    return ast.UnaryOp(op=ast.Not(), operand=test)


# --------------------------------------------------------------------------------------- text splicing


@dataclass(frozen=True)
class _Edit:
    start: tuple[int, int]  # (line index, byte column)
    end: tuple[int, int]
    text: bytes


def _segment(lines: list[bytes], start: tuple[int, int], end: tuple[int, int]) -> bytes:
    (l1, c1), (l2, c2) = start, end
    if l1 == l2:
        return lines[l1][c1:c2]
    return lines[l1][c1:] + b"".join(lines[l1 + 1 : l2]) + lines[l2][:c2]


def _start(node: ast.AST) -> tuple[int, int]:
    return node.lineno - 1, node.col_offset


def _end(node: ast.AST) -> tuple[int, int]:
    return node.end_lineno - 1, node.end_col_offset


def _node_text(lines: list[bytes], node: ast.AST) -> bytes:
    return _segment(lines, _start(node), _end(node))


_WORD_OPS = {"not in": rb"\bnot\s+in\b", "is not": rb"\bis\s+not\b", "in": rb"\bin\b", "is": rb"\bis\b",
             "and": rb"\band\b", "or": rb"\bor\b"}  # fmt: skip


def _swap_in_gap(lines: list[bytes], left: ast.AST, right: ast.AST, old: str, new: str) -> _Edit:
    """Replace the operator token between two operands (parentheses and spacing kept)."""
    gap = _segment(lines, _end(left), _start(right))
    if b"#" in gap or b"\\" in gap:
        raise MutationError("comment or continuation inside the operator gap")
    pattern = _WORD_OPS.get(old, rb"(?<![=*/<>!])" + re.escape(old.encode()) + rb"(?![=*/<>])")
    matches = list(re.finditer(pattern, gap))
    if len(matches) != 1:
        raise MutationError(f"operator {old!r} not found once between the operands")
    m = matches[0]
    return _Edit(_end(left), _start(right), gap[: m.start()] + new.encode() + gap[m.end() :])


def _negated_text(lines: list[bytes], node: ast.AST) -> bytes:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return _node_text(lines, node.operand)
    text = _node_text(lines, node)
    if isinstance(node, (ast.BoolOp, ast.IfExp, ast.Lambda, ast.NamedExpr)) or b"\n" in text:
        return b"not (" + text + b")"
    return b"not " + text


def _else_line(lines: list[bytes], first_inner: ast.AST, indent: bytes) -> int:
    """The index of the ``else:`` line that opens a block starting at ``first_inner``."""
    for i in range(first_inner.lineno - 2, -1, -1):
        line = lines[i]
        code = line[len(indent) :].split(b"#")[0].strip()
        if line.startswith(indent + b"else") and code.rstrip(b":").strip() == b"else":
            return i
        if line.strip() and not line.strip().startswith(b"#"):
            break
    raise MutationError("no `else:` line of its own")


def _line_starts_clean(lines: list[bytes], node: ast.AST) -> bool:
    first = lines[node.lineno - 1]
    last = lines[node.end_lineno - 1]
    rest = last[node.end_col_offset :].strip()
    return not first[: node.col_offset].strip() and (not rest or rest.startswith(b"#"))


# ------------------------------------------------------------------------------------------- operators


@dataclass
class _Slot:
    """Where an anchor node sits in its function: its parent's field (and index, for a statement list)."""

    anchor: Any
    parent: Any
    field: str
    index: int | None

    @classmethod
    def at(cls, root: ast.AST, path: Path) -> _Slot:
        return cls(_get(root, path), _get(root, path[:-1]), path[-1][0], path[-1][1])

    def put_expr(self, new: ast.AST) -> tuple[str, Any]:
        if self.index is None:
            setattr(self.parent, self.field, new)
        else:
            getattr(self.parent, self.field)[self.index] = new
        return "expr", new

    def put_stmts(self, new: list[ast.stmt]) -> tuple[str, Any]:
        body = getattr(self.parent, self.field)
        body[self.index : self.index + 1] = new
        if not body:
            body.append(ast.Pass())
            return "stmts", [body[0]]
        return "stmts", new


OPERATORS: dict[str, MutationOperator] = {}
"""The mutation operators by kind (the kinds' names are in task data). ``@_registered`` fills it in the order
the classes are defined below, which is the order of a node's sites: keep it, or generated tasks change."""


def _registered(cls: type[MutationOperator]) -> type[MutationOperator]:
    OPERATORS[cls.kind] = cls()
    return cls


class MutationOperator:
    """One mutation kind: where it applies in a function (``sites``), the mutated tree (``apply``), and the
    smallest text edit that produces it (``edits``).

    ``sites`` gets every node of the function in walk order with its ``path`` and whether it is a statement
    of a body (``in_body``); ``apply`` rewrites a copy of the function in place and returns ``("expr", node)``,
    ``("stmts", statements)`` or ``("swap", node)`` (text edits only).
    """

    kind: ClassVar[str]

    def sites(self, node: ast.AST, path: Path, in_body: bool) -> Iterator[_Site]:
        raise NotImplementedError

    def apply(self, slot: _Slot, site: _Site) -> tuple[str, Any]:
        raise NotImplementedError

    def edits(self, lines: list[bytes], slot: _Slot, site: _Site) -> list[_Edit]:
        raise NotImplementedError


@_registered
class OperatorSwap(MutationOperator):
    """``+``/``-``, ``*``/``/``, ``//``/``%`` ... in an expression, ``and``/``or``, an augmented assignment."""

    kind = "operator_swap"

    def sites(self, node: ast.AST, path: Path, in_body: bool) -> Iterator[_Site]:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
            yield _Site(self.kind, path, f"{_op(node.op)} -> {_op(_BINOP_SWAP[type(node.op)]())}")
        elif isinstance(node, ast.BoolOp):
            yield _Site(self.kind, path, "and <-> or")
        elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOP_SWAP and in_body:
            yield _Site(self.kind, path, f"{_op(node.op)}= swapped")

    def apply(self, slot: _Slot, site: _Site) -> tuple[str, Any]:
        anchor = slot.anchor
        if isinstance(anchor, ast.BoolOp):
            anchor.op = ast.Or() if isinstance(anchor.op, ast.And) else ast.And()
            return slot.put_expr(anchor)
        anchor.op = _BINOP_SWAP[type(anchor.op)]()
        return slot.put_stmts([anchor]) if isinstance(anchor, ast.AugAssign) else slot.put_expr(anchor)

    def edits(self, lines: list[bytes], slot: _Slot, site: _Site) -> list[_Edit]:
        anchor = slot.anchor
        if isinstance(anchor, ast.BoolOp):
            old, new = ("and", "or") if isinstance(anchor.op, ast.And) else ("or", "and")
            return [_swap_in_gap(lines, a, b, old, new) for a, b in zip(anchor.values, anchor.values[1:])]
        old, new = _op(anchor.op), _op(_BINOP_SWAP[type(anchor.op)]())
        if isinstance(anchor, ast.AugAssign):
            return [_swap_in_gap(lines, anchor.target, anchor.value, old + "=", new + "=")]
        return [_swap_in_gap(lines, anchor.left, anchor.right, old, new)]


class _CompareOperator(MutationOperator):
    """Replaces one comparison operator of a chain by its entry in ``table``."""

    table: ClassVar[dict[type, type]]

    def sites(self, node: ast.AST, path: Path, in_body: bool) -> Iterator[_Site]:
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in self.table:
                    yield _Site(self.kind, path, f"{_op(op)} -> {_op(self.table[type(op)]())}", i)

    def apply(self, slot: _Slot, site: _Site) -> tuple[str, Any]:
        slot.anchor.ops[site.arg] = self.table[type(slot.anchor.ops[site.arg])]()
        return slot.put_expr(slot.anchor)

    def edits(self, lines: list[bytes], slot: _Slot, site: _Site) -> list[_Edit]:
        anchor = slot.anchor
        op = anchor.ops[site.arg]
        left = anchor.left if site.arg == 0 else anchor.comparators[site.arg - 1]
        return [_swap_in_gap(lines, left, anchor.comparators[site.arg], _op(op), _op(self.table[type(op)]()))]


@_registered
class ComparisonFlip(_CompareOperator):
    """``<`` <-> ``>``, ``<=`` <-> ``>=``, ``==`` <-> ``!=``, ``in``/``not in``, ``is``/``is not``."""

    kind = "comparison_flip"
    table = _FLIP


@_registered
class BoundaryShift(_CompareOperator):
    """``<`` <-> ``<=``, ``>`` <-> ``>=`` (off by one at a boundary)."""

    kind = "boundary_shift"
    table = _BOUNDARY


@_registered
class OffByOne(MutationOperator):
    """An integer constant ``n`` becomes ``n - 1`` (``n + 1`` for 0 and below)."""

    kind = "off_by_one"

    def sites(self, node: ast.AST, path: Path, in_body: bool) -> Iterator[_Site]:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            yield _Site(self.kind, path, f"{node.value} -> {_off_by_one(node.value)}")

    def apply(self, slot: _Slot, site: _Site) -> tuple[str, Any]:
        return slot.put_expr(ast.Constant(_off_by_one(slot.anchor.value)))

    def edits(self, lines: list[bytes], slot: _Slot, site: _Site) -> list[_Edit]:
        return [_Edit(_start(slot.anchor), _end(slot.anchor), str(_off_by_one(slot.anchor.value)).encode())]


@_registered
class InvertedCondition(MutationOperator):
    """The test of an ``if``, ``while``, conditional expression or comprehension filter is negated."""

    kind = "inverted_condition"

    def sites(self, node: ast.AST, path: Path, in_body: bool) -> Iterator[_Site]:
        if isinstance(node, (ast.If, ast.While, ast.IfExp)):
            yield _Site(self.kind, (*path, ("test", None)), "condition negated")
        if isinstance(node, ast.comprehension):
            for i in range(len(node.ifs)):
                yield _Site(self.kind, (*path, ("ifs", i)), "filter negated")

    def apply(self, slot: _Slot, site: _Site) -> tuple[str, Any]:
        return slot.put_expr(_negate(slot.anchor))

    def edits(self, lines: list[bytes], slot: _Slot, site: _Site) -> list[_Edit]:
        return [_Edit(_start(slot.anchor), _end(slot.anchor), _negated_text(lines, slot.anchor))]


class _StatementOperator(MutationOperator):
    """Operators that delete a whole statement (or part of one): their text edits work on full lines."""

    def sites(self, node: ast.AST, path: Path, in_body: bool) -> Iterator[_Site]:
        if in_body and self.removes(node):
            yield _Site(self.kind, path, self.label(node))

    def removes(self, node: ast.AST) -> bool:
        raise NotImplementedError

    def label(self, node: ast.AST) -> str:
        raise NotImplementedError

    def apply(self, slot: _Slot, site: _Site) -> tuple[str, Any]:
        return slot.put_stmts([])

    def edits(self, lines: list[bytes], slot: _Slot, site: _Site) -> list[_Edit]:
        anchor = slot.anchor
        if not _line_starts_clean(lines, anchor):
            raise MutationError("the statement shares its lines with other code")
        return self.line_edits(lines, slot, lines[anchor.lineno - 1][: anchor.col_offset])

    def line_edits(self, lines: list[bytes], slot: _Slot, indent: bytes) -> list[_Edit]:
        """The statement's lines removed (a lone statement of its block becomes ``pass``)."""
        anchor = slot.anchor
        start, end = (anchor.lineno - 1, 0), (anchor.end_lineno - 1, len(lines[anchor.end_lineno - 1]))
        if len(getattr(slot.parent, slot.field)) == 1:
            return [_Edit(start, end, indent + b"pass\n")]
        return [_Edit(start, end, b"")]


@_registered
class RemovedStatement(_StatementOperator):
    """An assignment, call, ``raise`` or ``del`` is deleted."""

    kind = "removed_statement"

    def removes(self, node: ast.AST) -> bool:
        return isinstance(node, _REMOVABLE)

    def label(self, node: ast.AST) -> str:
        return f"removed `{_short(node)}`"


@_registered
class WrongReturn(MutationOperator):
    """``return x`` returns ``None``; a boolean result is negated instead."""

    kind = "wrong_return"

    def sites(self, node: ast.AST, path: Path, in_body: bool) -> Iterator[_Site]:
        if not (isinstance(node, ast.Return) and in_body) or node.value is None:
            return
        if isinstance(node.value, ast.Constant) and node.value.value is None:
            return
        yield _Site(self.kind, (*path, ("value", None)), "wrong return value")

    def apply(self, slot: _Slot, site: _Site) -> tuple[str, Any]:
        value = slot.anchor
        if isinstance(value, ast.Constant) and isinstance(value.value, bool):
            return slot.put_expr(ast.Constant(not value.value))
        if _is_boolean(value):
            return slot.put_expr(_negate(value))
        return slot.put_expr(ast.Constant(None))

    def edits(self, lines: list[bytes], slot: _Slot, site: _Site) -> list[_Edit]:
        anchor = slot.anchor
        if isinstance(anchor, ast.Constant) and isinstance(anchor.value, bool):
            text = str(not anchor.value).encode()
        elif _is_boolean(anchor):
            text = _negated_text(lines, anchor)
        else:
            text = b"None"
        return [_Edit(_start(anchor), _end(anchor), text)]


@_registered
class SwappedArguments(MutationOperator):
    """The first two different positional arguments of a call change places."""

    kind = "swapped_arguments"

    def sites(self, node: ast.AST, path: Path, in_body: bool) -> Iterator[_Site]:
        if not isinstance(node, ast.Call):
            return
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        if len(positional) == len(node.args) and len(positional) >= 2:
            for i in range(len(positional) - 1):
                if _seg(positional[i]) != _seg(positional[i + 1]):
                    yield _Site(self.kind, path, f"arguments {i} and {i + 1} swapped", i)
                    return

    def apply(self, slot: _Slot, site: _Site) -> tuple[str, Any]:
        args, i = slot.anchor.args, site.arg
        args[i], args[i + 1] = args[i + 1], args[i]
        return "swap", slot.anchor

    def edits(self, lines: list[bytes], slot: _Slot, site: _Site) -> list[_Edit]:
        a, b = slot.anchor.args[site.arg], slot.anchor.args[site.arg + 1]
        return [_Edit(_start(b), _end(b), _node_text(lines, a)), _Edit(_start(a), _end(a), _node_text(lines, b))]


@_registered
class RemovedBranch(_StatementOperator):
    """An ``if`` without ``else`` goes; otherwise its ``elif`` (the first) or ``else`` branch does."""

    kind = "removed_branch"

    def removes(self, node: ast.AST) -> bool:
        return isinstance(node, ast.If)

    def label(self, node: ast.AST) -> str:
        assert isinstance(node, ast.If)
        if not node.orelse:
            return "removed `if` block"
        return "removed `elif` branch" if _has_elif(node) else "removed `else` branch"

    def apply(self, slot: _Slot, site: _Site) -> tuple[str, Any]:
        anchor = slot.anchor
        if not anchor.orelse:
            return slot.put_stmts([])
        anchor.orelse = anchor.orelse[0].orelse if _has_elif(anchor) else []
        return slot.put_stmts([anchor])

    def line_edits(self, lines: list[bytes], slot: _Slot, indent: bytes) -> list[_Edit]:
        anchor = slot.anchor
        if not anchor.orelse:
            return super().line_edits(lines, slot, indent)
        last = (anchor.end_lineno - 1, len(lines[anchor.end_lineno - 1]))
        inner = anchor.orelse[0]
        if _has_elif(anchor):
            first = inner.lineno - 1
            if not lines[first].startswith(indent + b"elif"):
                raise MutationError("`elif` is not at the start of its line")
            if inner.orelse:
                nxt = inner.orelse[0]
                stop = nxt.lineno - 1 if isinstance(nxt, ast.If) and _is_elif(inner) else _else_line(lines, nxt, indent)
                return [_Edit((first, 0), (stop, 0), b"")]
            return [_Edit((first, 0), last, b"")]
        return [_Edit((_else_line(lines, inner, indent), 0), last, b"")]


@_registered
class RemovedLoop(_StatementOperator):
    """A ``for`` / ``while`` loop is deleted."""

    kind = "removed_loop"

    def removes(self, node: ast.AST) -> bool:
        return isinstance(node, (ast.For, ast.While, ast.AsyncFor))

    def label(self, node: ast.AST) -> str:
        return "removed loop"


KINDS = tuple(OPERATORS)


def _operator(kind: str) -> MutationOperator:
    try:
        return OPERATORS[kind]
    except KeyError:
        raise MutationError(f"unknown mutation kind {kind!r}") from None


def _sites(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[_Site]:
    """Mutation sites of one function (nested functions and classes are their own), in walk order."""
    sites: list[_Site] = []

    def visit(node: ast.AST, path: Path) -> None:
        for field, value in ast.iter_fields(node):
            if field in ("decorator_list", "returns", "type_comment", "args") and node is func:
                continue
            if isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        handle(node, field, index, item, (*path, (field, index)))
            elif isinstance(value, ast.AST):
                handle(node, field, None, value, (*path, (field, None)))

    def handle(parent: ast.AST, field: str, index: int | None, node: ast.AST, path: Path) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return
        if _is_docstring(parent, field, index, node):
            return
        in_body = isinstance(node, ast.stmt) and field in _BODY_FIELDS and index is not None
        for op in OPERATORS.values():
            sites.extend(op.sites(node, path, in_body))
        visit(node, path)

    visit(func, ())
    return sites


def _minimal_edits(lines: list[bytes], original: ast.AST, site: _Site) -> list[_Edit]:
    """Edits that change only the mutated tokens or lines."""
    return _operator(site.kind).edits(lines, _Slot.at(original, site.path), site)


def _unparse_edits(lines: list[bytes], original: ast.AST, site: _Site, result: tuple[str, Any]) -> list[_Edit]:
    """Fallback: the mutated node rewritten by ``ast.unparse`` over its own span."""
    what, new = result
    anchor = _get(original, site.path)
    if what == "expr":
        return [_Edit(_start(anchor), _end(anchor), ast.unparse(new).encode())]
    if what == "swap":
        return _minimal_edits(lines, original, site)
    if not _line_starts_clean(lines, anchor):
        raise MutationError("the statement shares its lines with other code")
    indent = lines[anchor.lineno - 1][: anchor.col_offset]
    body = b"".join(indent + line.encode() + b"\n" for stmt in new for line in ast.unparse(stmt).splitlines())
    return [_Edit((anchor.lineno - 1, 0), (anchor.end_lineno - 1, len(lines[anchor.end_lineno - 1])), body)]


def _splice(lines: list[bytes], edits: Sequence[_Edit]) -> list[bytes]:
    out = list(lines)
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        (l1, c1), (l2, c2) = edit.start, edit.end
        merged = out[l1][:c1] + edit.text + (out[l2][c2:] if l2 < len(out) else b"")
        out[l1 : l2 + 1] = [merged]
    return b"".join(out).splitlines(keepends=True)


# ------------------------------------------------------------------------------------------ public API


@lru_cache(maxsize=256)
def _parsed(source: str) -> tuple[ast.Module, dict[str, Any]]:
    tree = parse_python(source)
    return tree, dict(_functions(tree))


@lru_cache(maxsize=256)
def _function_sites(source: str, function: str) -> tuple[_Site, ...]:
    _, funcs = _parsed(source)
    return tuple(_sites(funcs[function]))


def function_spans(source: str) -> dict[str, tuple[int, int]]:
    """Each function's first and last line (1-based, decorators included)."""
    _, funcs = _parsed(source)
    spans = {}
    for name, node in funcs.items():
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        spans[name] = (first, node.end_lineno)
    return spans


def _by_kind(sites: Sequence[_Site]) -> dict[str, list[_Site]]:
    grouped: dict[str, list[_Site]] = {}
    for site in sites:
        grouped.setdefault(site.kind, []).append(site)
    return grouped


def _function_tree(new_lines: list[bytes], first: int, last: int) -> ast.AST | None:
    """Parse just one function's (dedented) lines; None when the text cannot be dedented safely."""
    block = new_lines[first - 1 : last]
    if not block:
        return None
    indent = block[0][: len(block[0]) - len(block[0].lstrip())]
    out = []
    for line in block:
        if line.startswith(indent):
            out.append(line[len(indent) :])
        elif not line.strip():
            out.append(b"\n")
        else:
            return None
    try:
        module = parse_python(b"".join(out).decode())
    except (SyntaxError, ValueError):
        return None
    if len(module.body) != 1 or not isinstance(module.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    return module.body[0]


def _checked_edits(source: str, m: Mutation) -> list[_Edit]:
    """The edits of one mutation, verified: the spliced function parses to the intended tree."""
    _, funcs = _parsed(source)
    if m.function not in funcs:
        raise MutationError(f"{m.path}: no function {m.function!r}")
    sites = _by_kind(_function_sites(source, m.function)).get(m.kind, [])
    if not 0 <= m.index < len(sites):
        raise MutationError(f"{m.id}: the function has {len(sites)} {m.kind} site(s)")
    site = sites[m.index]
    original = funcs[m.function]
    mutated = copy.deepcopy(original)
    result = _operator(site.kind).apply(_Slot.at(mutated, site.path), site)
    want = ast.dump(mutated)
    if want == ast.dump(original):
        raise MutationError(f"{m.id}: the mutation changes nothing")
    lines = source.encode().splitlines(keepends=True)
    first, last = function_spans(source)[m.function]
    for strategy in (_minimal_edits, _unparse_edits):
        try:
            edits = (
                strategy(lines, original, site)
                if strategy is _minimal_edits
                else strategy(lines, original, site, result)
            )
        except MutationError:
            continue
        new_lines = _splice(lines, edits)
        got = _function_tree(new_lines, first, last + len(new_lines) - len(lines))
        if got is not None and ast.dump(got) == want:
            return edits
    raise MutationError(f"{m.id}: no faithful text edit")


def _mutate_file(source: str, mutations: Sequence[Mutation]) -> str:
    spans = function_spans(source) if mutations else {}
    used: list[tuple[int, int]] = []
    edits: list[_Edit] = []
    for m in mutations:
        if m.function not in spans:
            raise MutationError(f"{m.path}: no function {m.function!r}")
        lo, hi = spans[m.function]
        if any(not (hi < a or lo > b) for a, b in used):
            raise MutationError(f"{m.id}: overlaps another mutation's function")
        used.append((lo, hi))
        edits += _checked_edits(source, m)
    new_source = b"".join(_splice(source.encode().splitlines(keepends=True), edits)).decode()
    try:
        compile(new_source, "<mutated>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise MutationError(f"the mutated file does not compile: {exc}") from None
    return new_source


def apply_mutations(files: Mapping[str, str], mutations: Sequence[Mutation]) -> dict[str, str]:
    """Inject ``mutations`` (at most one per function) into ``files``; returns the changed files."""
    out = {}
    by_path: dict[str, list[Mutation]] = {}
    for m in mutations:
        by_path.setdefault(m.path, []).append(m)
    for path, group in by_path.items():
        if path not in files:
            raise MutationError(f"no file {path!r}")
        out[path] = _mutate_file(files[path], group)
    return out


@lru_cache(maxsize=64)
def _find_cached(path: str, source: str) -> tuple[Mutation, ...]:
    _, funcs = _parsed(source)
    found = []
    for name in funcs:
        for kind, sites in _by_kind(_function_sites(source, name)).items():
            for index, site in enumerate(sites):
                m = Mutation(path, name, kind, index, site.label)
                try:
                    _checked_edits(source, m)
                except MutationError:
                    continue
                found.append(m)
    return tuple(found)


def find_mutations(path: str, source: str) -> list[Mutation]:
    """Every mutation that applies cleanly to ``source`` (in file order, then kind order)."""
    return list(_find_cached(path, source))
