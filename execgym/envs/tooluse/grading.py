"""Grading for the tool-use env: text and value matching, checklist criteria (CM2), ToolRL call scores.

Everything here is pure and deterministic: criteria are data, checked by code, with no model in the loop.

Checklist criteria (one dict each, in a task's ``data["checklist"]``):

* ``{"kind": "called", "tool": name, "args": {...}}``: the agent called ``tool`` successfully during the
  turn with arguments matching ``args`` (a subset; strings case/space-folded, numbers within 1e-6, lists
  in any order);
* ``{"kind": "not_called", "tool": name, "args": {...}?}``: no call of ``tool`` (with those arguments, if
  given) during the turn, successful or not;
* ``{"kind": "said", "text": "...", "grounded": bool?}``: the agent's answer closing the turn mentions the
  text (numbers are compared as numbers, so "$1,299.00" mentions "1299"); with ``grounded`` (the default
  for generated tasks) the text must also appear in what a tool call the agent made in this turn or before
  showed (its result or its error, less the caller's own arguments echoed back), so a guess, a blanket
  answer or a value smuggled into an argument does not count;
* ``{"kind": "not_said", "text": "..."}``: the answer closing the turn does not mention the text (a value
  that would be wrong here, such as a meeting of another day: listing every plausible value is no answer);
* ``{"kind": "state", "path": [...], "equals"|"contains"|"exists"|"match": ...}``: after the turn, the
  world state at ``path`` equals a value, contains a text (as :func:`mentions` finds it), exists (or not),
  or, for a collection, holds a record whose fields match (and, with ``contains`` too, whose text holds it:
  "an e-mail to Dana whose text says 45000").

Each also has ``id``, ``turn`` (1-based user turn), optional ``weight`` (default 1), ``description`` and
``required`` (default True: the outcome needs it; False marks a shaping-only item such as "looked up the
order").
"""

from __future__ import annotations

import json
import posixpath
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "CRITERION_KINDS",
    "FREE_TEXT_ARGS",
    "STATE_OPS",
    "EchoFilter",
    "args_match",
    "count_numbers",
    "describe_criterion",
    "diff_paths",
    "evaluate_criterion",
    "identifying_args",
    "mentions",
    "multiset_jaccard",
    "normalize_text",
    "result_text",
    "shown_texts",
    "toolrl_scores",
    "values_match",
    "without_echo",
]

_MARKUP = re.compile("[*`_\"'\u201c\u201d\u2018\u2019]")  # emphasis and straight or curly quotes
_NUMBER_ONLY = re.compile(r"^[-+]?\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?$")
# A number standing alone: not a part of a word, a date, a time or an id ("10:03:00" holds no 3).
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])(?<!\d[:/-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\d)(?![:/-]\d)")
_CLOCK_ONLY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_CLOCK_IN_TEXT = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?!\d)")
_MISSING = object()

CRITERION_KINDS = ("called", "not_called", "said", "not_said", "state")
STATE_OPS = ("equals", "contains", "exists", "match")
FREE_TEXT_ARGS = frozenset({"query", "text", "pattern", "name", "subject", "body", "content", "line", "reason",
                            "limit"})
"""Arguments that are free text or a search phrase: two right calls may spell them differently, so a gold
call is identified by its other arguments (ids, paths, dates, e-mail addresses, items)."""


def normalize_text(text: str) -> str:
    """Fold case, drop markdown emphasis and quotes, and collapse whitespace.

    Example:
        >>> normalize_text("  The **Budget**\\n review ")
        'the budget review'
    """
    return " ".join(_MARKUP.sub("", text).split()).casefold()


def _as_number(text: str) -> float | None:
    match = _NUMBER_ONLY.match(text.strip())
    if not match:
        return None
    return float(match.group(1).replace(",", "") + (match.group(2) or ""))


def count_numbers(text: str) -> int:
    """How many numbers a text holds (``1,299.50`` counts once).

    Example:
        >>> count_numbers("3 items at $1,299.50 on 2025-03-10")
        2
    """
    return len(_NUMBER_IN_TEXT.findall(text))


def mentions(reply: str, expected: str) -> tuple[bool, str]:
    """Whether ``reply`` mentions ``expected``, and the evidence (the matching snippet, or why not).

    A number is found when the reply holds the same number (``59.9`` matches ``$59.90``), a time of day when
    it holds the same time (``09:00`` matches ``9:00``); any other text by normalised substring.

    Example:
        >>> mentions("I refunded $1,299.50 to you.", "1299.5")[0], mentions("Order O-12 is shipped", "shipped")
        (True, (True, '...order o-12 is shipped...'))
    """
    number = _as_number(expected)
    if number is not None:
        for match in _NUMBER_IN_TEXT.finditer(reply):
            value = float(match.group(1).replace(",", "") + (match.group(2) or ""))
            if abs(value - number) < 1e-6:
                lo, hi = max(0, match.start() - 30), min(len(reply), match.end() + 30)
                return True, f"...{' '.join(reply[lo:hi].split())}..."
        return False, f"the number {expected} is not in the reply"
    clock = _CLOCK_ONLY.match(expected.strip())
    if clock is not None:
        want = (int(clock.group(1)), int(clock.group(2)))
        for match in _CLOCK_IN_TEXT.finditer(reply):
            if (int(match.group(1)), int(match.group(2))) == want:
                lo, hi = max(0, match.start() - 30), min(len(reply), match.end() + 30)
                return True, f"...{' '.join(reply[lo:hi].split())}..."
        return False, f"the time {expected} is not in the reply"
    needle, hay = normalize_text(expected), normalize_text(reply)
    if not needle:
        return True, "nothing to find"
    at = hay.find(needle)
    if at < 0:
        return False, f"{expected!r} is not in the reply"
    lo, hi = max(0, at - 30), min(len(hay), at + len(needle) + 30)
    return True, f"...{hay[lo:hi]}..."


def values_match(expected: Any, actual: Any) -> bool:
    """Compare a gold value with an agent's value: folded strings, numbers within 1e-6, lists in any order.

    Example:
        >>> values_match(["a@x.io", "B@x.io"], ["b@x.io ", "a@x.io"]), values_match(3, 3.0), values_match(1, True)
        (True, True, False)
    """
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return abs(float(expected) - float(actual)) < 1e-6
    if isinstance(expected, str) and isinstance(actual, str):
        return " ".join(expected.split()).casefold() == " ".join(actual.split()).casefold()
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return set(expected) == set(actual) and all(values_match(expected[k], actual[k]) for k in expected)
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        if len(expected) != len(actual):
            return False
        remaining = list(actual)
        for item in expected:
            hit = next((i for i, other in enumerate(remaining) if values_match(item, other)), None)
            if hit is None:
                return False
            remaining.pop(hit)
        return True
    return expected == actual


def args_match(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> bool:
    """Every expected argument is present in ``actual`` with a matching value (extra arguments are fine).

    Example:
        >>> args_match({"order_id": "O-1"}, {"order_id": "o-1", "reason": "damaged"})
        True
    """
    return all(key in actual and values_match(value, actual[key]) for key, value in expected.items())


def result_text(result: Any) -> str:
    """What a result tells, for grounding: its string and number values (not its keys or JSON syntax), one a line.

    Grounding reads the values the service returned, never the JSON text the agent is shown, so an escape
    sequence (``\\n`` in a title) cannot turn into a word that no value holds.

    Example:
        >>> result_text({"order_id": "O-1", "status": "shipped", "items": [{"qty": 2}], "gift": None})
        'O-1\\nshipped\\n2'
    """
    if isinstance(result, str):
        return result
    return "\n".join(_scalars(result))


# Words and numbers (a number with its decimal or thousands parts is one token).
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_JOINERS = ".,:/-"
_CHUNK = 32


def _token(text: str) -> str:
    """A token's comparable form: case-folded, an integer without leading zeros ("09" is "9")."""
    if text.isdigit():
        return text.lstrip("0") or "0"
    return text.casefold()


def _scalars(value: Any) -> list[str]:
    """Every string and number in ``value`` (any nesting of mappings and lists), in order, as text."""
    out: list[str] = []
    stack = [value]
    while stack:  # no recursion: a value may nest deeply
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int | float):
            out.append(json.dumps(item))
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
    return out


class EchoFilter:
    """Removes from tool results every echo of what the caller sent, in any spelling.

    The arguments sent so far are kept as token sequences (words case-folded, integers without leading
    zeros, quotes, escapes and punctuation ignored) in one trie, so an argument comes out of a result
    however a service quoted, escaped, upper-cased, stripped or normalised it (``'x'``, ``"x\\x01"``,
    ``X``, ``/a/../x``). Removing is one pass over the result's tokens: linear in the text, with no
    pattern per argument. A long argument is kept in chunks of 32 tokens, which bounds the walk.

    Example:
        >>> echo = EchoFilter()
        >>> sent = "shipped delivered'" + chr(34) + chr(1)
        >>> echo.add({"order_id": sent})
        >>> "shipped" in echo.strip(repr(sent)).casefold()
        False
        >>> echo.strip("it is SHIPPED, not shipped-delivered")
        'it is SHIPPED, not  '
    """

    def __init__(self) -> None:
        self._trie: dict[Any, Any] = {}

    def add(self, arguments: Any) -> None:
        """Remember every string and number in ``arguments`` (any nesting) as sent."""
        for value in _scalars(arguments):
            forms = {value}
            if "/" in value or "." in value:  # a path a service normalises before echoing it
                forms.add(posixpath.normpath("/" + value.strip()))
            for form in forms:
                tokens = [_token(t) for t in _TOKEN.findall(form)]
                if sum(len(t) for t in tokens) < 2:
                    continue  # one letter or digit echoes nothing worth removing
                chunks = [tokens[i:i + _CHUNK] for i in range(0, len(tokens), _CHUNK)]
                if len(chunks) > 1 and len(chunks[-1]) < _CHUNK // 4:
                    chunks[-2:] = [chunks[-2] + chunks[-1]]
                for chunk in chunks:
                    node = self._trie
                    for token in chunk:
                        node = node.setdefault(token, {})
                    node[None] = True

    def strip(self, text: str) -> str:
        """``text`` with every run of tokens that spells a sent value replaced by a space."""
        if not self._trie:
            return text
        spans = [(m.start(), m.end(), _token(m.group())) for m in _TOKEN.finditer(text)]
        out, last, i = [], 0, 0
        while i < len(spans):
            node, j, best = self._trie, i, 0
            while j < len(spans) and spans[j][2] in node:
                node = node[spans[j][2]]
                j += 1
                if None in node and self._whole(text, spans[i][0], spans[j - 1][1]):
                    best = j
            if best:
                out.append(text[last:spans[i][0]])
                out.append(" ")
                last, i = spans[best - 1][1], best
            else:
                i += 1
        out.append(text[last:])
        return "".join(out)

    @staticmethod
    def _whole(text: str, start: int, end: int) -> bool:
        # A number is not cut out of a larger one: the 30 sent as a duration stays in "10:30".
        if start >= 2 and text[start].isdigit() and text[start - 1] in _JOINERS and text[start - 2].isdigit():
            return False
        return not (end + 1 < len(text) and text[end - 1].isdigit() and text[end] in _JOINERS
                    and text[end + 1].isdigit())


def shown_texts(calls: Sequence[Mapping[str, Any]]) -> list[str]:
    """What each call showed the agent (``text``: its result or error), less everything sent so far.

    ``calls`` are in the order they ran; a string the agent sent in any argument up to a call is removed
    from that call's text, so a value smuggled in by one call and read back by a later one grounds nothing.
    """
    echo = EchoFilter()
    out = []
    for call in calls:
        echo.add(call.get("arguments") or {})
        if "text" in call:
            out.append(echo.strip(call["text"]))
    return out


def without_echo(text: str, sent: Any) -> str:
    """A tool result without the text the caller sent: what the result tells, not what it repeats.

    A grounded answer must rest on what a lookup showed; a value the agent wrote into an argument (and a
    tool echoed back, in that call's result or error or in a later one, quoted or escaped in any way) shows
    nothing. ``sent`` holds the arguments (any nesting of strings, numbers, lists and mappings). See
    :class:`EchoFilter`.

    Example:
        >>> without_echo('Error: no order with id "SHIPPED, DELIVERED"', {"order_id": " shipped, delivered"})
        'Error: no order with id " "'
    """
    echo = EchoFilter()
    echo.add(sent)
    return echo.strip(text)


def identifying_args(call: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that say what a call acts on (all but :data:`FREE_TEXT_ARGS`).

    Example:
        >>> identifying_args({"name": "search_files", "arguments": {"text": "port", "path": "/home"}})
        {'path': '/home'}
    """
    return {k: v for k, v in (call.get("arguments") or {}).items() if k not in FREE_TEXT_ARGS}


def multiset_jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """Jaccard index of two multisets (1.0 when both are empty).

    Example:
        >>> multiset_jaccard(["get", "get", "cancel"], ["get", "cancel"])
        0.6666666666666666
    """
    if not a and not b:
        return 1.0
    counts_a, counts_b = Counter(a), Counter(b)
    return (counts_a & counts_b).total() / (counts_a | counts_b).total()


def _set_jaccard(a: set[str], b: set[str]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def toolrl_scores(predicted: Sequence[Mapping[str, Any]], gold: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """ToolRL's correctness scores of one step's calls against the expected calls, each in 0..1.

    ``tool_name`` is the multiset Jaccard of the names. Predicted calls are paired one-to-one with gold calls
    of the same name (best argument agreement first); ``param_names`` is the mean Jaccard of the argument
    names over ``max(#predicted, #gold)`` calls, ``param_values`` the share of gold arguments matched by value.

    Example:
        >>> gold = [{"name": "cancel_order", "arguments": {"order_id": "O-1", "reason": "no_longer_needed"}}]
        >>> toolrl_scores([{"name": "cancel_order", "arguments": {"order_id": "O-1", "reason": "damaged"}}], gold)
        {'tool_name': 1.0, 'param_names': 1.0, 'param_values': 0.5}
    """
    if not predicted and not gold:
        return {"tool_name": 1.0, "param_names": 1.0, "param_values": 1.0}
    names = multiset_jaccard([p["name"] for p in predicted], [g["name"] for g in gold])
    free = list(range(len(predicted)))
    name_total, value_hits, paired = 0.0, 0, 0
    for g in gold:
        g_args = g.get("arguments") or {}
        best, best_hits = None, -1
        for i in free:
            if predicted[i]["name"] != g["name"]:
                continue
            p_args = predicted[i].get("arguments") or {}
            hits = sum(1 for k, v in g_args.items() if k in p_args and values_match(v, p_args[k]))
            if hits > best_hits:
                best, best_hits = i, hits
        if best is None:
            continue
        free.remove(best)
        paired += 1
        p_args = predicted[best].get("arguments") or {}
        name_total += _set_jaccard(set(g_args), set(p_args))
        value_hits += best_hits
    gold_params = sum(len(g.get("arguments") or {}) for g in gold)
    # Calls without arguments: the value score is the share of calls that found their partner.
    values = value_hits / gold_params if gold_params else paired / max(len(predicted), len(gold))
    return {
        "tool_name": names,
        "param_names": name_total / max(len(predicted), len(gold)),
        "param_values": min(1.0, values),
    }


def _fmt_call(call: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (call.get("arguments") or {}).items())
    return f"{call['name']}({args})"


def _as_text(value: Any) -> str:
    """The text of a state value: strings as they are, everything else as JSON (strings inside unescaped)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "\n".join(f"{k}: {_as_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(_as_text(v) for v in value)
    return json.dumps(value)


def _lookup(state: Any, path: Sequence[Any]) -> Any:
    for key in path:
        in_map = isinstance(state, Mapping) and key in state
        if in_map or (isinstance(state, list) and isinstance(key, int) and -len(state) <= key < len(state)):
            state = state[key]
        else:
            return _MISSING
    return state


def describe_criterion(criterion: Mapping[str, Any]) -> str:
    """A one-line, human-readable statement of a criterion.

    Example:
        >>> describe_criterion({"kind": "called", "tool": "cancel_order", "args": {"order_id": "O-7"}})
        'called cancel_order with order_id="O-7"'
    """
    if criterion.get("description"):
        return str(criterion["description"])
    kind = criterion["kind"]
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (criterion.get("args") or {}).items())
    if kind == "called":
        return f"called {criterion['tool']}" + (f" with {args}" if args else "")
    if kind == "not_called":
        return f"never called {criterion['tool']}" + (f" with {args}" if args else "")
    if kind == "said":
        return f"told the user {criterion['text']!r}"
    if kind == "not_said":
        return f"did not tell the user {criterion['text']!r}"
    where = ".".join(str(p) for p in criterion["path"])
    if "match" in criterion:
        text = f"state {where} holds a record matching {json.dumps(criterion['match'], ensure_ascii=False)}"
        if "contains" in criterion:
            text += f" that says {json.dumps(criterion['contains'], ensure_ascii=False)}"
        return text
    for op in ("equals", "contains", "exists"):
        if op in criterion:
            return f"state {where} {op} {json.dumps(criterion[op], ensure_ascii=False)}"
    return f"state {where}"


def evaluate_criterion(
    criterion: Mapping[str, Any],
    calls: Sequence[Mapping[str, Any]],
    reply: str | None,
    state: Mapping[str, Any],
    *,
    results: Sequence[str] = (),
) -> dict[str, Any]:
    """Check one criterion against a turn's calls, its closing reply and the world state after it.

    ``calls`` are the turn's calls as ``{"name", "arguments", "ok", "step"}``; ``reply`` is None when the turn
    was never answered; ``results`` are the texts of what the agent's calls showed so far, this turn and
    the earlier ones (results and errors, each without what the call's own arguments put there: see
    :func:`without_echo`), which a ``grounded`` said criterion needs. Returns ``{"id", "turn", "kind",
    "description", "passed", "evidence", "weight"}``.

    Example:
        >>> c = {"id": "c1", "turn": 1, "kind": "called", "tool": "delete_file", "args": {"path": "/a"}}
        >>> evaluate_criterion(c, [{"name": "delete_file", "arguments": {"path": "/a"}, "ok": True, "step": 2}],
        ...                    "Done.", {})["evidence"]
        'step 2: delete_file(path="/a") succeeded'
    """
    kind = criterion["kind"]
    tool = criterion.get("tool")
    want = criterion.get("args") or {}
    passed = False
    if kind == "called":
        same = [c for c in calls if c["name"] == tool]
        hit = next((c for c in same if c["ok"] and args_match(want, c["arguments"])), None)
        if hit is not None:
            passed, evidence = True, f"step {hit['step']}: {_fmt_call(hit)} succeeded"
        elif same:
            tried = "; ".join(f"step {c['step']}: {_fmt_call(c)} {'ok' if c['ok'] else 'failed'}" for c in same[:3])
            evidence = f"no successful matching call ({tried})"
        else:
            made = ", ".join(c["name"] for c in calls) or "none"
            evidence = f"{tool} was not called (calls this turn: {made})"
    elif kind == "not_called":
        hit = next((c for c in calls if c["name"] == tool and args_match(want, c["arguments"])), None)
        if hit is None:
            passed, evidence = True, f"no matching {tool} call among {len(calls)} call(s) this turn"
        else:
            evidence = f"step {hit['step']}: {_fmt_call(hit)} was called"
    elif kind == "said":
        if reply is None:
            evidence = "the turn was never answered"
        else:
            passed, evidence = mentions(reply, str(criterion["text"]))
            if passed and criterion.get("grounded"):
                seen, _ = mentions("\n".join(results), str(criterion["text"]))
                if not seen:
                    passed = False
                    evidence = (f"{evidence}, but {str(criterion['text'])!r} is in no tool result the agent "
                                "received (beyond its own arguments): the answer does not rest on a lookup")
    elif kind == "not_said":
        found, where_found = mentions(reply or "", str(criterion["text"]))
        passed = not found
        evidence = f"the reply names {criterion['text']!r}: {where_found}" if found else \
            f"{criterion['text']!r} is not in the reply"
    elif kind == "state":
        where = ".".join(str(p) for p in criterion["path"])
        value = _lookup(state, criterion["path"])
        shown = "missing" if value is _MISSING else json.dumps(value, ensure_ascii=False)[:200]
        if "exists" in criterion:
            passed = (value is not _MISSING) == bool(criterion["exists"])
            evidence = f"{where} is {'missing' if value is _MISSING else 'present'}"
        elif "equals" in criterion:
            passed = value is not _MISSING and values_match(criterion["equals"], value)
            evidence = f"{where} = {shown}"
        elif "match" in criterion:
            records = value.items() if isinstance(value, Mapping) else enumerate(value if isinstance(value, list)
                                                                                 else [])
            text = criterion.get("contains")
            hit = next((k for k, rec in records if isinstance(rec, Mapping) and args_match(criterion["match"], rec)
                        and (text is None or mentions(_as_text(rec), str(text))[0])), None)
            passed = hit is not None
            count = len(value) if isinstance(value, Mapping | list) else 0
            evidence = (f"{where}[{hit}] matches" if passed
                        else f"no record in {where} matches ({count} record(s))")
        elif "contains" in criterion:
            passed = value is not _MISSING and mentions(_as_text(value), str(criterion["contains"]))[0]
            evidence = f"{where} = {shown}"
        else:
            raise ValueError(f"state criterion {criterion.get('id')!r} needs equals, contains, exists or match")
    else:
        raise ValueError(f"unknown criterion kind {kind!r} (use one of {', '.join(CRITERION_KINDS)})")
    return {
        "id": criterion["id"],
        "turn": criterion["turn"],
        "kind": kind,
        "description": describe_criterion(criterion),
        "passed": passed,
        "evidence": evidence,
        "weight": float(criterion.get("weight", 1.0)),
    }


def diff_paths(expected: Any, actual: Any, *, limit: int = 8, _path: str = "") -> list[str]:
    """Where two JSON-able values differ, as readable paths (at most ``limit``).

    Example:
        >>> diff_paths({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0})
        ['a.c: expected 2, got 3', 'd: unexpected']
    """
    out: list[str] = []
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for key in [*expected, *(k for k in actual if k not in expected)]:
            sub = f"{_path}.{key}" if _path else str(key)
            if key not in actual:
                out.append(f"{sub}: missing")
            elif key not in expected:
                out.append(f"{sub}: unexpected")
            else:
                out.extend(diff_paths(expected[key], actual[key], limit=limit, _path=sub))
            if len(out) >= limit:
                break
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual)):
            out.extend(diff_paths(e, a, limit=limit, _path=f"{_path}[{i}]"))
            if len(out) >= limit:
                break
    elif expected != actual:
        show = lambda v: json.dumps(v, ensure_ascii=False)[:80]  # noqa: E731
        out.append(f"{_path or '<root>'}: expected {show(expected)}, got {show(actual)}")
    return out[:limit]
