"""What the tool-calling envs (ToolUse, BFCL) share: ToolRL components every step, and lenient task files."""

from __future__ import annotations

import functools
import marshal
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from execgym.core.env import AgentEnv
from execgym.core.report import StepReport
from execgym.core.tasks import Loader

__all__ = ["TOOLRL_COMPONENTS", "ToolCallingEnv", "copy_plain"]

TOOLRL_COMPONENTS = ("tool_name", "param_names", "param_values")
"""ToolRL's correctness scores of a step's calls, each in 0..1."""


def copy_plain(value: Any) -> Any:
    """A deep copy of plain data that does not recurse in Python (an agent's arguments may nest 900 deep).

    Example:
        >>> nested = [[["a"]]]
        >>> copy_plain(nested) == nested and copy_plain(nested)[0] is not nested[0]
        True
    """
    return marshal.loads(marshal.dumps(value))


class ToolCallingEnv(AgentEnv):
    """An env whose steps earn ToolRL's scores against expected calls, and that may skip malformed rows.

    Every step reports :data:`TOOLRL_COMPONENTS` (0 for an action that could not be used; otherwise what
    :meth:`_toolrl_scores` says of the step's calls) and ``calls``, a count of the step's calls (not a reward).

    Args:
        skip_invalid_rows: leave malformed rows of a loaded file out (one warning counts them) instead of
            refusing the file.
        **kwargs: as :class:`~execgym.core.env.AgentEnv`.
    """

    component_ranges: ClassVar[Mapping[str, tuple[float, float]]] = {"calls": (0.0, math.inf)}

    def __init__(self, *, skip_invalid_rows: bool = False, **kwargs: Any) -> None:
        self.skip_invalid_rows = bool(skip_invalid_rows)
        super().__init__(**kwargs)

    def task_loaders(self) -> Mapping[str, Loader]:
        if not self.skip_invalid_rows:
            return self.loaders
        return {name: functools.partial(fn, skip_invalid=True) for name, fn in self.loaders.items()}

    def _toolrl_scores(self, calls: list[dict[str, Any]]) -> Mapping[str, float]:
        """ToolRL's scores of this step's usable calls (``{"name", "arguments"}``; none for a text answer)."""
        raise NotImplementedError

    def _step_components(self, step: StepReport) -> Mapping[str, float]:
        calls = [{"name": c.name, "arguments": c.arguments} for c in step.tool_calls]
        scores = self._toolrl_scores(calls) if step.format_ok else dict.fromkeys(TOOLRL_COMPONENTS, 0.0)
        return {**scores, "calls": float(len(calls))}
