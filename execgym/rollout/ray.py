"""Ray backend: episodes played by actors on a Ray cluster, results and trajectories back on the driver.

Each :class:`EpisodeWorker` actor owns one env (and so its executor and sandboxes, created on the actor's
own thread) and builds its agent itself: from a name through :func:`~execgym.agents.make_agent` (``oracle``,
``random``, ``openai`` with ``base_url=...`` for any OpenAI-compatible endpoint), or from a picklable
factory ``env -> Agent``. The driver keeps one episode in flight per actor and hands the next one to
whichever actor finishes first. A finished episode is on the driver the moment it ends, so losing an actor
loses no finished episode; the episode it was playing is retried once on a fresh actor and otherwise
reported with ``infra_error``.

Needs the ``ray`` extra (``pip install "execgym[ray]"``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym

from execgym.agents.base import DEFAULT_ACT_TIMEOUT_S, check_timeout
from execgym.rollout.async_rollout import EpisodeSpec, episode_specs
from execgym.rollout.episode import EpisodeResult

__all__ = ["EpisodeWorker", "RayRollout", "run_baseline_ray"]

try:
    import ray
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError('the Ray backend needs ray: pip install "execgym[ray]"') from exc

AgentSpec = str | Callable[[gym.Env[Any, Any]], Any]


class EpisodeWorker:
    """A Ray actor (see :func:`_actor_class`) that plays episodes in its own env with its own agent.

    Example (a plain object works the same, without Ray):
        >>> import execgym
        >>> worker = EpisodeWorker("execgym/TextToSQL-v0", {}, "oracle", {}, seed=0, record=True)
        >>> result, lines = worker.play(EpisodeSpec(seed=3))
        >>> result.outcome, len(lines)
        (1.0, 1)
        >>> worker.close()
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any],
        agent: AgentSpec,
        agent_kwargs: dict[str, Any],
        *,
        seed: int | None = None,
        record: bool = False,
        act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
    ) -> None:
        import execgym  # noqa: F401  (registers the env ids in this process)
        from execgym.core.trajectory import RecordTrajectory

        env: gym.Env[Any, Any] = gym.make(env_id, **env_kwargs)
        self._record_dir = tempfile.mkdtemp(prefix="execgym-ray-") if record else None
        self._record_path = Path(self._record_dir, "episodes.jsonl") if self._record_dir else None
        if self._record_path is not None:
            env = RecordTrajectory(env, self._record_path, renders=True)  # for execgym view
        self.env = env
        self.act_timeout_s = check_timeout(act_timeout_s)
        self._agent_spec, self._agent_kwargs, self._seed = agent, dict(agent_kwargs), seed
        self.agent = self._build_agent()

    def _build_agent(self) -> Any:
        from execgym.agents import make_agent

        if callable(self._agent_spec):
            return self._agent_spec(self.env)
        return make_agent(self._agent_spec, self.env, seed=self._seed, **self._agent_kwargs)

    def play(self, spec: EpisodeSpec) -> tuple[EpisodeResult, list[str]]:
        """Play one episode; returns its result and the trajectory lines it recorded (JSONL, no newline).

        An agent call over ``act_timeout_s`` ends the episode with ``agent_error`` (``"AgentTimeout: ..."``)
        and the actor goes on with a new agent (the hung one is left to its call).
        """
        from execgym.rollout.episode import run_episode

        result = run_episode(self.env, self.agent, seed=spec.seed, options=spec.options,
                             act_timeout_s=self.act_timeout_s)
        if result.agent_error is not None and result.agent_error.startswith("AgentTimeout"):
            self.agent = self._build_agent()
        lines: list[str] = []
        if self._record_path is not None and self._record_path.exists():
            lines = self._record_path.read_text(encoding="utf-8").splitlines()
            self._record_path.unlink()
        return result, lines

    def pid(self) -> int:
        """The actor's process id."""
        return os.getpid()

    def close(self) -> None:
        self.env.close()
        if self._record_dir is not None:
            import shutil

            shutil.rmtree(self._record_dir, ignore_errors=True)


_ACTOR: Any = None


def _actor_class() -> Any:
    global _ACTOR
    if _ACTOR is None:
        _ACTOR = ray.remote(max_restarts=0, max_task_retries=0)(EpisodeWorker)
    return _ACTOR


class RayRollout:
    """Play episodes on ``num_workers`` Ray actors, one episode in flight per actor, ready-first.

    Args:
        env_id: a registered env id; every actor builds ``gym.make(env_id, **env_kwargs)``.
        agent: an agent name for ``make_agent`` (with ``agent_kwargs``) or a picklable factory ``env -> Agent``.
        num_workers: how many actors.
        address: the Ray cluster to join (``None``: the running one, or a new local one).
        record: return each episode's trajectory line (``RecordTrajectory`` format) with its result.
        actor_options: extra ``.options(...)`` for the actors (``num_cpus``, ``resources``, ...).
        max_retries: how many times an episode whose actor died is tried again on a fresh actor.
        act_timeout_s: the longest one ``agent.reset`` or ``agent.act`` may take in an actor (None: no
            limit); a hung agent ends its episode with ``agent_error`` ``"AgentTimeout: ..."`` and its actor
            goes on with a new agent.

    :meth:`run` returns results in spec order, exactly as a local run summarises them; episodes that could
    not be played even after the retries carry ``infra_error`` (``"actor died: ..."``).

    Example:
        >>> import ray                                                               # doctest: +SKIP
        >>> with RayRollout("execgym/TextToSQL-v0", "oracle", num_workers=2) as r:   # doctest: +SKIP
        ...     [x.outcome for x in r.run(4)]
        [1.0, 1.0, 1.0, 1.0]
    """

    def __init__(
        self,
        env_id: str,
        agent: AgentSpec,
        *,
        num_workers: int = 2,
        env_kwargs: dict[str, Any] | None = None,
        agent_kwargs: dict[str, Any] | None = None,
        address: str | None = None,
        record: bool = False,
        actor_options: dict[str, Any] | None = None,
        max_retries: int = 1,
        seed: int | None = None,
        act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        self.env_id = env_id
        self.agent = agent
        self.env_kwargs = dict(env_kwargs or {})
        self.agent_kwargs = dict(agent_kwargs or {})
        self.record = record
        self.actor_options = {"num_cpus": 1, **(actor_options or {})}
        self.max_retries = int(max_retries)
        self.seed = seed
        self.act_timeout_s = check_timeout(act_timeout_s)
        self._spawned = 0
        self.retried: list[int] = []  # indices of the episodes played again after their actor died
        self.actors: list[Any] = [self._spawn() for _ in range(num_workers)]

    def _spawn(self) -> Any:
        seed = None if self.seed is None else self.seed + self._spawned
        self._spawned += 1
        return _actor_class().options(**self.actor_options).remote(
            self.env_id, self.env_kwargs, self.agent, self.agent_kwargs, seed=seed, record=self.record,
            act_timeout_s=self.act_timeout_s,
        )

    def run(
        self,
        episodes: int | Iterable[EpisodeSpec],
        *,
        seed: int = 0,
        on_episode: Callable[[int, EpisodeResult], None] | None = None,
    ) -> list[tuple[EpisodeResult, list[str]]]:
        """Play ``episodes`` (a count: seeds ``seed, seed+1, ...``; or specs); returns (result, lines) pairs.

        ``on_episode(index, result)`` is called on the driver as each episode comes back.
        """
        specs = episode_specs(episodes, seed=seed)
        out: list[tuple[EpisodeResult, list[str]] | None] = [None] * len(specs)
        queue = list(range(len(specs)))
        queue.reverse()
        attempts = [0] * len(specs)
        in_flight: dict[Any, tuple[int, int]] = {}  # ref -> (episode index, actor slot)

        def dispatch(slot: int) -> None:
            if queue:
                index = queue.pop()
                attempts[index] += 1
                in_flight[self.actors[slot].play.remote(specs[index])] = (index, slot)

        for slot in range(len(self.actors)):
            dispatch(slot)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            index, slot = in_flight.pop(ref)
            try:
                result, lines = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                # The actor is gone (killed, out of memory, node lost): replace it; retry the episode once.
                self.actors[slot] = self._spawn()
                if attempts[index] <= self.max_retries:
                    self.retried.append(index)
                    queue.append(index)
                else:
                    spec = specs[index]
                    result = _lost(spec, f"actor died: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                    out[index] = (result, [])
                    if on_episode is not None:
                        on_episode(index, result)
                dispatch(slot)
                continue
            out[index] = (result, lines)
            if on_episode is not None:
                on_episode(index, result)
            dispatch(slot)
        return [pair for pair in out if pair is not None]

    def close(self) -> None:
        """Close every actor's env and end the actors."""
        for actor in self.actors:
            with contextlib.suppress(Exception):  # an actor that already died has nothing left to close
                ray.get(actor.close.remote(), timeout=60)
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> RayRollout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lost(spec: EpisodeSpec, error: str) -> EpisodeResult:
    task_id = str((spec.options or {}).get("task_id", ""))
    return EpisodeResult(task_id=task_id, seed=spec.seed, turns=0, total_reward=0.0, outcome=0.0, terminated=False,
                         truncated=False, seconds=0.0, infra_error=error)


def run_baseline_ray(
    env_id: str,
    agent_name: str,
    episodes: int,
    *,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    agent_kwargs: dict[str, Any] | None = None,
    out_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    num_workers: int = 2,
    address: str | None = None,
    act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
) -> tuple[Any, list[EpisodeResult]]:
    """:func:`~execgym.rollout.runner.run_baseline` on Ray: the same summary, results and trajectory file."""
    from execgym.rollout.runner import summarise

    done = 0

    def tick(index: int, result: EpisodeResult) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, episodes)

    with RayRollout(env_id, agent_name, num_workers=num_workers, env_kwargs=env_kwargs, agent_kwargs=agent_kwargs,
                    address=address, record=out_dir is not None, seed=seed, act_timeout_s=act_timeout_s) as rollout:
        pairs = rollout.run(episodes, seed=seed, on_episode=tick)
    results = [r for r, _ in pairs]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{env_id.replace('/', '_')}__{agent_name}.jsonl"
        with path.open("a", encoding="utf-8") as fh:
            for _, lines in pairs:
                for line in lines:
                    json.loads(line)  # a cut line would corrupt the file: fail here instead
                    fh.write(line + "\n")
    return summarise(env_id, agent_name, results), results
