"""ScriptedEnv: an env whose action *is* the step's ``info``, to test and document reward schemes on exact data.

Every reward wrapper reads only ``info`` (see :mod:`execgym.core.report`), so a scheme can be checked, or
shown in a doctest, by dictating what the env reports: ``env.step({"reward_components": {"format": 1.0}})``
is a turn that earned a format component; ``env.step({"outcome": 1.0, "units": [...]})`` ends the episode
with that grade. It also replays recorded trajectories through a new reward scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, SupportsFloat

import gymnasium as gym
from gymnasium.error import ResetNeeded
from gymnasium.spaces import Space

from execgym.core import report as R
from execgym.core.env import UnicodeText

__all__ = ["ScriptedEnv"]


class ScriptedEnv(gym.Env[str, Mapping[str, Any]]):
    """An env that reports what each action tells it to, following the execgym info contract.

    An action is a mapping holding any of the step keys (``reward_components``, ``tool_calls``, ``extra``,
    and, for a step that reports them mid-episode, ``checklist`` / ``units``) and, on the last step, the grade
    (``outcome``, ``units``, ``checklist``, ``hack_flags``). A step that holds ``outcome`` ends the episode
    (``terminated``; ``"truncated": True`` in the action makes it a truncation instead); after
    ``max_turns`` steps the episode is truncated with outcome 0. The reward is the contract's sparse outcome:
    0 until the end, ``outcome`` at the end. Missing final keys get the contract's defaults. Values are
    reported as given, unchecked (a NaN or a str outcome too), so schemes can be tested against a bad env.

    Args:
        max_turns: steps after which the episode is truncated.

    Example:
        >>> env = ScriptedEnv()
        >>> obs, info = env.reset(options={"task_id": "t1"})
        >>> env.step({"reward_components": {"format": 1.0}})[1:4]
        (0.0, False, False)
        >>> obs, reward, terminated, truncated, info = env.step(
        ...     {"outcome": 1.0, "units": [{"id": "u1", "passed": True}]})
        >>> reward, terminated, info["turns"], info["units"]
        (1.0, True, 2, [{'id': 'u1', 'passed': True}])
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, *, max_turns: int = 20) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.max_turns = int(max_turns)
        self.observation_space = UnicodeText(256)
        self.action_space: Space[Mapping[str, Any]] = Space()  # any mapping; see the class docstring
        self.task_id = "task-0"
        self.turn = 0
        self._over = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.task_id = str((options or {}).get(R.TASK_ID, "task-0"))
        self.turn = 0
        self._over = False
        info = {R.TASK_ID: self.task_id, R.TOOLS: [], R.SYSTEM_PROMPT: ""}
        return f"task {self.task_id}", info

    def step(self, action: Mapping[str, Any]) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._over:
            raise ResetNeeded("ScriptedEnv: call reset() before step() (the episode is over or never began)")
        if not isinstance(action, Mapping):
            raise TypeError(f"ScriptedEnv's action is a mapping of info keys, got {type(action).__name__}")
        self.turn += 1
        info: dict[str, Any] = {
            R.TASK_ID: self.task_id,
            R.TURN: self.turn,
            R.REWARD_COMPONENTS: dict(action.get(R.REWARD_COMPONENTS) or {}),
            R.TOOL_CALLS: list(action.get(R.TOOL_CALLS) or []),
        }
        if R.EXTRA in action:
            info[R.EXTRA] = dict(action[R.EXTRA])
        for key in (R.CHECKLIST, R.UNITS):
            if key in action:
                info[key] = list(action[key])
        graded = R.OUTCOME in action
        truncated = bool(action.get("truncated", False)) or (not graded and self.turn >= self.max_turns)
        terminated = graded and not truncated
        reward = 0.0
        if terminated or truncated:
            self._over = True
            reward = action.get(R.OUTCOME, 0.0)
            info.update({
                R.OUTCOME: reward,
                R.UNITS: list(action.get(R.UNITS) or []),
                R.CHECKLIST: list(action.get(R.CHECKLIST) or []),
                R.HACK_FLAGS: list(action.get(R.HACK_FLAGS) or []),
                R.INFRA_ERROR: action.get(R.INFRA_ERROR),
                R.SUBMITTED: terminated,
                R.TURNS: self.turn,
            })
        return f"turn {self.turn}", reward, terminated, truncated, info
