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
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from execgym.agents import Agent, make_agent
from execgym.agents.base import DEFAULT_ACT_TIMEOUT_S, TimedCaller, check_timeout
from execgym.core.trajectory import abandon_record
from execgym.rollout.episode import EpisodeResult, episode_tokens

__all__ = ["AsyncRollout", "EpisodeSpec", "episode_specs"]

EnvFactory = Callable[[], gym.Env[Any, Any]]
AgentFactory = Callable[[gym.Env[Any, Any]], Agent]
StepCallback = Callable[[int, Any, str, float, dict[str, Any]], None]


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to play: the ``seed`` and ``options`` given to ``env.reset``.

    Example:
        >>> episode_specs(3, seed=10)[2]
        EpisodeSpec(seed=12, options=None)
    """

    seed: int | None = None
    options: dict[str, Any] | None = None


def episode_specs(episodes: int | Iterable[EpisodeSpec], *, seed: int = 0) -> list[EpisodeSpec]:
    """``episodes`` as a list of specs: an int ``n`` means seeds ``seed, seed+1, ..., seed+n-1``."""
    if isinstance(episodes, int):
        return [EpisodeSpec(seed=seed + i) for i in range(episodes)]
    return list(episodes)


@dataclass
class _Tally:
    """The running sums of one episode, turned into an :class:`EpisodeResult` when it ends."""

    index: int
    spec: EpisodeSpec
    t0: float = field(default_factory=time.perf_counter)
    task_id: str = ""
    observation: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    action: Any = None
    turns: int = 0
    total: float = 0.0
    calls: int = 0
    components: dict[str, float] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False

    def add_step(self, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        self.turns += 1
        self.total += reward
        self.calls += len(info.get("tool_calls", []))
        for key, value in info.get("reward_components", {}).items():
            self.components[key] = self.components.get(key, 0.0) + float(value)
        self.terminated, self.truncated, self.info = bool(terminated), bool(truncated), info

    def result(self, *, infra_error: str | None = None, agent_error: str | None = None) -> EpisodeResult:
        over = self.terminated or self.truncated
        return EpisodeResult(
            task_id=self.task_id,
            seed=self.spec.seed,
            turns=self.turns,
            total_reward=self.total,
            outcome=float(self.info.get("outcome", 0.0)) if over else 0.0,
            terminated=self.terminated,
            truncated=self.truncated,
            seconds=time.perf_counter() - self.t0,
            reward_components=self.components,
            tool_calls=self.calls,
            hack_flags=list(self.info.get("hack_flags") or []) if over else [],
            infra_error=infra_error if infra_error is not None else (self.info.get("infra_error") if over else None),
            agent_error=agent_error,
        )


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
        assert self.agent is not None
        return self.agent.act(obs, info)

    def abandon_agent(self) -> None:
        """Leave a hung agent to its call; the slot's next episode builds a new one on a new agent thread."""
        self.caller.abandon()
        self.agent = None

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        assert self.env is not None
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward), bool(terminated), bool(truncated), info

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


class AsyncRollout:
    """Play many episodes with ``num_slots`` in flight, stepping whichever episode's agent answered first.

    Args:
        env: an env id (built with ``gym.make(env, **env_kwargs)``) or a factory returning an env.
        agent: an agent name for :func:`~execgym.agents.make_agent` (built per slot with ``agent_kwargs``)
            or a factory ``env -> Agent``. Every slot has its own agent, so agents need not be thread-safe.
        num_slots: how many episodes are in flight at once (one env, one agent and one thread each).
        env_kwargs: keyword arguments of ``gym.make`` when ``env`` is an id.
        agent_kwargs: keyword arguments of ``make_agent`` when ``agent`` is a name.
        act_timeout_s: the longest one ``agent.reset`` or ``agent.act`` may take (None: no limit). Agents act
            on their own threads; one that does not answer in time ends its episode with ``agent_error``
            ``"AgentTimeout: ..."``, is abandoned (a Python thread cannot be stopped) and replaced by a new
            agent for the slot's next episode, while the other slots go on.

    :meth:`run` returns the :class:`~execgym.rollout.episode.EpisodeResult` of every episode in the order
    of the specs, exactly as :func:`~execgym.rollout.episode.run_episode` would summarise each. An agent
    that raises ends its episode with ``agent_error``; an env that raises ends it with ``infra_error`` and is
    replaced by a new one for the slot's next episode; a hung agent cannot stall the run. Slots and their
    envs stay alive between ``run``
    calls until :meth:`close`.

    Example:
        >>> import execgym
        >>> with AsyncRollout("execgym/TextToSQL-v0", "oracle", num_slots=2) as rollout:
        ...     results = rollout.run(4, seed=0)
        >>> [r.outcome for r in results], [r.seed for r in results]
        ([1.0, 1.0, 1.0, 1.0], [0, 1, 2, 3])
    """

    def __init__(
        self,
        env: str | EnvFactory,
        agent: str | AgentFactory,
        *,
        num_slots: int = 4,
        env_kwargs: dict[str, Any] | None = None,
        agent_kwargs: dict[str, Any] | None = None,
        act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
    ) -> None:
        self.act_timeout_s = check_timeout(act_timeout_s)
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        if isinstance(env, str):
            env_id, kwargs = env, dict(env_kwargs or {})

            def env_fn() -> gym.Env[Any, Any]:
                return gym.make(env_id, **kwargs)
        else:
            env_fn = env
        if isinstance(agent, str):
            name, akw = agent, dict(agent_kwargs or {})
            seed = akw.pop("seed", None)

            def agent_fn(e: gym.Env[Any, Any], slot: list[int] = [0]) -> Agent:  # noqa: B006 - a counter
                slot[0] += 1
                return make_agent(name, e, seed=None if seed is None else seed + slot[0] - 1, **akw)
        else:
            agent_fn = agent
        self.num_slots = int(num_slots)
        self._slots = [_Slot(i, env_fn, agent_fn) for i in range(self.num_slots)]

    def run(
        self,
        episodes: int | Iterable[EpisodeSpec],
        *,
        seed: int = 0,
        on_step: StepCallback | None = None,
        on_episode: Callable[[int, EpisodeResult], None] | None = None,
    ) -> list[EpisodeResult]:
        """Play ``episodes`` (a count: seeds ``seed, seed+1, ...``; or specs) and return their results.

        ``on_step(index, action, observation, reward, info)`` and ``on_episode(index, result)`` are called
        on the caller's thread as steps and episodes complete (in completion order, not spec order).
        """
        specs = episode_specs(episodes, seed=seed)
        results: list[EpisodeResult | None] = [None] * len(specs)
        queue = list(enumerate(specs))
        queue.reverse()
        pending: dict[Future[Any], tuple[str, _Slot, _Tally]] = {}
        deadlines: dict[Future[Any], float] = {}  # the agent calls' futures -> when they time out
        timeout_s = self.act_timeout_s

        def start(slot: _Slot) -> None:
            if queue:
                index, spec = queue.pop()
                pending[slot.submit(slot.reset, spec)] = ("reset", slot, _Tally(index, spec))

        def call_agent(kind: str, slot: _Slot, tally: _Tally, fn: Callable[..., Any], *args: Any) -> None:
            future = slot.caller.submit(fn, *args)
            pending[future] = (kind, slot, tally)
            if timeout_s is not None:
                deadlines[future] = time.monotonic() + timeout_s

        def finish(slot: _Slot, tally: _Tally, result: EpisodeResult) -> None:
            result.tokens = episode_tokens(slot.agent)
            results[tally.index] = result
            if on_episode is not None:
                on_episode(tally.index, result)
            start(slot)

        for slot in self._slots:
            start(slot)
        while pending:
            wait_s = None if not deadlines else max(0.0, min(deadlines.values()) - time.monotonic())
            done, _ = wait(list(pending), timeout=wait_s, return_when=FIRST_COMPLETED)
            now = time.monotonic()
            for future in [f for f, due in deadlines.items() if f not in done and due <= now]:
                kind, slot, tally = pending.pop(future)
                del deadlines[future]
                what = "agent.act" if kind == "act" else "agent.reset"
                error = f"AgentTimeout: {what} did not return within {timeout_s:g} s"
                result = tally.result(agent_error=error)
                result.tokens = episode_tokens(slot.agent)
                if slot.env is not None:  # its env is idle (waiting on the agent): safe to write its record
                    abandon_record(slot.env, error)
                slot.abandon_agent()
                results[tally.index] = result
                if on_episode is not None:
                    on_episode(tally.index, result)
                start(slot)
            for future in done:
                kind, slot, tally = pending.pop(future)
                deadlines.pop(future, None)
                exc = future.exception()
                if exc is not None:
                    error = f"{type(exc).__name__}: {exc}"
                    if kind in ("act", "agent_reset"):
                        if slot.env is not None:
                            abandon_record(slot.env, error)
                        finish(slot, tally, tally.result(agent_error=error))
                    else:
                        slot.submit(slot.discard_env).result()
                        finish(slot, tally, tally.result(infra_error=error))
                    continue
                if kind == "reset":
                    tally.observation, tally.info = future.result()
                    tally.task_id = tally.info["task_id"]
                    call_agent("agent_reset", slot, tally, slot.reset_agent, tally.info)
                    continue
                if kind == "act":
                    tally.action = future.result()
                    pending[slot.submit(slot.step, tally.action)] = ("step", slot, tally)
                    continue
                if kind == "step":
                    obs, reward, terminated, truncated, info = future.result()
                    tally.observation = obs
                    tally.add_step(reward, terminated, truncated, info)
                    if on_step is not None:
                        on_step(tally.index, tally.action, obs, reward, info)
                    if terminated or truncated:
                        finish(slot, tally, tally.result())
                        continue
                call_agent("act", slot, tally, slot.act, tally.observation, tally.info)
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Close every slot's env and stop its thread."""
        for slot in self._slots:
            slot.close()
        self._slots = []

    def __enter__(self) -> AsyncRollout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_async(
    env: str | EnvFactory,
    agent: str | AgentFactory,
    episodes: int | Sequence[EpisodeSpec],
    *,
    num_slots: int = 4,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    agent_kwargs: dict[str, Any] | None = None,
    act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
) -> list[EpisodeResult]:
    """One-shot :class:`AsyncRollout`: build the slots, play ``episodes``, close."""
    with AsyncRollout(env, agent, num_slots=num_slots, env_kwargs=env_kwargs, agent_kwargs=agent_kwargs,
                      act_timeout_s=act_timeout_s) as r:
        return r.run(episodes, seed=seed)
