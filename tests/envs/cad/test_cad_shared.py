"""CAD envs of one process share one agent fork server and one grader: one CadQuery import per side, not per env.

Real CadQuery workers in real local sandboxes. The envs here use an executor object of their own, so they hold
servers of their own (not the package fixture's), and the last env's close must stop them.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from pathlib import Path

import pytest

from execgym.rollout.bench import process_tree
from tests.envs.cad.conftest import needs_cadquery

pytestmark = needs_cadquery

TASK = "plate_holes-medium-1001"
BOX = "import cadquery as cq\nresult = cq.Workplane().box(1, 1, 1)\n"
KERNEL_MARK = "def kill_strays("  # a line of the kernel worker's source, which is its command line (python -c)


def run(env, code: str):
    return env.step({"name": "run_cadquery", "arguments": {"code": code}})


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def kernel_mode(pid: int) -> str | None:
    """The mode of a kernel worker that imported CadQuery itself (``forkserver``, ``grader``...), else None.

    A fork has its parent's command line; a process that started the kernel (and so imported CadQuery) is one
    whose parent does not run the kernel.
    """
    args = _argv(pid)
    if any(KERNEL_MARK in a for a in args) and not any(KERNEL_MARK in a for a in _argv(_ppid(pid))):
        return args[args.index(next(a for a in args if KERNEL_MARK in a)) + 1]
    return None


def kernel_imports(before: dict[str, int] | None = None) -> dict[str, int]:
    """Kernel workers below this test process that imported CadQuery themselves, by mode (beyond ``before``:
    other tests' envs, such as the package fixture's, hold servers of their own executor)."""

    from execgym.envs.cad.host import host_daemons

    # A CAD host daemon that an earlier test started is this process's child while it lingers, and may exit at
    # any moment: its workers are not this test's.
    daemons = {p for d in host_daemons() for p in process_tree(d)}
    counts: dict[str, int] = {}
    for pid in process_tree(os.getpid())[1:]:
        mode = kernel_mode(pid) if pid not in daemons else None
        if mode is not None:
            counts[mode] = counts.get(mode, 0) + 1
    before = before or {}
    return {mode: n - before.get(mode, 0) for mode, n in counts.items() if n != before.get(mode, 0)}


@pytest.fixture
def executor() -> Iterator:
    from execgym.executor import LocalExecutor

    ex = LocalExecutor()
    yield ex
    ex.close()


def make_env(executor):
    from execgym.envs.cad.env import CADModelEnv

    return CADModelEnv(dataset="bundled", executor=executor, run_timeout_s=8.0, memory_mb=768, fork_agent_workers=True)


def test_envs_in_one_process_share_one_fork_server_and_one_grader(executor) -> None:
    from execgym.envs.cad.grading import shared_servers

    before = kernel_imports()
    envs = [make_env(executor) for _ in range(3)]
    try:
        for env in envs:
            env.reset(options={"task_id": TASK})
        assert len({id(env.session.server) for env in envs}) == 1
        assert len({id(env.grader) for env in envs}) == 1
        imports = kernel_imports(before)
        assert imports.get("forkserver") == 1 and imports.get("grader") == 1, imports
        assert "agent" not in imports, imports  # no env worker imported CadQuery: they are forks
        server = envs[0].session.server
        ping = server.ping()
        assert ping["workers"] == 3 and ping["spawned"] == 3, ping
        held = [n for k, n in shared_servers().items() if k.endswith(str(id(executor)) + ")")]
        assert held == [3, 3], shared_servers()
        for env in envs:
            obs, _, _, _, info = run(env, BOX)
            assert obs.startswith("OK") and "volume: 1 mm^3" in obs and not info.get("infra_error"), obs
            assert env.session.info["hardening"]["pid_namespace"] is True
    finally:
        for env in envs:
            env.close()
    assert kernel_imports(before) == {}  # the last env's close stopped both servers
    assert not any(k.endswith(str(id(executor)) + ")") for k in shared_servers()), shared_servers()


def test_closing_one_env_leaves_the_others_working(executor) -> None:
    before = kernel_imports()
    first, second = make_env(executor), make_env(executor)
    try:
        first.reset(options={"task_id": TASK})
        second.reset(options={"task_id": TASK})
        server = second.session.server
        first.close()
        assert server.ping()["workers"] == 1  # the closed env's worker is gone, the other's is not
        obs, _, _, _, info = run(second, BOX)
        assert obs.startswith("OK") and not info.get("infra_error"), obs
        submit = {"name": "submit", "arguments": {"code": second.task.data["code"]}}
        _, reward, terminated, _, info = second.step(submit)
        assert terminated and reward == 1.0 and not info.get("infra_error")
        assert kernel_imports(before) == {"forkserver": 1, "grader": 1}
    finally:
        first.close()
        second.close()


def test_a_killed_fork_server_is_replaced_and_the_envs_go_on(executor) -> None:
    first, second = make_env(executor), make_env(executor)
    try:
        for env in (first, second):
            env.reset(options={"task_id": TASK})
            assert run(env, BOX)[0].startswith("OK")
        server = first.session.server
        starts = server.process.starts
        pid = server.ping()["pid"]
        killed = server.process.sandbox.run(["python", "-c", f"import os; os.kill({pid}, 9)"], timeout=30)
        assert killed.exit_code == 0, killed
        for env in (first, second):  # their workers die with it (the kernel's parent-death signal) ...
            assert select.select([env.session._fds[1]], [], [], 60)[0], "the env worker outlived its fork server"
            assert os.read(env.session._fds[1], 1) == b""
        for env in (first, second):  # ... between steps: replaced silently
            obs, _, _, _, info = run(env, BOX)
            assert obs.startswith("OK") and not info.get("infra_error"), (obs, info.get("infra_error"))
        assert server.process.starts > starts
        assert server.ping()["workers"] == 2
    finally:
        first.close()
        second.close()


class BrokenSandboxes:
    """An executor whose sandboxes start a worker that exits at once (the machinery is broken)."""

    name = "local"

    def __init__(self, inner) -> None:
        self.inner = inner

    def sandbox(self, spec=None):
        sandbox = self.inner.sandbox(spec)
        real_session = sandbox.session

        def session(cmd, **kwargs):
            return real_session(["python", "-c", "raise SystemExit(3)"], **kwargs)

        sandbox.session = session
        return sandbox


def test_a_fork_server_that_cannot_be_replaced_is_infra_error(executor) -> None:
    env = make_env(executor)
    try:
        env.reset(options={"task_id": TASK})
        server = env.session.server
        real = server.process.executor
        try:
            server.process.executor = BrokenSandboxes(real)
            server.owner.call(server.process.close)  # the server's sandbox (and the env's worker) are gone
            _, _, terminated, truncated, info = run(env, BOX)
            assert info["infra_error"] and "CAD forkserver" in info["infra_error"], info.get("infra_error")
            assert truncated and not terminated
        finally:
            server.owner.call(server.process.close)
            server.process.executor = real
        env.reset(options={"task_id": TASK})  # and the env recovers once the machinery does
        obs, _, _, _, info = run(env, BOX)
        assert obs.startswith("OK") and not info.get("infra_error"), obs
    finally:
        env.close()


def test_share_workers_false_keeps_workers_of_the_envs_own(executor) -> None:
    from execgym.envs.cad.env import CADModelEnv

    before = kernel_imports()
    env = CADModelEnv(dataset="bundled", executor=executor, run_timeout_s=8.0, memory_mb=768, share_workers=False)
    try:
        env.reset(options={"task_id": TASK})
        assert kernel_imports(before) == {"agent": 1, "grader": 1}
        assert run(env, BOX)[0].startswith("OK")
    finally:
        env.close()
    assert kernel_imports(before) == {}


def test_forked_workers_are_the_default_each_with_limits_of_its_own(executor) -> None:
    from execgym.envs.cad.env import CADModelEnv
    from execgym.envs.cad.grading import ForkedAgent
    from execgym.executor.local.cgroup import memory_limit_scope

    envs = [CADModelEnv(dataset="bundled", executor=executor, run_timeout_s=8.0, memory_mb=768) for _ in range(2)]
    dirs = []
    try:
        for env in envs:
            env.reset(options={"task_id": TASK})
            assert isinstance(env.session, ForkedAgent), type(env.session)
            assert run(env, BOX)[0].startswith("OK")
        assert envs[0].session.server is envs[1].session.server
        if memory_limit_scope() != "sandbox":  # no memory cgroups here: per-process limits, as for a sandbox
            assert all(env.session.memory_scope == "process" and env.session.cgroup is None for env in envs)
            return
        for env in envs:
            cgroup = env.session.cgroup
            assert env.session.memory_scope == "sandbox"
            limit = next(cgroup.memory_dir / n for n in ("memory.max", "memory.limit_in_bytes")
                         if (cgroup.memory_dir / n).exists())
            assert int(limit.read_text()) == env.session.sandbox_memory_bytes == 8 * 1024**3
            # The keeper, the worker and its spare fork are all in it, and nothing of another env's.
            assert len(cgroup.pids()) >= 3, cgroup.pids()
            dirs.append(cgroup.memory_dir)
        assert not set(envs[0].session.cgroup.pids()) & set(envs[1].session.cgroup.pids())
        for pid in envs[0].session.cgroup.pids():  # their memory is counted there, not in the server's sandbox
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            memory = [ln for ln in lines if ":memory:" in ln] or [ln for ln in lines if ln.startswith("0::")]
            assert memory[0].endswith("/" + envs[0].session.cgroup.memory_dir.name), lines
    finally:
        for env in envs:
            env.close()
    assert dirs and not any(d.exists() for d in dirs)  # closing an env removes its worker's cgroup


def test_a_forked_worker_that_exhausts_its_memory_is_killed_in_its_own_cgroup(executor) -> None:
    from execgym.envs.cad.grading import ForkedAgent
    from execgym.executor.local.cgroup import memory_limit_scope

    if memory_limit_scope() != "sandbox":
        pytest.skip("no memory cgroups for sandboxes on this machine (not root, or no memory controller)")
    small = ForkedAgent(executor, memory_bytes=2 * 1024**3, sandbox_memory_bytes=384 * 1024**2)
    other = ForkedAgent(executor, memory_bytes=2 * 1024**3)
    hog = "x = bytearray(1200 * 1024 * 1024)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\nresult = None\n"
    try:
        for agent in (small, other):
            assert agent.request({"op": "run", "code": BOX, "timeout": 30}, timeout=60)["ok"]
        cgroup = small.cgroup
        before = cgroup.oom_kills()
        try:
            reply = small.request({"op": "run", "code": hog, "timeout": 30}, timeout=60)
            assert not reply["ok"], reply
        except Exception as exc:  # the kernel may pick the worker itself: then it is replaced
            assert "CAD agent worker" in str(exc), exc
        assert (cgroup.oom_kills() or 0) > (before or 0)  # killed by its own cgroup's limit (RLIMIT_AS allowed it)
        assert other.request({"op": "run", "code": BOX, "timeout": 30}, timeout=60)["ok"]  # the others go on
        assert other.server.ping()["ok"]
        assert small.request({"op": "run", "code": BOX, "timeout": 30}, timeout=60)["ok"]  # and so does it
    finally:
        small.close()
        other.close()


def _child_env_step(queue) -> None:
    from execgym.envs.cad.env import CADModelEnv
    from execgym.envs.cad.grading import shared_servers

    inherited = shared_servers()
    env = CADModelEnv(dataset="bundled", executor="local", run_timeout_s=8.0, memory_mb=768, share_workers="process")
    try:
        env.reset(options={"task_id": TASK})
        obs, *_ = run(env, BOX)
        queue.put((inherited, obs[:2], env.session.server.ping()["workers"]))
    finally:
        env.close()


def test_a_forked_subprocess_starts_servers_of_its_own(executor) -> None:
    """A vector env's subprocess forked while this process holds servers must not talk to (or close) them."""
    import multiprocessing

    env = make_env(executor)
    try:
        env.reset(options={"task_id": TASK})
        assert run(env, BOX)[0].startswith("OK")
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child_env_step, args=(queue,))
        child.start()
        inherited, status, workers = queue.get(timeout=300)
        child.join(60)
        assert child.exitcode == 0
        assert inherited == {} and status == "OK" and workers == 1  # a server of its own, with one worker
        obs, _, _, _, info = run(env, BOX)  # the parent's server and worker are untouched
        assert obs.startswith("OK") and not info.get("infra_error"), obs
        assert env.session.server.ping()["workers"] == 1
    finally:
        env.close()
