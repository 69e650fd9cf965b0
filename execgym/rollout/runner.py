"""Baseline runs: many episodes of agents on envs, summarised as a results table."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from execgym.agents.base import DEFAULT_ACT_TIMEOUT_S
from execgym.rollout.episode import AgentFactory, EpisodeResult, Rollout, SyncRollout, env_factory

if TYPE_CHECKING:
    from execgym.wrappers import WrapperSpec

__all__ = ["RunSummary", "format_table", "make_rollout", "run_baseline", "summaries_to_json", "summarise",
           "wilson_interval"]


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (well-behaved at 0 and 1, unlike the normal one).

    The interval always holds the observed rate (rounding alone would put the upper end of 6/6 at
    0.9999999999999999, and a plot's error bar below its bar).

    Example:
        >>> lo, hi = wilson_interval(10, 10)
        >>> round(lo, 3), hi
        (0.722, 1.0)
        >>> wilson_interval(6, 6)[1], wilson_interval(0, 6)[0]
        (1.0, 0.0)
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


@dataclass
class RunSummary:
    """The aggregate of one (env, agent) run.

    Episodes that ended on an infra error (the machinery failed) or an agent error (the agent raised: a model
    server that cannot be reached, a timeout) say nothing about the policy: they are counted apart in
    ``infra_errors`` / ``agent_errors`` and left out of ``scored``, the success rate and the means of reward,
    turns, tool calls and components. ``success_rate`` is None when no episode was scored.
    """

    env_id: str
    agent: str
    episodes: int
    success_rate: float | None
    success_ci95: tuple[float, float]
    mean_reward: float
    mean_turns: float
    mean_tool_calls: float
    seconds_per_episode: float
    component_means: dict[str, float] = field(default_factory=dict)
    infra_errors: int = 0
    hack_flagged: int = 0
    mean_tokens: float = 0.0
    agent_errors: int = 0
    scored: int = 0
    error_causes: dict[str, int] = field(default_factory=dict)
    """the most frequent error messages (infra, agent, reward), with how many episodes each ended"""
    reward_errors: int = 0
    """episodes whose reward was not a finite number (left out of the means like the other errors)"""

    @property
    def all_failed(self) -> bool:
        """Every episode ended on an infra or agent error (so the row measures nothing)."""
        return self.episodes > 0 and self.scored == 0

    def failure_line(self) -> str:
        """One line that says why no episode of this row could be scored."""
        cause = next(iter(self.error_causes), "unknown cause")
        if self.agent_errors and not self.infra_errors:
            kind = "on the agent"
        elif self.infra_errors and not self.agent_errors:
            kind = "on infra"
        else:
            kind = f"({self.infra_errors} on infra, {self.agent_errors} on the agent)"
        return (f"{self.env_id.removeprefix('execgym/')} · {self.agent}: every episode ({self.episodes}) failed "
                f"{kind}: {cause}")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def summarise(env_id: str, agent: str, results: Sequence[EpisodeResult], *, top_causes: int = 3) -> RunSummary:
    """Aggregate episodes into one row; errored episodes are counted apart and excluded from every mean but
    the seconds and tokens spent.

    Example:
        >>> ok = EpisodeResult("t", 0, 1, 1.0, 1.0, True, False, 0.1)
        >>> down = EpisodeResult("t", 1, 0, 0.0, 0.0, False, False, 0.1, agent_error="APIConnectionError: refused")
        >>> s = summarise("execgym/Toy-v0", "openai", [ok, down])
        >>> s.success_rate, s.scored, s.agent_errors, s.error_causes
        (1.0, 1, 1, {'APIConnectionError: refused': 1})
    """
    n = len(results)
    scored = [r for r in results if r.error is None]
    k = len(scored)
    successes = sum(r.outcome >= 1.0 for r in scored)
    keys = sorted({key for r in scored for key in r.reward_components})
    causes = Counter(r.error.splitlines()[0][:200] for r in results if r.error)
    return RunSummary(
        env_id=env_id,
        agent=agent,
        episodes=n,
        success_rate=successes / k if k else None,
        success_ci95=wilson_interval(successes, k),
        mean_reward=_mean([r.total_reward for r in scored]),
        mean_turns=_mean([r.turns for r in scored]),
        mean_tool_calls=_mean([r.tool_calls for r in scored]),
        seconds_per_episode=_mean([r.seconds for r in results]),
        component_means={key: _mean([r.reward_components.get(key, 0.0) for r in scored]) for key in keys},
        infra_errors=sum(r.infra_error is not None for r in results),
        hack_flagged=sum(bool(r.hack_flags) for r in scored),
        mean_tokens=_mean([r.tokens for r in results]),
        agent_errors=sum(r.agent_error is not None for r in results),
        scored=k,
        error_causes=dict(causes.most_common(top_causes)),
        reward_errors=sum(r.reward_error is not None and r.infra_error is None and r.agent_error is None
                          for r in results),
    )


def make_rollout(
    env_id: str,
    agent: str | AgentFactory,
    *,
    env_kwargs: Mapping[str, Any] | None = None,
    agent_kwargs: Mapping[str, Any] | None = None,
    wrappers: Sequence[WrapperSpec] = (),
    record_path: Path | None = None,
    backend: str = "local",
    num_envs: int = 1,
    num_workers: int = 2,
    address: str | None = None,
    act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
    env_server: str | None = None,
) -> Rollout:
    """The :class:`~execgym.rollout.episode.Rollout` a run plays on: ``backend="ray"`` (``num_workers`` actors
    on the cluster at ``address``), else ``num_envs`` ready-first slots, else one env after another.

    Every backend builds the env the same way (reward ``wrappers`` innermost, the recorder outermost, writing
    to ``record_path``) and seeds the agents from ``agent_kwargs["seed"]`` upwards.
    """
    if backend == "ray":
        if env_server is not None:
            raise ValueError("an env server and the ray backend do not go together: Ray actors make their own envs")
        from execgym.rollout.ray import RayRollout

        return RayRollout(env_id, agent, num_workers=num_workers, env_kwargs=env_kwargs, agent_kwargs=agent_kwargs,
                          wrappers=wrappers, address=address, record_path=record_path, act_timeout_s=act_timeout_s)
    if backend != "local":
        raise ValueError(f"unknown rollout backend {backend!r}; known: local, ray")
    env_fn = env_factory(env_id, env_kwargs, wrappers, record_path, env_server)
    if num_envs > 1:
        from execgym.rollout.async_rollout import AsyncRollout

        return AsyncRollout(env_fn, agent, num_slots=num_envs, agent_kwargs=agent_kwargs, act_timeout_s=act_timeout_s)
    return SyncRollout(env_fn, agent, agent_kwargs=agent_kwargs, act_timeout_s=act_timeout_s)


def run_baseline(
    env_id: str,
    agent_name: str,
    episodes: int,
    *,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    agent_kwargs: Mapping[str, Any] | None = None,
    wrappers: Sequence[WrapperSpec] = (),
    num_envs: int = 1,
    out_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
    backend: str = "local",
    num_workers: int = 2,
    address: str | None = None,
    env_server: str | None = None,
) -> tuple[RunSummary, list[EpisodeResult]]:
    """Play ``episodes`` episodes (seeds ``seed, seed+1, ...``) of ``agent_name`` on ``env_id``.

    The rollout is :func:`make_rollout`'s: with ``num_envs > 1`` the episodes run ready-first on
    :class:`~execgym.rollout.AsyncRollout` slots (one env and one agent each), with ``backend="ray"`` on Ray
    actors; trajectories all go to one file in ``out_dir`` (appends are atomic). An agent call over
    ``act_timeout_s`` ends its episode as an agent error (``AgentTimeout``); the run goes on with a new agent,
    since the abandoned call may still hold the old one. With ``env_server`` (an ``execgym env-server`` URL) the
    envs run on that server (:class:`~execgym.remote.RemoteEnv`), the agents here.
    """
    record = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        record = out_dir / f"{env_id.replace('/', '_')}__{agent_name}.jsonl"

    def on_episode(index: int, result: EpisodeResult, done: list[int] = [0]) -> None:  # noqa: B006 - a counter
        done[0] += 1
        if progress:
            progress(done[0], episodes)

    with make_rollout(env_id, agent_name, env_kwargs=env_kwargs, agent_kwargs={"seed": seed, **(agent_kwargs or {})},
                      wrappers=wrappers, record_path=record, backend=backend, num_envs=num_envs,
                      num_workers=num_workers, address=address, act_timeout_s=act_timeout_s,
                      env_server=env_server) as rollout:
        results = rollout.run(episodes, seed=seed, on_episode=on_episode)
    return summarise(env_id, agent_name, results), results


def format_table(summaries: Sequence[RunSummary]) -> str:
    """A plain-text results table, one row per (env, agent), reward components' means at the right.

    ``eps`` counts every episode; ``infra`` and ``agent`` count those that ended on an infra or an agent error,
    which the success rate (over the rest) and the means leave out.
    """
    head = f"{'env':<24} {'agent':<8} {'eps':>4} {'infra':>5} {'agent':>5} {'success [95% CI]':>22} {'reward':>7} " \
           f"{'turns':>6} {'calls':>6} {'tokens':>7} {'s/ep':>7}  components (mean per episode)"
    lines = [head, "-" * len(head)]
    for s in summaries:
        lo, hi = s.success_ci95
        comps = " ".join(f"{k}={v:.2f}" for k, v in s.component_means.items())
        extra = f" hack_flagged={s.hack_flagged}" if s.hack_flagged else ""
        success = f"{s.success_rate:>7.2f} [{lo:.2f}, {hi:.2f}]" if s.success_rate is not None \
            else f"{'-':>7} {'(none scored)':<14}"
        lines.append(
            f"{s.env_id.removeprefix('execgym/'):<24} {s.agent:<8} {s.episodes:>4} {s.infra_errors:>5} "
            f"{s.agent_errors:>5} {success}  {s.mean_reward:>7.3f} {s.mean_turns:>6.1f} "
            f"{s.mean_tool_calls:>6.1f} {s.mean_tokens:>7.0f} {s.seconds_per_episode:>7.3f}  {comps}{extra}"
        )
    return "\n".join(lines)


def summaries_to_json(summaries: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts (``summary.json``)."""
    return [asdict(s) for s in summaries]

