"""Rollouts: running agents in envs with one episode accumulator and one rollout protocol (sync, ready-first
async slots, Ray), plus vector envs."""

from execgym.rollout.async_rollout import AsyncRollout, run_async
from execgym.rollout.episode import (
    EpisodeAccumulator,
    EpisodeResult,
    EpisodeSpec,
    EpisodeTrace,
    Rollout,
    SyncRollout,
    episode_specs,
    run_episode,
)
from execgym.rollout.vector import run_vector

__all__ = [
    "AsyncRollout",
    "EpisodeAccumulator",
    "EpisodeResult",
    "EpisodeSpec",
    "EpisodeTrace",
    "Rollout",
    "SyncRollout",
    "episode_specs",
    "run_async",
    "run_episode",
    "run_vector",
]
