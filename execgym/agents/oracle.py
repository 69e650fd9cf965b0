"""OracleAgent: plays the task's own oracle solution (the upper bound every task is verified against)."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym

from execgym.agents.base import BatchedAgent
from execgym.core import report as R

__all__ = ["OracleAgent"]


class OracleAgent(BatchedAgent):
    """Plays ``env.unwrapped.task.oracle`` action by action.

    It reads the task from the env it is bound to, never from the observation, so it is a reference, not a
    policy. When the oracle actions run out it replies with an empty string (a format error the env reports).
    In batched use (``reset_batch``) the episodes may run in other envs built alike: a task that is not the
    bound env's current one is looked up by ``info["task_id"]`` in the bound env's task set.

    Example:
        >>> import gymnasium as gym, execgym
        >>> env = gym.make("execgym/TextToSQL-v0")                      # doctest: +SKIP
        >>> agent = OracleAgent(env)                                     # doctest: +SKIP
        >>> obs, info = env.reset(seed=0); agent.reset(info)             # doctest: +SKIP
        >>> env.step(agent.act(obs, info))[1]                            # doctest: +SKIP
        1.0
    """

    name = "oracle"

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.env = env
        self._local: gym.Env[Any, Any] | None = None
        self._actions: deque[Any] = deque()

    def reset(self, info: dict[str, Any]) -> None:
        unwrapped = self._local_env().unwrapped
        task = unwrapped.task  # type: ignore[attr-defined]
        task_id = info.get(R.TASK_ID)
        if task is None or task_id != task.id:
            try:
                task = unwrapped.tasks.get(str(task_id))  # type: ignore[attr-defined]
            except KeyError:
                raise RuntimeError(f"OracleAgent.reset: no task {task_id!r} in the bound env's task set") from None
        self._actions = deque(task.oracle)

    def _local_env(self) -> gym.Env[Any, Any]:
        """The bound env, or for a remote one (an env server never sends a task's oracle) a local env of the same
        id and kwargs, whose task set the oracle reads."""
        unwrapped = self.env.unwrapped
        if hasattr(unwrapped, "tasks"):
            return self.env
        if self._local is None:
            self._local = gym.make(unwrapped.env_id, **unwrapped.env_kwargs)  # type: ignore[attr-defined]
        return self._local

    def act(self, observation: str, info: dict[str, Any]) -> Any:
        return self._actions.popleft() if self._actions else ""
