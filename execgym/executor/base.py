"""What every executor backend shares: limits, specs, results, errors and the abstract interfaces.

An :class:`Executor` makes :class:`Sandbox` es from a :class:`SandboxSpec`; a sandbox runs commands
(:meth:`Sandbox.run` -> :class:`ExecResult`), moves files in and out, and hosts long-lived JSON-lines
workers (:meth:`Sandbox.session` -> :class:`Session`). Hitting a limit is a normal, reported result;
only a failure of the machinery itself (a daemon gone, a container vanished) raises :class:`InfraError`.

>>> limits = Limits(wall_time_s=5, memory_bytes=512 * MiB)
>>> spec = SandboxSpec(image="python", files={"main.py": "print(6 * 7)"}, limits=limits)
>>> spec.limits.network
False
>>> validate_relpath("src/./pkg/mod.py")
'src/pkg/mod.py'
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import posixpath
import re
import select
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Self

from execgym.core.errors import InfraError
from execgym.executor import _agent

__all__ = [
    "ExecResult",
    "Executor",
    "GiB",
    "InfraError",
    "Limits",
    "MiB",
    "PathError",
    "Sandbox",
    "SandboxSpec",
    "Session",
    "SessionReply",
    "validate_relpath",
]
# Also here for the backends, not exported by the package: AGENT_SOURCE, looks_out_of_memory, normalize_cmd,
# sandbox_environment, send_all, wait_fd.

#: The in-sandbox worker's source: both backends run it with ``python -c`` where the package is not visible.
AGENT_SOURCE = Path(_agent.__file__).read_text()

MiB = 1024 * 1024
GiB = 1024 * MiB


class PathError(ValueError):
    """A sandbox path is absolute, climbs out with ``..``, or resolves outside the sandbox via a symlink.

    >>> try:
    ...     validate_relpath("../etc/passwd")
    ... except PathError as e:
    ...     print(e)
    path '../etc/passwd' must not contain '..'
    """


@dataclass(frozen=True)
class Limits:
    """Resource limits enforced on everything a sandbox runs.

    ``None`` means "no limit" for the optional ones. ``wall_time_s`` is the default timeout of
    :meth:`Sandbox.run` and :meth:`Session.request`; ``output_bytes`` caps each of stdout and stderr;
    ``disk_bytes`` caps the work directory (Docker) or the size of any one file (local: RLIMIT_FSIZE);
    ``cpu_time_s`` is per process and applies to :meth:`Sandbox.run` commands, not session workers.

    >>> Limits(memory_bytes=256 * MiB).memory_bytes // MiB
    256
    >>> Limits(network=True).network
    True
    """

    wall_time_s: float = 30.0
    cpu_time_s: float | None = 30.0
    memory_bytes: int | None = 2 * GiB
    max_processes: int | None = 128
    output_bytes: int = 1 * MiB
    disk_bytes: int | None = 512 * MiB
    network: bool = False

    def __post_init__(self) -> None:
        if not self.wall_time_s > 0:
            raise ValueError(f"wall_time_s must be > 0, got {self.wall_time_s!r}")
        if self.cpu_time_s is not None and not self.cpu_time_s > 0:
            raise ValueError(f"cpu_time_s must be > 0 or None, got {self.cpu_time_s!r}")
        if self.memory_bytes is not None and self.memory_bytes < 32 * MiB:
            raise ValueError(f"memory_bytes must be >= 32 MiB or None, got {self.memory_bytes!r}")
        if self.max_processes is not None and self.max_processes < 2:
            raise ValueError(f"max_processes must be >= 2 or None, got {self.max_processes!r}")
        if self.output_bytes < 1:
            raise ValueError(f"output_bytes must be >= 1, got {self.output_bytes!r}")
        if self.disk_bytes is not None and self.disk_bytes < 1 * MiB:
            raise ValueError(f"disk_bytes must be >= 1 MiB or None, got {self.disk_bytes!r}")


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class SandboxSpec:
    """What a sandbox should contain and how it is confined.

    ``image`` is a kind (``"python"``, ``"cad"``) that each backend maps to its environment (Docker: an
    image tag; local: the host's Python), or, for Docker, a full image reference. ``workdir_from`` is a
    host directory copied in as the work directory; ``files`` (relative path -> text or bytes) are
    written on top of it. ``env`` sets variables; ``pass_env`` names host variables allowed in. Nothing
    else from the host environment reaches the sandbox.

    ``python`` (local backend only; Docker ignores it, its image has its own) is the interpreter behind
    ``python`` in this sandbox, e.g. a virtual environment's ``bin/python``, instead of the executor's: its
    ``bin`` folder leads ``PATH``, and with bubblewrap its folders are bound read-only (the venv cannot be
    written to) while the executor's site-packages stay hidden unless the venv includes them. It must
    exist when the sandbox is made; a relative path is made absolute (symlinks are kept: they make a venv).

    >>> spec = SandboxSpec(files={"a.txt": "hi"}, env={"SEED": "1"}, pass_env=("HF_HOME",))
    >>> dict(spec.files)
    {'a.txt': 'hi'}
    >>> hash(spec) == hash(SandboxSpec(files={"a.txt": "other"}, env={"SEED": "1"}, pass_env=("HF_HOME",)))
    True
    >>> SandboxSpec(python="/opt/venv/bin/python").python
    '/opt/venv/bin/python'
    """

    image: str = "python"
    workdir_from: str | os.PathLike[str] | None = None
    files: Mapping[str, str | bytes] = field(default_factory=dict, hash=False)
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    pass_env: tuple[str, ...] = ()
    python: str | None = None

    def __post_init__(self) -> None:
        if self.python is not None:
            text = os.fspath(self.python)
            if not isinstance(text, str) or not text or "\x00" in text:
                raise ValueError(f"python must be a path to an interpreter, got {self.python!r}")
            object.__setattr__(self, "python", os.path.abspath(text))
        object.__setattr__(self, "files", _frozen_mapping(self.files))
        object.__setattr__(self, "env", _frozen_mapping(self.env))
        object.__setattr__(self, "pass_env", tuple(self.pass_env))
        if self.workdir_from is not None:
            object.__setattr__(self, "workdir_from", Path(self.workdir_from))
        for path in self.files:
            validate_relpath(path)
        for key, value in self.env.items():
            if not isinstance(value, str) or "=" in key or not key:
                raise ValueError(f"bad environment entry {key!r}={value!r}")

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The sandbox environment: ``base`` (the backend's defaults), then allowed host vars, then ``env``.

        >>> SandboxSpec(env={"A": "1"}).environment({"PATH": "/usr/bin"})
        {'PATH': '/usr/bin', 'A': '1'}
        """
        out = dict(base)
        for name in self.pass_env:
            if name in os.environ:
                out[name] = os.environ[name]
        out.update(self.env)
        return out


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one :meth:`Sandbox.run`.

    ``exit_code`` follows :mod:`subprocess`: negative means killed by that signal (``-9`` for SIGKILL).
    ``stdout``/``stderr`` are decoded as UTF-8 (invalid bytes replaced) and hold at most
    ``Limits.output_bytes`` bytes each; ``truncated`` says whether anything was cut. ``oom_killed`` is
    the backend's best judgement that the command died for lack of memory (see each backend's notes).

    >>> r = ExecResult(0, "ok\\n", "", 0.01, False, False, False)
    >>> r.ok
    True
    """

    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool
    truncated: bool
    oom_killed: bool

    @property
    def ok(self) -> bool:
        """Exited 0 without hitting the timeout."""
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class SessionReply:
    """The outcome of one :meth:`Session.request`.

    ``value`` is the worker's JSON reply when ``ok``. Otherwise ``error`` says why there was none (the
    worker crashed, timed out, or answered with something that is not JSON). ``restarted`` means the
    worker was killed and started afresh during this call, so state from earlier calls is gone.
    ``stderr`` is what the worker wrote to stderr since the previous call (capped).

    >>> SessionReply(value={"x": 1}, ok=True, error=None, timed_out=False, restarted=False,
    ...              duration_s=0.001, stderr="").value["x"]
    1
    """

    value: Any
    ok: bool
    error: str | None
    timed_out: bool
    restarted: bool
    duration_s: float
    stderr: str


_DRIVE = re.compile(r"^[A-Za-z]:")


def validate_relpath(path: str | os.PathLike[str]) -> str:
    """Check a sandbox path is relative and stays inside; returns it normalised (no ``.`` parts).

    Symlinks cannot be judged here (the file system is the sandbox's); backends re-check while opening.

    >>> validate_relpath("a/b/../c")
    Traceback (most recent call last):
    ...
    execgym.executor.base.PathError: path 'a/b/../c' must not contain '..'
    """
    text = os.fspath(path)
    if not isinstance(text, str):
        raise PathError(f"path {text!r} must be text")
    if not text or "\x00" in text:
        raise PathError(f"path {text!r} is empty or contains NUL")
    if text.startswith(("/", "\\")) or _DRIVE.match(text):
        raise PathError(f"path {text!r} must be relative to the sandbox work directory")
    parts = [p for p in PurePosixPath(text.replace("\\", "/")).parts if p not in ("", ".")]
    if ".." in parts:
        raise PathError(f"path {text!r} must not contain '..'")
    if not parts:
        raise PathError(f"path {text!r} names the work directory itself, not a file")
    return "/".join(parts)


def sandbox_environment(home: str, tmpdir: str) -> dict[str, str]:
    """The variables every backend gives its commands (before the spec's own): UTF-8, unbuffered Python
    without bytecode files, single-threaded BLAS/OpenMP, a dumb terminal.

    >>> sandbox_environment("/work", "/tmp")["OMP_NUM_THREADS"]
    '1'
    """
    return {
        "HOME": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": tmpdir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TERM": "dumb",
    }


def normalize_cmd(cmd: str | Sequence[str]) -> list[str]:
    """An argv list: a string runs through ``/bin/sh -c``; a sequence is used as is.

    >>> normalize_cmd("echo hi | wc -c")
    ['/bin/sh', '-c', 'echo hi | wc -c']
    >>> normalize_cmd(["python", "-V"])
    ['python', '-V']
    """
    if isinstance(cmd, str):
        return ["/bin/sh", "-c", cmd]
    argv = [os.fspath(a) for a in cmd]
    if not argv:
        raise ValueError("empty command")
    return argv


_OOM_MARKERS = (
    b"MemoryError",
    b"Cannot allocate memory",
    b"std::bad_alloc",
    b"out of memory",
    b"Out of memory",
)


def looks_out_of_memory(stderr_tail: bytes, exit_code: int, *, killed_by_us: bool, memory_limited: bool) -> bool:
    """The shared out-of-memory heuristic (see the backends' docs for where it is refined).

    True when a memory limit is set and either the end of stderr shows an allocation failure
    (Python ``MemoryError``, ``std::bad_alloc``, ``Cannot allocate memory``, ``out of memory``), or the
    process died of a SIGKILL that the executor did not send (the kernel OOM killer's signature).
    SIGSEGV is deliberately not counted: it is as often a plain bug as a failed ``malloc``.

    >>> looks_out_of_memory(b"Traceback ...\\nMemoryError\\n", 1, killed_by_us=False, memory_limited=True)
    True
    >>> looks_out_of_memory(b"", -9, killed_by_us=True, memory_limited=True)
    False
    """
    if not memory_limited:
        return False
    if exit_code == -9 and not killed_by_us:
        return True
    return exit_code != 0 and any(m in stderr_tail for m in _OOM_MARKERS)


class _Closing(abc.ABC):
    """``with`` support for everything that has a ``close``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what this object holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Session(_Closing):
    """A long-lived worker process inside a sandbox, spoken to in JSON lines over its stdin/stdout.

    Each :meth:`request` writes one JSON line and waits for one JSON line back. A worker that crashes or
    exceeds the timeout is killed and started again; the reply says so (``restarted=True``). A worker
    that died *between* requests is restarted before the next request is sent when its death has
    already been noticed (that reply is served by the new worker and says ``restarted=True``);
    otherwise that request reports the death and the following one runs on a fresh worker. Lines on
    stdout that are not JSON are skipped and shown in the reply's ``stderr``.

    :meth:`request` is the one template both backends share (framing, deadline, reading, error
    mapping); a backend implements the worker's transport in the hooks ``_start``, ``_kill_worker``,
    ``_worker_alive``, ``_send``, ``_receive`` and ``_death_note``.

    >>> from execgym.executor import LocalExecutor
    >>> worker = "import json,sys\\nn=0\\nfor line in sys.stdin:\\n    n+=1; print(json.dumps(n), flush=True)"
    >>> with LocalExecutor().sandbox() as sb:
    ...     s = sb.session(["python", "-c", worker])
    ...     print(s.request({"op": "inc"}).value, s.request({"op": "inc"}).value)
    1 2
    """

    def __init__(self, sandbox: Sandbox, argv: list[str], env: Mapping[str, str]) -> None:
        self.argv = argv
        self.env = dict(env)
        #: How many times the worker was started afresh.
        self.restarts = 0
        self._lock = sandbox.lock
        self._limits = sandbox.spec.limits
        self._closed = False
        self._buf = b""  # the worker's stdout, not yet split into replies
        # Its stderr (and non-JSON stdout) since the last reply.
        self._stderr = _agent.Capture(self._limits.output_bytes, 0)

    # -- the backend's hooks ------------------------------------------------------------------------

    @abc.abstractmethod
    def _start(self) -> None:
        """Start the worker (its output goes to ``_buf`` and ``_stderr`` through :meth:`_receive`)."""

    @abc.abstractmethod
    def _kill_worker(self) -> None:
        """Stop the worker, keeping what it still wrote to stderr; idempotent."""

    @abc.abstractmethod
    def _worker_alive(self) -> bool:
        """Take in what the worker wrote since the last request; False when it is known to be gone."""

    @abc.abstractmethod
    def _send(self, data: bytes, deadline: float) -> None:
        """Write ``data`` to the worker's stdin; TimeoutError at ``deadline``, OSError if it is gone."""

    @abc.abstractmethod
    def _receive(self, deadline: float) -> bool:
        """Wait until ``deadline`` for output and take it in; False once the worker's stdout has ended."""

    @abc.abstractmethod
    def _death_note(self, what: str) -> str:
        """``what`` happened to the worker, with its exit code (or why it could not start)."""

    @abc.abstractmethod
    def detach(self) -> None:
        """Let go of the worker's pipes without speaking to it: its sandbox is closing and kills it."""

    def _drain_stderr(self) -> None:
        """Take in stderr that arrived apart from :meth:`_receive`."""

    # -- the shared template ------------------------------------------------------------------------

    def request(self, message: Any, timeout: float | None = None) -> SessionReply:
        """Send one JSON-serialisable message and wait for the reply line (``timeout``: ``wall_time_s``)."""
        line = (json.dumps(message) + "\n").encode()
        timeout = self._limits.wall_time_s if timeout is None else float(timeout)
        with self._lock:
            if self._closed:
                raise InfraError("session is closed")
            start = time.monotonic()
            restarted = not self._worker_alive()
            if restarted:
                self._restart()
            value, error, timed_out = self._exchange(line, start + timeout)
            if error is not None:
                self._kill_worker()
                stderr = self._take_stderr()
                self._restart()
                return SessionReply(None, False, error, timed_out, True, time.monotonic() - start, stderr)
            return SessionReply(value, True, None, False, restarted, time.monotonic() - start, self._take_stderr())

    def _exchange(self, line: bytes, deadline: float) -> tuple[Any, str | None, bool]:
        """Write the request and read up to its reply, as ``(value, error, timed_out)``."""
        try:
            self._send(line, deadline)
        except TimeoutError:
            return None, "timed out writing the request (worker not reading stdin)", True
        except OSError:
            return None, self._death_note("worker exited before the request was written"), False
        cap = self._limits.output_bytes
        stdout_open = True
        while True:
            reply = self._take_reply(cap)
            if reply is not None:
                return reply
            if not stdout_open:
                return None, self._death_note("worker exited without replying"), False
            if time.monotonic() >= deadline:
                return None, "no reply before the timeout: worker killed", True
            stdout_open = self._receive(deadline)

    def _take_reply(self, cap: int) -> tuple[Any, str | None, bool] | None:
        """The next JSON reply in the stdout buffer as ``(value, error, timed_out)``, or None while incomplete.

        Lines that are not JSON are kept with the worker's stderr; a reply over ``cap`` bytes is an error.
        """
        nl = self._buf.find(b"\n")
        while nl >= 0:
            raw, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            if len(raw) > cap:
                return None, f"reply exceeds the output limit ({cap} bytes)", False
            try:
                return json.loads(raw), None, False
            except ValueError:
                self._stderr.feed(b"[non-JSON stdout] " + raw[:1000] + b"\n")
            nl = self._buf.find(b"\n")
        if len(self._buf) > cap:
            return None, f"reply exceeds the output limit ({cap} bytes)", False
        return None

    def _take_stderr(self) -> str:
        self._drain_stderr()
        text = self._stderr.value().decode(errors="replace")
        self._stderr = _agent.Capture(self._limits.output_bytes, 0)
        return text

    def _restart(self) -> None:
        self._kill_worker()
        self.restarts += 1
        self._buf = b""
        self._start()

    def close(self) -> None:
        """Stop the worker (and anything it started)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._kill_worker()


class Sandbox(_Closing):
    """An isolated work directory where commands run under :class:`Limits`.

    ``workdir`` is the work directory's path as commands see it (their cwd and ``HOME``); ``env`` is
    the environment every command gets; ``lock`` is held by every operation on the sandbox and on its
    sessions. :meth:`run` and :meth:`session` check their arguments here and leave the work to the
    backend's ``_run`` and ``_new_session``.

    >>> from execgym.executor import LocalExecutor
    >>> with LocalExecutor().sandbox(SandboxSpec(files={"x.py": "print(1 + 1)"})) as sb:
    ...     r = sb.run(["python", "x.py"], timeout=10)
    ...     print(r.exit_code, r.stdout.strip(), sb.read_file("x.py"))
    0 2 b'print(1 + 1)'
    """

    workdir: str
    env: Mapping[str, str]

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self.lock = threading.RLock()
        self._closed = False
        self._sessions: list[Session] = []
        self._owner_pid = os.getpid()  # a forked child's copy is not its own to close

    def run(
        self,
        cmd: str | Sequence[str],
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> ExecResult:
        """Run a command (argv list, or a string for ``/bin/sh -c``) in the work directory.

        ``timeout`` defaults to ``spec.limits.wall_time_s``; ``cwd`` is relative to the work directory;
        ``env`` adds variables for this command only.
        """
        argv = normalize_cmd(cmd)
        timeout = self.spec.limits.wall_time_s if timeout is None else float(timeout)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        workdir = self.workdir if cwd is None else posixpath.join(self.workdir, validate_relpath(cwd))
        with self.lock:
            return self._run(argv, timeout, data, self.job_env(env), workdir)

    def session(self, cmd: str | Sequence[str], *, env: Mapping[str, str] | None = None) -> Session:
        """Start a JSON-lines worker that keeps its state between requests."""
        with self.lock:
            s = self._new_session(normalize_cmd(cmd), self.job_env(env))
            self._sessions.append(s)
            return s

    def job_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        """The environment of one command or session: the sandbox's, plus ``env``."""
        return {**self.env, **(env or {})}

    @abc.abstractmethod
    def _run(self, argv: list[str], timeout: float, stdin: bytes | None, env: dict[str, str], cwd: str) -> ExecResult:
        """Run ``argv`` (the lock is held; ``cwd`` is absolute, as commands see it)."""

    @abc.abstractmethod
    def _new_session(self, argv: list[str], env: dict[str, str]) -> Session:
        """Start a session's worker (the lock is held)."""

    @abc.abstractmethod
    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        """Write files (relative path -> text or bytes), creating parent directories."""

    @abc.abstractmethod
    def read_file(self, path: str) -> bytes:
        """Read one file of the work directory."""

    @abc.abstractmethod
    def _release(self) -> None:
        """Kill everything the sandbox started and delete it (called once, its sessions detached, lock held)."""

    def close(self) -> None:
        """Kill everything the sandbox started and delete it. Idempotent.

        In a process forked after the sandbox was made (a vector env's subprocess), closing only forgets
        the copy: the sandbox and its processes stay the parent's.
        """
        with self.lock:
            if self._closed:
                return
            self._closed = True
            if os.getpid() != getattr(self, "_owner_pid", os.getpid()):
                return
            for s in self._sessions:
                s.detach()
            self._release()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image={self.spec.image!r}, workdir={self.workdir!r})"


class Executor(_Closing):
    """Makes sandboxes. Backends: ``"local"`` (:class:`~execgym.executor.local.LocalExecutor`) and
    ``"docker"`` (:class:`~execgym.executor.docker.DockerExecutor`); pick one with
    :func:`~execgym.executor.get_executor`.

    >>> from execgym.executor import get_executor
    >>> ex = get_executor("local")
    >>> with ex.sandbox() as sb:
    ...     print(sb.run("echo $HOME | grep -c execgym").stdout.strip())
    1
    """

    name: str

    @abc.abstractmethod
    def sandbox(self, spec: SandboxSpec | None = None) -> Sandbox:
        """A fresh sandbox for ``spec`` (defaults: ``SandboxSpec()``)."""

    def close(self) -> None:
        """Release executor-wide resources (pools, clients). Sandboxes already handed out stay usable."""


def wait_fd(fd: int, events: int, timeout: float | None) -> bool:
    """Wait until ``fd`` is ready (poll, not select: descriptors above 1024 are fine)."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))


def send_all(fd: int, data: bytes, deadline: float, write: Callable[[memoryview], int] | None = None) -> None:
    """Write all of ``data`` to the non-blocking ``fd`` (with ``write``, default ``os.write``) by ``deadline``.

    Raises TimeoutError when the reader stops reading, and the writer's OSError (a closed pipe) as is.
    """
    view = memoryview(data)
    while view:
        try:
            view = view[(write(view) if write is not None else os.write(fd, view)) :]
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError from None
            wait_fd(fd, select.POLLOUT, left)
