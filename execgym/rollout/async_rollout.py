"""Ready-first rollouts: many episodes in flight, each served as soon as its agent answers.

An LLM agent's latency varies from call to call and from episode to episode; stepping envs in lock-step (a
vector env) waits for the slowest agent every turn. :class:`AsyncRollout` keeps ``num_slots`` episodes in
flight and steps whichever episode's agent answered first, so throughput is the sum of the episodes' own
rates rather than ``num_slots`` times the slowest one's.

Each slot owns one long-lived thread that creates its env and agent and runs every ``reset``, ``act`` and
``step`` of that slot: local sandboxes are tied to the thread that created them (``bwrap --die-with-parent``
follows the creating thread), so an env must never be created on one thread and stepped from a short-lived
other one. The driver (the caller's thread) only moves work between slots and collects results.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import gymnasium as gym

from execgym.agents import Agent
from execgym.agents.base import TimedCaller
from execgym.core.trajectory import abandon_record, record_agent_turn
from execgym.rollout.episode import (
    AgentFactory,
    EnvFactory,
    EpisodeAccumulator,
    EpisodeCallback,
    EpisodeResult,
    EpisodeSpec,
    LocalRollout,
    episode_specs,
    error_text,
)

__all__ = ["AsyncRollout", "EpisodeSpec", "episode_specs", "run_async"]

StepCallback = Callable[[int, Any, str, float, dict[str, Any]], None]


class _Slot:
    """One env and its agent: the env lives on one thread for the slot's whole life, the agent acts on another
    (so an agent that hangs can be abandoned while the env goes on with a new agent)."""

    def __init__(self, index: int, env_fn: EnvFactory, agent_fn: AgentFactory) -> None:
        self.index = index
        self.env_fn = env_fn
        self.agent_fn = agent_fn
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"execgym-slot{index}")
        self.caller = TimedCaller(name=f"execgym-slot{index}-agent")
        self.env: gym.Env[Any, Any] | None = None
        self.agent: Agent | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.thread.submit(fn, *args)

    def reset(self, spec: EpisodeSpec) -> tuple[str, dict[str, Any]]:
        if self.env is None:
            self.env, self.agent = self.env_fn(), None
        if self.agent is None:
            self.agent = self.agent_fn(self.env)
        return self.env.reset(seed=spec.seed, options=spec.options)

    def reset_agent(self, info: dict[str, Any]) -> None:
        assert self.agent is not None
        self.agent.reset(info)

    def act(self, obs: str, info: dict[str, Any]) -> Any:
        assert self.agent is not None and self.env is not None
        action = self.agent.act(obs, info)
        record_agent_turn(self.env, self.agent)  # its token ids go with the step the env takes next
        return action

    def abandon_agent(self) -> None:
        """Leave a hung agent to its call; the slot's next episode builds a new one on a new agent thread."""
        self.caller.abandon()
        self.agent = None

    def step(self, action: Any) -> tuple[Any, tuple[str, float, bool, bool, dict[str, Any]]]:
        assert self.env is not None
        obs, reward, terminated, truncated, info = self.env.step(action)
        return action, (obs, reward, bool(terminated), bool(truncated), info)

    def discard_env(self) -> None:
        """Close an env that raised (it is rebuilt for the slot's next episode)."""
        env, self.env, self.agent = self.env, None, None
        if env is not None:
            # a broken env may fail to close too; the slot goes on with a new one
            with contextlib.suppress(Exception):
                env.close()

    def close(self) -> None:
        self.caller.close()
        self.thread.submit(self.discard_env).result()
        self.thread.shutdown(wait=True)


class AsyncRollout(LocalRollout):
    """Play many episodes with ``num_slots`` in flight, stepping whichever episode's agent answered first.

    ``num_slots`` episodes are in flight at once (one env, one agent and one thread each); the other arguments
    are :class:`~execgym.rollout.episode.LocalRollout`'s. Every slot has its own agent, so agents need not be
    thread-safe. Agents act on their own threads: one that does not answer within ``act_timeout_s`` ends its
    episode with ``agent_error`` ``"AgentTimeout: ..."`` and is replaced for the slot's next episode, while
    the other slots go on.

    :meth:`run` returns the :class:`~execgym.rollout.episode.EpisodeResult` of every episode in the order
    of the specs, exactly as :func:`~execgym.rollout.episode.run_episode` would summarise each. An agent
    that raises ends its episode with ``agent_error``; an env that raises ends it with ``infra_error`` and is
    replaced by a new one for the slot's next episode; a hung agent cannot stall the run. Slots and their
    envs stay alive between ``run`` calls until :meth:`close`.

    Example:
        >>> import execgym
        >>> with AsyncRollout("execgym/TextToSQL-v0", "oracle", num_slots=2) as rollout:
        ...     results = rollout.run(4, seed=0)
        >>> [r.outcome for r in results], [r.seed for r in results]
        ([1.0, 1.0, 1.0, 1.0], [0, 1, 2, 3])
    """

    def __init__(self, env: str | EnvFactory, agent: str | AgentFactory, *, num_slots: int = 4,
                 **options: Any) -> None:
        super().__init__(env, agent, **options)
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        self.num_slots = int(num_slots)
        self._slots = [_Slot(i, self.env_fn, self.agent_fn) for i in range(self.num_slots)]

    def run(
        self,
        episodes: int | Iterable[EpisodeSpec],
        *,
        seed: int = 0,
        on_step: StepCallback | None = None,
        on_episode: EpisodeCallback | None = None,
    ) -> list[EpisodeResult]:
        """Play ``episodes`` (a count: seeds ``seed, seed+1, ...``; or specs) and return their results.

        ``on_step(index, action, observation, reward, info)`` and ``on_episode(index, result)`` are called
        on the caller's thread as steps and episodes complete (in completion order, not spec order).
        """
        specs = episode_specs(episodes, seed=seed)
        results: list[EpisodeResult | None] = [None] * len(specs)
        queue = list(enumerate(specs))
        queue.reverse()
        pending: dict[Future[Any], tuple[str, _Slot, EpisodeAccumulator]] = {}
        deadlines: dict[Future[Any], float] = {}  # the agent calls' futures -> when they time out
        timeout_s = self.act_timeout_s

        def start(slot: _Slot) -> None:
            if queue:
                index, spec = queue.pop()
                acc = EpisodeAccumulator(spec.seed, index=index, trace=self.trace)
                pending[slot.submit(slot.reset, spec)] = ("reset", slot, acc)

        def call_agent(kind: str, slot: _Slot, acc: EpisodeAccumulator, fn: Callable[..., Any], *args: Any) -> None:
            future = slot.caller.submit(fn, *args)
            pending[future] = (kind, slot, acc)
            if timeout_s is not None:
                deadlines[future] = time.monotonic() + timeout_s

        def finish(slot: _Slot, acc: EpisodeAccumulator, *, infra_error: str | None = None,
                   agent_error: str | None = None, hung: bool = False) -> None:
            result = acc.result(agent=slot.agent, infra_error=infra_error, agent_error=agent_error)
            if agent_error is not None and slot.env is not None:  # its env is idle: safe to write its record
                abandon_record(slot.env, agent_error)
            if hung:  # before the slot's next reset, which would otherwise reuse the hung agent
                slot.abandon_agent()
            results[acc.index] = result
            if on_episode is not None:
                on_episode(acc.index, result)
            start(slot)

        for slot in self._slots:
            start(slot)
        while pending:
            wait_s = None if not deadlines else max(0.0, min(deadlines.values()) - time.monotonic())
            done, _ = wait(list(pending), timeout=wait_s, return_when=FIRST_COMPLETED)
            now = time.monotonic()
            for future in [f for f, due in deadlines.items() if f not in done and due <= now]:
                kind, slot, acc = pending.pop(future)
                del deadlines[future]
                what = "agent.act" if kind == "act" else "agent.reset"
                finish(slot, acc, agent_error=f"AgentTimeout: {what} did not return within {timeout_s:g} s", hung=True)
            for future in done:
                kind, slot, acc = pending.pop(future)
                deadlines.pop(future, None)
                exc = future.exception()
                if exc is not None:
                    if kind in ("act", "agent_reset"):
                        finish(slot, acc, agent_error=error_text(exc))
                    else:
                        slot.submit(slot.discard_env).result()
                        finish(slot, acc, infra_error=error_text(exc))
                    continue
                if kind == "reset":
                    acc.begin(*future.result())
                    call_agent("agent_reset", slot, acc, slot.reset_agent, acc.info)
                    continue
                if kind == "act":
                    action = future.result()
                    pending[slot.submit(slot.step, action)] = ("step", slot, acc)
                    continue
                if kind == "step":
                    action, step = future.result()
                    acc.add_step(action, *step)
                    if on_step is not None:
                        on_step(acc.index, action, step[0], step[1], step[4])
                    if acc.over:
                        finish(slot, acc)
                        continue
                call_agent("act", slot, acc, slot.act, acc.observation, acc.info)
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Close every slot's env and stop its thread."""
        for slot in self._slots:
            slot.close()
        self._slots = []


def run_async(env: str | EnvFactory, agent: str | AgentFactory, episodes: int | Sequence[EpisodeSpec], *,
              seed: int = 0, **options: Any) -> list[EpisodeResult]:
    """One-shot :class:`AsyncRollout` (``options`` are its arguments): build the slots, play ``episodes``, close."""
    with AsyncRollout(env, agent, **options) as r:
        return r.run(episodes, seed=seed)
