"""CADModelEnv with agent programs in the Docker ``cad`` image (skipped without Docker or the image;
EXECGYM_REQUIRE_DOCKER=1 makes that a failure). Here a local grader is shared explicitly; by default the grader
follows ``executor`` (see tests/envs/cad/test_cad_datasets.py and tests/security/test_cad_protocol.py)."""

from __future__ import annotations

import pytest

from tests.executor.conftest import require_docker

from .conftest import needs_cadquery

pytestmark = [pytest.mark.docker, needs_cadquery]


@pytest.fixture(scope="module")
def docker_cad_env(cad_env):
    require_docker("cad")
    from execgym.envs.cad.env import CADModelEnv

    env = CADModelEnv(dataset="bundled", executor="docker", grader=cad_env.grader, run_timeout_s=4.0, memory_mb=768)
    yield env
    env.close()


def test_docker_episode_and_limits(docker_cad_env) -> None:
    env = docker_cad_env
    env.reset(options={"task_id": "flange-medium-1001"})
    code = env.task.data["code"]
    obs, _, _, _, _ = env.step({"name": "run_cadquery", "arguments": {"code": code}})
    assert obs.startswith("OK")
    obs, _, _, _, _ = env.step({"name": "run_cadquery", "arguments": {"code": "while True:\n    pass\n"}})
    assert "ran out of time" in obs
    obs, _, _, _, _ = env.step({"name": "run_cadquery", "arguments": {"code": "b = bytearray(6 * 1024**3)\n"}})
    assert "ran out of memory" in obs
    _, reward, terminated, _, info = env.step({"name": "submit", "arguments": {"code": code}})
    assert terminated and reward == 1.0 and info["reward_components"]["iou"] == pytest.approx(1.0)
