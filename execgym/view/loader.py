"""Reading a run for the report: trajectory files, ``summary.json`` and a trainer's ``log.jsonl``.

A *run* is what ``execgym run --out DIR`` or ``execgym train --out DIR`` wrote, or any trajectory JSONL files.
Every problem with the input is a :class:`ViewError` with one line that names the file (and line).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execgym.core import report as R
from execgym.rollout.runner import wilson_interval

__all__ = ["Episode", "Run", "ViewError", "load_run"]


class ViewError(ValueError):
    """Input the report cannot be made from (a missing path, no trajectories, a corrupt line); one line."""


@dataclass
class Episode:
    """One recorded episode: a short index row for the list and the full record for its page.

    Example:
        >>> ep = Episode.from_record({"env_id": "execgym/Toy-v0", "task_id": "t1", "seed": 3, "outcome": 1.0,
        ...                           "steps": [{"tool_calls": [{"name": "a"}]}]}, agent="oracle", source="x.jsonl")
        >>> ep.index_row()["calls"], ep.success
        (1, True)
    """

    env_id: str
    agent: str
    source: str
    record: dict[str, Any]

    @classmethod
    def from_record(cls, record: dict[str, Any], *, agent: str, source: str) -> Episode:
        env_id = record.get("env_id") or "unknown env"
        return cls(env_id=str(env_id), agent=str(record.get("agent") or agent), source=source, record=record)

    @property
    def outcome(self) -> float | None:
        value = self.record.get(R.OUTCOME)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def success(self) -> bool:
        return self.outcome is not None and self.outcome >= 1.0 and not self.error

    @property
    def error(self) -> str | None:
        """``infra: ...`` or ``agent: ...`` when the episode ended on an infra or agent error."""
        if self.record.get(R.INFRA_ERROR):
            return f"infra: {self.record[R.INFRA_ERROR]}"
        if self.record.get(R.AGENT_ERROR):
            return f"agent: {self.record[R.AGENT_ERROR]}"
        return None

    def index_row(self) -> dict[str, Any]:
        """What the episode list shows and filters on (small: the list of a 10,000-episode run stays fast)."""
        steps = self.record.get("steps") or []
        hack = self.record.get(R.HACK_FLAGS) or []
        return {
            "env": self.env_id.removeprefix("execgym/"),
            "agent": self.agent,
            "task": _text(self.record.get(R.TASK_ID)),
            "seed": self.record.get("seed") if isinstance(self.record.get("seed"), int) else None,
            R.OUTCOME: self.outcome,
            "ret": _finite(self.record.get("return")),
            R.TURNS: len(steps),
            "calls": sum(len(s.get(R.TOOL_CALLS) or []) for s in steps if isinstance(s, dict)),
            "hack": [_text(h) for h in hack] if isinstance(hack, list) else [_text(hack)],
            "error": self.error,
            "result": "error" if self.error else "success" if self.success else "failure",
        }


@dataclass
class Run:
    """Everything the report shows: episodes, the summary rows, and a trainer's log when there is one.

    Example:
        >>> import tempfile, pathlib, json
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "execgym_Toy-v0__oracle.jsonl").write_text(json.dumps({"env_id": "execgym/Toy-v0",
        ...     "task_id": "t", "outcome": 1.0, "steps": []}) + "\\n")
        >>> run = load_run([d])
        >>> len(run.episodes), run.summary[0]["agent"], run.summary[0]["success_rate"]
        (1, 'oracle', 1.0)
    """

    title: str
    episodes: list[Episode]
    summary: list[dict[str, Any]]
    summary_source: str
    train_log: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _agent_from_name(path: Path) -> str:
    """``execgym run`` names its files ``<env>__<agent>.jsonl``; other files name no agent."""
    stem = path.stem
    return stem.rsplit("__", 1)[1] if "__" in stem else "unknown"


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of one JSONL file; a corrupt line is a one-line :class:`ViewError` naming file and line."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise ViewError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                return  # the partial tail of a writer killed mid-append (as read_trajectories skips it)
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                what = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                raise ViewError(f"{path}:{lineno}: corrupt JSON line ({what})") from None
            if not isinstance(record, dict):
                raise ViewError(f"{path}:{lineno}: a trajectory line must be a JSON object, "
                                f"got {type(record).__name__}")
            yield record


def _is_trajectory(record: dict[str, Any]) -> bool:
    return "steps" in record and ("env_id" in record or R.TASK_ID in record)


def _trajectory_files(paths: Sequence[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(trajectory files, summary.json files, trainer log files) under ``paths``."""
    files: list[Path] = []
    summaries: list[Path] = []
    logs: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ViewError(f"no such file or folder: {path}")
        if path.is_dir():
            files.extend(p for p in sorted(path.glob("*.jsonl")) if p.name != "log.jsonl")
            if (path / "summary.json").is_file():
                summaries.append(path / "summary.json")
            if (path / "log.jsonl").is_file():
                logs.append(path / "log.jsonl")
        elif path.suffix == ".json" and path.name == "summary.json":
            summaries.append(path)
        else:
            files.append(path)
    return files, summaries, logs


def _summary_from_episodes(episodes: Iterable[Episode]) -> list[dict[str, Any]]:
    """Rows like ``summary.json``'s, computed from the recorded episodes (the same Wilson interval)."""
    groups: dict[tuple[str, str], list[Episode]] = {}
    for ep in episodes:
        groups.setdefault((ep.env_id, ep.agent), []).append(ep)
    rows = []
    for (env_id, agent), eps in sorted(groups.items()):
        scored = [e for e in eps if not e.error]
        wins = sum(e.success for e in scored)
        rows.append({
            "env_id": env_id, "agent": agent, "episodes": len(eps), "scored": len(scored),
            "infra_errors": sum(bool(e.record.get(R.INFRA_ERROR)) for e in eps),
            "agent_errors": sum(bool(e.record.get(R.AGENT_ERROR)) and not e.record.get(R.INFRA_ERROR) for e in eps),
            "success_rate": wins / len(scored) if scored else None,
            "success_ci95": list(wilson_interval(wins, len(scored))),
            "mean_reward": _mean([e.record.get("return") for e in scored]),
            "mean_turns": _mean([len(e.record.get("steps") or []) for e in scored]),
            "hack_flagged": sum(bool(e.record.get(R.HACK_FLAGS)) for e in scored),
        })
    return rows


def _mean(values: Sequence[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(nums) / len(nums) if nums else None


def _read_summary(path: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ViewError(f"{path}: not a readable summary ({type(exc).__name__})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ViewError(f"{path}: a summary must be a JSON list of rows")
    return rows


def load_run(paths: Sequence[str | Path]) -> Run:
    """Read a run folder (``execgym run --out``, ``execgym train --out``) or trajectory JSONL files.

    Raises :class:`ViewError` (one line) for a missing path, a corrupt line, or input without episodes
    or a trainer log.
    """
    if not paths:
        raise ViewError("give a run folder or trajectory JSONL files")
    given = [Path(p) for p in paths]
    files, summaries, logs = _trajectory_files(given)
    episodes: list[Episode] = []
    notes: list[str] = []
    for path in files:
        agent = _agent_from_name(path)
        count = 0
        for lineno, record in enumerate(_read_jsonl(path), 1):
            if not _is_trajectory(record):
                raise ViewError(f"{path}:{lineno}: not a trajectory record (no 'steps'; is it a trainer log?)")
            episodes.append(Episode.from_record(record, agent=agent, source=path.name))
            count += 1
        if count == 0:
            notes.append(f"{path.name} holds no finished episode")
    train_log: list[dict[str, Any]] = []
    for path in logs:
        train_log.extend(_read_jsonl(path))
    if not episodes and not train_log:
        where = ", ".join(str(p) for p in given)
        found = "no trajectory files (*.jsonl)" if not files else "trajectory files without any finished episode"
        raise ViewError(f"{where}: {found} and no trainer log.jsonl; nothing to show")
    if summaries:
        summary = [row for path in summaries for row in _read_summary(path)]
        source = "summary.json, written by the run"
    else:
        summary = _summary_from_episodes(episodes)
        source = "computed from the recorded episodes"
    counted = sum(r.get("episodes", 0) for r in summary if isinstance(r.get("episodes"), int))
    if summaries and counted > len(episodes):
        notes.append(f"summary.json counts {counted} episodes and {len(episodes)} were recorded: an episode is "
                     "recorded when it ends, so those that stopped on an agent error (or an interrupted run) are "
                     "only in the counts")
    if train_log and not episodes:
        notes.append("the trainer records no episodes (only log.jsonl): the report shows its learning log")
    title = " + ".join(p.name or str(p) for p in given)
    return Run(title=title, episodes=episodes, summary=summary, summary_source=source, train_log=train_log,
               notes=notes)
