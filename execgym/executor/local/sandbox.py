"""The local executor and its sandboxes: a private work directory plus a supervisor, started on first use."""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import warnings
import weakref
from collections.abc import Mapping
from functools import cache

from execgym.executor import _agent
from execgym.executor.base import (
    ExecResult,
    Executor,
    InfraError,
    Sandbox,
    SandboxSpec,
    looks_out_of_memory,
    sandbox_environment,
    validate_relpath,
)
from execgym.executor.local.bwrap import SANDBOX_UID, bwrap_args, bwrap_status, sandbox_ids, write_identity
from execgym.executor.local.cgroup import memory_limit_scope
from execgym.executor.local.files import chown_tree, open_inside
from execgym.executor.local.session import LocalSession
from execgym.executor.local.supervisor import Exit, Supervisor, job_ids

__all__ = ["UNCONFINED_ENV", "LocalExecutor", "LocalSandbox"]

_CHUNK = 1 << 16

UNCONFINED_ENV = "EXECGYM_LOCAL_UNCONFINED"


class LocalExecutor(Executor):
    """Sandboxes as private temp directories on this machine (see the module docs for the isolation).

    ``use_bwrap``: ``None`` uses bubblewrap when it works here and otherwise *refuses* to make sandboxes
    (unless ``$EXECGYM_LOCAL_UNCONFINED=1``); ``False`` runs without it (no isolation, by explicit
    choice); ``True`` requires it. ``python`` is the interpreter behind ``python`` inside sandboxes
    (default: this one) and the one their supervisor runs on; ``SandboxSpec.python`` overrides the former
    per sandbox (a task's venv).

    >>> ex = LocalExecutor()
    >>> with ex.sandbox() as sb:
    ...     print(sb.run("echo $((6 * 7))").stdout.strip())
    42
    """

    name = "local"

    def __init__(
        self,
        *,
        use_bwrap: bool | None = None,
        python: str | None = None,
        tmp_root: str | os.PathLike[str] | None = None,
    ) -> None:
        ok, why = bwrap_status() if use_bwrap is not False else (False, "disabled by use_bwrap=False")
        if use_bwrap and not ok:
            raise InfraError(f"use_bwrap=True but {why}")
        self.use_bwrap = ok
        self.bwrap_reason = why
        self.unconfined_allowed = use_bwrap is False or os.environ.get(UNCONFINED_ENV, "") == "1"
        self.python = python or sys.executable
        self.tmp_root = os.fspath(tmp_root) if tmp_root is not None else None

    @property
    def memory_scope(self) -> str:
        """``"sandbox"``: ``Limits.memory_bytes`` caps all of a sandbox's processes together (a memory
        cgroup); ``"process"``: it caps each process on its own (RLIMIT_AS only, no cgroup available)."""
        return memory_limit_scope()

    @property
    def isolation(self) -> str:
        """A one-line statement of what confines sandboxes on this machine."""
        mem = "memory limit per sandbox (cgroup)" if self.memory_scope == "sandbox" else "memory limit per process"
        if self.use_bwrap:
            who = f"uid {SANDBOX_UID} (host root dropped)" if os.geteuid() == 0 else "the calling user"
            return (
                f"bubblewrap: runs as {who}, only /usr, the interpreter and the work dir visible (read-only but the "
                f"work dir), private /tmp, PID/IPC/UTS namespaces, network off unless allowed, {mem}, rlimits"
            )
        return (
            f"rlimits and process-group kill only ({self.bwrap_reason}); no file-system or network isolation, "
            f"runs as the calling user, {mem}"
        )

    def sandbox(self, spec: SandboxSpec | None = None) -> LocalSandbox:
        spec = spec or SandboxSpec()
        if not self.use_bwrap and not self.unconfined_allowed:
            raise InfraError(
                f"local sandbox refused: bubblewrap is needed to confine untrusted code and {self.bwrap_reason}; "
                f"install bubblewrap (and allow user namespaces), use executor='docker', or opt in to running "
                f"unconfined with LocalExecutor(use_bwrap=False) or {UNCONFINED_ENV}=1"
            )
        if spec.python is not None and not (os.path.isfile(spec.python) and os.access(spec.python, os.X_OK)):
            raise InfraError(f"the sandbox interpreter {spec.python!r} does not exist or is not executable")
        if not spec.limits.network and not self.use_bwrap:
            _warn_no_network_isolation(self.bwrap_reason)
        return LocalSandbox(self, spec)


@cache
def _warn_no_network_isolation(reason: str) -> None:
    warnings.warn(
        f"execgym local executor: network cannot be disabled without bubblewrap ({reason}); "
        "sandboxed code can reach the network. Use executor='docker' for untrusted code.",
        RuntimeWarning,
        stacklevel=3,
    )


_open_sandboxes: weakref.WeakSet[LocalSandbox] = weakref.WeakSet()


@atexit.register
def _close_open_sandboxes() -> None:
    for sb in list(_open_sandboxes):
        with contextlib.suppress(Exception):
            sb.close()


class LocalSandbox(Sandbox):
    """One private work directory plus its supervisor (started on first use).

    >>> from execgym.executor.base import SandboxSpec
    >>> with LocalExecutor().sandbox() as sb:
    ...     sb.write_files({"d/a.txt": "x"})
    ...     print(sb.run(["cat", "d/a.txt"]).stdout)
    x
    """

    def __init__(self, executor: LocalExecutor, spec: SandboxSpec) -> None:
        super().__init__(spec)
        self.executor = executor
        self.id = f"{os.getpid()}-{next(job_ids)}"
        self.root = tempfile.mkdtemp(prefix="execgym-", dir=executor.tmp_root)
        self.host_workdir = os.path.join(self.root, "work")
        self.workdir = self.host_workdir  # bwrap binds it at the same path
        self.uid, self.gid = sandbox_ids() if executor.use_bwrap else (os.getuid(), os.getgid())
        #: True when the host user is root and commands run as SANDBOX_UID (the work dir is theirs).
        self.drops_privileges = executor.use_bwrap and os.geteuid() == 0
        self._owner = (self.uid, self.gid) if self.drops_privileges else None
        self._sup: Supervisor | None = None
        self._generation = 0
        self._devnull = -1
        #: The interpreter behind ``python`` in this sandbox: the spec's (a venv) or the executor's.
        self.python = spec.python or executor.python
        try:
            if spec.workdir_from is not None:
                shutil.copytree(spec.workdir_from, self.host_workdir, symlinks=True)
            else:
                os.mkdir(self.host_workdir)
            if self._owner is not None:
                chown_tree(self.host_workdir, *self._owner)
                # bwrap enters it (--chdir) as a root without CAP_DAC_*: it must be searchable by others.
                os.chmod(self.host_workdir, 0o755)
            os.mkdir(os.path.join(self.root, "tmp"))
            if executor.use_bwrap:
                write_identity(os.path.join(self.root, "etc"), self.uid, self.gid, self.workdir)
            if spec.files:
                self.write_files(spec.files)
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        py_dir = os.path.dirname(self.python)
        self.env = spec.environment(
            {
                "PATH": f"{py_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                **sandbox_environment(self.workdir, "/tmp" if executor.use_bwrap else os.path.join(self.root, "tmp")),
                "EXECGYM_SANDBOX": self.id,
            }
        )
        _open_sandboxes.add(self)

    # -- supervisor -------------------------------------------------------------------------------

    def bwrap_argv(self) -> list[str]:
        limits = self.spec.limits
        return bwrap_args(
            self.host_workdir,
            limits.network,
            limits.disk_bytes,
            python=self.executor.python,
            sandbox_python=self.python,
            etc_dir=os.path.join(self.root, "etc"),
        )

    @property
    def memory_scope(self) -> str:
        """``"sandbox"`` if this sandbox's memory limit holds for all its processes together (a memory
        cgroup), ``"process"`` if it holds per process only (RLIMIT_AS), ``"none"`` without a limit."""
        if self.spec.limits.memory_bytes is None:
            return "none"
        sup = self._sup
        if sup is not None and not sup.dead:
            return "sandbox" if sup.cgroup is not None and sup.cgroup.memory_dir is not None else "process"
        return memory_limit_scope()

    def host_pids(self) -> list[int]:
        """The pids, as this machine sees them, of the sandbox's processes, where a cgroup holds them (as root);
        otherwise an empty list."""
        sup = self._sup
        if sup is None or sup.dead or sup.cgroup is None:
            return []
        return sup.cgroup.pids()

    # -- what sessions use -------------------------------------------------------------------------

    def supervisor(self) -> Supervisor:
        """The running supervisor, started afresh (a new :attr:`generation`) when there is none or it died."""
        if self._closed:
            raise InfraError("sandbox is closed")
        if self._sup is None or self._sup.dead:
            if self._sup is not None:
                self._sup.kill()
            self._sup = Supervisor(self)
            self._generation += 1
        return self._sup

    @property
    def generation(self) -> int:
        """How many supervisors this sandbox has started: a job outlives none of them."""
        return self._generation

    def live_supervisor(self, generation: int) -> Supervisor | None:
        """The supervisor, if it is alive and still the one of ``generation`` (else its jobs are gone)."""
        sup = self._sup
        if sup is None or sup.dead or generation != self._generation:
            return None
        return sup

    def give_pipes(self, *fds: int) -> None:
        """Make the command's stdio pipes the sandbox user's, so that it can reopen them (``/dev/stderr``,
        ``/dev/fd/N``): a pipe made by root is mode 0600, root's."""
        if self._owner is not None:
            for fd in fds:
                if fd >= 0:
                    os.fchown(fd, *self._owner)

    # -- run -------------------------------------------------------------------------------------------

    def _run(self, argv: list[str], timeout: float, stdin: bytes | None, env: dict[str, str], cwd: str) -> ExecResult:
        return _Run(self, self.supervisor(), argv, timeout, stdin, env, cwd).execute()

    def _new_session(self, argv: list[str], env: dict[str, str]) -> LocalSession:
        return LocalSession(self, argv, env)

    # -- files -----------------------------------------------------------------------------------------

    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        for path, content in files.items():
            rel = validate_relpath(path)
            data = content.encode() if isinstance(content, str) else bytes(content)
            fd = open_inside(
                self.host_workdir, rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, create_parents=True, owner=self._owner
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)

    def read_file(self, path: str) -> bytes:
        rel = validate_relpath(path)
        fd = open_inside(self.host_workdir, rel, os.O_RDONLY, create_parents=False)
        with os.fdopen(fd, "rb") as f:
            return f.read()

    # -- close -----------------------------------------------------------------------------------------

    def _release(self) -> None:
        if self._sup is not None:
            self._sup.shutdown()
            self._sup = None
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1
        shutil.rmtree(self.root, ignore_errors=True)


class _Run:
    """One command's life: spawn through the supervisor, pump pipes, enforce the deadline."""

    def __init__(
        self,
        sb: LocalSandbox,
        sup: Supervisor,
        argv: list[str],
        timeout: float,
        stdin: bytes | None,
        env: dict[str, str],
        cwd: str,
    ) -> None:
        self.sb, self.sup, self.argv, self.timeout = sb, sup, argv, timeout
        self.stdin, self.env, self.cwd = stdin, env, cwd

    def execute(self) -> ExecResult:
        cap = self.sb.spec.limits.output_bytes
        job = next(job_ids)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if self.stdin is None:
            in_r = os.dup(self.sb._devnull)
            in_w = -1
        else:
            in_r, in_w = os.pipe()
            os.set_blocking(in_w, False)
        self.sb.give_pipes(out_r, err_r, in_w)
        cgroup = self.sup.cgroup
        oom_before = cgroup.oom_kills() if cgroup is not None else None
        start = time.monotonic()
        try:
            self.sup.send(
                {"op": "spawn", "id": job, "argv": self.argv, "env": self.env, "cwd": self.cwd, "kind": "run"},
                (in_r, out_w, err_w),
            )
        finally:
            os.close(in_r)
            os.close(out_w)
            os.close(err_w)
        out, err = _agent.Capture(cap, 0), _agent.Capture(cap)
        streams = {out_r: out, err_r: err}
        pending = memoryview(self.stdin or b"")
        poller = select.poll()
        poller.register(out_r, select.POLLIN)
        poller.register(err_r, select.POLLIN)
        poller.register(self.sup.sock, select.POLLIN)
        if in_w >= 0:
            poller.register(in_w, select.POLLOUT)
        deadline = start + self.timeout
        timed_out = False
        result: Exit | str | None = None
        open_streams = 2
        try:
            while open_streams or result is None:
                now = time.monotonic()
                if now >= deadline and not timed_out and (result is None or open_streams):
                    timed_out = True
                    self.sup.send({"op": "kill", "id": job})
                    deadline = now + 5.0  # the supervisor answers a kill in milliseconds
                elif now >= deadline and timed_out:
                    # The supervisor did not report the kill: it is wedged, restart it.
                    self.sup.kill()
                    result = result or Exit(-signal.SIGKILL, True, 0.0)
                    break
                if self.sup.dead and result is None:
                    result = Exit(-signal.SIGKILL, False, 0.0)
                    err.feed(b"\n[execgym: sandbox supervisor died]\n")
                for fd, ev in poller.poll(max(0.0, deadline - now) * 1000):
                    if fd == self.sup.sock.fileno():
                        if ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN:
                            self.sup.dead = True
                            poller.unregister(fd)
                            continue
                        self.sup.pump()
                        if job in self.sup.exits:
                            result = self.sup.exits.pop(job)
                        if self.sup.dead:
                            poller.unregister(fd)
                    elif fd == in_w:
                        try:
                            n = os.write(in_w, pending[:_CHUNK])
                            pending = pending[n:]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            poller.unregister(in_w)
                            os.close(in_w)
                            in_w = -1
                    else:
                        data = os.read(fd, _CHUNK)
                        if data:
                            streams[fd].feed(data)
                        else:
                            poller.unregister(fd)
                            open_streams -= 1
                if isinstance(result, str):
                    break
        finally:
            for fd in (out_r, err_r, in_w):
                if fd >= 0:
                    os.close(fd)
        duration = time.monotonic() - start
        if isinstance(result, str):  # the spawn itself failed (command not found, not executable)
            return ExecResult(
                127, "", f"execgym: cannot run {self.argv[0]!r}: {result}\n", duration, False, False, False
            )
        assert result is not None
        limits = self.sb.spec.limits
        cpu_limited = limits.cpu_time_s is not None and result.cpu_s >= limits.cpu_time_s - 0.05
        oom = looks_out_of_memory(
            err.tail,
            result.code,
            killed_by_us=timed_out or result.killed or cpu_limited,
            memory_limited=limits.memory_bytes is not None,
        )
        if oom_before is not None and cgroup is not None:
            # The memory cgroup counts the kernel's OOM kills: any during the run means one of its
            # processes (not necessarily the first) died for lack of memory.
            oom = oom or (cgroup.oom_kills() or 0) > oom_before
        return ExecResult(
            exit_code=result.code,
            stdout=out.value().decode(errors="replace"),
            stderr=err.value().decode(errors="replace"),
            duration_s=duration,
            timed_out=timed_out,
            truncated=out.truncated or err.truncated,
            oom_killed=oom and not timed_out,
        )
