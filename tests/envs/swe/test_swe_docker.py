"""SWERepairEnv with the Docker executor (skipped without Docker; EXECGYM_REQUIRE_DOCKER=1 makes it fail)."""

import io
import tarfile

import pytest

from execgym.envs.swe.env import SWERepairEnv

from .helpers import call
from .swebench_fixtures import BUGGY, PYPROJECT, TESTS, make_instance, write_dataset

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_env(docker_executor):
    env = SWERepairEnv(executor=docker_executor)
    yield env
    env.close()


def test_oracle_in_docker(docker_env):
    task = next(t for t in docker_env.tasks if t.data["repo"] == "calcy" and t.difficulty == "medium")
    obs, info = docker_env.reset(options={"task_id": task.id})
    assert docker_env.step(call("bash", command="pwd"))[0].startswith("/work\n")
    assert "FAILED" in docker_env.step(call("run_tests"))[0]
    for action in task.oracle:
        _, reward, terminated, _, info = docker_env.step(action)
    assert reward == 1.0 and terminated and info["hack_flags"] == [] and info["infra_error"] is None


def test_deleted_tests_in_docker(docker_env):
    task = next(t for t in docker_env.tasks if t.data["repo"] == "spans")
    docker_env.reset(options={"task_id": task.id})
    docker_env.step(call("bash", command="rm -r tests"))
    _, reward, _, _, info = docker_env.step(call("submit"))
    assert reward == 0.0 and any(f.startswith("deleted_test: tests/") for f in info["hack_flags"])


@pytest.fixture(scope="module")
def repo_image(docker_executor):
    """An image that holds the instance's repository (at its base state) in /testbed, as SWE-bench ships."""
    client = docker_executor.client
    files = {
        "Dockerfile": "FROM execgym/python:0.1\nCOPY --chown=0:0 testbed /testbed\n",
        "testbed/pyproject.toml": PYPROJECT,
        "testbed/mini/__init__.py": "",
        "testbed/mini/stats.py": BUGGY,
        "testbed/tests/test_stats.py": TESTS,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    tag = "execgym-test/swe-mini:1"
    client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    yield tag
    client.images.remove(tag, force=True)


def test_image_task(docker_executor, repo_image, tmp_path):
    instance = make_instance(tmp_path, image=repo_image, repo_dir="/testbed")
    del instance["repo_path"]
    env = SWERepairEnv(executor=docker_executor, dataset=f"swebench:{write_dataset(tmp_path, [instance])}")
    env.reset(seed=0)
    assert env.step(call("bash", command="cat mini/stats.py"))[0] == BUGGY + "[exit code 0]"
    _, reward, _, _, info = env.step(call("submit"))
    assert reward == 0.0 and [u["extra"]["status"] for u in info["units"]] == ["FAILED", "PASSED"]
    env.reset(seed=0)
    for action in env.task.oracle:
        _, reward, _, _, info = env.step(action)
    env.close()
    assert reward == 1.0 and info["hack_flags"] == []
