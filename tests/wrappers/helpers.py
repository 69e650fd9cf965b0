"""Helpers shared by the reward-wrapper tests."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from hypothesis import strategies as st

from tests.wrappers.chores_env import CHORES, ChoresEnv, call

ALL_CHORES = sorted({c for turns in CHORES.values() for turn in turns for c in turn})


@dataclass
class Step:
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


@dataclass
class Episode:
    steps: list[Step] = field(default_factory=list)

    @property
    def rewards(self) -> list[float]:
        return [s.reward for s in self.steps]

    @property
    def ret(self) -> float:
        return math.fsum(self.rewards)

    @property
    def final(self) -> dict[str, Any]:
        return self.steps[-1].info

    def parts(self, name: str) -> float:
        return math.fsum(s.info["reward_breakdown"].get(name, 0.0) for s in self.steps)


def play(env: gym.Env[Any, Any], actions: Iterable[Any], *, task_id: str | None = None,
         seed: int | None = None) -> Episode:
    """Reset and play ``actions`` until the episode ends (the actions must end it)."""
    env.reset(seed=seed, options={"task_id": task_id} if task_id is not None else None)
    episode = Episode()
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        episode.steps.append(Step(float(reward), terminated, truncated, info))
        if terminated or truncated:
            return episode
    raise AssertionError("the actions did not end the episode")


def assert_breakdown_sums(episode: Episode) -> None:
    """The wrappers' invariant: every step's reward is the sum of its breakdown."""
    for step in episode.steps:
        parts = step.info["reward_breakdown"]
        assert math.isclose(step.reward, math.fsum(parts.values()), rel_tol=1e-12, abs_tol=1e-12), (step.reward,
                                                                                                     parts)


def chores_action() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.sampled_from(ALL_CHORES).map(lambda c: call("do", chore=c)),
        st.just(call("wander")),
        st.just(call("next_turn")),
        st.just(call("cheat")),
    )


def chores_episode(max_steps: int = 7) -> st.SearchStrategy[tuple[str, list[dict[str, Any]]]]:
    """A task id and a list of actions; ``finish`` is appended so the episode ends (or it is truncated)."""
    return st.tuples(
        st.sampled_from(sorted(CHORES)),
        st.lists(chores_action(), max_size=max_steps).map(lambda acts: [*acts, call("finish")]),
    )


def oracle_actions(task_id: str) -> Sequence[dict[str, Any]]:
    return next(t.oracle for t in ChoresEnv().bundled_tasks() if t.id == task_id)
