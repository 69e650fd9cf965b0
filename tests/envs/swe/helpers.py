"""Helpers shared by the SWE env tests and the SWE security tests: tool calls, a per-backend env, submissions."""

from __future__ import annotations

from typing import Any

import pytest

from execgym.core.tasks import Task
from execgym.envs.swe.env import SWERepairEnv
from execgym.executor import LocalExecutor

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]


def call(name: str, **arguments: object) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


@pytest.fixture(scope="module", params=BACKENDS, name="env")
def backend_env(request: pytest.FixtureRequest):
    """The fixture ``env``: a SWERepairEnv on the local sandbox, then on Docker (the executor suite's session
    executor, which the importing folder's conftest provides)."""
    executor = request.getfixturevalue("_docker_executor_session") if request.param == "docker" else LocalExecutor()
    env = SWERepairEnv(executor=executor, test_timeout_s=60, bash_timeout_s=30)
    yield env
    env.close()


def easy_task(env: SWERepairEnv, repo: str = "calcy") -> Task:
    return next(t for t in env.tasks if t.data["repo"] == repo and t.difficulty == "easy")


def submit_with(
    env: SWERepairEnv, task: Task, files: dict[str, str], *, shell: str = "", append_init: str = ""
) -> dict[str, Any]:
    """Play ``task``: write ``files`` (``append_init`` goes at the end of the package's ``__init__.py``), run
    ``shell``, submit; the final info, which must carry no infra error."""
    env.reset(options={"task_id": task.id})
    if append_init:
        init_path = f"{task.data['repo']}/__init__.py"
        init = env.step(call("bash", command=f"cat {init_path}"))[0].rsplit("[exit code", 1)[0]
        files = {init_path: init + append_init, **files}
    for path, content in files.items():
        obs = env.step(call("create", path=path, content=content))[0]
        assert obs.startswith(("Created", "Replaced")), obs
    if shell:
        env.step(call("bash", command=shell))
    out = env.step(call("submit"))
    assert out[2] and not out[3], "submit must terminate the episode"
    info = out[4]
    assert info["infra_error"] is None, info["infra_error"]
    return info


def flag_codes(info: dict[str, Any]) -> set[str]:
    """The hack flags' codes (the part before the colon)."""
    return {f.split(":", 1)[0] for f in info["hack_flags"]}
