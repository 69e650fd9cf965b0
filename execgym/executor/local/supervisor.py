"""The host side of a local sandbox's supervisor: one ``_agent serve`` process per sandbox, spoken to over a
SOCK_SEQPACKET control socket whose every message is checked.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from execgym.executor import _agent
from execgym.executor.base import AGENT_SOURCE, InfraError, wait_fd
from execgym.executor.local.cgroup import SandboxCgroups

if TYPE_CHECKING:
    from execgym.executor.local.sandbox import LocalSandbox

__all__ = ["Exit", "Supervisor", "job_ids"]

# Patched by the protocol tests to run a forged supervisor.
_AGENT_SOURCE = AGENT_SOURCE
#: Job ids, unique in this process: a run and a session of one sandbox never share one.
job_ids = itertools.count(1)


@dataclass
class Exit:
    code: int
    killed: bool
    cpu_s: float


class Supervisor:
    """Host side of one ``_agent serve`` process."""

    def __init__(self, sandbox: LocalSandbox) -> None:
        self.sandbox = sandbox
        self.exits: dict[int, Exit | str] = {}  # job id -> exit, or a spawn error message
        self.pending: set[int] = set()  # job ids spawned and not yet reported
        self.dead = False
        #: Why the supervisor was killed for breaking the protocol (a malformed or unexpected message).
        self.fault: str | None = None
        limits = sandbox.spec.limits
        bwrap = sandbox.executor.use_bwrap
        rlimits: dict[str, int | None] = {"core": 0, "as": limits.memory_bytes, "fsize": limits.disk_bytes}
        self.cgroup = SandboxCgroups.create(limits.max_processes, limits.memory_bytes)
        if limits.max_processes is not None and (self.cgroup is None or self.cgroup.pids_dir is None):
            # RLIMIT_NPROC counts every process of the uid outside a user namespace: leave room for the
            # ones that already exist (the sandbox uid's, when running as root, are other sandboxes').
            if not bwrap:
                rlimits["nproc"] = limits.max_processes + _user_process_count(os.getuid())
            elif os.geteuid() == 0:
                rlimits["nproc"] = limits.max_processes + _user_process_count(sandbox.uid)
            else:
                rlimits["nproc"] = limits.max_processes
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = parent
        config = {
            "fd": child.fileno(),
            "rlimits": rlimits,
            "cpu_s": limits.cpu_time_s,
            "drop": [sandbox.uid, sandbox.gid] if sandbox.drops_privileges else None,
        }
        argv = [sandbox.executor.python, "-I", "-S", *_agent_program(bwrap), "serve", json.dumps(config)]
        if bwrap:
            argv = [*sandbox.bwrap_argv(), "--", *argv]
        if self.cgroup is not None:
            # Join the cgroups before exec so that nothing escapes them, not even for an instant.
            joins = " && ".join(f"echo $$ > {shlex.quote(f)}" for f in self.cgroup.procs_files)
            argv = ["/bin/sh", "-c", f'{joins} && exec "$@"', "sh", *argv]
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(child.fileno(),),
                env={"PATH": os.defpath, "LANG": "C.UTF-8"},
                cwd=sandbox.host_workdir,
                start_new_session=True,
            )
        finally:
            child.close()
        try:
            msg = self.recv(timeout=30, expect="ready")
        except InfraError as e:
            msg = {"error": str(e)}
        if msg is None or msg.get("op") != "ready":
            err = self._stderr()
            self.kill()
            raise InfraError(f"local sandbox supervisor failed to start: {err or msg}")

    def _stderr(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)  # it closed the socket: its exit (and bwrap's message) is moments away
        if self.proc.poll() is None or self.proc.stderr is None or self.proc.stderr.closed:
            return ""
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def send(self, msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
        if self.dead:
            raise InfraError(f"local sandbox supervisor is gone{f' ({self.fault})' if self.fault else ''}")
        if msg.get("op") == "spawn":
            self.pending.add(msg["id"])
        data = json.dumps(msg).encode()
        chunks = [data[i : i + 60000] for i in range(0, len(data), 60000)] or [b""]
        try:
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(_fd_array(fds)))] if last and fds else []
                self.sock.sendmsg([(b"." if last else b"+") + chunk], anc)
        except OSError as e:
            self.dead = True
            raise InfraError(f"local sandbox supervisor is gone: {e}") from e

    def recv(self, timeout: float | None = 0.0, *, expect: str | None = None) -> dict[str, Any] | None:
        """One control message, or None when none arrived in time (or the supervisor died).

        Every message is checked (JSON, its op, field types, a job id that is awaited); anything else
        means the channel can no longer be trusted: the supervisor is killed (and every command with it)
        and :class:`InfraError` raised, never another exception.
        """
        if self.dead:
            return None
        if timeout != 0.0:
            r = wait_fd(self.sock.fileno(), select.POLLIN, timeout)
            if not r:
                return None
        try:
            data = self.sock.recv(1 << 17, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self.dead = True
            return None
        try:
            msg = json.loads(data)
            why = self._invalid(msg, expect)
        except (ValueError, RecursionError) as e:
            msg, why = None, f"not JSON ({type(e).__name__})"
        if why is not None:
            self.fault = f"protocol violation: {why}: {bytes(data[:80])!r}"
            self.kill()
            raise InfraError(f"local sandbox supervisor sent an invalid control message ({why}); sandbox stopped")
        return msg

    def _invalid(self, msg: Any, expect: str | None) -> str | None:
        """Why ``msg`` is not a message the supervisor may send now, or None if it is."""
        if not isinstance(msg, dict):
            return "not an object"
        op = msg.get("op")
        if expect is not None and op != expect:
            return f"expected {expect!r}, got op {op!r}"
        if op == "ready":
            return None if expect == "ready" and _is_int(msg.get("pid")) else "unexpected 'ready'"
        if op not in ("exit", "error"):
            return f"unexpected op {op!r}"
        job = msg.get("id")
        if not _is_int(job) or job not in self.pending:
            return f"{op!r} for job {job!r}, which is not running"
        if op == "error":
            return None if isinstance(msg.get("error"), str) else "'error' without a message"
        if not _is_int(msg.get("code")) or not isinstance(msg.get("killed"), bool):
            return "'exit' without an integer code and a boolean killed"
        cpu = msg.get("cpu_s")
        if not isinstance(cpu, (int, float)) or isinstance(cpu, bool) or not 0 <= cpu < 1e12:
            return "'exit' with a bad cpu_s"
        return None

    def pump(self) -> None:
        """File every pending control message under its job id."""
        while (msg := self.recv()) is not None:
            self.file(msg)

    def file(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "exit":
            self.pending.discard(msg["id"])
            self.exits[msg["id"]] = Exit(msg["code"], msg["killed"], float(msg["cpu_s"]))
        elif op == "error":
            self.pending.discard(msg["id"])
            self.exits[msg["id"]] = msg["error"]

    def wait_exit(self, job: int, timeout: float) -> Exit | str | None:
        deadline = time.monotonic() + timeout
        while job not in self.exits:
            left = deadline - time.monotonic()
            if left <= 0 or self.dead:
                return None
            msg = self.recv(timeout=left)
            if msg is not None:
                self.file(msg)
        return self.exits.pop(job)

    def shutdown(self) -> None:
        if not self.dead:
            with contextlib.suppress(InfraError):
                self.send({"op": "shutdown"})
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()

    def kill(self) -> None:
        self.dead = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.destroy()
            self.cgroup = None
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.sock.close()


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _agent_program(hidden: bool) -> list[str]:
    """The supervisor by path (readable in ``ps``), or as ``-c`` source where bubblewrap hides the package."""
    return ["-c", _AGENT_SOURCE] if hidden else [str(Path(_agent.__file__).resolve())]


def _fd_array(fds: Sequence[int]) -> bytes:
    return b"".join(int(fd).to_bytes(4, sys.byteorder) for fd in fds)


def _user_process_count(uid: int) -> int:
    """Processes of ``uid`` now (RLIMIT_NPROC counts them all when there is no user namespace)."""
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n
