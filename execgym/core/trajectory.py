"""Trajectory recording to JSONL, reading back, and replay.

Each finished episode becomes one JSON line. Appends hold an exclusive ``flock`` on the file and go out in
one ``write``; a writer killed mid-write can only leave a partial *last* line, which the next append
removes (under the lock, so it cannot be a live writer's line) and :func:`read_trajectories` skips.

No value loses an episode: text with lone surrogates is written with JSON escapes (``"\ud800"``, read back
as the same string), values JSON cannot hold become their ``repr``, and structures nested deeper than
:data:`MAX_DEPTH` are cut with a marker. Replay builds only the registered ``execgym/`` env ids; it imports
the entry point a file names only when told to (``trust_entry_points=True``, ``--trust-entry-points``).

A step may also hold the agent's tokens for the turn that produced its action (:class:`TurnTokens`, under
``"tokens"``): the rollout hands them over with :func:`record_agent_turn` between ``agent.act`` and
``env.step``, for the agents that have them (a local policy, or a server that returns token ids).
"""

from __future__ import annotations

import base64
import fcntl
import importlib
import json
import math
import numbers
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from execgym.core import report as R

__all__ = ["RecordTrajectory", "ReplayResult", "TurnTokens", "abandon_record", "append_jsonl", "read_trajectories",
           "record_agent_turn", "replay_file"]

FORMAT = "execgym.trajectory/1"
MAX_DEPTH = 100


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Coerce numpy scalars, tuples, paths and other values so ``json.dumps`` never fails."""
    if depth > MAX_DEPTH:
        return f"<nested deeper than {MAX_DEPTH} levels: {type(value).__name__} not recorded>"
    if isinstance(value, Mapping):
        return {_safe_str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item(), depth + 1)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), depth + 1)
    return _safe_repr(value)


def _safe_str(key: Any) -> str:
    return key if isinstance(key, str) else _safe_repr(key) if not isinstance(key, (int, float, bool)) else str(key)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not lose the episode
        return f"<unrepresentable {type(value).__name__}>"


def _encode(record: Mapping[str, Any]) -> bytes:
    """One JSON line, UTF-8; ASCII escapes when the text holds what UTF-8 cannot (lone surrogates)."""
    value = _jsonable(record)
    try:
        return (json.dumps(value, ensure_ascii=False, allow_nan=True) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(value, ensure_ascii=True, allow_nan=True) + "\n").encode("ascii")


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line atomically with respect to readers, other writers and crashes.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
        >>> append_jsonl(p, {"a": 1}); append_jsonl(p, {"b": 2})
        >>> [r for r, in map(lambda x: (x,), read_trajectories(p))]
        [{'a': 1}, {'b': 2}]
    """
    data = _encode(record)
    fd = os.open(os.fspath(path), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            _drop_partial_tail(fd, size)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def _drop_partial_tail(fd: int, size: int) -> None:
    """Truncate a line left half-written by a writer that died (we hold the lock, so it is dead)."""
    pos = size
    chunk = 65536
    while pos > 0:
        start = max(0, pos - chunk)
        block = os.pread(fd, pos - start, start)
        idx = block.rfind(b"\n")
        if idx >= 0:
            os.ftruncate(fd, start + idx + 1)
            return
        pos = start
    os.ftruncate(fd, 0)


def read_trajectories(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of a trajectory file; a half-written last line (a killed writer) is skipped."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                return  # the partial tail of a writer killed mid-append
            if not raw.strip():
                continue
            try:
                yield json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: corrupt trajectory line: {exc.msg}") from None


@dataclass
class TurnTokens:
    """One assistant turn exactly as the policy read and wrote it.

    ``prompt_ids`` are the ids the policy was conditioned on, ``completion_ids`` the ids it sampled (its stop
    token included), ``logprobs`` the log-probability of each sampled id under the policy (None when the agent
    has none). ``loss_mask`` runs over ``prompt_ids + completion_ids``: 1 on the ids the policy generated (this
    turn's and the earlier turns' inside the prompt), 0 on the env's and the chat template's. When turn k's
    prompt starts with turn k-1's prompt and completion, no earlier turn was re-tokenised.

    Example:
        >>> turn = TurnTokens([1, 2, 3], [4, 5], [-0.5, -0.25], [0, 0, 0, 1, 1])
        >>> turn.as_record()["completion_ids"], turn.generated()
        ([4, 5], 2)
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float] | None = None
    loss_mask: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.loss_mask:  # no history known: only this turn's ids are the policy's
            self.loss_mask = [0] * len(self.prompt_ids) + [1] * len(self.completion_ids)
        if len(self.loss_mask) != len(self.prompt_ids) + len(self.completion_ids):
            raise ValueError(f"TurnTokens: the loss mask has {len(self.loss_mask)} entries for "
                             f"{len(self.prompt_ids)} prompt and {len(self.completion_ids)} completion ids")
        if self.logprobs is not None and len(self.logprobs) != len(self.completion_ids):
            raise ValueError(f"TurnTokens: {len(self.logprobs)} log-probs for {len(self.completion_ids)} "
                             "completion ids")

    def generated(self) -> int:
        """How many ids of the turn's whole sequence the policy generated."""
        return sum(self.loss_mask)

    def as_record(self) -> dict[str, Any]:
        return {"prompt_ids": list(self.prompt_ids), "completion_ids": list(self.completion_ids),
                "logprobs": None if self.logprobs is None else list(self.logprobs),
                "loss_mask": list(self.loss_mask)}


class RecordTrajectory(gym.Wrapper[str, Any, str, Any]):
    """Append one JSON line per finished episode: task, seed, every action, observation and reward.

    Each line holds the env id, version and kwargs (so ``execgym replay`` can rebuild the env), the task id,
    seed and options of ``reset``, the reset observation, the tools and system prompt, and per step: the
    action, observation, reward, reward components, tool calls and the step's wall time (and ``"tokens"``, the
    agent's :class:`TurnTokens` for that action, when :meth:`add_turn` handed them over); then the episode's
    return, outcome, units, checklist, hack flags, infra error and the full chat messages.

    Put it outermost to record the rewards your trainer sees; replay compares the rewards recorded against
    a fresh env built from the recorded id, so record outside reward wrappers only when they are stateless.

    Example:
        >>> import tempfile, pathlib, gymnasium as gym, execgym
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "episodes.jsonl"
        >>> env = RecordTrajectory(gym.make("execgym/TextToSQL-v0"), path)   # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)                                     # doctest: +SKIP
    """

    def __init__(self, env: gym.Env[str, Any], path: str | os.PathLike[str] | None = None, *, renders: bool = False,
                 sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        if (path is None) == (sink is None):
            raise ValueError("RecordTrajectory takes a path or a sink (a callable that takes each record), not both")
        super().__init__(env)
        self.renders = bool(renders)  # keep the env's end-of-episode picture (``picture_png()``, e.g. CAD)
        self._render_error: str | None = None
        # A sink takes each finished record (a Ray worker hands them back to the driver, which writes the file).
        self.sink = sink
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.episodes_written = 0
        self._record: dict[str, Any] | None = None
        self._turn: dict[str, Any] | None = None
        self._t_episode = 0.0

    def _env_identity(self) -> dict[str, Any]:
        spec = self.env.spec
        unwrapped = self.env.unwrapped
        from execgym import __version__

        identity: dict[str, Any] = {
            "env_id": spec.id if spec else None,
            "env_entry_point": f"{type(unwrapped).__module__}:{type(unwrapped).__qualname__}",
            "execgym_version": __version__,
        }
        kwargs = dict(spec.kwargs) if spec else {}
        identity["env_kwargs"] = {k: v for k, v in kwargs.items() if _is_plain_json(v)}
        identity["env_kwargs_dropped"] = sorted(k for k, v in kwargs.items() if not _is_plain_json(v))
        identity["inner_wrappers"] = _wrapper_names(self.env)
        return identity

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        t0 = time.perf_counter()
        obs, info = self.env.reset(seed=seed, options=options)
        self._t_episode = t0
        self._turn = None
        self._record = {
            "format": FORMAT,
            **self._env_identity(),
            R.TASK_ID: info.get(R.TASK_ID),
            "seed": seed,
            "options": options,
            "reset_observation": obs,
            R.SYSTEM_PROMPT: info.get(R.SYSTEM_PROMPT),
            R.TOOLS: info.get(R.TOOLS),
            "reset_time_s": time.perf_counter() - t0,
            "steps": [],
        }
        return obs, info

    def add_turn(self, tokens: TurnTokens | Mapping[str, Any] | None) -> None:
        """Keep the agent's tokens for the action the next :meth:`step` takes (None: that turn has none)."""
        if tokens is None:
            self._turn = None
            return
        if not isinstance(tokens, TurnTokens):
            tokens = TurnTokens(list(tokens["prompt_ids"]), list(tokens["completion_ids"]), tokens.get("logprobs"),
                                list(tokens.get("loss_mask") or []))
        self._turn = tokens.as_record()

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        t0 = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(action)
        elapsed = time.perf_counter() - t0
        if self._record is not None:
            step: dict[str, Any] = {
                "action": action,
                "observation": obs,
                "reward": _reward(reward),
                "terminated": bool(terminated),
                "truncated": bool(truncated),
                R.REWARD_COMPONENTS: info.get(R.REWARD_COMPONENTS, {}),
                R.BREAKDOWN: info.get(R.BREAKDOWN),
                R.TOOL_CALLS: info.get(R.TOOL_CALLS, []),
                "step_time_s": elapsed,
            }
            if info.get(R.REWARD_ISSUES):
                step[R.REWARD_ISSUES] = list(info[R.REWARD_ISSUES])
            if info.get(R.EXTRA):
                step[R.EXTRA] = info[R.EXTRA]
            if self._turn is not None:
                step["tokens"] = self._turn
            self._record["steps"].append(step)
            if terminated or truncated:
                self._write(info)
        self._turn = None  # a turn's tokens belong to the one action it produced
        return obs, reward, terminated, truncated, info

    def abandon(self, agent_error: str) -> bool:
        """Write the episode in progress as ended by the agent (it raised or hung): its steps so far, no
        outcome, and ``agent_error``, so a run's records hold every episode it played. False if none was open.

        Example:
            >>> import tempfile, pathlib, gymnasium as gym, execgym
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "episodes.jsonl"
            >>> env = RecordTrajectory(gym.make("execgym/TextToSQL-v0"), path)
            >>> _ = env.reset(seed=0)
            >>> env.abandon("AgentTimeout: agent.act did not return within 600 s")
            True
            >>> next(read_trajectories(path))["agent_error"]
            'AgentTimeout: agent.act did not return within 600 s'
        """
        if self._record is None:
            return False
        self._write({}, agent_error=str(agent_error))
        return True

    def _renders(self) -> list[str]:
        """The env's picture of the episode's end (an env with ``picture_png()``, e.g. CAD), as PNG data URIs.

        A picture that cannot be drawn is left out: a record is never lost to its picture.
        """
        draw = getattr(self.env.unwrapped, "picture_png", None)
        if not callable(draw):
            return []
        try:
            uri = _png_data_uri(draw())
        except Exception as exc:  # a record is never lost to its picture; the failure is noted in it
            self._render_error = f"{type(exc).__name__}: {exc}"
            return []
        return [uri] if uri else []

    def _write(self, info: dict[str, Any], *, agent_error: str | None = None) -> None:
        record = self._record
        assert record is not None
        self._record = None
        steps = record["steps"]
        record.update(
            {
                "return": math.fsum(s["reward"] for s in steps if s["reward"] is not None),
                R.AGENT_ERROR: agent_error,
                R.OUTCOME: info.get(R.OUTCOME),
                R.UNITS: info.get(R.UNITS),
                R.CHECKLIST: info.get(R.CHECKLIST),
                R.HACK_FLAGS: info.get(R.HACK_FLAGS),
                R.INFRA_ERROR: info.get(R.INFRA_ERROR),
                R.SUBMITTED: info.get(R.SUBMITTED),
                R.TURNS: len(steps),
                "episode_time_s": time.perf_counter() - self._t_episode,
                R.MESSAGES: getattr(self.env.unwrapped, "messages", None),
            }
        )
        if self.renders:
            self._render_error = None
            record["renders"] = self._renders()
            if self._render_error:
                record["render_error"] = self._render_error
        if self.sink is not None:
            self.sink(record)
        else:
            assert self.path is not None
            append_jsonl(self.path, record)
        self.episodes_written += 1


def record_agent_turn(env: gym.Env[Any, Any], agent: Any) -> bool:
    """Hand the agent's last turn (its ``last_turn``, a :class:`TurnTokens`) to every :class:`RecordTrajectory`
    around ``env``, for the step about to take the action that turn produced. Call it between ``agent.act``
    and ``env.step``; an agent without tokens (an oracle, an API that returns none) hands over nothing.
    True when a recorder took tokens.

    Example:
        >>> import gymnasium as gym, execgym, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "episodes.jsonl"
        >>> env = RecordTrajectory(gym.make("execgym/TextToSQL-v0"), path)
        >>> class Agent:
        ...     last_turn = TurnTokens([1, 2], [3], [-0.1])
        >>> _ = env.reset(seed=0)
        >>> record_agent_turn(env, Agent())
        True
    """
    turn = getattr(agent, "last_turn", None)
    took = False
    while isinstance(env, gym.Wrapper):
        if isinstance(env, RecordTrajectory):
            env.add_turn(turn)
            took = took or turn is not None
        env = env.env
    return took


def _png_data_uri(data: Any) -> str | None:
    if not isinstance(data, bytes | bytearray) or bytes(data[:8]) != b"\x89PNG\r\n\x1a\n":
        return None
    return "data:image/png;base64," + base64.b64encode(bytes(data)).decode("ascii")


def abandon_record(env: gym.Env[Any, Any], agent_error: str) -> bool:
    """Tell every :class:`RecordTrajectory` around ``env`` that the agent ended the episode (see ``abandon``)."""
    wrote = False
    while isinstance(env, gym.Wrapper):
        if isinstance(env, RecordTrajectory):
            wrote = env.abandon(agent_error) or wrote
        env = env.env
    return wrote


def _reward(value: Any) -> float | None:
    """The step's reward as a float; None when it is not a real number (kept as data, not a crash)."""
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def _is_plain_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _wrapper_names(env: gym.Env[Any, Any]) -> list[str]:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


@dataclass
class ReplayResult:
    """Whether one recorded episode reproduced when its actions were re-run in a fresh env."""

    index: int
    task_id: str | None
    steps: int
    reproduced: bool
    recorded_return: float
    replayed_return: float
    message: str = ""


_SPEC_WRAPPERS = {"TimeLimit", "OrderEnforcing", "PassiveEnvChecker", "EnvCompatibility"}


class ReplayRefused(ValueError):
    """A record names an env that replay will not build without ``trust_entry_points=True``."""


def _make_env(record: Mapping[str, Any], *, trust_entry_points: bool = False) -> gym.Env[Any, Any]:
    """A fresh env for ``record``: a registered ``execgym/`` id, or (only when trusted) what the file names."""
    kwargs = record.get("env_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"env_kwargs must be a mapping, got {type(kwargs).__name__}")
    kwargs = {str(k): v for k, v in kwargs.items()}
    widening = sorted(k for k, v in kwargs.items() if k.startswith(("allow_", "trust_")) and v not in (False, None))
    if widening and not trust_entry_points:  # a file must not switch off an env's confinement of what it reads
        raise ReplayRefused(
            f"refused: the record asks for {', '.join(widening)}, which widens what the env may read; replay "
            "passes it only with trust_entry_points=True (execgym replay --trust-entry-points)"
        )
    env_id = record.get("env_id")
    if isinstance(env_id, str) and env_id in gym.registry and (trust_entry_points or env_id.startswith("execgym/")):
        return gym.make(env_id, **kwargs)
    entry_point = record.get("env_entry_point")
    if not trust_entry_points:
        named = f"env id {env_id!r}" if env_id else f"entry point {entry_point!r}"
        raise ReplayRefused(
            f"refused: the record names {named}, not a registered execgym/ env; replay builds it only with "
            "trust_entry_points=True (execgym replay --trust-entry-points), which runs the code it names"
        )
    module, _, name = str(entry_point).partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(**kwargs)


def replay_file(
    path: str | os.PathLike[str], *, atol: float = 1e-6, trust_entry_points: bool = False
) -> list[ReplayResult]:
    """Re-run every recorded episode's actions in a fresh env and compare the rewards step by step.

    Only registered ``execgym/`` env ids are built. A record that names anything else (another registered
    id, or an entry point ``module:Class``, which replay would have to import and run) is reported as not
    reproduced and not run, unless ``trust_entry_points=True``: pass it only for files you trust.
    """
    import execgym  # noqa: F401  (registers the env ids)

    results = []
    for index, record in enumerate(read_trajectories(path)):
        steps = record.get("steps") or []
        recorded = [float(s["reward"]) if isinstance(s.get("reward"), (int, float)) else math.nan for s in steps]
        replayed: list[float] = []
        message = ""
        try:
            env = _make_env(record, trust_entry_points=trust_entry_points)
        except Exception as exc:  # a record that cannot be rebuilt is a result to report, not a crash
            text = str(exc) if isinstance(exc, ReplayRefused) else f"replay failed: {type(exc).__name__}: {exc}"
            results.append(ReplayResult(index, record.get(R.TASK_ID), len(steps), False,
                                        math.fsum(r for r in recorded if not math.isnan(r)), 0.0, text))
            continue
        try:
            env.reset(seed=record.get("seed"), options={**(record.get("options") or {}),
                                                        R.TASK_ID: record.get(R.TASK_ID)})
            for step in steps:
                _, reward, terminated, truncated, _info = env.step(step["action"])
                replayed.append(float(reward))
                if terminated or truncated:
                    break
        except Exception as exc:  # a replay that fails is a result to report, not a crash
            message = f"replay failed: {type(exc).__name__}: {exc}"
        finally:
            env.close()
        reward_wrappers = [w for w in record.get("inner_wrappers") or [] if w not in _SPEC_WRAPPERS]
        same = len(replayed) == len(recorded) and bool(np.allclose(replayed, recorded, atol=atol))
        if not message and not same:
            message = f"rewards differ: recorded {recorded}, replayed {replayed}"
            if reward_wrappers:
                message += f" (recorded through {reward_wrappers}, which replay does not rebuild)"
        results.append(
            ReplayResult(index, record.get(R.TASK_ID), len(steps), same and not message.startswith("replay failed"),
                         float(sum(recorded)), float(sum(replayed)), message)
        )
    return results
