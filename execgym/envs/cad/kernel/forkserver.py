"""The agent fork server (isolated env workers in namespaces of their own) and the serving loop."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import signal
import sys
import time
from typing import Any

import numpy as np

from execgym.envs.cad.kernel.mesh import make_tree
from execgym.envs.cad.kernel.process import (
    _PR_SET_DUMPABLE,
    STATE,
    _die_with_parent,
    _max_fd,
    _prctl,
    _quiet,
    _set_limit,
    _vm_size_bytes,
    harden_worker,
)
from execgym.envs.cad.kernel.programs import _cq
from execgym.envs.cad.kernel.wire import PROTOCOL
from execgym.envs.cad.kernel.workers import AgentWorker, GraderWorker, OpServer

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = (
    0x00020000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x4000, 1 << 18
NO_NAMESPACES = "no private namespaces for env workers in this sandbox"
_PR_SET_NAME = 15


def keeper_name(token: str) -> str:
    """The process name an env's keeper takes at once (15 bytes at most): how the host finds it to confine it."""
    return f"cadk{token[:11]}"


def _set_name(name: str) -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def _libc_call(name: str, *args: Any) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}{args[:2]!r}: {os.strerror(errno)}")


def _enter_private_namespaces() -> None:
    """Leave the sandbox's user, mount, PID, IPC and network namespaces for fresh ones of this process's own.

    The next child is pid 1 of the new PID namespace (which makes the private mounts, see
    :func:`_mount_private_places`).
    """
    uid, gid = os.getuid(), os.getgid()
    try:
        _libc_call("unshare", _CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWNET)
    except OSError as exc:
        raise OSError(exc.errno, f"{NO_NAMESPACES}: {exc}") from None
    # A process that is not dumpable cannot write its own /proc files (they belong to root): only for this.
    _prctl(_PR_SET_DUMPABLE, 1)
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    finally:
        _prctl(_PR_SET_DUMPABLE, 0)


def _mount_private_places(mounts: list[tuple[str, int]]) -> None:
    """Private tmpfs over every writable place and over ``/proc`` (the sandbox's other processes are not seen)."""
    _libc_call("mount", b"none", b"/", None, _MS_REC | _MS_PRIVATE, None)
    for path, size in sorted(mounts, key=lambda m: m[0].count("/")):  # /tmp before a work directory inside it
        os.makedirs(path, exist_ok=True)  # a place inside one mounted before (TMPDIR in the work directory)
        options = f"size={max(size, 1 << 20)},mode=0700".encode()
        _libc_call("mount", b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options)
    _libc_call("mount", b"tmpfs", b"/proc", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=65536,mode=0555")


def _open_fifo(path: str, flags: int, deadline: float) -> int:
    """Open one end of a FIFO without blocking forever (a writer waits, up to ``deadline``, for its reader)."""
    while True:
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != 6 or time.monotonic() > deadline:  # ENXIO: no reader yet
                raise
            time.sleep(0.002)
            continue
        os.set_blocking(fd, True)
        return fd


class ForkServer(OpServer):
    """The host's one agent zygote: imports CadQuery once and forks an isolated agent worker per env.

    It runs in one shared sandbox and answers ``spawn`` / ``kill`` / ``ping`` on its session. ``spawn`` forks
    a *keeper* that opens the env's two FIFOs (in a directory of this process's work directory; the env opens
    the other ends), removes them, enters fresh user, mount, PID, IPC and network namespaces and forks the env's
    worker: pid 1 of its own PID namespace, with private tmpfs mounts over the work directory, ``$TMPDIR``,
    ``/tmp``, ``/dev/shm`` and ``/proc``. That worker is an :class:`AgentWorker` (each program in a fresh fork
    of it, killed with everything it started after each run, scratch restored), speaking JSON lines on the
    FIFOs. So another env's programs cannot see, signal, trace or write to it (they run in sibling
    namespaces), nor reach its files, pipes or sockets; and it holds nothing of this server's (its session
    pipes are closed). The server is never reachable from agent code: the FIFOs are gone before any runs.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.keepers: dict[str, int] = {}  # token -> keeper pid (a keeper dies with its worker and vice versa)
        self.status: dict[str, int] = {}  # token -> the pipe on which a starting keeper reports its worker's pid
        self.spawned = 0
        self.warm = AgentWorker(config)  # only for its warm-up: forks find the kernel's pages mapped

    def idle(self) -> None:
        """Reap keepers whose workers ended."""
        for token, pid in list(self.keepers.items()):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                del self.keepers[token]
                shutil.rmtree(os.path.join(os.getcwd(), f"cad-env-{token}"), ignore_errors=True)  # never opened
                if token in self.status:
                    _quiet(os.close, self.status.pop(token))
        with contextlib.suppress(ChildProcessError):  # orphans re-parented here (subreaper)
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass

    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        self.idle()
        return {
            "ok": True,
            "protocol": PROTOCOL,
            "cadquery": getattr(_cq(), "__version__", "?"),
            "pid": os.getpid(),
            "workers": len(self.keepers),
            "spawned": self.spawned,
            "hardening": self.config.get("_hardening", {}),
        }

    def op_spawn(self, request: dict[str, Any]) -> dict[str, Any]:
        self.idle()
        token = request.get("token")
        if not isinstance(token, str) or not token.isalnum() or token in self.keepers:
            return {"ok": False, "kind": "protocol", "error": "'token' must be a fresh alphanumeric string"}
        directory = os.path.join(os.getcwd(), f"cad-env-{token}")
        os.mkdir(directory, 0o700)
        for name in ("request", "reply"):
            os.mkfifo(os.path.join(directory, name), 0o600)
        # What the env sets for its own worker: the memory a program may allocate beyond the worker's own.
        options = {
            key: int(request[key])
            for key in ("memory_bytes",)
            if isinstance(request.get(key), int) and not isinstance(request[key], bool) and request[key] > 0
        }
        status_r, status_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                _set_name(keeper_name(token))
                os.close(status_r)
                code = self._keeper(directory, status_w, float(request.get("timeout", 60.0)), options)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    os.write(status_w, f"error {type(exc).__name__}: {exc}".encode()[:400])
            finally:
                os._exit(code)
        os.close(status_w)
        self.keepers[token] = pid
        self.status[token] = status_r
        self.spawned += 1
        return {"ok": True, "path": directory, "keeper": pid, "token": token}

    def op_started(self, request: dict[str, Any]) -> dict[str, Any]:
        """After the env opened its FIFO ends: the worker's pid (as this sandbox sees it), once it is running."""
        token = request.get("token")
        status_fd = self.status.pop(token, None) if isinstance(token, str) else None
        if status_fd is None:
            return {"ok": False, "kind": "protocol", "error": f"no starting env worker {token!r}"}
        return _await_keeper({"ok": True, "token": token}, status_fd, float(request.get("timeout", 60.0)))

    def op_kill(self, request: dict[str, Any]) -> dict[str, Any]:
        """Stop an env's worker (its keeper, and with it the worker's whole PID namespace)."""
        pid = self.keepers.get(request.get("token"))  # type: ignore[arg-type]
        if pid is not None:
            _quiet(os.kill, pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.idle()
        return {"ok": True, "killed": pid is not None}

    def _keeper(self, directory: str, status_fd: int, timeout: float, options: dict[str, Any]) -> int:
        """Open the env's FIFOs, enter fresh namespaces and fork the env's worker, then wait for it.

        The worker is forked only once the env opened its end of the reply FIFO: by then the host has moved this
        keeper into the env's own memory cgroup (where it makes one), so the worker is born in it.
        """
        _die_with_parent()
        deadline = time.monotonic() + timeout
        request_path, reply_path = os.path.join(directory, "request"), os.path.join(directory, "reply")
        request_fd = os.open(request_path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(request_fd, True)
        reply_fd = _open_fifo(reply_path, os.O_WRONLY, deadline)
        shutil.rmtree(directory, ignore_errors=True)
        STATE.vm_size_fallback = _vm_size_bytes()
        tmp = os.environ.get("TMPDIR") or "/tmp"
        places = [(os.getcwd(), int(self.config.get("disk_bytes", 128 << 20)))]
        places += [(p, int(self.config.get("tmp_bytes", 128 << 20))) for p in dict.fromkeys([tmp, "/tmp", "/dev/shm"])]
        _enter_private_namespaces()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.close(status_fd)
                code = self._env_worker(request_fd, reply_fd, places, options)
            except BaseException as exc:  # the env's first request reads why
                with contextlib.suppress(Exception):
                    error = f"{type(exc).__name__}: {exc}"
                    os.write(reply_fd, (json.dumps({"ok": False, "kind": "internal", "error": error}) + "\n").encode())
            finally:
                os._exit(code)
        os.close(request_fd)
        os.close(reply_fd)
        os.write(status_fd, f"pid {pid}".encode())
        os.close(status_fd)
        # This keeper only waits: its death (the server's) kills the worker, and the worker's ends it. It keeps
        # nothing of the server's either (stdin was the server's request stream).
        os.closerange(3, _max_fd())
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
            except ChildProcessError:
                return 0
            except InterruptedError:
                continue

    def _env_worker(
        self, request_fd: int, reply_fd: int, places: list[tuple[str, int]], options: dict[str, Any]
    ) -> int:
        _die_with_parent()
        _mount_private_places(places)
        STATE.pid_namespace_init = True
        os.chdir(places[0][0])
        # Nothing of the server's stays open here: not its session (stdin, stdout), nothing but the two FIFOs.
        low = 3
        for fd in sorted({request_fd, reply_fd}):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, _max_fd())
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(2, 1)
        os.close(devnull)
        # Per-env process budget: RLIMIT_NPROC counts the processes of this env's own user namespace.
        _set_limit(resource.RLIMIT_NPROC, int(self.config.get("max_processes", 64)))
        config = {**self.config, **options, "scratch_roots": [p for p, _ in places], "warmup": False}
        config["_hardening"] = {**harden_worker(), "pid_namespace": True}
        worker = AgentWorker(config)
        _serve_lines(worker, os.fdopen(request_fd, "r", encoding="utf-8"), os.fdopen(reply_fd, "w", encoding="utf-8"))
        return 0


def _serve_lines(worker: Any, requests: Any, replies: Any) -> None:
    """Answer JSON-line requests from ``requests`` on ``replies`` until EOF."""
    worker.idle()
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            reply = (
                worker.handle(request)
                if isinstance(request, dict)
                else {"ok": False, "kind": "protocol", "error": "a request must be a JSON object"}
            )
        except Exception as exc:
            reply = {"ok": False, "kind": "internal", "error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
        zygote = getattr(worker, "zygote", None)
        if zygote is not None and not zygote.clean:  # a job left a process behind that would not die
            os._exit(75)
        worker.idle()


def _await_keeper(reply: dict[str, Any], status_fd: int, timeout: float) -> dict[str, Any]:
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([status_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(status_fd, 512)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(status_fd)
    text = data.decode(errors="replace")
    if text.startswith("pid "):
        return {**reply, "pid": int(text.split()[1])}
    return {"ok": False, "kind": "spawn", "error": f"the env worker did not start: {text or 'no word from it'}"}


def serve(mode: str, config: dict[str, Any]) -> None:
    """Answer JSON-lines requests on stdin until EOF."""
    if "" in sys.path:
        sys.path.remove("")
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p != cwd]
    # The private reply stream: fd 1 is redirected to stderr so that C libraries cannot corrupt it.
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # anything a C library prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    _cq()  # import CadQuery (and scipy's KD-tree) once; every fork reuses them
    make_tree(np.zeros((1, 3)))
    config = {**config, "_hardening": harden_worker()}
    worker: Any
    if mode == "forkserver":
        worker = ForkServer(config)
        if config.get("warmup", True):
            with contextlib.suppress(Exception):
                worker.warm.warmup()
    else:
        worker = AgentWorker(config) if mode == "agent" else GraderWorker(config)
        if config.get("warmup", True):
            with contextlib.suppress(Exception):
                worker.warmup()
    _serve_lines(worker, sys.stdin, channel)


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "agent", json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
