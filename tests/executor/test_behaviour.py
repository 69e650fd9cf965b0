"""One behaviour suite, run against every backend (``executor`` fixture: local, docker)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from execgym.executor import Executor, Limits, MiB, PathError, Sandbox, SandboxSpec
from execgym.executor.local import LocalExecutor, LocalSandbox
from tests.executor.conftest import local_sandbox_pids

NO_PLUGINS = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # the host's plugins would slow every run
WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    state = {"n": 0}
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg.get("op")
        if op == "crash":
            os._exit(3)
        if op == "sleep":
            time.sleep(1000)
        if op == "spawn":
            import subprocess
            subprocess.Popen(["sleep", "1000"])
        if op == "big":
            print("x" * msg["n"], flush=True)
            continue
        if op == "noise":
            print("not json", flush=True)
            print("to stderr", file=sys.stderr, flush=True)
        state["n"] += 1
        print(json.dumps({"n": state["n"], "pid": os.getpid()}), flush=True)
    """
)


def _uses_bwrap(sb: Sandbox) -> bool:
    return isinstance(sb, LocalSandbox) and sb.executor.use_bwrap


def _sandbox_processes(sb: Sandbox) -> list[str]:
    """Processes belonging to the sandbox, other than its idle supervisor and this probe."""
    if isinstance(sb, LocalSandbox):
        found = []
        for pid in local_sandbox_pids(sb):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:80]
                found.append(f"{pid}: {cmdline!r}")
        return found
    probe = (
        "import os\n"
        "me = os.getpid(); out = []\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit() and int(p) not in (1, me, os.getppid()):\n"
        "        try: out.append(p + ': ' + open(f'/proc/{p}/cmdline','rb').read()[:80].decode(errors='replace'))\n"
        "        except OSError: pass\n"
        "print('\\n'.join(out))\n"
    )
    r = sb.run(["python", "-c", probe], timeout=20)
    assert r.exit_code == 0, r
    return [ln for ln in r.stdout.splitlines() if ln.strip()]


def test_run_basics(executor: Executor) -> None:
    spec = SandboxSpec(files={"pkg/mod.py": "X = 41\n", "main.py": "from pkg.mod import X\nprint(X + 1)\n"})
    with executor.sandbox(spec) as sb:
        r = sb.run(["python", "main.py"], timeout=20)
        assert (r.exit_code, r.stdout, r.timed_out, r.truncated, r.oom_killed) == (0, "42\n", False, False, False)
        assert sb.run("exit 7").exit_code == 7
        assert sb.run(["cat"], stdin="piped in").stdout == "piped in"
        assert sb.run("pwd", cwd="pkg").stdout.strip() == f"{sb.workdir}/pkg"
        assert sb.run("echo $FOO", env={"FOO": "bar"}).stdout == "bar\n"
        r = sb.run(["definitely-not-a-command"])
        assert r.exit_code == 127 and "definitely-not-a-command" in r.stderr
        sb.run("echo out; echo err >&2")
        r = sb.run("echo out; echo err >&2")
        assert (r.stdout, r.stderr) == ("out\n", "err\n")


def test_environment_is_scrubbed(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECGYM_TEST_SECRET", "hunter2")
    monkeypatch.setenv("EXECGYM_TEST_ALLOWED", "yes")
    spec = SandboxSpec(env={"SEED": "7"}, pass_env=("EXECGYM_TEST_ALLOWED",))
    with executor.sandbox(spec) as sb:
        env = dict(line.split("=", 1) for line in sb.run("env").stdout.splitlines() if "=" in line)
    assert "EXECGYM_TEST_SECRET" not in env
    assert env["EXECGYM_TEST_ALLOWED"] == "yes" and env["SEED"] == "7"
    assert env["HOME"] == sb.workdir
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


@pytest.mark.parametrize("cmd", [["python", "-c", "while True: pass"], ["sleep", "1000"]], ids=["busy", "sleep"])
def test_timeout_kills_the_command(executor: Executor, cmd: list[str]) -> None:
    """A command past its timeout is reported as timed out and is gone; how fast: benchmarks/executor.py."""
    with executor.sandbox() as sb:
        r = sb.run(cmd, timeout=1.5)
        assert r.timed_out and r.exit_code != 0 and not r.ok
        assert not r.oom_killed
        assert _sandbox_processes(sb) == []
        assert sb.run("echo next").stdout == "next\n"  # and the sandbox goes on working


def test_timeout_reaches_background_and_setsid_children(executor: Executor) -> None:
    code = (
        "import os, subprocess, time\n"
        "subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid(); time.sleep(1000)\n"
        "time.sleep(1000)\n"
    )
    with executor.sandbox() as sb:
        r = sb.run(["python", "-c", code], timeout=1.5)
        assert r.timed_out
        assert _sandbox_processes(sb) == []
        # Leftovers die with the command: the run ends when the shell does (not timed out, though the
        # background sleep held the output pipe), and nothing is left.
        r = sb.run("sleep 1000 & echo started", timeout=30)
        assert r.ok and not r.timed_out and r.stdout == "started\n"
        assert _sandbox_processes(sb) == []


def test_cpu_limit(executor: Executor) -> None:
    with executor.sandbox(SandboxSpec(limits=Limits(cpu_time_s=1))) as sb:
        r = sb.run(["python", "-c", "while True: pass"], timeout=30)
    assert not r.timed_out  # the CPU limit, not the 30 s wall-clock timeout, ended it
    assert r.exit_code in (-24, -9), r  # SIGXCPU at the soft limit, SIGKILL at the hard one
    assert not r.oom_killed


def test_memory_limit(executor: Executor) -> None:
    with executor.sandbox(SandboxSpec(limits=Limits(memory_bytes=256 * MiB))) as sb:
        r = sb.run(["python", "-c", "s = 'x' * (4 * 1024 ** 3); print(len(s))"], timeout=60)
        assert r.exit_code != 0 and not r.timed_out, r
        assert r.oom_killed, r
        assert r.stdout == ""
        ok = sb.run(["python", "-c", "s = 'x' * (16 * 1024 ** 2); print(len(s))"], timeout=60)
        assert ok.ok and not ok.oom_killed, ok


def test_fork_bomb_is_contained(executor: Executor) -> None:
    bomb = (
        "import os, time\n"
        "for _ in range(100000):\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        time.sleep(0.01)\n"
    )
    with executor.sandbox(SandboxSpec(limits=Limits(max_processes=32))) as sb:
        r = sb.run(["python", "-c", bomb], timeout=4)
        assert r.timed_out and not r.oom_killed, r
        assert _sandbox_processes(sb) == []
        assert sb.run("echo alive").stdout == "alive\n"
    assert subprocess.run(["true"], timeout=10).returncode == 0  # the host still spawns processes


def test_huge_output_is_truncated(executor: Executor) -> None:
    limits = Limits(output_bytes=64 * 1024)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with executor.sandbox(SandboxSpec(limits=limits)) as sb:
        code = (
            "import sys\nchunk = 'y' * (1 << 20)\n"
            "for _ in range(100): sys.stdout.write(chunk)\nprint('e', file=sys.stderr)"
        )
        r = sb.run(["python", "-c", code], timeout=60)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert r.exit_code == 0 and not r.timed_out, r.stderr[-500:]
    assert r.truncated
    assert r.stdout == "y" * limits.output_bytes
    assert r.stderr == "e\n"
    assert grown_kb < 50 * 1024, f"host grew by {grown_kb} KiB while draining 100 MB"


def test_no_network(executor: Executor) -> None:
    with executor.sandbox() as sb:
        if isinstance(sb, LocalSandbox) and not _uses_bwrap(sb):
            pytest.skip("the local backend cannot disable the network without bubblewrap")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        probe = (
            "import socket, sys\n"
            "for host, port in [('127.0.0.1', int(sys.argv[1])), ('1.1.1.1', 53)]:\n"
            "    s = socket.socket(); s.settimeout(3)\n"
            "    try:\n"
            "        s.connect((host, port)); print(host, 'CONNECTED')\n"
            "    except OSError as e:\n"
            "        print(host, 'failed', type(e).__name__)\n"
        )
        try:
            r = sb.run(["python", "-c", probe, str(port)], timeout=30)
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody reached the host's loopback listener
        finally:
            listener.close()
    assert r.exit_code == 0, r
    assert "CONNECTED" not in r.stdout
    assert r.stdout.count("failed") == 2, r.stdout


def test_network_can_be_allowed_for_local_loopback() -> None:
    ex = LocalExecutor()
    with ex.sandbox(SandboxSpec(limits=Limits(network=True))) as sb:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        try:
            code = "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 5); print('ok')"
            r = sb.run(["python", "-c", code, str(listener.getsockname()[1])], timeout=20)
        finally:
            listener.close()
    assert r.stdout == "ok\n", r


def test_file_confinement(executor: Executor, tmp_path: os.PathLike[str]) -> None:
    with executor.sandbox() as sb:
        for bad in ["../escape.txt", "/etc/passwd", "a/../../b", ""]:
            with pytest.raises(PathError):
                sb.write_files({bad: "x"})
            with pytest.raises(PathError):
                sb.read_file(bad)
        assert sb.run("ln -s /etc out && mkdir -p d && ln -s d inner && ln -s ../.. up && ln -s /etc/passwd pw").ok
        with pytest.raises(PathError):
            sb.write_files({"out/evil.txt": "x"})
        with pytest.raises(PathError):
            sb.read_file("out/passwd")
        with pytest.raises(PathError):
            sb.read_file("pw")
        with pytest.raises(PathError):
            sb.write_files({"up/x.txt": "x"})
        sb.write_files({"inner/ok.txt": "fine"})  # a symlink that stays inside is followed
        assert sb.read_file("d/ok.txt") == b"fine"
        assert sb.read_file("inner/ok.txt") == b"fine"
        with pytest.raises(FileNotFoundError):
            sb.read_file("missing.txt")
        sb.write_files({"bin.dat": bytes(range(256))})
        assert sb.read_file("bin.dat") == bytes(range(256))
        if not isinstance(sb, LocalSandbox) or _uses_bwrap(sb):  # plain local: the host is writable
            assert sb.run("touch /etc/execgym-should-fail").exit_code != 0  # host (or image) read-only


def test_local_sandbox_cannot_write_host_files(tmp_path: os.PathLike[str]) -> None:
    ex = LocalExecutor()
    if not ex.use_bwrap:
        pytest.skip(f"without bubblewrap the host file system is writable: {ex.bwrap_reason}")
    victim = os.path.join(os.fspath(tmp_path), "victim.txt")
    with open(victim, "w") as f:
        f.write("original")
    with ex.sandbox() as sb:
        sb.run(f"echo pwned > {victim}; echo pwned > $HOME/../pwned")
        assert not os.path.exists(os.path.join(sb.root, "pwned"))
    with open(victim) as f:
        assert f.read() == "original"


def test_workdir_from_copies_a_directory(executor: Executor, tmp_path: os.PathLike[str]) -> None:
    src = os.fspath(tmp_path)
    os.makedirs(os.path.join(src, "pkg"))
    with open(os.path.join(src, "pkg", "a.py"), "w") as f:
        f.write("A = 1\n")
    with open(os.path.join(src, "test_a.py"), "w") as f:
        f.write("from pkg.a import A\n\ndef test_a():\n    assert A == 1\n")
    spec = SandboxSpec(workdir_from=src, files={"pkg/b.py": "B = 2\n"})
    with executor.sandbox(spec) as sb:
        r = sb.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], timeout=60, env=NO_PLUGINS)
        assert r.exit_code == 0, r.stdout + r.stderr
        assert "1 passed" in r.stdout
        assert sb.read_file("pkg/b.py") == b"B = 2\n"
        sb.write_files({"pkg/a.py": "A = 2\n"})
        assert (
            sb.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], timeout=60, env=NO_PLUGINS).exit_code
            == 1
        )
    with open(os.path.join(src, "pkg", "a.py")) as f:
        assert f.read() == "A = 1\n"  # the host copy is untouched


def test_session_keeps_state_and_restarts(executor: Executor) -> None:
    with executor.sandbox(SandboxSpec(files={"worker.py": WORKER})) as sb:
        s = sb.session(["python", "worker.py"])
        assert [s.request({}).value["n"] for _ in range(3)] == [1, 2, 3]

        crashed = s.request({"op": "crash"})
        assert not crashed.ok and crashed.restarted and not crashed.timed_out
        assert "exit" in (crashed.error or "")
        r = s.request({})
        assert r.ok and r.value["n"] == 1 and not r.restarted

        sleeper = s.request({}).value["pid"]
        slow = s.request({"op": "sleep"}, timeout=1)
        assert slow.timed_out and slow.restarted and not slow.ok
        fresh = s.request({})
        assert fresh.value["n"] == 1 and fresh.value["pid"] != sleeper
        assert sb.run(f"kill -0 {sleeper}").exit_code != 0  # the sleeping worker was killed: no such process

        pid = s.request({}).value["pid"]
        assert sb.run(["python", "-c", f"import os; os.kill({pid}, 9)"]).ok  # killed from outside
        r = s.request({})
        assert r.restarted
        if not r.ok:  # the death was only noticed by this request (see Session's docs)
            assert "exit" in (r.error or "")
            r = s.request({})
        assert r.ok and r.value["n"] == 1
        assert s.restarts == 3

        noisy = s.request({"op": "noise"})
        assert noisy.ok and noisy.value["n"] == 2
        # Docker demultiplexes the worker's stderr on its own stream: a line can reach the host just after the
        # reply, and is then attached to the next one. Nothing is lost.
        after = s.request({})
        assert "to stderr" in noisy.stderr + after.stderr and "not json" in noisy.stderr

        big = s.request({"op": "big", "n": sb.spec.limits.output_bytes + 10})
        assert not big.ok and big.restarted and "output limit" in (big.error or "")
        s.close()


def test_two_sessions_are_independent(executor: Executor) -> None:
    with executor.sandbox(SandboxSpec(files={"worker.py": WORKER})) as sb:
        a, b = sb.session(["python", "worker.py"]), sb.session(["python", "worker.py"])
        assert [a.request({}).value["n"], a.request({}).value["n"], b.request({}).value["n"]] == [1, 2, 1]
        assert sb.run("echo between").ok  # commands do not disturb the workers
        assert a.request({}).value["n"] == 3


def test_session_that_cannot_start(executor: Executor) -> None:
    with executor.sandbox() as sb:
        s = sb.session(["no-such-worker-binary"])
        r = s.request({}, timeout=10)
        assert not r.ok and r.restarted and r.error


def test_close_leaves_nothing_behind(executor: Executor) -> None:
    sb = executor.sandbox(SandboxSpec(files={"worker.py": WORKER}))
    s = sb.session(["python", "worker.py"])
    assert s.request({"op": "spawn"}).ok  # the worker now has a child of its own
    assert sb.run("echo hi").ok
    assert len(_sandbox_processes(sb)) >= 2
    if isinstance(sb, LocalSandbox):
        root = sb.root
        sb.close()
        assert _sandbox_processes(sb) == []
        assert not os.path.exists(root)
    else:
        client = executor.client  # type: ignore[attr-defined]
        cid, vol = sb.container.id, sb.slot.volume.name  # type: ignore[attr-defined]
        sb.close()
        assert executor.wait_removed(timeout=60)  # type: ignore[attr-defined]  # removal runs in the background
        assert client.containers.list(all=True, filters={"id": cid}) == []
        assert vol not in {v.name for v in client.volumes.list()}
    sb.close()  # idempotent


def test_results_are_json_friendly(executor: Executor) -> None:
    with executor.sandbox() as sb:
        r = sb.run("printf 'caf\\303\\251 \\377'")
    assert r.stdout == "café \ufffd"
    json.dumps(r.__dict__)
