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
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from execgym.agents.base import DEFAULT_ACT_TIMEOUT_S, check_timeout
from execgym.core import report as R
from execgym.core.trajectory import append_jsonl
from execgym.rollout.episode import (
    EpisodeCallback,
    EpisodeResult,
    EpisodeSpec,
    SyncRollout,
    agent_factory,
    env_factory,
    episode_specs,
)

if TYPE_CHECKING:
    from execgym.rollout.runner import RunSummary
    from execgym.wrappers import WrapperSpec

__all__ = ["EpisodeWorker", "RayRollout", "run_baseline_ray"]

try:
    import ray
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError('the Ray backend needs ray: pip install "execgym[ray]"') from exc

AgentSpec = str | Callable[[gym.Env[Any, Any]], Any]


class EpisodeWorker:
    """A Ray actor (see :func:`_actor_class`) that plays episodes in its own env with its own agent.

    The env is built as every backend builds it (:func:`~execgym.rollout.episode.make_wrapped_env`: reward
    ``wrappers`` innermost, the recorder outermost) and played by a :class:`~execgym.rollout.SyncRollout`, so a
    result here is what a local run gives. With ``record`` each episode's trajectory record comes back with it.

    Example (a plain object works the same, without Ray):
        >>> import execgym
        >>> worker = EpisodeWorker("execgym/TextToSQL-v0", {}, "oracle", {}, seed=0, record=True)
        >>> result, records = worker.play(EpisodeSpec(seed=3))
        >>> result.outcome, len(records), records[0][R.TASK_ID] == result.task_id
        (1.0, 1, True)
        >>> worker.close()
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: Mapping[str, Any],
        agent: AgentSpec,
        agent_kwargs: Mapping[str, Any],
        *,
        wrappers: Sequence[WrapperSpec] = (),
        seed: int | None = None,
        record: bool = False,
        act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
    ) -> None:
        import execgym  # noqa: F401  (registers the env ids in this process)

        self._records: list[dict[str, Any]] = []  # what the recorder wrote since the last episode came back
        kwargs = dict(agent_kwargs) if seed is None else {**agent_kwargs, "seed": seed}
        self.rollout = SyncRollout(env_factory(env_id, env_kwargs, wrappers, self._records.append if record else None),
                                   agent_factory(agent, kwargs), act_timeout_s=act_timeout_s)
        self.env = self.rollout.open()  # a bad env or agent fails the actor's start, not its first episode

    def play(self, spec: EpisodeSpec) -> tuple[EpisodeResult, list[dict[str, Any]]]:
        """Play one episode; returns its result and the trajectory records it wrote.

        An agent call over ``act_timeout_s`` ends the episode with ``agent_error`` (``"AgentTimeout: ..."``)
        and the actor goes on with a new agent (the hung one is left to its call).
        """
        result = self.rollout.play(spec)
        records, self._records[:] = list(self._records), []
        return result, records

    def pid(self) -> int:
        """The actor's process id."""
        return os.getpid()

    def close(self) -> None:
        self.rollout.close()


_ACTOR: Any = None


def _actor_class() -> Any:
    global _ACTOR
    if _ACTOR is None:
        _ACTOR = ray.remote(max_restarts=0, max_task_retries=0)(EpisodeWorker)
    return _ACTOR


class RayRollout:
    """Play episodes on ``num_workers`` Ray actors, one episode in flight per actor, ready-first.

    Args:
        env_id: a registered env id; every actor builds it with ``env_kwargs`` and the reward ``wrappers``
            (specs of :func:`execgym.wrappers.apply_wrappers`, innermost first).
        agent: an agent name for ``make_agent`` (with ``agent_kwargs``) or a picklable factory ``env -> Agent``.
        num_workers: how many actors.
        address: the Ray cluster to join (``None``: the running one, or a new local one).
        record_path: append each episode's trajectory record (``RecordTrajectory`` format) to this file on the
            driver, in the order of the specs.
        actor_options: extra ``.options(...)`` for the actors (``num_cpus``, ``resources``, ...).
        max_retries: how many times an episode whose actor died is tried again on a fresh actor.
        seed: the first actor's agent seed (the next actors' count up from it); else ``agent_kwargs["seed"]``.
        act_timeout_s: the longest one ``agent.reset`` or ``agent.act`` may take in an actor (None: no
            limit); a hung agent ends its episode with ``agent_error`` ``"AgentTimeout: ..."`` and its actor
            goes on with a new agent.

    :meth:`run` is the :class:`~execgym.rollout.episode.Rollout` protocol: results in spec order, exactly as a
    local run summarises them; episodes that could not be played even after the retries carry ``infra_error``
    (``"actor died: ..."``).

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
        env_kwargs: Mapping[str, Any] | None = None,
        agent_kwargs: Mapping[str, Any] | None = None,
        wrappers: Sequence[WrapperSpec] = (),
        address: str | None = None,
        record_path: str | os.PathLike[str] | None = None,
        actor_options: Mapping[str, Any] | None = None,
        max_retries: int = 1,
        seed: int | None = None,
        act_timeout_s: float | None = DEFAULT_ACT_TIMEOUT_S,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        from execgym.wrappers import parse_wrapper_spec

        self.wrappers = list(wrappers)
        for spec in self.wrappers:  # a bad spec is one line here, not an actor that fails to start
            parse_wrapper_spec(spec)
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        self.env_id = env_id
        self.agent = agent
        self.env_kwargs = dict(env_kwargs or {})
        self.agent_kwargs = dict(agent_kwargs or {})
        agent_seed = self.agent_kwargs.pop("seed", None)
        self.seed = seed if seed is not None else agent_seed
        self.record_path = None if record_path is None else Path(record_path)
        self.actor_options = {"num_cpus": 1, **(actor_options or {})}
        self.max_retries = int(max_retries)
        self.act_timeout_s = check_timeout(act_timeout_s)
        self._spawned = 0
        self.retried: list[int] = []  # indices of the episodes played again after their actor died
        self.actors: list[Any] = [self._spawn() for _ in range(num_workers)]

    def _spawn(self) -> Any:
        seed = None if self.seed is None else self.seed + self._spawned
        self._spawned += 1
        return _actor_class().options(**self.actor_options).remote(
            self.env_id, self.env_kwargs, self.agent, self.agent_kwargs, wrappers=self.wrappers, seed=seed,
            record=self.record_path is not None, act_timeout_s=self.act_timeout_s,
        )

    def run(
        self,
        episodes: int | Iterable[EpisodeSpec],
        *,
        seed: int = 0,
        on_episode: EpisodeCallback | None = None,
    ) -> list[EpisodeResult]:
        """Play ``episodes`` (a count: seeds ``seed, seed+1, ...``; or specs); returns their results in spec order.

        ``on_episode(index, result)`` is called on the driver as each episode comes back.
        """
        specs = episode_specs(episodes, seed=seed)
        results: list[EpisodeResult | None] = [None] * len(specs)
        records: dict[int, list[dict[str, Any]]] = {}  # finished episodes' records not yet written
        written = 0
        queue = list(range(len(specs)))
        queue.reverse()
        attempts = [0] * len(specs)
        in_flight: dict[Any, tuple[int, int]] = {}  # ref -> (episode index, actor slot)

        def dispatch(slot: int) -> None:
            if queue:
                index = queue.pop()
                attempts[index] += 1
                in_flight[self.actors[slot].play.remote(specs[index])] = (index, slot)

        def done(index: int, result: EpisodeResult, episode_records: list[dict[str, Any]]) -> None:
            nonlocal written
            results[index], records[index] = result, episode_records
            while written in records:  # in spec order, as soon as every earlier episode is in
                for record in records.pop(written):
                    if self.record_path is not None:
                        append_jsonl(self.record_path, record)
                written += 1
            if on_episode is not None:
                on_episode(index, result)

        for slot in range(len(self.actors)):
            dispatch(slot)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            index, slot = in_flight.pop(ref)
            try:
                result, episode_records = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                # The actor is gone (killed, out of memory, node lost): replace it; retry the episode once.
                self.actors[slot] = self._spawn()
                if attempts[index] <= self.max_retries:
                    self.retried.append(index)
                    queue.append(index)
                else:
                    error = f"actor died: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                    done(index, _lost(specs[index], error), [])
                dispatch(slot)
                continue
            done(index, result, episode_records)
            dispatch(slot)
        return [r for r in results if r is not None]

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
    task_id = str((spec.options or {}).get(R.TASK_ID, ""))
    return EpisodeResult(task_id=task_id, seed=spec.seed, turns=0, total_reward=0.0, outcome=0.0, terminated=False,
                         truncated=False, seconds=0.0, infra_error=error)


def run_baseline_ray(
    env_id: str,
    agent_name: str,
    episodes: int,
    *,
    num_workers: int = 2,
    address: str | None = None,
    **kwargs: Any,
) -> tuple[RunSummary, list[EpisodeResult]]:
    """:func:`~execgym.rollout.runner.run_baseline` on Ray (``backend="ray"``): the same summary, results and
    trajectory file; ``kwargs`` are run_baseline's (``seed``, ``env_kwargs``, ``wrappers``, ``out_dir``, ...)."""
    from execgym.rollout.runner import run_baseline

    return run_baseline(env_id, agent_name, episodes, backend="ray", num_workers=num_workers, address=address,
                        **kwargs)
