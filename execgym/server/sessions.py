"""The env server's sessions: one env instance per session, stepped on its own thread, reaped when idle.

A session is created for a WebSocket connection, an HTTP ``/reset`` without a ``session_id``, or an MCP client.
Env steps block (sandboxes, sqlite), so each session owns a one-thread executor: its env only ever runs on
that thread (sqlite connections refuse other threads) and a slow step never holds up the event loop or the
other sessions.

Example:
    >>> import asyncio
    >>> pool = SessionPool(["execgym/TextToSQL-v0"], max_sessions=1)
    >>> async def play():
    ...     session = await pool.create("execgym/TextToSQL-v0", {}, ())
    ...     obs, info = await session.reset(seed=0)
    ...     await pool.close(session)
    ...     return info["task_id"] != "", pool.active
    >>> asyncio.run(play())
    (True, 0)
    >>> asyncio.run(pool.create("execgym/Nope-v0", {}, ()))
    Traceback (most recent call last):
        ...
    execgym.server.sessions.SessionRefused: unknown env id 'execgym/Nope-v0'; this server serves: execgym/TextToSQL-v0
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium as gym

from execgym.core import report as R
from execgym.remote import one_line
from execgym.wrappers import apply_wrappers

__all__ = ["Session", "SessionPool", "SessionRefused", "jsonable", "one_line"]


class SessionRefused(Exception):
    """A session could not be created; ``code`` is OpenEnv's error code for it (``CAPACITY_REACHED``, ...)."""

    def __init__(self, message: str, code: str = "FACTORY_ERROR") -> None:
        super().__init__(message)
        self.code = code


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (numpy scalars and arrays, dataclasses, sets and tuples converted)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        # JSON has no NaN or infinity; the report's numbers are checked finite, this only guards stray values.
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(jsonable(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    return str(value)


@dataclasses.dataclass(eq=False)
class Session:
    """One client's env: made with ``gym.make(env_id, **env_kwargs)`` and wrapped by name."""

    id: str
    env_id: str
    env_kwargs: dict[str, Any]
    wrappers: list[Any]
    env: gym.Env[Any, Any]
    executor: ThreadPoolExecutor
    last_active: float = dataclasses.field(default_factory=time.monotonic)
    busy: int = 0
    steps: int = 0
    episode_id: str | None = None
    task_id: str | None = None
    ended: bool = False
    on_reap: Callable[[], Awaitable[None]] | None = None
    """How the transport that owns the session is told it was reaped (a WebSocket closes itself)."""

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the session's own thread; the session is not idle meanwhile."""
        self.busy += 1
        try:
            call = functools.partial(fn, *args, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        finally:
            self.busy -= 1
            self.last_active = time.monotonic()

    async def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None,
                    episode_id: str | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = await self.run(self.env.reset, seed=seed, options=dict(options) if options else None)
        self.steps, self.ended = 0, False
        self.episode_id = episode_id or uuid.uuid4().hex
        self.task_id = str(info.get(R.TASK_ID, "")) or None
        return obs, info

    async def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = await self.run(self.env.step, action)
        self.steps += 1
        self.ended = bool(terminated or truncated)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def state(self) -> dict[str, Any]:
        """The session's state as OpenEnv's ``State`` (``episode_id``, ``step_count``) plus what made it."""
        obs_space, act_space = self.env.observation_space, self.env.action_space
        return {
            "episode_id": self.episode_id,
            "step_count": self.steps,
            "session_id": self.id,
            "env_id": self.env_id,
            "env_kwargs": jsonable(self.env_kwargs),
            "wrappers": jsonable(self.wrappers),
            R.TASK_ID: self.task_id,
            "done": self.ended,
            "observation_max_chars": getattr(obs_space, "max_length", None),
            "action_max_chars": getattr(act_space, "max_length", None),
        }


class SessionPool:
    """The sessions of one server: at most ``max_sessions`` of them over all env ids, each reaped when idle.

    All methods run on the server's event loop, so the bookkeeping needs no lock; only the env work runs on
    the sessions' threads.
    """

    def __init__(self, env_ids: Iterable[str], *, max_sessions: int = 256,
                 idle_timeout_s: float | None = 600.0) -> None:
        self.env_ids = list(dict.fromkeys(env_ids))
        unknown = [i for i in self.env_ids if i not in gym.registry]
        if unknown:
            raise ValueError(f"unknown env id {unknown[0]!r}; registered: {', '.join(sorted(gym.registry))}")
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.sessions: dict[str, Session] = {}
        self._reserved = 0

    @property
    def active(self) -> int:
        return len(self.sessions)

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    async def create(self, env_id: str, env_kwargs: Mapping[str, Any], wrappers: Sequence[Any]) -> Session:
        """A new session's env, made on its own thread; refused (one line) for an unknown id, bad kwargs or
        wrappers, or a full server (never queued)."""
        if env_id not in self.env_ids:
            raise SessionRefused(f"unknown env id {env_id!r}; this server serves: {', '.join(self.env_ids)}")
        if not isinstance(env_kwargs, Mapping):
            raise SessionRefused(f"env kwargs must be a JSON object, got {type(env_kwargs).__name__}")
        if self.active + self._reserved >= self.max_sessions:
            raise SessionRefused(
                f"server at capacity: {self.max_sessions} of {self.max_sessions} sessions in use (--max-sessions); "
                "close a session or retry later", code="CAPACITY_REACHED")
        self._reserved += 1
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="execgym-session")
        try:
            make = functools.partial(self._make, env_id, dict(env_kwargs), list(wrappers))
            env = await asyncio.get_running_loop().run_in_executor(executor, make)
        except SessionRefused:
            executor.shutdown(wait=False)
            raise
        finally:
            self._reserved -= 1
        session = Session(uuid.uuid4().hex, env_id, dict(env_kwargs), list(wrappers), env, executor)
        self.sessions[session.id] = session
        return session

    @staticmethod
    def _make(env_id: str, env_kwargs: dict[str, Any], wrappers: list[Any]) -> gym.Env[Any, Any]:
        try:
            env = gym.make(env_id, **env_kwargs)
        except Exception as exc:
            raise SessionRefused(f"cannot make {env_id} with kwargs {json.dumps(jsonable(env_kwargs))}: "
                                 f"{one_line(exc)}") from None
        try:
            return apply_wrappers(env, wrappers)
        except Exception as exc:
            env.close()
            raise SessionRefused(f"bad wrappers for {env_id}: {one_line(exc)}") from None

    async def close(self, session: Session) -> None:
        """Close ``session``'s env on its thread and forget it (closing twice is a no-op)."""
        if self.sessions.pop(session.id, None) is None:
            return
        with contextlib.suppress(Exception):  # a broken env must not keep its slot
            await asyncio.get_running_loop().run_in_executor(session.executor, session.env.close)
        session.executor.shutdown(wait=False)

    async def reap_idle(self) -> list[str]:
        """Close the sessions idle for longer than the idle timeout; their ids."""
        if self.idle_timeout_s is None:
            return []
        now = time.monotonic()
        idle = [s for s in self.sessions.values() if not s.busy and now - s.last_active > self.idle_timeout_s]
        for session in idle:
            if session.on_reap is not None:
                with contextlib.suppress(Exception):
                    await session.on_reap()
            await self.close(session)
        return [s.id for s in idle]

    async def reap_forever(self) -> None:
        """Reap idle sessions every few seconds (a task the app runs for its lifetime)."""
        if self.idle_timeout_s is None:
            return
        period = min(max(self.idle_timeout_s / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(period)
            await self.reap_idle()

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await self.close(session)
