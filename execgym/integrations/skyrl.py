"""SkyRL: every execgym env as a skyrl-gym ``BaseTextEnv``, registered with skyrl-gym's registry.

Importing this module registers ``execgym-<Name>-v0`` for each execgym env id (``execgym/TextToSQL-v0`` becomes
``execgym-TextToSQL-v0``), so SkyRL's generator builds it the way it builds its own envs::

    env = skyrl_gym.make("execgym-TextToSQL-v0", env_config={"wrappers": ["format"]}, extras=row_extras)
    messages, meta = env.init(row_prompt)      # the env's own system prompt and task statement
    out = env.step(model_text)                 # BaseTextEnvStepOutput: observations, reward, done, metadata

``env_config`` (SkyRL's ``skyrl_gym_cfg.<env_class>``) holds ``env_kwargs`` for ``gym.make`` and ``wrappers``
(:func:`execgym.wrappers.apply_wrappers` specs). ``extras`` (a dataset row's other columns) may hold ``task_id``
and ``seed``, passed to ``reset`` so a run is reproducible, and ``max_turns`` (SkyRL's generator always sets it),
which becomes the execgym env's own ``max_turns`` so the env grades the episode when it truncates.
:func:`dataset_rows` writes such rows.

The reward of each step is the env's (after the wrappers); ``metadata`` carries the step's ``reward_components``
(and the wrappers' ``reward_breakdown``) and, on the last step, the whole final report. ``get_metrics()`` gives
SkyRL the episode's ``outcome``, the mean of each reward component (``component/<name>``) and ``infra_error``.

SkyRL has no per-sample way for an env to drop a sample, so an episode whose machinery failed (``infra_error``)
is marked instead: ``metadata["infra_error"]`` holds the error, ``get_metrics()`` reports ``infra_error = 1.0``
and none of the policy's numbers (so SkyRL's per-env averages of ``outcome`` leave it out), and the adapter logs
it with a running count (:func:`infra_error_count`).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import skyrl_gym
from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput, ConversationType

import execgym
from execgym.core import report as R
from execgym.rollout.episode import EpisodeSpec, episode_specs, make_wrapped_env
from execgym.wrappers import WrapperSpec

__all__ = ["ExecgymTextEnv", "dataset_rows", "infra_error_count", "register_envs", "skyrl_id"]

logger = logging.getLogger(__name__)

_infra_errors = 0
_infra_lock = threading.Lock()  # SkyRL steps envs in executor threads


def skyrl_id(env_id: str) -> str:
    """The skyrl-gym id of an execgym env id (skyrl-gym ids have no namespace).

    Example:
        >>> skyrl_id("execgym/TextToSQL-v0")
        'execgym-TextToSQL-v0'
    """
    return env_id.replace("/", "-", 1)


def register_envs() -> list[str]:
    """Register every execgym env with skyrl-gym (idempotent); the skyrl-gym ids."""
    ids = []
    for env_id in execgym.ENVS:
        sid = skyrl_id(env_id)
        if sid not in skyrl_gym.registry:
            # A string entry point and plain kwargs keep the spec JSON-serialisable, as skyrl-gym wants.
            skyrl_gym.register(id=sid, entry_point=f"{__name__}:ExecgymTextEnv", kwargs={"env_id": env_id})
        ids.append(sid)
    return ids


def infra_error_count() -> int:
    """How many episodes in this process ended with an ``infra_error``."""
    return _infra_errors


def _plain(value: Any) -> Any:
    """An omegaconf config (SkyRL passes ``DictConfig``) as plain dicts and lists; anything else unchanged."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # omegaconf comes with skyrl-gym; without it no value is a DictConfig
        return value
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _reset_options(task_id: Any) -> dict[str, Any] | None:
    return None if task_id is None else {"task_id": str(task_id)}


class ExecgymTextEnv(BaseTextEnv):
    """One execgym episode behind skyrl-gym's ``init`` / ``step`` / ``get_metrics`` / ``close``.

    Args:
        env_config: ``env_kwargs`` (for ``gym.make``) and ``wrappers`` (reward wrapper specs).
        extras: the dataset row's ``task_id``, ``seed`` and ``max_turns`` (all optional).
        env_id: the execgym env id (set by the registration).
    """

    def __init__(self, env_config: Mapping[str, Any] | None = None, extras: Mapping[str, Any] | None = None, *,
                 env_id: str) -> None:
        super().__init__()
        config = dict(_plain(env_config) or {})
        extras = dict(_plain(extras) or {})
        env_kwargs = dict(config.get("env_kwargs") or {})
        if extras.get("max_turns") is not None:
            env_kwargs["max_turns"] = int(extras["max_turns"])
        wrappers: Sequence[WrapperSpec] = list(config.get("wrappers") or [])
        self.env_id = env_id
        self.env = make_wrapped_env(env_id, env_kwargs, wrappers)
        self.max_turns = int(getattr(self.env.unwrapped, "max_turns", 1))
        self.seed: int | None = None if extras.get("seed") is None else int(extras["seed"])
        self.task_id: str | None = None if extras.get(R.TASK_ID) is None else str(extras[R.TASK_ID])
        self.final: R.FinalReport | None = None
        self._components: dict[str, list[float]] = defaultdict(list)

    def init(self, prompt: ConversationType | None = None) -> tuple[ConversationType, dict[str, Any]]:
        """Reset the env; the chat to start from is the env's own (system prompt and task), not ``prompt``."""
        _observation, info = self.env.reset(seed=self.seed, options=_reset_options(self.task_id))
        self.turns = 0
        self.final = None
        self._components.clear()
        self.task_id = str(info[R.TASK_ID])
        return list(info[R.MESSAGES]), {R.TASK_ID: self.task_id, R.TOOLS: info[R.TOOLS]}

    def step(self, action: str) -> BaseTextEnvStepOutput:
        """Step the env with the model's text; the observation comes back as a user message."""
        self.turns += 1
        observation, reward, terminated, truncated, info = self.env.step(action)
        done = bool(terminated or truncated)
        components = dict(info.get(R.REWARD_COMPONENTS) or {})
        for name, value in components.items():
            self._components[name].append(float(value))
        metadata: dict[str, Any] = {R.TASK_ID: self.task_id, R.TURN: info.get(R.TURN, self.turns),
                                    R.REWARD_COMPONENTS: components}
        if R.BREAKDOWN in info:
            metadata[R.BREAKDOWN] = dict(info[R.BREAKDOWN])
        final = R.final_of(info)
        if final is not None:
            self.final = final
            metadata.update(final.as_info())
            if final.infra_error is not None:
                self._count_infra_error(final.infra_error)
        # SkyRL's own envs send no observation once done: nothing after the last reply is trained on.
        observations = [] if done else [{"role": "user", "content": str(observation)}]
        return BaseTextEnvStepOutput(observations=observations, reward=float(reward), done=done, metadata=metadata,
                                     postprocessed_action=None)

    def _count_infra_error(self, error: str) -> None:
        global _infra_errors
        with _infra_lock:
            _infra_errors += 1
            count = _infra_errors
        logger.warning("%s task %s: infra_error (%d so far in this process): %s", self.env_id, self.task_id, count,
                       error)

    def get_metrics(self) -> dict[str, Any]:
        """The episode's numbers for SkyRL's per-env averages (an infra error reports only ``infra_error``)."""
        if self.final is not None and self.final.infra_error is not None:
            return {R.INFRA_ERROR: 1.0}
        metrics: dict[str, Any] = {R.INFRA_ERROR: 0.0, R.TURNS: float(self.turns)}
        if self.final is not None:
            metrics[R.OUTCOME] = self.final.outcome
            metrics[R.SUBMITTED] = float(self.final.submitted)
        metrics.update({f"component/{name}": sum(values) / len(values)
                        for name, values in self._components.items() if values})
        return metrics

    def close(self) -> None:
        self.env.close()


def dataset_rows(env_id: str, episodes: int | Iterable[EpisodeSpec] = 1, *, seed: int = 0,
                 env_kwargs: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """SkyRL dataset rows for ``episodes`` (an int: seeds ``seed..seed+n-1``; or specs with ``task_id`` options).

    Each row has the env's first chat as ``prompt``, its ``env_class`` and, as extras, the ``task_id`` the spec
    picks and its ``seed``: SkyRL hands the extras to :class:`ExecgymTextEnv`, which resets to that same task.
    """
    env = make_wrapped_env(env_id, env_kwargs)
    try:
        for spec in episode_specs(episodes, seed=seed):
            _observation, info = env.reset(seed=spec.seed, options=spec.options)
            yield {"prompt": list(info[R.MESSAGES]), "env_class": skyrl_id(env_id), R.TASK_ID: info[R.TASK_ID],
                   "seed": spec.seed}
    finally:
        env.close()


register_envs()
