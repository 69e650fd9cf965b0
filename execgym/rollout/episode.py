"""Run one episode of an agent in an env."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from execgym.agents.base import DEFAULT_ACT_TIMEOUT_S, Agent, TimedCaller, check_timeout
from execgym.core.trajectory import abandon_record

__all__ = ["EpisodeResult", "episode_tokens", "run_episode"]


@dataclass
class EpisodeResult:
    """What one episode produced."""

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


def episode_tokens(agent: Any) -> int:
    """Prompt plus completion tokens the agent reported for its current episode (0 for agents without a model)."""
    usage = getattr(agent, "episode_usage", None) or {}
    return int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))


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
    on_step: Callable[[Any, str, float, dict[str, Any]], None] | None = None,
    act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
) -> EpisodeResult:
    """Reset ``env``, let ``agent`` act until the episode ends, and summarise it.

    ``on_step(action, observation, reward, info)`` is called after every step (for watching or logging).
    Reward components are summed over the episode. An exception in the agent ends the episode with
    ``agent_error`` set instead of propagating, so one bad episode does not stop a baseline run; so does an
    ``agent.reset`` or ``agent.act`` that takes longer than ``act_timeout_s`` seconds (``"AgentTimeout: ..."``;
    None: no limit). A timed-out call is abandoned, not stopped: play the next episode with a new agent.

    Example:
        >>> import gymnasium as gym, execgym
        >>> from execgym.agents import OracleAgent
        >>> env = gym.make("execgym/TextToSQL-v0")                     # doctest: +SKIP
        >>> run_episode(env, OracleAgent(env), seed=0).outcome          # doctest: +SKIP
        1.0
    """
    timeout_s = check_timeout(act_timeout_s)
    caller = _thread_caller()
    t0 = time.perf_counter()
    obs, info = env.reset(seed=seed, options=options)
    task_id = info["task_id"]
    total = 0.0
    turns = 0
    calls = 0
    components: dict[str, float] = {}
    terminated = truncated = False
    agent_error = None
    try:
        caller.call(agent.reset, info, timeout_s=timeout_s, what="agent.reset")
    except Exception as exc:
        agent_error = f"{type(exc).__name__}: {exc}"
    while agent_error is None and not (terminated or truncated):
        try:
            action = caller.call(agent.act, obs, info, timeout_s=timeout_s, what="agent.act")
        except Exception as exc:
            agent_error = f"{type(exc).__name__}: {exc}"
            break
        obs, reward, terminated, truncated, info = env.step(action)
        turns += 1
        total += float(reward)
        calls += len(info.get("tool_calls", []))
        for key, value in info.get("reward_components", {}).items():
            components[key] = components.get(key, 0.0) + float(value)
        if on_step is not None:
            on_step(action, obs, float(reward), info)
    if agent_error is not None:
        abandon_record(env, agent_error)  # the records hold every episode played, agent-ended ones included
    return EpisodeResult(
        task_id=task_id,
        seed=seed,
        turns=turns,
        total_reward=total,
        outcome=float(info.get("outcome", 0.0)) if (terminated or truncated) else 0.0,
        terminated=bool(terminated),
        truncated=bool(truncated),
        seconds=time.perf_counter() - t0,
        reward_components=components,
        tool_calls=calls,
        hack_flags=list(info.get("hack_flags") or []),
        infra_error=info.get("infra_error"),
        agent_error=agent_error,
        tokens=episode_tokens(agent),
    )
