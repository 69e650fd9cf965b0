"""The one rule for numbers that become rewards: finite, real, and of a sane magnitude, or dropped and flagged.

A reward component, a reward part or a reward that is not a real number (a str, None), is NaN or infinite, or
is larger in magnitude than :data:`MAX_MAGNITUDE` (``1e308`` is finite, but sums and running variances of it
overflow to inf and then NaN) is never used: it is dropped, and a one-line note naming it is appended to
``info["reward_issues"]`` so the sample can be told apart and counted. The env core applies the rule to the
components it reports (and to a grade's outcome, which makes the episode an ``infra_error``); every reward
scheme in :mod:`execgym.wrappers` applies it to what it reads and to what it pays.

Example:
    >>> number_problem(0.5), number_problem(float("nan")), number_problem("1.0"), number_problem(1e308)
    (None, 'is not finite', 'is a str, not a number', 'exceeds 1e+09 in magnitude')
    >>> number_problem(1.5, low=0.0, high=1.0)
    'is outside [0, 1]'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import MutableMapping
from typing import Any

from execgym.core.report import REWARD_ISSUES

__all__ = ["MAX_MAGNITUDE", "REWARD_ISSUES", "flag_issue", "number_problem"]

MAX_MAGNITUDE = 1e9


def number_problem(value: Any, *, low: float | None = None, high: float | None = None) -> str | None:
    """What makes ``value`` unusable as a reward number, or None when it is usable.

    A usable value is a real number (``int``, ``float``, ``bool``, numpy scalars), finite, at most
    :data:`MAX_MAGNITUDE` in magnitude and, when given, within ``[low, high]``.
    """
    if not isinstance(value, numbers.Real):
        return f"is a {type(value).__name__}, not a number"
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return f"is a {type(value).__name__} that is not a float"
    if not math.isfinite(x):
        return "is not finite"
    if abs(x) > MAX_MAGNITUDE:
        return f"exceeds {MAX_MAGNITUDE:g} in magnitude"
    if (low is not None and x < low) or (high is not None and x > high):
        return f"is outside [{-math.inf if low is None else low:g}, {math.inf if high is None else high:g}]"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def flag_issue(info: MutableMapping[str, Any], where: str, what: str, value: Any, problem: str) -> None:
    """Append ``"<where>: <what> = <value> <problem>; dropped"`` to ``info["reward_issues"]``.

    Example:
        >>> info = {}
        >>> flag_issue(info, "GatedReward", "component 'executed'", float("nan"), "is not finite")
        >>> info["reward_issues"]
        ["GatedReward: component 'executed' = nan is not finite; dropped"]
    """
    issues = info.get(REWARD_ISSUES)
    if not isinstance(issues, list):
        issues = [] if issues is None else [str(issues)]
        info[REWARD_ISSUES] = issues
    issues.append(f"{where}: {what} = {_short(value)} {problem}; dropped")
