"""CAD envs of every process on the machine share one CAD host daemon: one fork server, one grader.

Real CadQuery workers in real local sandboxes, real subprocesses (gymnasium's AsyncVectorEnv, forked children).
The envs here ask for ``memory_mb=640``, which no other test uses, so they get a daemon of their own.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from execgym.rollout.bench import process_tree
from tests.envs.cad.conftest import needs_cadquery
from tests.envs.cad.test_cad_shared import BOX, TASK, kernel_mode, run

pytestmark = needs_cadquery
MEMORY_MB = 640


def make_env(**kwargs):
    from execgym.envs.cad.env import CADModelEnv

    return CADModelEnv(dataset="bundled", executor="local", run_timeout_s=8.0, memory_mb=MEMORY_MB, **kwargs)


def probe():
    """A connection of the test's own to the daemon of these settings (it keeps the daemon up while held)."""
    from execgym.envs.cad.host import HostForkServer

    return HostForkServer.acquire("local", image="cad", memory_bytes=MEMORY_MB * 1024 * 1024)


def workers(server) -> int:
    return int(server.ping()["workers"])


def wait_until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def kernel_imports_below(pid: int, but: int | None = None) -> dict[str, int]:
    """Kernel workers in ``pid``'s tree (less ``but``'s) that imported CadQuery, by mode."""
    counts: dict[str, int] = {}
    skip = set(process_tree(but)) if but is not None else set()
    for p in process_tree(pid):
        mode = kernel_mode(p) if p not in skip else None
        if mode is not None:
            counts[mode] = counts.get(mode, 0) + 1
    return counts


def test_envs_in_subprocesses_share_one_host_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    from gymnasium.vector import AsyncVectorEnv

    # One grader at most, so the count of CadQuery imports is exact (the pool's growth is tested below).
    monkeypatch.setenv("EXECGYM_CAD_GRADERS", "1")

    vec = AsyncVectorEnv([functools.partial(make_env)] * 3, shared_memory=False)
    server = probe()
    try:
        vec.reset(options={"task_id": TASK})
        obs, _, _, _, info = vec.step([{"name": "run_cadquery", "arguments": {"code": BOX}}] * 3)
        assert all(o.startswith("OK") for o in obs), obs
        assert workers(server) == 3  # three envs in three processes, one fork server
        daemon = server.client.daemon_pid
        assert daemon is not None and alive(daemon)
        assert kernel_imports_below(daemon) == {"forkserver": 1, "grader": 1}  # CadQuery imported twice in all
        for child in vec.processes:
            # The subprocess that started the daemon is its parent: the daemon's tree is left out.
            own = kernel_imports_below(child.pid, but=daemon)
            assert own == {}, f"a vector env's subprocess started workers of its own: {own}"
        # Graded by the shared grader: the task's own reference program scores full reward in each process.
        from execgym.envs.cad.tasks import bundled_tasks

        oracle = next(t.data["code"] for t in bundled_tasks() if t.id == TASK)
        _, reward, terminated, _, info = vec.step([{"name": "submit", "arguments": {"code": oracle}}] * 3)
        assert list(reward) == [1.0, 1.0, 1.0] and all(terminated), info
        from execgym.envs.cad.host import HostGrader

        grader = HostGrader("local", memory_bytes=MEMORY_MB * 1024 * 1024)  # the same daemon, as an env sees it
        assert grader.pool_status() == {"graders": 1, "max_graders": 1, "starting": False}
        grader.close()
    finally:
        vec.close()
    wait_until(lambda: workers(server) == 0, "closing the envs did not stop their forked workers")
    server.release()
    wait_until(lambda: not alive(daemon), "the daemon did not stop once no env held it")


def _hold_an_env(queue) -> None:
    env = make_env()
    env.reset(options={"task_id": TASK})
    obs, *_ = run(env, BOX)
    queue.put(obs[:2])
    time.sleep(600)  # killed by the test


def test_a_killed_process_loses_its_workers_and_others_go_on() -> None:
    env = make_env()
    server = probe()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_hold_an_env, args=(queue,))
    try:
        env.reset(options={"task_id": TASK})
        assert run(env, BOX)[0].startswith("OK")
        child.start()
        assert queue.get(timeout=300) == "OK"
        assert workers(server) == 2
        os.kill(child.pid, signal.SIGKILL)  # no close, no goodbye: the daemon sees its connections end
        child.join(60)
        wait_until(lambda: workers(server) == 1, "a killed process's forked worker outlived it")
        obs, _, _, _, info = run(env, BOX)  # this process's env is untouched
        assert obs.startswith("OK") and not info.get("infra_error"), obs
    finally:
        if child.is_alive():
            child.kill()
        env.close()
        server.release()


def test_a_killed_daemon_is_replaced_and_grading_goes_on() -> None:
    from execgym.envs.cad.tasks import bundled_tasks

    env = make_env()
    try:
        env.reset(options={"task_id": TASK})
        assert run(env, BOX)[0].startswith("OK")
        old = env.session.server.client.daemon_pid
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: not alive(old), "the daemon did not die")
        obs, _, _, _, info = run(env, BOX)  # its worker went with it: one retry on a worker of a new daemon
        assert obs.startswith("OK") and not info.get("infra_error"), obs
        new = env.session.server.client.daemon_pid
        assert new not in (None, old) and alive(new)
        oracle = next(t.data["code"] for t in bundled_tasks() if t.id == TASK)
        _, reward, terminated, _, info = env.step({"name": "submit", "arguments": {"code": oracle}})
        assert terminated and reward == 1.0 and not info.get("infra_error"), info  # the reference, registered again
    finally:
        env.close()


def test_a_killed_grading_worker_in_the_daemon_is_replaced_and_the_grade_is_right(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from execgym.envs.cad.tasks import bundled_tasks

    monkeypatch.setenv("EXECGYM_CAD_GRADERS", "1")
    server = probe()
    env = make_env()
    try:
        env.reset(options={"task_id": TASK})
        assert run(env, BOX)[0].startswith("OK")  # measured by the daemon's grader, which is up from now on
        server.client.connect()
        daemon = server.client.daemon_pid
        assert daemon is not None
        graders = [p for p in process_tree(daemon) if kernel_mode(p) == "grader"]
        assert len(graders) == 1, graders
        os.kill(graders[0], signal.SIGKILL)
        wait_until(lambda: not alive(graders[0]), "the grading worker did not die")
        oracle = next(t.data["code"] for t in bundled_tasks() if t.id == TASK)
        _, reward, terminated, _, info = env.step({"name": "submit", "arguments": {"code": oracle}})
        assert terminated and reward == 1.0 and not info.get("infra_error"), info.get("infra_error")
        assert [p for p in process_tree(daemon) if kernel_mode(p) == "grader"] != graders  # a fresh one graded
    finally:
        env.close()
        server.release()


def test_process_scope_keeps_workers_in_the_process() -> None:
    from execgym.envs.cad.grading import SharedGrader, shared_servers

    env = make_env(share_workers="process")
    try:
        env.reset(options={"task_id": TASK})
        assert run(env, BOX)[0].startswith("OK")
        assert isinstance(env.grader, SharedGrader) and env.session.share == "process"
        assert any(key.startswith("forkserver:local") for key in shared_servers()), shared_servers()
    finally:
        env.close()


def test_envs_with_sandboxed_agents_start_no_fork_server_in_the_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    from execgym.envs.cad.host import HostClient

    monkeypatch.setenv("EXECGYM_CAD_GRADERS", "1")
    env = make_env(fork_agent_workers=False)
    try:
        env.reset(options={"task_id": TASK})
        obs, *_ = run(env, BOX)
        assert obs.startswith("OK"), obs
        client = HostClient("local", "cad", MEMORY_MB * 1024 * 1024)
        client.connect()
        daemon = client.daemon_pid
        assert daemon is not None
        # The grader only: an idle fork server would cost a CadQuery import nobody uses.
        assert kernel_imports_below(daemon) == {"grader": 1}
        client.close()
    finally:
        env.close()


def test_a_bad_share_workers_value_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="share_workers must be"):
        make_env(share_workers="machine")


class _FakeGrader:
    """Stands in for a SharedGrader in the pool's own logic: records what it was asked, can be held busy or slow
    to start."""

    def __init__(self, index: int, gate: threading.Event, started: threading.Event) -> None:
        self.index, self.gate, self.started, self._registrations, self.calls = index, gate, started, {}, []

    def launch(self) -> None:
        self.started.wait(10)  # importing CadQuery, until the test lets it finish

    def wait_ready(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def register(self, task_id: str, **options: object) -> str:
        from execgym.envs.cad.grading import CADGrader

        key = CADGrader.reference_key(task_id, options.get("code"), options.get("mesh_path"))
        self._registrations[key] = options
        return key

    def summary(self, key: str) -> dict[str, object]:
        self.calls.append((key, "summary"))
        return {"volume": 8.0, "grader": self.index}

    def evaluate(self, key: str, code: str) -> tuple[int, str]:
        self.calls.append((key, code))
        self.gate.wait(10)
        return self.index, code


def test_grader_pool_grows_in_the_background_only_while_every_grader_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    from execgym.envs.cad.host import _GraderPool

    monkeypatch.setenv("EXECGYM_CAD_GRADERS", "2")
    gate, started = threading.Event(), threading.Event()
    gate.set()
    made: list[_FakeGrader] = []
    pool = _GraderPool(lambda i: made.append(_FakeGrader(i, gate, started)) or made[-1])
    key = pool.call("register", ("box",), {"tolerance": 0.1})
    assert pool.call("evaluate", (key, "a"), {}) == (0, "a")
    assert pool.call("evaluate", (key, "b"), {}) == (0, "b") and len(made) == 1  # never busy: no second grader
    results: dict[str, object] = {}

    def evaluate(code: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.update({code: pool.call("evaluate", (key, code), {})}))
        thread.start()
        return thread

    gate.clear()  # calls now block inside their grader until the gate opens
    x = evaluate("x")
    wait_until(lambda: len(made[0].calls) == 3, "the first grader did not take the call")
    y = evaluate("y")  # every grader busy: a second one starts in the background
    wait_until(lambda: len(made) == 2, "the pool did not start a second grader")
    assert pool.status() == {"graders": 1, "max_graders": 2, "starting": True}
    gate.set()
    x.join(10), y.join(10)
    # y was served by the first grader as soon as it was free, not held up by the second one's start.
    assert results["y"] == (0, "y") and len(pool.graders) == 1
    started.set()
    wait_until(lambda: len(pool.graders) == 2, "the started grader did not join the pool")
    assert pool.status() == {"graders": 2, "max_graders": 2, "starting": False}
    # Both free: the call goes to the grader that holds the reference, not to the new one (which would build it).
    assert pool.call("evaluate", (key, "s"), {}) == (0, "s") and made[1]._registrations == {}
    gate.clear()
    threads = [evaluate(c) for c in "pqr"]
    wait_until(lambda: len(made[0].calls) + len(made[1].calls) == 7, "the two graders did not both take a call")
    assert len(made) == 2  # at the cap: the third call waits for a free grader, no third one starts
    assert made[1]._registrations == {key: {"tolerance": 0.1}}  # the reference re-registered lazily
    gate.set()
    for t in threads:
        t.join(10)
    assert {results[c][1] for c in "pqr"} == {"p", "q", "r"} and len(made) == 2


def test_a_reset_never_waits_for_another_envs_grading_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a reset asks the pool (ready?, register a known reference, its summary) is answered while every grader
    is busy grading for other envs."""
    from execgym.envs.cad.host import _GraderPool

    monkeypatch.setenv("EXECGYM_CAD_GRADERS", "1")
    gate, started = threading.Event(), threading.Event()
    gate.set(), started.set()
    made: list[_FakeGrader] = []
    pool = _GraderPool(lambda i: made.append(_FakeGrader(i, gate, started)) or made[-1])
    pool.launch(), pool.wait_ready()
    key = pool.call("register", ("box",), {"code": "box()"})
    assert pool.call("summary", (key,), {}) == {"volume": 8.0, "grader": 0}
    gate.clear()
    busy = threading.Thread(target=pool.call, args=("evaluate", (key, "x"), {}))
    busy.start()
    wait_until(lambda: (key, "x") in made[0].calls, "the grader did not take the call")
    # The only grader is held: each of these would block until the gate opens if it needed a grader.
    pool.launch(), pool.wait_ready()
    assert pool.call("register", ("box",), {"code": "box()"}) == key
    summary = pool.call("summary", (key,), {})
    assert summary == {"volume": 8.0, "grader": 0} and busy.is_alive()
    summary["volume"] = -1.0  # a caller's copy: the pool's stays as built
    assert pool.call("summary", (key,), {})["volume"] == 8.0
    assert [c for c in made[0].calls if c[1] == "summary"] == [(key, "summary")]  # built once, then remembered
    gate.set()
    busy.join(10)
    assert pool.call("register", ("box",), {"code": "other()"}) != key  # another reference program: registered


def test_one_interpreter_under_two_names_shares_a_daemon_two_virtualenvs_do_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from execgym.envs.cad.host import host_name

    real = tmp_path / "python3.11"
    real.write_text("")
    (tmp_path / "python").symlink_to(real.name)
    names = {}
    for exe, prefix in (("python3.11", "/base"), ("python", "/base"), ("python", "/a-venv")):
        monkeypatch.setattr(sys, "executable", str(tmp_path / exe))
        monkeypatch.setattr(sys, "prefix", prefix)
        names[exe, prefix] = host_name("local", "cad", 1 << 30)
    assert names["python3.11", "/base"] == names["python", "/base"] != names["python", "/a-venv"]


def test_a_scaling_row_waits_for_the_previous_rows_host_daemon_to_exit() -> None:
    from execgym.envs.cad.env import CADModelEnv
    from execgym.envs.cad.host import host_daemons
    from execgym.rollout.bench import _await_host_exit

    before = set(host_daemons())  # other tests' daemons may still be held: this one's settings are its own
    env = CADModelEnv(dataset="bundled", executor="local", run_timeout_s=8.0, memory_mb=MEMORY_MB + 1)
    try:
        env.reset(options={"task_id": TASK})
        obs, *_ = run(env, BOX)
        assert obs.startswith("OK"), obs
        daemons = sorted(set(host_daemons()) - before)
        assert len(daemons) == 1
        assert not _await_host_exit(timeout_s=0.3, pids=daemons)  # an env still holds it: not gone
    finally:
        env.close()
    assert _await_host_exit(timeout_s=60.0, pids=daemons)
    assert not alive(daemons[0]) and daemons[0] not in host_daemons()
