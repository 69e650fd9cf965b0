"""Escape attempts against every executor backend, beyond what ``tests/executor`` already covers.

Each attack must be contained (the host and the test process are unaffected), reported in the
``ExecResult`` (a failing exit code, not a hang or an exception), and leave a second sandbox working.
What each backend guarantees differs, and is asserted as documented in ``execgym/executor/local/__init__.py``:
Docker and local-with-bubblewrap hide the host's ``/tmp`` and other processes; plain local (no
bubblewrap) is documented to see the host file system and same-user processes, so there the tests assert
only what that backend promises (scrubbed environment, path checks, timeouts, reaping).
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from execgym.executor import Executor, Limits, MiB, PathError, Sandbox, SandboxSpec
from execgym.executor.local import LocalSandbox
from tests.executor.test_behaviour import _sandbox_processes


def _isolated(sb: Sandbox) -> bool:
    """Docker, or local with bubblewrap: the host's /tmp, home and processes are out of sight."""
    return not isinstance(sb, LocalSandbox) or sb.executor.use_bwrap


def _second_sandbox_works(executor: Executor) -> None:
    with executor.sandbox(SandboxSpec(files={"ok.py": "print(6 * 7)"})) as other:
        r = other.run(["python", "ok.py"], timeout=30)
        assert r.ok and r.stdout.strip() == "42", r


def test_filling_the_disk_is_capped_and_reported(executor: Executor) -> None:
    limits = Limits(disk_bytes=8 * MiB, wall_time_s=30)
    with executor.sandbox(SandboxSpec(limits=limits)) as sb:
        # One file past the limit: RLIMIT_FSIZE (local) or the tmpfs size (docker) stops it.
        r = sb.run("head -c 32M /dev/zero > big.bin; echo rc=$?", timeout=30)
        assert "rc=0" not in r.stdout, r
        size = sb.run("wc -c < big.bin").stdout.strip()
        assert int(size or 0) <= 8 * MiB
        # The same through Python: the write error is an ordinary exception the program sees.
        code = "open('big2.bin','wb').write(b'x' * (32 << 20))"
        r = sb.run(["python", "-c", code], timeout=30)
        assert r.exit_code != 0 and not r.timed_out, r
        if not isinstance(sb, LocalSandbox):
            # Docker caps the whole work directory, not only one file: many small files hit ENOSPC.
            r = sb.run("i=0; while [ $i -lt 64 ]; do head -c 1M /dev/zero > f$i.bin || exit 7; i=$((i+1)); done")
            assert r.exit_code == 7, r
            used = int(sb.run("du -sk . | cut -f1").stdout.split()[0])
            assert used <= 8 * 1024 + 64
        sb.run("rm -f big.bin big2.bin f*.bin")
        assert sb.run("echo still fine").ok  # the sandbox recovers once space is freed
    _second_sandbox_works(executor)


def test_host_secrets_stay_out(executor: Executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "execgym-canary-" + secrets.token_hex(8)
    monkeypatch.setenv("EXECGYM_CANARY_SECRET", canary)
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text(canary)
    pid = os.getpid()
    with executor.sandbox() as sb:
        # The environment of the sandbox, of its ancestors and of this very test process.
        r = sb.run(f"env; cat /proc/self/environ /proc/$PPID/environ /proc/1/environ /proc/{pid}/environ 2>/dev/null")
        leaked_env = canary in r.stdout
        r = sb.run(f"cat {secret_file}")
        leaked_file = canary in r.stdout
        home = Path.home()
        r = sb.run(f"ls -a {home}; echo HOME=$HOME")
        if _isolated(sb):
            assert not leaked_env, "the canary env var reached an isolated sandbox"
            assert not leaked_file, "a host file under the host's /tmp was readable from an isolated sandbox"
            assert r.exit_code != 0 or f"HOME={home}\n" not in r.stdout
        else:
            # Plain local: the environment is scrubbed (nothing in `env` of the command) but /proc of
            # same-user processes and the host file system are readable, as local.py documents.
            assert canary not in sb.run("env").stdout
            assert leaked_file, "plain local is documented to see host files; update the docs if this changed"
        assert f"HOME={sb.workdir}" in r.stdout
    _second_sandbox_works(executor)


def test_writing_outside_the_work_dir(executor: Executor, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    with executor.sandbox() as sb:
        if _isolated(sb):  # plain local runs as this user with the host writable (documented): not tried
            r = sb.run(f"echo pwned > {victim}; echo pwned > /execgym-pwned; echo pwned > $HOME/../pwned; echo done")
            assert "done" in r.stdout
            assert sb.run("test -e /execgym-pwned").exit_code != 0  # the root file system is read-only
        sb.run("ln -s .. parent; ln -s / root")
        for path in ["parent/x.txt", "root/tmp/x.txt", "../x.txt", "/tmp/x.txt", "a/../../x.txt", "./../x"]:
            with pytest.raises(PathError):
                sb.write_files({path: "x"})
        for path in ["parent/etc/passwd", "root/etc/hostname", "root/proc/self/environ"]:
            with pytest.raises(PathError):
                sb.read_file(path)
    assert not Path("/execgym-pwned").exists()
    assert victim.read_text() == "original"
    _second_sandbox_works(executor)


@pytest.mark.parametrize("attack", ["kill -9 $PPID", "kill -9 -1", "kill -9 0", "kill -KILL 1"])
def test_killing_the_parent_spares_the_host(executor: Executor, attack: str) -> None:
    with executor.sandbox() as sb:
        if attack == "kill -9 -1" and not _isolated(sb):
            pytest.skip("plain local shares the host PID space: kill -1 is not contained (documented)")
        r = sb.run(f"{attack}; echo survived", timeout=20)
        assert not r.timed_out, r
        # The command ran; the test process (this one) is alive; the sandbox keeps working or says why not.
        after = sb.run("echo again", timeout=30)
        assert after.ok or after.exit_code != 0
    _second_sandbox_works(executor)


def test_background_processes_are_reaped_at_close(executor: Executor) -> None:
    worker = (
        "import json, os, subprocess, sys\n"
        "for line in sys.stdin:\n"
        "    subprocess.Popen('nohup sleep 1000 >/dev/null 2>&1 &', shell=True)\n"
        "    subprocess.Popen(['setsid', 'sleep', '1000'])\n"
        "    if os.fork() == 0:\n"
        "        if os.fork() == 0:\n"
        "            os.setsid(); os.execvp('sleep', ['sleep', '1000'])\n"
        "        os._exit(0)\n"
        "    print(json.dumps('spawned'), flush=True)\n"
    )
    sb = executor.sandbox(SandboxSpec(files={"w.py": worker}))
    try:
        s = sb.session(["python", "w.py"])
        assert s.request({}).ok
        deadline = time.monotonic() + 10  # the shell and forks start asynchronously after the reply
        while len(_sandbox_processes(sb)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_sandbox_processes(sb)) >= 3
        if isinstance(sb, LocalSandbox):
            sb.close()
            assert _sandbox_processes(sb) == []
        else:
            client = executor.client  # type: ignore[attr-defined]
            cid = sb.container.id  # type: ignore[attr-defined]
            sb.close()
            assert executor.wait_removed(timeout=60)  # type: ignore[attr-defined]  # removed in the background
            assert client.containers.list(all=True, filters={"id": cid}) == []
    finally:
        sb.close()
    _second_sandbox_works(executor)
