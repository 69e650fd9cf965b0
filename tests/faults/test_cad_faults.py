"""CAD faults: the machinery's failures are ``infra_error`` (or recovered from), the agent's are its own 0.

Injected for real: CadQuery workers SIGKILLed inside their sandboxes, a grader whose fresh sandboxes cannot start
a worker, a program that kills its worker after filling the sandbox's disk. Local sandbox and (marked) Docker.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from tests.executor.conftest import require_docker

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cadquery") is None, reason="CadQuery is not installed")

TASK = "plate_holes-medium-1001"
BOX = "import cadquery as cq\nresult = cq.Workplane().box(1, 1, 1)\n"


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def env(request) -> Iterator:
    from execgym.envs.cad.env import CADModelEnv

    if request.param == "docker":
        require_docker("cad")
    # In-process workers (share_workers="process"), so that faults can be injected through the env's own objects;
    # the host daemon's faults (a killed daemon, client or grading worker) are in tests/envs/cad/test_cad_host.py.
    e = CADModelEnv(dataset="bundled", executor=request.param, run_timeout_s=8.0, memory_mb=768,
                    share_workers="process")
    yield e
    e.close()


def kill_worker(process: Any) -> None:
    """SIGKILL a kernel worker from inside its own sandbox (an env worker forked by the shared fork server:
    from inside the server's sandbox, by the pid that sandbox sees)."""
    pid = process.sandbox_pid()
    sandbox = process.server.process.sandbox if hasattr(process, "server") else process.sandbox
    result = sandbox.run(["python", "-c", f"import os; os.kill({pid}, 9)"], timeout=30)
    assert result.exit_code == 0, result


def submit(env, code: str):
    return env.step({"name": "submit", "arguments": {"code": code}})


def run(env, code: str):
    return env.step({"name": "run_cadquery", "arguments": {"code": code}})


def test_a_killed_grading_worker_is_replaced_and_the_grade_is_right(env) -> None:
    env.reset(options={"task_id": TASK})
    starts = env.grader.process.starts
    kill_worker(env.grader.process)
    obs, reward, terminated, truncated, info = submit(env, env.task.data["code"])
    assert terminated and reward == 1.0 and not info.get("infra_error"), (obs, info.get("infra_error"))
    assert env.grader.process.starts > starts  # a fresh worker (with the reference rebuilt) graded it


def test_a_killed_grading_worker_during_a_run_is_not_the_agents_error(env) -> None:
    env.reset(options={"task_id": TASK})
    kill_worker(env.grader.process)
    obs, _, _, _, info = run(env, BOX)  # the run's measurements come from the grader
    assert obs.startswith("OK") and info["reward_components"]["executed"] == 1.0 and not info.get("infra_error")


def test_an_agent_worker_killed_between_steps_is_replaced_transparently(env) -> None:
    env.reset(options={"task_id": TASK})
    run(env, BOX)
    kill_worker(env.session)
    obs, _, _, _, info = run(env, BOX)
    assert obs.startswith("OK"), obs  # no agent code ran when it died: not reported as the program's failure
    assert not info.get("infra_error")


class BrokenSandboxes:
    """An executor whose sandboxes start a worker that exits at once (the machinery is broken)."""

    name = "local"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def sandbox(self, spec: Any = None) -> Any:
        sandbox = self.inner.sandbox(spec)
        real_session = sandbox.session

        def session(cmd: Any, **kwargs: Any) -> Any:
            return real_session(["python", "-c", "raise SystemExit(3)"], **kwargs)

        sandbox.session = session
        return sandbox


def test_a_grader_that_cannot_be_restarted_is_infra_error_not_a_zero(env) -> None:
    env.reset(options={"task_id": TASK})
    process = env.grader.process
    real = process.executor
    try:
        process.executor = BrokenSandboxes(real)
        process.sandbox.close()  # the grader's whole sandbox is gone, and no new one can start a worker
        _, reward, terminated, truncated, info = submit(env, env.task.data["code"])
        assert info["infra_error"] and "CAD grader" in info["infra_error"], info.get("infra_error")
        assert truncated and not terminated
    finally:
        process.close()
        process.executor = real
    env.reset(options={"task_id": TASK})  # and the env recovers once the machinery does
    _, reward, terminated, _, info = submit(env, env.task.data["code"])
    assert terminated and reward == 1.0 and not info.get("infra_error")


def test_a_policy_cannot_trigger_infra_error(env) -> None:
    """Fill every writable place, then kill the worker: the program's error, and the next run works."""
    env.reset(options={"task_id": TASK})
    fill_and_kill = (
        "import os, signal\n"
        "for d in ('.', os.environ.get('TMPDIR') or '/tmp', '/tmp', '/dev/shm'):\n"
        "    try:\n"
        "        with open(os.path.join(d, 'fill'), 'wb') as f:\n"
        "            for _ in range(4096):\n"
        "                f.write(b'x' * (1 << 20))\n"
        "    except OSError:\n"
        "        pass\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n"
    )
    obs, _, _, _, info = run(env, fill_and_kill)
    assert obs.startswith("ERROR") and not info.get("infra_error"), obs
    obs, _, _, _, info = run(env, BOX)
    assert obs.startswith("OK") and not info.get("infra_error"), obs
    _, reward, terminated, _, info = submit(env, env.task.data["code"])
    assert terminated and reward == 1.0 and not info.get("infra_error")
