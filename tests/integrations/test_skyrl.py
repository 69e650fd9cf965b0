"""The SkyRL adapter, driven by skyrl-gym's own ``make`` / ``init`` / ``step`` / ``get_metrics``.

Every episode is also played on a plain execgym env with the same seed and actions: the rewards, components
and final report that SkyRL sees must be that env's own.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import gymnasium as gym
import pytest

skyrl_gym = pytest.importorskip("skyrl_gym")

from skyrl_gym.envs.base_text_env import BaseTextEnv  # noqa: E402
from skyrl_gym.metrics import aggregate_for_environment  # noqa: E402

import execgym  # noqa: E402
from execgym.agents.chat import action_to_text  # noqa: E402
from execgym.core import report as R  # noqa: E402
from execgym.core.errors import InfraError  # noqa: E402
from execgym.integrations import skyrl as S  # noqa: E402

FAMILIES = ["execgym/TextToSQL-v0", "execgym/ToolUse-v0", "execgym/SWERepair-v0", "execgym/CADModel-v0"]


def _families() -> list[Any]:
    return [pytest.param(env_id, marks=pytest.mark.skipif(execgym.missing_extra(env_id) is not None,
                                                           reason=f"needs execgym[{execgym.missing_extra(env_id)}]"))
            for env_id in FAMILIES]


def _play(env: BaseTextEnv, actions: list[str]) -> list[dict[str, Any]]:
    outputs = []
    for action in actions:
        out = env.step(action)
        outputs.append(out)
        if out["done"]:
            break
    return outputs


def test_every_env_is_registered_with_a_json_spec() -> None:
    for env_id in execgym.ENVS:
        spec = skyrl_gym.spec(S.skyrl_id(env_id))
        assert json.loads(spec.to_json())["kwargs"] == {"env_id": env_id}
    assert S.register_envs() == [S.skyrl_id(env_id) for env_id in execgym.ENVS]  # twice is harmless


@pytest.mark.parametrize("env_id", _families())
def test_oracle_episode_pays_the_env_reward_and_components(env_id: str) -> None:
    env = skyrl_gym.make(S.skyrl_id(env_id), env_config={}, extras={"seed": 3, "max_turns": 8})
    plain = gym.make(env_id, max_turns=8)
    try:
        assert isinstance(env, BaseTextEnv)
        messages, meta = env.init([{"role": "user", "content": "placeholder"}])
        _obs, info = plain.reset(seed=3)
        assert messages == info[R.MESSAGES] and meta[R.TASK_ID] == info[R.TASK_ID]
        actions = [action_to_text(a) for a in plain.unwrapped.task.oracle]
        outputs = _play(env, actions)
        assert outputs[-1]["done"] and outputs[-1]["observations"] == []
        assert all(out["observations"][0]["role"] == "user" for out in outputs[:-1])
        for out, action in zip(outputs, actions):
            _obs, reward, *_, info = plain.step(action)
            assert out["reward"] == reward
            assert out["metadata"][R.REWARD_COMPONENTS] == info[R.REWARD_COMPONENTS]
        final = outputs[-1]["metadata"]
        assert final[R.OUTCOME] == 1.0 == outputs[-1]["reward"] and final[R.INFRA_ERROR] is None
        assert final[R.UNITS] == info[R.UNITS] and final[R.CHECKLIST] == info[R.CHECKLIST]
        metrics = env.get_metrics()
        assert metrics[R.OUTCOME] == 1.0 and metrics[R.INFRA_ERROR] == 0.0 and metrics[R.TURNS] == len(outputs)
        assert metrics["component/format"] == 1.0
        assert aggregate_for_environment(S.skyrl_id(env_id), [metrics])[R.OUTCOME] == 1.0
    finally:
        env.close()
        plain.close()


@pytest.mark.parametrize("env_id", _families())
def test_do_nothing_episode_scores_zero(env_id: str) -> None:
    env = skyrl_gym.make(S.skyrl_id(env_id), env_config={}, extras={"seed": 0, "max_turns": 2})
    try:
        env.init([])
        outputs = _play(env, ["", "", ""])
        assert len(outputs) == 2 and outputs[-1]["done"]  # SkyRL's max_turns is the env's own
        final = outputs[-1]["metadata"]
        assert final[R.OUTCOME] == 0.0 and not final[R.SUBMITTED] and final[R.INFRA_ERROR] is None
        assert sum(out["reward"] for out in outputs) == 0.0
        assert all(out["metadata"][R.REWARD_COMPONENTS]["format"] == 0.0 for out in outputs)
        assert env.get_metrics()[R.OUTCOME] == 0.0
    finally:
        env.close()


def test_dataset_rows_pass_task_id_and_seed_through() -> None:
    rows = list(S.dataset_rows("execgym/TextToSQL-v0", 2, seed=5))
    assert [row["seed"] for row in rows] == [5, 6] and rows[0]["env_class"] == "execgym-TextToSQL-v0"
    for row in rows:
        extras = {k: v for k, v in row.items() if k not in ("prompt", "env_class")}
        env = skyrl_gym.make(row["env_class"], env_config={}, extras=extras)
        try:
            messages, meta = env.init(row["prompt"])
            assert meta[R.TASK_ID] == row[R.TASK_ID] and messages == row["prompt"]
        finally:
            env.close()
    # task_id alone picks the task whatever the seed
    env = skyrl_gym.make("execgym-TextToSQL-v0", extras={R.TASK_ID: "bookshop-002"})
    try:
        assert env.init([])[1][R.TASK_ID] == "bookshop-002"
    finally:
        env.close()


def test_wrappers_and_env_kwargs_from_the_env_config() -> None:
    config = {"env_kwargs": {"max_turns": 3}, "wrappers": [("HackPenalty", {"penalty": -1.0})]}
    env = skyrl_gym.make("execgym-TextToSQL-v0", env_config=config, extras={"seed": 1})
    try:
        assert env.env.unwrapped.max_turns == 3 and type(env.env).__name__ == "HackPenalty"
        env.init([])
        oracle = env.env.unwrapped.task.oracle
        out = _play(env, [action_to_text(a) for a in oracle])[-1]
        assert out["done"] and out["reward"] == 1.0 and R.BREAKDOWN in out["metadata"]
    finally:
        env.close()


def test_an_infra_error_is_marked_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    env = skyrl_gym.make("execgym-TextToSQL-v0", extras={"seed": 0})

    def broken_grader(_submitted: Any) -> Any:
        raise InfraError("grading worker died")

    try:
        env.init([])
        env.env.unwrapped._grade = broken_grader  # the grading machinery fails, not the policy
        before = S.infra_error_count()
        oracle = env.env.unwrapped.task.oracle
        with caplog.at_level(logging.WARNING, logger=S.__name__):
            out = _play(env, [action_to_text(a) for a in oracle])[-1]
        assert out["done"] and "grading worker died" in out["metadata"][R.INFRA_ERROR]
        assert S.infra_error_count() == before + 1 and "infra_error" in caplog.text
        assert env.get_metrics() == {R.INFRA_ERROR: 1.0}  # no outcome: SkyRL's outcome average leaves it out
    finally:
        env.close()
