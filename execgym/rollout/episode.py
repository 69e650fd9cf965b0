"""One episode: the accumulator every rollout summarises its episodes with, and the one-env episode loop.

Every way of playing episodes (:func:`run_episode`, :class:`SyncRollout`, the ready-first
:class:`~execgym.rollout.AsyncRollout`, :func:`~execgym.rollout.run_vector`, the Ray backend, the GRPO
rollout and SFT's demonstrations) feeds reset and step results to an :class:`EpisodeAccumulator` and takes
its :class:`EpisodeResult`: reward components summed, tool calls counted, outcome, hack flags and infra error
read from the final report (:func:`execgym.core.report.final_of`), and the agent's error, if any. A rollout's
``run`` returns one result per episode spec, in the order of the specs.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import itertools
import math
import numbers
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Self

import gymnasium as gym

from execgym.agents.base import DEFAULT_ACT_TIMEOUT_S, Agent, TimedCaller, check_timeout
from execgym.core import report as R
from execgym.core.trajectory import RecordTrajectory, abandon_record, record_agent_turn

if TYPE_CHECKING:
    from execgym.wrappers import WrapperSpec

__all__ = [
    "AgentFactory",
    "EnvFactory",
    "EpisodeAccumulator",
    "EpisodeResult",
    "EpisodeSpec",
    "EpisodeTrace",
    "LocalRollout",
    "Rollout",
    "SyncRollout",
    "agent_factory",
    "env_factory",
    "episode_specs",
    "episode_tokens",
    "error_text",
    "is_timeout",
    "make_wrapped_env",
    "run_episode",
]

EnvFactory = Callable[[], gym.Env[Any, Any]]
AgentFactory = Callable[[gym.Env[Any, Any]], Agent]
StepCallback = Callable[[Any, str, float, dict[str, Any]], None]
EpisodeCallback = Callable[[int, "EpisodeResult"], None]
RecordSink = Callable[[dict[str, Any]], None]


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
class EpisodeTrace:
    """An episode step by step, for a trainer: the actions, the rewards paid, and the agent's token stream
    (``token_ids``, ``token_mask`` 1 on the tokens it generated, ``logprobs`` when its stream keeps them)."""

    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    token_mask: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None


@dataclass
class EpisodeResult:
    """What one episode produced.

    ``infra_error`` (the machinery failed), ``agent_error`` (the agent raised or hung) and ``reward_error`` (a
    reward that was not a finite number, left out of ``total_reward``) mark an episode that says nothing about
    the policy: summaries count it apart and trainers drop it. ``trace`` is kept only when asked for.
    """

    task_id: str
    seed: int | None
    turns: int
    total_reward: float
    outcome: float
    terminated: bool
    truncated: bool
    seconds: float
    reward_components: dict[str, float] = field(default_factory=dict)
    tool_calls: int = 0
    hack_flags: list[str] = field(default_factory=list)
    infra_error: str | None = None
    agent_error: str | None = None
    tokens: int = 0
    reward_error: str | None = None
    trace: EpisodeTrace | None = None

    @property
    def error(self) -> str | None:
        """The infra, agent or reward error of the episode, in that order, if any."""
        return self.infra_error or self.agent_error or self.reward_error


def episode_tokens(agent: Any) -> int:
    """Prompt plus completion tokens the agent reported for its current episode (0 for agents without a model)."""
    usage = getattr(agent, "episode_usage", None) or {}
    return int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))


def error_text(exc: BaseException) -> str:
    """How an exception that ended an episode is reported (``"ValueError: ..."``)."""
    return f"{type(exc).__name__}: {exc}"


class EpisodeAccumulator:
    """The running sums of one episode, turned into an :class:`EpisodeResult` by :meth:`result`.

    ``begin`` takes the reset's observation and info, ``add_step`` each step's action and what ``env.step``
    returned. ``observation`` and ``info`` are the latest ones (what the agent acts on next).

    Example:
        >>> acc = EpisodeAccumulator(seed=0, trace=True)
        >>> acc.begin("start", {R.TASK_ID: "t"})
        >>> acc.add_step("a", "next", 0.5, False, False, {R.REWARD_COMPONENTS: {"format": 1.0}, R.TOOL_CALLS: [{}]})
        >>> acc.add_step("b", "end", 1.0, True, False, {R.REWARD_COMPONENTS: {"format": 1.0}, R.OUTCOME: 1.0})
        >>> r = acc.result()
        >>> r.task_id, r.turns, r.total_reward, r.outcome, r.tool_calls, r.reward_components, r.trace.actions
        ('t', 2, 1.5, 1.0, 1, {'format': 2.0}, ['a', 'b'])
    """

    def __init__(self, seed: int | None = None, *, index: int = 0, trace: bool = False) -> None:
        self.seed = seed
        self.index = index
        self.t0 = time.perf_counter()
        self.task_id = ""
        self.observation: Any = ""
        self.info: dict[str, Any] = {}
        self.turns = 0
        self.total = 0.0
        self.tool_calls = 0
        self.components: dict[str, float] = {}
        self.terminated = self.truncated = False
        self.reward_error: str | None = None
        self.trace = EpisodeTrace() if trace else None

    @property
    def over(self) -> bool:
        """Whether the env ended the episode (terminated or truncated)."""
        return self.terminated or self.truncated

    def begin(self, observation: Any, info: dict[str, Any]) -> None:
        self.observation, self.info = observation, info
        self.task_id = str(info.get(R.TASK_ID, ""))

    def add_step(self, action: Any, observation: Any, reward: Any, terminated: Any, truncated: Any,
                 info: dict[str, Any]) -> None:
        value = float(reward) if isinstance(reward, numbers.Real) else math.nan
        if not math.isfinite(value):  # never sum a NaN into a return silently: the episode is marked instead
            if self.reward_error is None:
                self.reward_error = f"non-finite reward {reward!r} at turn {self.turns + 1}"
            value = 0.0
        self.turns += 1
        self.total += value
        self.tool_calls += len(info.get(R.TOOL_CALLS) or [])
        for key, part in (info.get(R.REWARD_COMPONENTS) or {}).items():
            self.components[key] = self.components.get(key, 0.0) + float(part)
        self.observation, self.info = observation, info
        self.terminated, self.truncated = bool(terminated), bool(truncated)
        if self.trace is not None:
            self.trace.actions.append(action)
            self.trace.rewards.append(value)

    def result(self, *, agent: Any = None, infra_error: str | None = None,
               agent_error: str | None = None) -> EpisodeResult:
        """The episode's result; ``agent`` (the one that played it) gives its token usage and stream."""
        final = R.final_of(self.info) if self.over else None
        if self.trace is not None:
            stream = getattr(agent, "stream", None)
            if stream is not None:
                self.trace.token_ids, self.trace.token_mask = list(stream.ids), list(stream.mask)
                logprobs = getattr(stream, "logprobs", None)
                self.trace.logprobs = None if logprobs is None else list(logprobs)
        return EpisodeResult(
            task_id=self.task_id,
            seed=self.seed,
            turns=self.turns,
            total_reward=self.total,
            outcome=final.outcome if final is not None else 0.0,
            terminated=self.terminated,
            truncated=self.truncated,
            seconds=time.perf_counter() - self.t0,
            reward_components=dict(self.components),
            tool_calls=self.tool_calls,
            hack_flags=list(final.hack_flags) if final is not None else [],
            infra_error=infra_error if infra_error is not None else (final.infra_error if final else None),
            agent_error=agent_error,
            tokens=episode_tokens(agent),
            reward_error=self.reward_error,
            trace=self.trace,
        )


_local = threading.local()


def _thread_caller() -> TimedCaller:
    """One agent worker thread per calling thread, reused across episodes (replaced after a timeout)."""
    caller = getattr(_local, "caller", None)
    if caller is None:
        caller = _local.caller = TimedCaller()
    return caller


def run_episode(
    env: gym.Env[Any, Any],
    agent: Agent,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
    act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
    trace: bool = False,
) -> EpisodeResult:
    """Reset ``env``, let ``agent`` act until the episode ends, and summarise it.

    ``on_step(action, observation, reward, info)`` is called after every step (for watching or logging).
    Reward components are summed over the episode. An exception in the agent ends the episode with
    ``agent_error`` set instead of propagating, so one bad episode does not stop a baseline run; so does an
    ``agent.reset`` or ``agent.act`` that takes longer than ``act_timeout_s`` seconds (``"AgentTimeout: ..."``;
    None: no limit). A timed-out call is abandoned, not stopped: play the next episode with a new agent.
    ``trace`` keeps the per-step record (:class:`EpisodeTrace`) in the result.

    Example:
        >>> import gymnasium as gym, execgym
        >>> from execgym.agents import OracleAgent
        >>> env = gym.make("execgym/TextToSQL-v0")                     # doctest: +SKIP
        >>> run_episode(env, OracleAgent(env), seed=0).outcome          # doctest: +SKIP
        1.0
    """
    timeout_s = check_timeout(act_timeout_s)
    caller = _thread_caller()
    acc = EpisodeAccumulator(seed, trace=trace)
    try:
        acc.begin(*env.reset(seed=seed, options=options))
    except Exception as exc:  # an env that cannot start is the machinery's failure: this episode's, not the run's
        return acc.result(agent=agent, infra_error=error_text(exc))
    agent_error = None
    try:
        caller.call(agent.reset, acc.info, timeout_s=timeout_s, what="agent.reset")
    except Exception as exc:
        agent_error = error_text(exc)
    while agent_error is None and not acc.over:
        try:
            action = caller.call(agent.act, acc.observation, acc.info, timeout_s=timeout_s, what="agent.act")
        except Exception as exc:
            agent_error = error_text(exc)
            break
        record_agent_turn(env, agent)  # the turn's token ids and log-probs go into the recording, when it keeps any
        try:
            obs, reward, terminated, truncated, info = env.step(action)
        except Exception as exc:  # as AsyncRollout: an env that raises ends its episode as an infra error
            return acc.result(agent=agent, infra_error=error_text(exc))
        acc.add_step(action, obs, reward, terminated, truncated, info)
        if on_step is not None:
            on_step(action, obs, float(reward), info)
    if agent_error is not None:
        abandon_record(env, agent_error)  # the records hold every episode played, agent-ended ones included
    return acc.result(agent=agent, agent_error=agent_error)


def is_timeout(result: EpisodeResult) -> bool:
    """Whether the agent of ``result`` timed out (its call may still be running: play on with a new agent)."""
    return (result.agent_error or "").startswith("AgentTimeout")


def make_wrapped_env(
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    wrappers: Sequence[WrapperSpec] = (),
    record: str | os.PathLike[str] | RecordSink | None = None,
    env_server: str | None = None,
) -> gym.Env[Any, Any]:
    """``gym.make`` the env, apply reward wrappers (:func:`execgym.wrappers.apply_wrappers` specs, innermost
    first), and record trajectories outermost (so the rewards recorded are the ones paid): to the JSONL file
    ``record``, or, when ``record`` is a callable, by handing it each finished record.

    With ``env_server`` (the URL of an ``execgym env-server``) the env is a :class:`~execgym.remote.RemoteEnv`
    on that server, its wrappers applied there; recording stays here.
    """
    from execgym.wrappers import apply_wrappers

    if env_server is not None:
        from execgym.remote import RemoteEnv

        env: gym.Env[Any, Any] = RemoteEnv(env_server, env_id, wrappers=list(wrappers), **dict(env_kwargs or {}))
    else:
        env = apply_wrappers(gym.make(env_id, **dict(env_kwargs or {})), wrappers)
    if callable(record):
        env = RecordTrajectory(env, sink=record, renders=True)  # pictures for execgym view
    elif record is not None:
        env = RecordTrajectory(env, record, renders=True)
    return env


def agent_factory(agent: str | AgentFactory, agent_kwargs: Mapping[str, Any] | None = None) -> AgentFactory:
    """``agent`` as a factory ``env -> Agent``: a name is built by :func:`~execgym.agents.make_agent` with
    ``agent_kwargs``; their ``seed`` (if any) seeds the first agent built, ``seed + 1`` the next, and so on."""
    if not isinstance(agent, str):
        return agent
    from execgym.agents import make_agent

    name, kwargs = agent, dict(agent_kwargs or {})
    seed = kwargs.pop("seed", None)
    built = itertools.count()

    def build(env: gym.Env[Any, Any]) -> Agent:
        n = next(built)
        return make_agent(name, env, seed=None if seed is None else seed + n, **kwargs)

    return build


def env_factory(env: str | EnvFactory, env_kwargs: Mapping[str, Any] | None = None,
                wrappers: Sequence[WrapperSpec] = (), record: str | os.PathLike[str] | RecordSink | None = None,
                env_server: str | None = None) -> EnvFactory:
    """``env`` as a factory: an id is built by :func:`make_wrapped_env` with the kwargs, wrappers and record
    (on ``env_server`` when one is given)."""
    if not isinstance(env, str):
        return env
    return functools.partial(make_wrapped_env, env, dict(env_kwargs or {}), list(wrappers), record, env_server)


class Rollout(Protocol):
    """What every rollout backend offers: :class:`SyncRollout`, :class:`~execgym.rollout.AsyncRollout` and
    :class:`~execgym.rollout.ray.RayRollout`.

    ``run`` plays ``episodes`` (a count: seeds ``seed, seed+1, ...``; or :class:`EpisodeSpec` s) and returns
    one :class:`EpisodeResult` per spec, in the order of the specs, whatever order they finished in;
    ``on_episode(index, result)`` is called on the caller's thread as each one finishes. An agent that raises
    or hangs ends its episode with ``agent_error``, an env that raises with ``infra_error``; neither stops the
    run. ``close`` releases the envs.
    """

    def run(self, episodes: int | Iterable[EpisodeSpec], *, seed: int = 0,
            on_episode: EpisodeCallback | None = None) -> list[EpisodeResult]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class LocalRollout(abc.ABC):
    """What the rollouts in this process share: how they build envs and agents, the agents' time limit and
    whether results keep their trace.

    Args:
        env: an env id (built by :func:`make_wrapped_env` with ``env_kwargs`` and ``wrappers``, specs of
            :func:`execgym.wrappers.apply_wrappers`) or a factory returning an env.
        agent: an agent name for :func:`~execgym.agents.make_agent` (with ``agent_kwargs``; see
            :func:`agent_factory`) or a factory ``env -> Agent``.
        act_timeout_s: the longest one ``agent.reset`` or ``agent.act`` may take (None: no limit). A call
            that takes longer ends its episode with ``agent_error`` ``"AgentTimeout: ..."``; the agent is
            abandoned (a Python thread cannot be stopped) and a new one plays on.
        trace: keep each episode's :class:`EpisodeTrace` in its result.
    """

    def __init__(
        self,
        env: str | EnvFactory,
        agent: str | AgentFactory,
        *,
        env_kwargs: Mapping[str, Any] | None = None,
        agent_kwargs: Mapping[str, Any] | None = None,
        wrappers: Sequence[WrapperSpec] = (),
        act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
        trace: bool = False,
    ) -> None:
        self.act_timeout_s = check_timeout(act_timeout_s)
        self.env_fn = env_factory(env, env_kwargs, wrappers)
        self.agent_fn = agent_factory(agent, agent_kwargs)
        self.trace = trace

    @abc.abstractmethod
    def run(self, episodes: int | Iterable[EpisodeSpec], *, seed: int = 0,
            on_episode: EpisodeCallback | None = None) -> list[EpisodeResult]:
        """See :class:`Rollout`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the envs."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncRollout(LocalRollout):
    """Episodes one after another in one env with one agent, on the caller's thread (the agent acts on a
    worker thread, so a hung one times out): a new agent follows an agent timeout. Takes
    :class:`LocalRollout`'s arguments.

    Example:
        >>> import execgym
        >>> with SyncRollout("execgym/TextToSQL-v0", "oracle") as rollout:
        ...     [(r.seed, r.outcome) for r in rollout.run(2, seed=5)]
        [(5, 1.0), (6, 1.0)]
    """

    env: gym.Env[Any, Any] | None = None
    agent: Agent | None = None

    def open(self) -> gym.Env[Any, Any]:
        """The env (built on first use and kept until :meth:`close`), with an agent ready to play it."""
        if self.env is None:
            self.env, self.agent = self.env_fn(), None
        if self.agent is None:
            self.agent = self.agent_fn(self.env)
        return self.env

    def play(self, spec: EpisodeSpec, on_step: StepCallback | None = None) -> EpisodeResult:
        """One episode."""
        env = self.open()
        assert self.agent is not None
        result = run_episode(env, self.agent, seed=spec.seed, options=spec.options, on_step=on_step,
                             act_timeout_s=self.act_timeout_s, trace=self.trace)
        if is_timeout(result):
            self.agent = None  # its call may still be running: the next episode gets a new agent
        if result.infra_error is not None and not (result.terminated or result.truncated):
            self.discard_env()  # the env raised (an env's own infra errors end the episode): rebuild it
        return result

    def discard_env(self) -> None:
        """Close an env that raised (a broken env may fail to close too) and forget it and its agent."""
        env, self.env, self.agent = self.env, None, None
        if env is not None:
            with contextlib.suppress(Exception):
                env.close()

    def run(self, episodes: int | Iterable[EpisodeSpec], *, seed: int = 0,
            on_episode: EpisodeCallback | None = None) -> list[EpisodeResult]:
        results = []
        for index, spec in enumerate(episode_specs(episodes, seed=seed)):
            results.append(self.play(spec))
            if on_episode is not None:
                on_episode(index, results[-1])
        return results

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
        self.env = self.agent = None
