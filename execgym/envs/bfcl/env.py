"""BFCLEnv: BFCL's single-turn categories, one reply per episode, graded by BFCL's AST rules.

The agent sees the entry's question and its functions as tools; its first reply is the whole answer (calls,
several of them parallel calls, or a text answer). Calling a function only records the call; after the reply
the episode terminates and the calls are judged by :func:`~execgym.envs.bfcl.grading.check_bfcl`.

Rewards are data (see :mod:`execgym.core.report`). The env's reward is the outcome: 1 when BFCL's checker
accepts the reply.

* ``format``: a well-formed reply (calls of the entry's functions, or plain text);
* ``tool_name`` / ``param_names`` / ``param_values`` (ToolRL): the calls against the possible answer (name
  Jaccard, parameter-name Jaccard, share of values BFCL accepts); 0 for a malformed reply. ``calls``: a
  count of the reply's calls, not a reward;
* at the end, one unit ``ast`` with BFCL's errors as evidence (``extra``: ``error``, ``error_type``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from execgym.core.env import Grade
from execgym.core.report import Unit
from execgym.core.tasks import Loader, Task
from execgym.core.tools import Tool, ToolOutput
from execgym.envs.bfcl.grading import check_bfcl, step_scores
from execgym.envs.bfcl.loading import load_bfcl
from execgym.envs.bfcl.tools import bfcl_tools
from execgym.envs.tooluse.toolrl import ToolCallingEnv, copy_plain

__all__ = ["SAMPLE_DIR", "BFCLEnv"]

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "assets" / "bfcl" / "sample"
"""A few entries in BFCL's file layout (one or more per core category), the env's tasks without a dataset."""

_CALL_SYNTAX = (
    'Call a tool by writing <tool_call>{"name": <tool>, "arguments": {...}}</tool_call>; several blocks in one '
    "reply run as parallel calls."
)
_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. "
    "Based on the question, make one or more function calls to achieve the purpose, in a single reply. If "
    "none of the functions can be used, say so in plain text and call nothing. " + _CALL_SYNTAX
)


def _bounded(value: Any, depth: int = 32) -> Any:
    """``value`` with anything nested deeper than ``depth`` replaced by the start of its JSON text.

    The final info is deep-copied and serialised by callers (snapshots, trajectories); an agent's BFCL
    arguments may nest hundreds of levels, which Python's recursive copies cannot take.

    Example:
        >>> _bounded({"a": [[[1]]]}, depth=2)
        {'a': ['[[1]]']}
    """
    if isinstance(value, dict | list) and depth <= 0:
        try:
            return json.dumps(value)[:200]
        except (RecursionError, ValueError):
            return "<nested too deeply to show>"
    if isinstance(value, dict):
        return {k: _bounded(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_bounded(v, depth - 1) for v in value]
    return value


class BFCLEnv(ToolCallingEnv):
    """BFCL's single-turn categories: one reply per entry, graded by BFCL's AST checker.

    Args:
        dataset: ``"bfcl:DIR"`` (a BFCL data folder, or one ``BFCL_v*_<category>.json`` file) with
            ``split=<category>`` (see :mod:`execgym.envs.bfcl.loading`); by default ``"bundled"``, a small
            sample in BFCL's layout with one split per category.
        bfcl_underscore_names: show functions named ``a.b`` as ``a_b`` (for APIs that refuse dots).
        skip_invalid_rows: leave malformed entries of a loaded file out (one warning counts them) instead of
            refusing the file.
        split, max_turns, render_mode, ...: as :class:`~execgym.core.env.AgentEnv`.

    Example:
        >>> env = BFCLEnv(split="parallel")
        >>> obs, info = env.reset(options={"task_id": "parallel_0"})
        >>> obs, [t["function"]["name"] for t in info["tools"]]
        ('Weather in Paris and in Oslo, in C?', ['get_weather'])
        >>> obs, reward, terminated, truncated, info = env.step(env.task.oracle[0])
        >>> reward, terminated, info["units"][0]["passed"]
        (1.0, True, True)
    """

    description: ClassVar[str] = (
        "BFCL's single-turn categories (simple, multiple, parallel, parallel_multiple, live_*, irrelevance): "
        "one reply per entry, graded by BFCL's AST rules, with ToolRL components."
    )
    default_max_turns: ClassVar[int] = 1
    loaders: ClassVar[dict[str, Loader]] = {"bfcl": load_bfcl}

    def __init__(self, *, bfcl_underscore_names: bool = False, **kwargs: Any) -> None:
        self.bfcl_underscore_names = bool(bfcl_underscore_names)
        self._calls: list[dict[str, Any]] = []
        self._answered = False
        super().__init__(**kwargs)

    # ------------------------------------------------------------------------------------- task sources
    def bundled_tasks(self) -> Sequence[Task]:
        return load_bfcl(SAMPLE_DIR, None)

    # -------------------------------------------------------------------------------------------- hooks
    def _begin(self, task: Task) -> str:
        self._calls = []
        self._answered = False
        return task.prompt

    def _tools(self, task: Task) -> list[Tool]:
        # The recorder reads this env's current episode when called: the core builds these once per task.
        return bfcl_tools(task.data["bfcl"]["functions"], self._record, underscore_names=self.bfcl_underscore_names)

    def _record(self, name: str, arguments: dict[str, Any]) -> str:
        self._calls.append({"name": name, "arguments": arguments})
        return f"{name} was called. (BFCL episodes end after this reply.)"

    def _system_prompt(self, task: Task) -> str:
        extra = task.data["bfcl"].get("system") or ""
        return _PROMPT + (f"\n\n{extra}" if extra else "")

    def _before_step(self) -> None:
        self.end_episode()  # the agent's first reply is the whole answer

    def _on_reply(self, text: str) -> ToolOutput | None:
        self._answered = True
        return ToolOutput("Answer recorded.")

    def _toolrl_scores(self, calls: list[dict[str, Any]]) -> dict[str, float]:
        assert self.task is not None
        entry = self.task.data["bfcl"]
        # The recorded calls carry BFCL's own names (the tools may show them with underscores).
        return step_scores(entry["functions"], self._calls, entry["ground_truth"])

    def _grade(self, submitted: bool) -> Grade:
        assert self.task is not None
        entry = self.task.data["bfcl"]
        verdict = check_bfcl(entry["category"], entry["functions"], self._calls, entry["ground_truth"],
                             answered=self._answered or bool(self._calls))
        return Grade(
            outcome=float(verdict["valid"]),
            units=[Unit("ast", verdict["valid"], "; ".join(verdict["error"]) or "BFCL's AST rules accept the reply",
                        extra={"error": verdict["error"], "error_type": verdict["error_type"]})],
            details={"bfcl_category": entry["category"], "calls": _bounded(self._calls)},
        )

    # ----------------------------------------------------------------------------------------- branching
    def _snapshot_state(self) -> dict[str, Any]:
        return copy_plain({"calls": self._calls, "answered": self._answered})

    def _restore_state(self, state: dict[str, Any]) -> None:
        state = copy_plain(state)
        self._calls, self._answered = state["calls"], state["answered"]

