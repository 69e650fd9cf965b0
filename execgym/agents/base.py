"""The Agent protocol: ``reset(info)``, ``act(observation, info) -> action``, and a batched form."""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol, runtime_checkable

__all__ = ["DEFAULT_ACT_TIMEOUT_S", "Agent", "AgentTimeout", "BatchedAgent", "TimedCaller", "check_timeout"]

DEFAULT_ACT_TIMEOUT_S: float | None = 600.0
"""How long one ``act`` (or ``reset``) of an agent may take before its episode ends as an agent error."""


class AgentTimeout(Exception):
    """An agent call that did not return within its time limit (reported as the episode's ``agent_error``)."""


class TimedCaller:
    """Runs calls on a daemon worker thread and waits at most ``timeout_s`` for each.

    A Python thread cannot be stopped, so a call that times out is abandoned: its thread (a daemon, which
    never blocks interpreter exit) is left to finish or hang on its own, and the next call gets a fresh one.
    The agent whose call timed out may still be running it: play the next episode with a new agent.
    ``timeout_s=None`` calls on the caller's thread, with no limit.

    Example:
        >>> import time
        >>> caller = TimedCaller()
        >>> caller.call(sum, [1, 2], timeout_s=5)
        3
        >>> try:
        ...     caller.call(time.sleep, 5, timeout_s=0.05, what="act")
        ... except AgentTimeout as exc:
        ...     print(exc)
        act did not return within 0.05 s
        >>> caller.close()
    """

    def __init__(self, name: str = "execgym-agent") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None] | None = None

    def _worker(self) -> queue.SimpleQueue[Any]:
        if self._jobs is None:
            jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
            threading.Thread(target=_serve_jobs, args=(jobs,), name=self.name, daemon=True).start()
            self._jobs = jobs
        return self._jobs

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` on the worker thread; the future holds its result or exception."""
        future: Future[Any] = Future()
        self._worker().put((fn, args, future))
        return future

    def abandon(self) -> None:
        """Leave the current worker to its call (it exits when the call returns); the next call gets a new one."""
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None, what: str = "the agent call") -> Any:
        """``fn(*args)``, or :class:`AgentTimeout` when it takes longer than ``timeout_s`` seconds."""
        if timeout_s is None:
            return fn(*args)
        future = self.submit(fn, *args)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            self.abandon()
            raise AgentTimeout(f"{what} did not return within {timeout_s:g} s") from None

    def close(self) -> None:
        self.abandon()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit there may be nothing left to tell
            self.abandon()  # lets an idle worker thread exit with its caller


def _serve_jobs(jobs: queue.SimpleQueue[Any]) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        fn, args, future = job
        if not future.set_running_or_notify_cancel():
            continue
        try:
            result = fn(*args)
        except BaseException as exc:  # the caller sees it as the future's exception
            future.set_exception(exc)
        else:
            future.set_result(result)


def check_timeout(timeout_s: float | None) -> float | None:
    """``timeout_s`` as a float, or a ValueError when it is not positive (None: no limit)."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"an agent timeout must be a positive number of seconds or None, got {timeout_s!r}")
    return float(timeout_s)


@runtime_checkable
class Agent(Protocol):
    """Anything that plays an execgym episode.

    ``reset`` receives the ``info`` of ``env.reset`` (tools, system prompt, messages); ``act`` receives each
    observation and the latest ``info`` and returns an action: a raw reply (str) or structured tool calls.
    """

    name: str

    def reset(self, info: dict[str, Any]) -> None: ...

    def act(self, observation: str, info: dict[str, Any]) -> Any: ...


class BatchedAgent:
    """Base class giving any agent the batched form: one call acts for many episodes.

    ``reset_batch(infos)`` opens one *slot* per episode (a shallow copy of the agent, so the model, client
    or generator is shared and the per-episode state is not); ``act_batch(observations, infos, slots)`` acts
    in the given slots (all of them by default; pass the slots still running as episodes end). Without
    ``reset_batch`` it acts with ``self`` for every observation. Subclasses that can batch (an LLM generating
    for many prompts at once) override ``act_batch``.

    ``episode_usage`` holds the token usage of the current episode (``prompt_tokens``,
    ``completion_tokens``), for the agents that have one; ``slot(k)`` is the agent playing slot ``k``.

    Example:
        >>> class Echo(BatchedAgent):
        ...     name = "echo"
        ...     def reset(self, info): self.prefix = info["prefix"]
        ...     def act(self, observation, info): return self.prefix + observation
        >>> agent = Echo()
        >>> agent.reset_batch([{"prefix": "1:"}, {"prefix": "2:"}])
        >>> agent.act_batch(["a", "b"], [{}, {}])
        ['1:a', '2:b']
        >>> agent.act_batch(["c"], [{}], slots=[1])
        ['2:c']
    """

    name = "agent"
    episode_usage: dict[str, int]
    _slots: list[Any] | None = None

    def reset(self, info: dict[str, Any]) -> None:
        raise NotImplementedError

    def act(self, observation: str, info: dict[str, Any]) -> Any:
        raise NotImplementedError

    def fork(self) -> Any:
        """A copy of this agent for one more concurrent episode (shares heavy resources, not episode state)."""
        twin = copy.copy(self)
        twin._slots = None
        return twin

    def reset_batch(self, infos: Sequence[dict[str, Any]]) -> None:
        self._slots = [self.fork() for _ in infos]
        for agent, info in zip(self._slots, infos):
            agent.reset(info)

    def slot(self, index: int) -> Any:
        """The agent playing slot ``index`` (``self`` when no batch was reset)."""
        return self._slots[index] if self._slots is not None else self

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[dict[str, Any]], slots: Sequence[int] | None = None
    ) -> list[Any]:
        if self._slots is None:
            return [self.act(o, i) for o, i in zip(observations, infos)]
        indices = list(slots) if slots is not None else list(range(len(observations)))
        if len(indices) != len(observations):
            raise ValueError(f"act_batch: {len(observations)} observations for {len(indices)} slots")
        return [self._slots[k].act(o, i) for k, o, i in zip(indices, observations, infos)]
