"""Containment of the confined backends (local with bubblewrap, Docker): issue 15, items 1-3.

Attacks go through the public API only (``Sandbox.run`` and sessions), as a policy's tool calls would.
Each test checks a *class* of escape, with variations, not one payload:

* identity: sandboxed code never runs as host uid 0 (as root the local backend drops to an unprivileged
  uid, with no capabilities and ``no_new_privs``), so root-owned host files stay out of reach even where
  a path to them exists;
* visibility: only what a sandbox needs is mounted; no host socket (``docker.sock``), home, ``/run``,
  execgym checkout, ``.git`` or assets is reachable, from any path (``/proc/1/root`` included);
* kernel knobs: ``/proc/sys``, ``/sys`` and cgroupfs cannot be written;
* other sandboxes: their files and processes are out of reach;
* memory: the limit holds for the whole sandbox where a memory cgroup exists, and says so where not.

Writes are attempted with the value already in place, so that a regression cannot damage the machine.
Run as root and as a normal user (see ``.ci/run``); what differs between the two is asserted as documented.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import execgym
from execgym.executor import Executor, InfraError, Limits, LocalExecutor, MiB, Sandbox, SandboxSpec
from execgym.executor import local as local_mod
from execgym.executor.local import LocalSandbox
from execgym.executor.local import cgroup as cgroup_mod
from tests.executor import conftest as executor_fixtures

CHECKOUT = Path(execgym.__file__).resolve().parents[1]
PACKAGE = Path(execgym.__file__).resolve().parent
IS_ROOT = os.geteuid() == 0


# The backends that promise containment (local with bubblewrap, and Docker), as in the executor suite.
confined = executor_fixtures.confined


@pytest.fixture
def local_bwrap() -> LocalExecutor:
    return executor_fixtures.bwrap_local()


@pytest.fixture
def sandbox(confined: Executor) -> Iterator[Sandbox]:
    with confined.sandbox() as sb:
        yield sb


def _sh(sb: Sandbox, script: str, timeout: float = 60) -> str:
    r = sb.run(script, timeout=timeout)
    assert not r.timed_out, r
    return r.stdout + r.stderr


def _host_uids_of(sb: LocalSandbox) -> set[int]:
    """Real, effective, saved and fs uids (host view) of every process of a local sandbox."""
    uids: set[int] = set()
    for pid in executor_fixtures.local_sandbox_pids(sb):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("Uid:"):
                    uids.update(int(x) for x in line.split()[1:])
        except OSError:
            continue
    return uids


# ------------------------------------------------------------------------------------------ identity


def test_local_commands_never_run_as_host_root(local_bwrap: LocalExecutor) -> None:
    with local_bwrap.sandbox() as sb:
        s = sb.session(["sh", "-c", "sleep 60 & sleep 60"])
        try:
            sb.run("true")
            uids: set[int] = set()
            for _ in range(100):  # the session's processes start asynchronously
                uids = _host_uids_of(sb)
                if uids:
                    break
                sb.run("sleep 0.05")
            assert uids, "no sandbox process found"
            assert 0 not in uids, f"sandboxed processes run as host uid 0: {uids}"
            if IS_ROOT:
                assert uids == {local_mod.SANDBOX_UID}
            else:
                assert uids == {os.getuid()}
        finally:
            s.close()


def test_no_privilege_is_left_to_regain(sandbox: Sandbox) -> None:
    status = _sh(sandbox, "cat /proc/self/status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert int(fields["CapEff"].strip(), 16) == 0, status
    assert int(fields["CapPrm"].strip(), 16) == 0, status
    if isinstance(sandbox, LocalSandbox):
        assert fields["NoNewPrivs"].strip() == "1", status
        if IS_ROOT:
            assert int(fields["CapBnd"].strip(), 16) == 0, status
    # Variations: setuid(0) directly, through su/sudo/newgrp (setuid binaries), and via a user namespace.
    code = (
        "import os, sys\n"
        "try:\n    os.setuid(0)\nexcept OSError:\n    pass\nelse:\n    sys.exit('setuid(0) worked')\n"
        "try:\n    os.setgroups([0])\nexcept OSError:\n    pass\nelse:\n    sys.exit('setgroups worked')\n"
        "print('uid', os.getuid(), os.geteuid())\n"
    )
    r = sandbox.run(["python", "-c", code])
    assert r.exit_code == 0, r
    inside_uid = int(r.stdout.split()[1])
    out = _sh(sandbox, "for c in 'su -c id' 'sudo -n id' 'newgrp root' 'unshare -r id -u'; do $c </dev/null; done 2>&1")
    if not isinstance(sandbox, LocalSandbox) and inside_uid == 0:
        pytest.skip("the Docker image runs as root inside its container (confined by the container instead)")
    assert "uid=0" not in out, out


# ---------------------------------------------------------------------------------------- visibility


def test_host_sockets_and_private_dirs_are_not_visible(sandbox: Sandbox) -> None:
    # Anything that would talk to a host daemon as the host: docker, containerd, dbus, systemd.
    sockets = ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
               "/run/dbus/system_bus_socket", "/run/systemd/private", "/var/run/docker"]  # fmt: skip
    code = (
        "import socket, sys\n"
        "for path in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(path); s.sendall(b'GET /_ping HTTP/1.0\\r\\n\\r\\n'); print('REACHED', path, s.recv(64))\n"
        "    except OSError:\n"
        "        pass\n"
    )
    r = sandbox.run(["python", "-c", code, *sockets])
    assert "REACHED" not in r.stdout, r.stdout
    if isinstance(sandbox, LocalSandbox):
        # The local sandbox binds only what it needs: no host /run, /var, /home, /root contents, /sys.
        out = _sh(sandbox, "ls -A /run /var/run /var /home /sys /mnt /opt /srv /boot 2>/dev/null; ls -A /root")
        assert out.strip() in ("", ".pyenv") or set(out.split()) <= {".pyenv"}, out
        # Nor from another angle: the supervisor's root and the cwd of PID 1.
        out = _sh(sandbox, "ls -A /proc/1/root/run /proc/1/root/home /proc/1/cwd/../.. 2>&1")
        assert "docker" not in out and "containerd" not in out, out


def test_no_unix_socket_of_the_host_is_reachable(local_bwrap: LocalExecutor) -> None:
    """A class check: every socket file the host has, from any directory, is out of reach."""
    host_sockets: list[str] = []
    for top in ("/run", "/var/run", "/tmp", "/root", "/home", "/var/lib"):
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    if Path(path).is_socket():
                        host_sockets.append(path)
                except OSError:
                    continue
            if len(host_sockets) > 200:
                break
    code = (
        "import socket, sys\n"
        "for path in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n        s.connect(path); print('REACHED', path)\n    except OSError:\n        pass\n"
    )
    with local_bwrap.sandbox() as sb:
        r = sb.run(["python", "-c", code, *host_sockets])
    assert r.exit_code == 0, r
    assert "REACHED" not in r.stdout, r.stdout


def test_nothing_of_execgym_is_reachable(sandbox: Sandbox) -> None:
    """Item 3: neither the package, its assets, the checkout nor its .git, by any path or import."""
    r = sandbox.run(["python", "-c", "import execgym"])
    assert r.exit_code != 0, "execgym is importable inside the sandbox"
    for path in (CHECKOUT, CHECKOUT / ".git", PACKAGE, PACKAGE / "assets", PACKAGE / "envs"):
        r = sandbox.run(["sh", "-c", 'ls -A "$1" 2>/dev/null | head -3', "sh", str(path)])
        assert r.stdout.strip() == "", f"{path} is visible in the sandbox: {r.stdout!r}"
    # The whole visible file system: no git repository but the work dir's, no execgym package, no asset.
    find = (
        'find / \\( -path /proc -o -path /sys -o -path /dev -o -path "$PWD" \\) -prune -o '
        "\\( -name .git -o -name 'execgym.egg-info' -o -path '*/execgym/__init__.py' -o -path '*execgym*/assets' "
        "\\) -print 2>/dev/null | head -20"
    )
    r = sandbox.run(find, timeout=120)
    hits = [h for h in r.stdout.split() if h]
    assert hits == [], f"visible inside the sandbox: {hits}"
    # What an agent would actually want: the git objects to rebuild the pristine repository from.
    head = (CHECKOUT / ".git" / "HEAD") if (CHECKOUT / ".git").is_dir() else None
    if head is not None:
        r = sandbox.run(["sh", "-c", 'cat "$1"; git -C "$2" log -1 --format=%H', "sh", str(head), str(CHECKOUT)])
        assert "ref:" not in r.stdout and not any(len(w) == 40 for w in r.stdout.split()), r


# -------------------------------------------------------------------------------------- kernel knobs


_SYSCTLS = ["kernel/core_pattern", "kernel/modprobe", "vm/overcommit_memory", "kernel/sysrq", "kernel/hostname",
            "fs/suid_dumpable", "kernel/panic"]  # fmt: skip


def test_proc_sys_and_sys_are_read_only(sandbox: Sandbox) -> None:
    paths = [f"/proc/sys/{name}" for name in _SYSCTLS] + [
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/fs/cgroup/cgroup.procs",
        "/sys/fs/cgroup/pids/cgroup.procs",
        "/sys/fs/cgroup/memory/cgroup.procs",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory.max",
        "/proc/sysrq-trigger",
        "/proc/self/oom_score_adj",
    ]
    # Rewrite each file with its own current content (a harmless write, should it succeed).
    code = (
        "import os, sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        with open(path, 'rb') as f:\n"
        "            value = f.read()\n"
        "    except OSError:\n"
        "        value = None\n"
        "    if value is None or path.endswith(('sysrq-trigger', 'cgroup.procs')):\n"
        "        value = str(os.getpid()).encode() if path.endswith('cgroup.procs') else b''\n"
        "    if path.endswith('sysrq-trigger'):\n"
        "        continue_ = os.access(path, os.W_OK)\n"
        "        print('WRITABLE', path) if continue_ else None\n"
        "        continue\n"
        "    if path.endswith('oom_score_adj'):\n"
        "        value = b'-1000'\n"
        "    try:\n"
        "        fd = os.open(path, os.O_WRONLY)\n"
        "        os.write(fd, value or b'0')\n"
        "        os.close(fd)\n"
        "        print('WROTE', path)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    r = sandbox.run(["python", "-c", code, *paths])
    assert r.exit_code == 0, r
    assert "WROTE" not in r.stdout and "WRITABLE" not in r.stdout, r.stdout
    # And the mount itself is read-only, whatever the file modes say.
    out = _sh(sandbox, "grep -E ' /proc/sys ' /proc/self/mounts")
    if isinstance(sandbox, LocalSandbox):
        assert " ro," in out or " ro " in out, out


# ---------------------------------------------------------------------------------- other sandboxes


def test_other_sandboxes_are_out_of_reach(confined: Executor) -> None:
    canary = "canary-" + secrets.token_hex(8)
    worker = "import json, sys\nfor line in sys.stdin:\n    print(json.dumps('alive'), flush=True)\n"
    with confined.sandbox(SandboxSpec(files={"secret.txt": canary, "w.py": worker})) as a:
        s = a.session(["python", "w.py"])
        assert s.request({}).value == "alive"
        with confined.sandbox() as b:
            script = (
                f"cat {shlex.quote(a.workdir)}/secret.txt; grep -rs {canary} / --include=secret.txt -l 2>/dev/null"
                " | head -1; kill -9 -1; for p in $(seq 2 400); do kill -9 $p 2>/dev/null; done; echo done"
            )
            r = b.run(script, timeout=120)
            assert canary not in r.stdout, "one sandbox read another's work dir"
        reply = s.request({})
        assert reply.ok and reply.value == "alive" and not reply.restarted, reply
        s.close()


def test_host_processes_cannot_be_signalled_or_traced(sandbox: Sandbox) -> None:
    me = os.getpid()
    code = (
        "import ctypes, os, signal, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "pid = int(sys.argv[1])\n"
        "for attempt in ('kill', 'trace', 'mem'):\n"
        "    try:\n"
        "        if attempt == 'kill':\n"
        "            os.kill(pid, 0); print('SIGNALLED')\n"
        "        elif attempt == 'trace':\n"
        "            if libc.ptrace(16, pid, 0, 0) == 0: print('TRACED')\n"
        "        else:\n"
        "            open(f'/proc/{pid}/mem', 'rb').read(1); print('READ MEM')\n"
        "    except OSError:\n"
        "        pass\n"
    )
    r = sandbox.run(["python", "-c", code, str(me)])
    assert r.exit_code == 0, r
    if isinstance(sandbox, LocalSandbox) or "SIGNALLED" not in r.stdout:
        # A PID namespace: the host's pid names nothing, or a process of the sandbox itself.
        assert "TRACED" not in r.stdout and "READ MEM" not in r.stdout, r.stdout
    os.kill(me, 0)  # and we are still here


# -------------------------------------------------------------------------------------------- memory


def test_memory_limit_holds_for_the_whole_sandbox(local_bwrap: LocalExecutor) -> None:
    """Item 2: many processes each under the limit must not together exceed it."""
    limit = 512 * MiB
    n, each = 6, 160 * MiB  # 960 MiB in all, each well under the per-process RLIMIT_AS
    child = f"import sys, time\nblock = bytearray(b'\\x01') * {each}\nprint('held', flush=True)\ntime.sleep(4)\n"
    script = (
        f"pids=''; for i in $(seq {n}); do python -c {shlex.quote(child)} & pids=\"$pids $!\"; done; "
        "codes=''; for p in $pids; do wait $p; codes=\"$codes $?\"; done; echo codes:$codes"
    )
    spec = SandboxSpec(limits=Limits(memory_bytes=limit, wall_time_s=120, cpu_time_s=60))
    with local_bwrap.sandbox(spec) as sb:
        r = sb.run(script, timeout=120)
        scope = getattr(sb, "memory_scope", "sandbox")  # no such report before the fix: expect a cgroup
        assert scope in ("sandbox", "process")
        if scope == "process":
            assert local_bwrap.memory_scope == "process" and "per process" in local_bwrap.isolation
            pytest.skip("no memory cgroup here: the limit is per process (documented); run as root to test it")
        codes = r.stdout.split("codes:")[-1].split()
        assert len(codes) == n, r
        assert r.oom_killed, r
        assert "137" in codes, f"no process was OOM-killed: {codes}"
        assert r.stdout.count("held") < n or codes.count("0") < n, r
        # The sandbox goes on working after the kill.
        assert sb.run("echo fine").stdout.strip() == "fine"


def test_memory_scope_is_reported(local_bwrap: LocalExecutor) -> None:
    expected = "sandbox" if IS_ROOT and cgroup_mod.cgroup_parents("memory") else "process"
    assert local_bwrap.memory_scope == expected
    with local_bwrap.sandbox() as sb:
        assert sb.memory_scope == expected
        sb.run("true")
        assert sb.memory_scope == expected
    with local_bwrap.sandbox(SandboxSpec(limits=Limits(memory_bytes=None))) as sb:
        assert sb.memory_scope == "none"


# ---------------------------------------------------------------------------------- refusing to run


def test_unconfined_only_by_explicit_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where bubblewrap cannot be had, the default refuses with a clear one-line reason."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH: the real probe fails
    monkeypatch.delenv(local_mod.UNCONFINED_ENV, raising=False)
    local_mod.bwrap_status.cache_clear()
    try:
        ex = LocalExecutor()
        assert not ex.use_bwrap and "not installed" in ex.bwrap_reason
        with pytest.raises(InfraError, match="refused") as info:
            ex.sandbox()
        assert "\n" not in str(info.value) and "use_bwrap=False" in str(info.value)
        with pytest.raises(InfraError):
            LocalExecutor(use_bwrap=True)
        monkeypatch.setenv(local_mod.UNCONFINED_ENV, "1")
        with pytest.warns(RuntimeWarning), LocalExecutor().sandbox() as sb:
            assert sb.run(["/bin/echo", "opted in"]).stdout == "opted in\n"
    finally:
        local_mod.bwrap_status.cache_clear()


def test_refusal_is_one_line_in_a_fresh_process(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(CHECKOUT)}
    code = (
        "from execgym.executor import LocalExecutor, InfraError\n"
        "try:\n    LocalExecutor().sandbox()\nexcept InfraError as e:\n    print('refused:', e)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("refused: local sandbox refused"), p


def test_another_interpreter_is_bound_without_the_checkout(tmp_path: Path) -> None:
    """``LocalExecutor(python=...)``: that interpreter's prefix is bound (probed), still nothing of execgym."""
    other = Path("/usr/bin/python3")
    if not other.exists() or other.resolve() == Path(sys.executable).resolve():
        pytest.skip("no second interpreter at /usr/bin/python3")
    ex = LocalExecutor(python=str(other))
    if not ex.use_bwrap:
        pytest.skip(f"bubblewrap unusable here ({ex.bwrap_reason})")
    with ex.sandbox() as sb:
        r = sb.run([str(other), "-c", "import sys; print(sys.prefix)"])
        assert r.ok and r.stdout.strip() == "/usr", r
        assert sb.run([str(other), "-c", "import execgym"]).exit_code != 0
        assert sb.run(["ls", str(CHECKOUT)]).exit_code != 0
