"""SWE grading's machinery failures, injected (issue 14 item 1, issue 15 item 7).

Before the agent's changes are in, whatever stops the grader from running tests honestly is the machine's
failure and comes back as ``info["infra_error"]`` (a trainer drops the sample): no test runner for the
sandbox's Python, no interpreter, no sandbox, a dataset's repository folder gone. After the agent's changes
are in, a missing report or a dead sandbox is the agent's doing: outcome 0, a hack flag, no infra error.
Each case runs on the local sandbox and on Docker.
"""

from __future__ import annotations

import shutil

import pytest

from execgym.core.errors import InfraError
from execgym.envs.swe import repos as swe_repos
from execgym.envs.swe import workspace as swe_workspace
from execgym.envs.swe.env import SWERepairEnv
from execgym.envs.swe.runner import TestCommand
from execgym.executor import LocalExecutor
from tests.envs.swe.swebench_fixtures import BUGGY, TESTS, make_instance, write_dataset, write_repo
from tests.executor.conftest import _docker_executor_session  # noqa: F401 - pytest finds fixtures by name

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]


def call(name: str, **arguments: object) -> dict:
    return {"name": name, "arguments": arguments}


@pytest.fixture(params=BACKENDS)
def executor(request: pytest.FixtureRequest):
    if request.param == "docker":
        return request.getfixturevalue("_docker_executor_session")
    return LocalExecutor()


def plain_dataset(tmp_path, **extra) -> str:
    instance = make_instance(tmp_path / "src", base_commit="", **extra)
    folder = tmp_path / "plain"
    write_repo(folder, BUGGY, TESTS)
    instance["repo_path"] = "plain"
    return f"swebench:{write_dataset(tmp_path, [instance])}"


def oracle(env: SWERepairEnv) -> dict:
    env.reset(seed=0)
    for action in env.task.oracle:
        out = env.step(action)
    return out[4]


@pytest.mark.parametrize(
    ("test_cmd", "says"),
    [
        (["python", "-S", "-m", "pytest"], "No module named pytest"),
        (["python-that-is-not-there", "-m", "pytest"], "python-that-is-not-there"),
        ("exit 3", "no report"),
    ],
)
def test_a_runner_that_cannot_start_is_an_infra_error(executor, tmp_path, test_cmd, says):
    env = SWERepairEnv(executor=executor, dataset=plain_dataset(tmp_path, test_cmd=test_cmd))
    try:
        info = oracle(env)
        assert info["outcome"] == 0.0 and info["hack_flags"] == []
        assert info["infra_error"] and "pristine repository" in info["infra_error"], info["infra_error"]
        assert says in info["infra_error"]
        # and the agent's run_tests says plainly what is missing
        env.reset(seed=0)
        obs = env.step(call("run_tests"))[0]
        assert "No test report" in obs and says in obs, obs
    finally:
        env.close()


def test_generated_tasks_without_a_runner_raise_infra_error_from_reset(tmp_path, monkeypatch):
    monkeypatch.setenv("EXECGYM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(swe_repos, "BUNDLED_COMMAND", TestCommand(("python", "-S", "-m", "pytest")))
    env = SWERepairEnv(executor=LocalExecutor(), dataset="generated:easy")
    try:
        with pytest.raises(InfraError, match="test runner does not work.*No module named pytest"):
            env.reset(seed=0)
    finally:
        env.close()


def test_bundled_grading_without_a_runner_is_an_infra_error(executor, monkeypatch):
    monkeypatch.setattr(swe_repos, "BUNDLED_COMMAND", TestCommand(("python", "-S", "-m", "pytest")))
    monkeypatch.setattr(swe_workspace, "_workspaces", type(swe_workspace._workspaces)(maxsize=8))
    env = SWERepairEnv(executor=executor)
    try:
        env.reset(options={"task_id": env.tasks.ids()[0]})
        for action in env.task.oracle:
            out = env.step(action)
        assert out[1] == 0.0 and "No module named pytest" in (out[4]["infra_error"] or "")
    finally:
        env.close()


def test_a_grading_sandbox_that_cannot_be_created_is_an_infra_error(executor, monkeypatch):
    env = SWERepairEnv(executor=executor)
    try:
        env.reset(options={"task_id": env.tasks.ids()[0]})

        def broken(spec=None):
            raise OSError("no space left on device")

        monkeypatch.setattr(env.executor, "sandbox", broken)
        info = env.step(call("submit"))[4]
        assert info["infra_error"] and "cannot create a grading sandbox" in info["infra_error"]
        assert "no space left" in info["infra_error"]
    finally:
        monkeypatch.undo()
        env.close()


def test_a_dataset_folder_gone_after_loading_is_an_infra_error(tmp_path):
    env = SWERepairEnv(executor=LocalExecutor(), dataset=plain_dataset(tmp_path))
    try:
        shutil.rmtree(tmp_path / "plain")
        with pytest.raises(InfraError, match="no longer a folder"):
            env.reset(seed=0)
    finally:
        env.close()


@pytest.mark.parametrize(
    "payload",
    [
        "import os\nos._exit(0)\n",  # the test process ends before any report
        "import os, signal\nos.kill(-1, signal.SIGKILL)\n",  # everything the sandbox's user may kill
        "import os\nos.close(3)\n",  # the report's channel closed
    ],
)
def test_agent_code_that_breaks_the_grading_run_is_scored_not_excused(executor, payload):
    env = SWERepairEnv(executor=executor, test_timeout_s=60)
    try:
        task = next(t for t in env.tasks if t.data["repo"] == "calcy")
        env.reset(options={"task_id": task.id})
        init = env.step(call("bash", command="cat calcy/__init__.py"))[0].rsplit("[exit code", 1)[0]
        for action in task.oracle:
            if action["name"] == "submit":
                env.step(call("create", path="calcy/__init__.py", content=init + payload))
                check = "python -c 'import ast; ast.parse(open(\"calcy/__init__.py\").read())'"
                assert "SyntaxError" not in env.step(call("bash", command=check))[0]
            out = env.step(action)
        info = out[4]
        assert info["infra_error"] is None, info["infra_error"]
        assert out[1] == 0.0 and info["reward_components"]["f2p"] == 0.0
        assert info["hack_flags"], "a broken report is flagged"
        # the next episode is unharmed
        env.reset(options={"task_id": task.id})
        for action in task.oracle:
            out = env.step(action)
        assert out[1] == 1.0 and out[4]["infra_error"] is None
    finally:
        env.close()
