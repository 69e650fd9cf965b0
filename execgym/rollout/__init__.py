"""Rollouts: running agents in envs (one episode, many; ready-first async slots; vector envs; a Ray backend)."""

from execgym.rollout.async_rollout import AsyncRollout, EpisodeSpec, episode_specs, run_async
from execgym.rollout.episode import EpisodeResult, run_episode
from execgym.rollout.vector import run_vector

__all__ = ["AsyncRollout", "EpisodeResult", "EpisodeSpec", "episode_specs", "run_async", "run_episode", "run_vector"]
