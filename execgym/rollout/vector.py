"""Episodes through a Gymnasium vector env, with one agent per sub-env and a time limit on every agent call.

A vector env steps all its sub-envs together, so one agent that never answers would stall every sub-env.
:func:`run_vector` asks every sub-env's agent at once, each on its own thread, and waits for them until
``act_timeout_s``: an agent that is still thinking then ends its episode with ``agent_error``
(``"AgentTimeout: ..."``), is replaced by a new one from ``agent_fn``, and its sub-env is reset for the next
episode (``reset_mask``), while the others step on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv

from execgym.agents.base import DEFAULT_ACT_TIMEOUT_S, Agent, TimedCaller, check_timeout
from execgym.rollout.episode import EpisodeAccumulator, EpisodeResult, EpisodeSpec, episode_specs, error_text

__all__ = ["run_vector", "unbatch_info"]


def unbatch_info(infos: dict[str, Any], index: int) -> dict[str, Any]:
    """The ``info`` of sub-env ``index`` from a vector env's batched info (values plus ``_key`` masks).

    Example:
        >>> batched = {"score": np.array([1.0, 0.0]), "_score": np.array([True, False]),
        ...            "parts": {"a": np.array([2, 3]), "_a": np.array([True, True])}, "_parts": np.array([True, True])}
        >>> unbatch_info(batched, 0), unbatch_info(batched, 1)
        ({'score': 1.0, 'parts': {'a': 2}}, {'parts': {'a': 3}})
    """
    out: dict[str, Any] = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}")
        if mask is not None and not bool(mask[index]):
            continue
        if isinstance(value, dict):
            out[key] = unbatch_info(value, index)
        else:
            item = value[index]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def run_vector(
    venv: VectorEnv[Any, Any, Any],
    agent_fn: Callable[[int], Agent],
    episodes: int | Iterable[EpisodeSpec],
    *,
    seed: int = 0,
    act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
) -> list[EpisodeResult]:
    """Play ``episodes`` (a count: seeds ``seed, seed+1, ...``; or specs with seeds) on ``venv``.

    ``agent_fn(i)`` builds the agent of sub-env ``i`` (again when its agent timed out). Results come back in
    the order of the specs. Per-episode ``options`` cannot be given (a vector env's reset shares one options
    dict); use :class:`~execgym.rollout.AsyncRollout` for those.

    Example:
        >>> import gymnasium as gym, execgym
        >>> from execgym.agents import OracleAgent
        >>> venv = gym.make_vec("execgym/TextToSQL-v0", 2, vectorization_mode="sync")
        >>> reference = gym.make("execgym/TextToSQL-v0")
        >>> [r.outcome for r in run_vector(venv, lambda i: OracleAgent(reference), 3)]
        [1.0, 1.0, 1.0]
        >>> venv.close(); reference.close()
    """
    specs = episode_specs(episodes, seed=seed)
    if any(spec.options for spec in specs):
        raise ValueError("run_vector cannot pass per-episode options; use AsyncRollout for those")
    timeout_s = check_timeout(act_timeout_s)
    n = venv.num_envs
    callers = [TimedCaller(name=f"execgym-vector{i}-agent") for i in range(n)]
    agents = [agent_fn(i) for i in range(n)]
    results: list[EpisodeResult | None] = [None] * len(specs)
    playing: list[EpisodeAccumulator | None] = [None] * n
    queue = list(enumerate(specs))
    queue.reverse()
    # Sub-envs whose last step ended an episode reset themselves on their next step (next-step autoreset), and
    # AsyncVectorEnv without shared memory keeps that pending even across a masked reset: such a sub-env is
    # stepped once more (its action ignored) before it is reset for the next spec.
    autoresetting = np.zeros(n, dtype=np.bool_)

    def end(k: int, *, agent_error: str | None = None) -> None:
        acc = playing[k]
        assert acc is not None
        results[acc.index] = acc.result(agent=agents[k], agent_error=agent_error)
        playing[k] = None

    def agent_calls(kind: str, work: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]]) -> dict[int, Any]:
        """Run each sub-env's agent call on its own thread; the ones that fail or time out end their episode."""
        futures: dict[int, Future[Any]] = {k: callers[k].submit(fn, *args) for k, (fn, args) in work.items()}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        answers: dict[int, Any] = {}
        for k, future in futures.items():
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                answers[k] = future.result(timeout=left)
            except FutureTimeout:
                callers[k].abandon()
                end(k, agent_error=f"AgentTimeout: {kind} did not return within {timeout_s:g} s")
                agents[k] = agent_fn(k)
            except Exception as exc:
                end(k, agent_error=error_text(exc))
        return answers

    def start_free(first: bool = False) -> None:
        free = [k for k in range(n) if playing[k] is None and not autoresetting[k]]
        mask = np.zeros(n, dtype=np.bool_)
        seeds: list[int | None] = [None] * n
        for k in free:
            if queue or first:
                mask[k] = True
            if queue:
                index, spec = queue.pop()
                playing[k] = EpisodeAccumulator(spec.seed, index=index)
                seeds[k] = spec.seed
        if not mask.any():
            return
        if first:
            obs, infos = venv.reset(seed=seeds)
        else:
            obs, infos = venv.reset(seed=seeds, options={"reset_mask": mask})
        started: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        for k in np.flatnonzero(mask):
            acc = playing[k]
            if acc is None:
                continue
            acc.begin(obs[k], unbatch_info(infos, int(k)))
            started[int(k)] = (agents[k].reset, (acc.info,))
        agent_calls("agent.reset", started)

    try:
        start_free(first=True)
        while any(t is not None for t in playing) or queue:
            if not any(t is not None for t in playing):
                if autoresetting.all():
                    *_, terminated, truncated, _ = venv.step(("",) * n)  # nobody is playing: let them reset
                    autoresetting = np.asarray(terminated) | np.asarray(truncated)
                start_free()
                continue
            live = {k: (agents[k].act, (a.observation, a.info)) for k, a in enumerate(playing) if a is not None}
            actions = agent_calls("agent.act", live)
            if actions:
                step_actions = tuple(actions.get(k, "") for k in range(n))
                obs, rewards, terminated, truncated, infos = venv.step(step_actions)
                autoresetting = np.asarray(terminated) | np.asarray(truncated)
                for k, action in actions.items():
                    acc = playing[k]
                    assert acc is not None
                    acc.add_step(action, obs[k], float(rewards[k]), terminated[k], truncated[k], unbatch_info(infos, k))
                    if acc.over:
                        end(k)
            start_free()
    finally:
        for caller in callers:
            caller.close()
    return [r for r in results if r is not None]
