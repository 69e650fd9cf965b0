"""Forked jobs: every job runs in a fresh fork of the worker, under limits, with one spare fork kept ready."""

from __future__ import annotations

import io
import json
import math
import os
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from execgym.envs.cad.kernel.process import (
    Scratch,
    _die_with_parent,
    _max_fd,
    _quiet,
    _set_limit,
    _vm_size_bytes,
    kill_strays,
)
from execgym.envs.cad.kernel.wire import _read_exactly, _read_tail, _write_message


class _Spare:
    """A forked child waiting for its one job."""

    def __init__(self, pid: int, command_fd: int, result_fd: int, out_file: Any, scratch: str) -> None:
        self.pid, self.command_fd, self.result_fd = pid, command_fd, result_fd
        self.out_file, self.scratch = out_file, scratch

    def discard(self) -> None:
        _quiet(os.killpg, self.pid, signal.SIGKILL)
        _quiet(os.kill, self.pid, signal.SIGKILL)
        _quiet(os.close, self.command_fd)
        _quiet(os.close, self.result_fd)
        self.out_file.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class Zygote:
    """Runs named jobs in forks of this process, keeping one spare fork ready between requests.

    Forking a process holding CadQuery costs tens of milliseconds (page tables of ~0.5 GB); the spare is
    forked after a reply has been sent, while the agent thinks, so a request only pays for its job. Each
    job gets a fresh child: its own process group (killed as a whole afterwards), a scratch working
    directory, ``/dev/null`` as stdin, stdout/stderr captured to a file, RLIMIT_AS = its size +
    ``memory_bytes``, RLIMIT_CPU = ``timeout`` + 1 s and a wall-clock deadline. A timeout, a crash or a
    limit comes back as ``{"ok": False, "kind": ..., "error": ...}``, never as an exception.
    """

    def __init__(
        self, jobs: dict[str, Callable[[dict[str, Any]], dict[str, Any]]], scratch: Scratch | None = None
    ) -> None:
        self.jobs = jobs
        self.spare: _Spare | None = None
        self._dead: list[int] = []
        self.scratch = scratch
        self.clean = True  # False once a job left a process that could not be killed: the worker must go

    def prepare(self) -> None:
        """Fork the spare child now (call when idle)."""
        self._reap()
        if self.spare is None:
            self.spare = self._fork()

    def invalidate(self) -> None:
        """Drop the spare (this process's state changed and a fresh fork must see it)."""
        if self.spare is not None:
            self.spare.discard()
            self._dead.append(self.spare.pid)
            self.spare = None
        self._reap()

    def _reap(self) -> None:
        alive = []
        for pid in self._dead:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done == 0:
                alive.append(pid)
        self._dead = alive

    def _fork(self) -> _Spare:
        command_r, command_w = os.pipe()
        result_r, result_w = os.pipe()
        out_file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the spare child, closed by discard()
        scratch = tempfile.mkdtemp(prefix="cad-run-")
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(command_w)
                os.close(result_r)
                self._child(command_r, result_w, out_file.fileno(), scratch)
            except BaseException:
                code = 70
            finally:
                os._exit(code)
        os.close(command_r)
        os.close(result_w)
        _quiet(os.setpgid, pid, pid)
        return _Spare(pid, command_w, result_r, out_file, scratch)

    def _child(self, command_fd: int, result_fd: int, out_fd: int, scratch: str) -> None:
        os.setpgid(0, 0)
        _die_with_parent()
        # The job keeps its own three pipes/files and nothing else of the worker's (its request and reply
        # streams included).
        keep = sorted({command_fd, result_fd, out_fd})
        low = 3
        for fd in keep:
            if fd > low:
                os.closerange(low, fd)
            low = max(low, fd + 1)
        os.closerange(low, _max_fd())
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = sys.stdout
        os.chdir(scratch)
        header = _read_exactly(command_fd, 8)
        if header is None:  # the parent went away or dropped this spare
            return
        message = json.loads(_read_exactly(command_fd, struct.unpack("<Q", header)[0]) or b"{}")
        if message.get("memory_bytes"):
            _set_limit(resource.RLIMIT_AS, _vm_size_bytes() + int(message["memory_bytes"]))
        _set_limit(resource.RLIMIT_CPU, math.ceil(float(message.get("timeout", 60))) + 1)
        try:
            result = self.jobs[message["job"]](message.get("args") or {})
        except MemoryError:
            result = {"ok": False, "kind": "memory", "error": "MemoryError: the program ran out of memory"}
        except BaseException as exc:  # report, never die silently
            result = {"ok": False, "kind": "internal", "error": f"{type(exc).__name__}: {exc}"}
        try:
            payload = {**result, "output": _read_tail(io.FileIO(out_fd, "r", closefd=False))}
            _write_message(result_fd, payload)
        except MemoryError:
            _write_message(result_fd, {"ok": False, "kind": "memory", "error": "MemoryError: out of memory"})

    def run(self, job: str, args: dict[str, Any], *, timeout: float, memory_bytes: int | None = None) -> dict[str, Any]:
        """Run one job in a fresh child and return its result dict."""
        self.prepare()
        spare, self.spare = self.spare, None
        assert spare is not None
        start = time.monotonic()
        result: dict[str, Any] | None = None
        timed_out = False
        try:
            _write_message(
                spare.command_fd, {"job": job, "args": args, "timeout": timeout, "memory_bytes": memory_bytes}
            )
            result, timed_out = self._collect(spare.result_fd, start + timeout)
        except OSError:
            result = None
        duration = time.monotonic() - start
        status = None
        if result is None:
            if not timed_out:  # it died: its exit status says how
                _quiet(os.killpg, spare.pid, signal.SIGKILL)
                try:
                    _, status = os.waitpid(spare.pid, 0)
                except ChildProcessError:
                    status = None
            output = _read_tail(spare.out_file)
        else:
            output = ""
        spare.discard()  # kills what it left running (and the child itself, if it timed out)
        if status is None:
            self._dead.append(spare.pid)
        # Whatever the job detached from its process group (fork + setsid) is this process's child now:
        # kill it before anything else runs, then put the writable places back as they were.
        if not kill_strays():
            self.clean = False
        self._dead.clear()
        if self.scratch is not None:
            self.scratch.restore()
        if timed_out:
            return {
                "ok": False,
                "kind": "timeout",
                "timed_out": True,
                "output": output,
                "duration_s": duration,
                "error": f"TimeoutError: the program did not finish within {timeout:g} s and was stopped",
            }
        if result is None:
            result = {"ok": False, **_death_reason(status, timeout), "output": output}
        result["duration_s"] = duration
        return result

    @staticmethod
    def _collect(fd: int, deadline: float) -> tuple[dict[str, Any] | None, bool]:
        buf = b""
        need = 8
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, True
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            data = os.read(fd, 1 << 20)
            if not data:
                return None, False
            buf += data
            if need == 8 and len(buf) >= 8:
                need = 8 + struct.unpack("<Q", buf[:8])[0]
            if len(buf) >= need > 8:
                try:
                    value = json.loads(buf[8:need])
                except ValueError:
                    return None, False
                return (value if isinstance(value, dict) else None), False


def _death_reason(status: int | None, timeout: float) -> dict[str, Any]:
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in set(signal.Signals) else str(sig)
        if sig == signal.SIGXCPU:
            return {"kind": "timeout", "error": f"the program was stopped: it used more than {timeout:g} s of CPU"}
        if sig == signal.SIGKILL:
            return {"kind": "memory", "error": "the program was killed (most likely for using too much memory)"}
        return {"kind": "crash", "error": f"the program was stopped by signal {name}: the geometry kernel crashed"}
    code = os.WEXITSTATUS(status) if status is not None else "unknown"
    return {"kind": "crash", "error": f"the program's process exited (status {code}) without a result"}


def run_forked(fn: Callable[[], dict[str, Any]], *, timeout: float, memory_bytes: int | None = None) -> dict[str, Any]:
    """Run ``fn`` once in a fresh fork under the :class:`Zygote` limits and return its result."""
    zygote = Zygote({"fn": lambda _args: fn()})
    try:
        return zygote.run("fn", {}, timeout=timeout, memory_bytes=memory_bytes)
    finally:
        zygote.invalidate()
