"""The Docker executor (pools, containers handed out once) and its sandboxes."""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import posixpath
import tarfile
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from execgym.executor import _agent
from execgym.executor.base import (
    ExecResult,
    Executor,
    InfraError,
    Limits,
    MiB,
    PathError,
    Sandbox,
    SandboxSpec,
    looks_out_of_memory,
    sandbox_environment,
    validate_relpath,
)
from execgym.executor.docker.archive import _check_link, _initial_tar_cached, _stat_path, _tar_files
from execgym.executor.docker.container import (
    _AGENT,
    _EXTRA_PIDS,
    _LOADER,
    DEFAULT_IMAGES,
    EXECUTOR_ID,
    USER,
    WORKDIR,
    _client,
    _ExecStream,
    _labels,
    _running,
    _safe_remove_volume,
    _Slot,
    open_exec,
    resolve_image,
)
from execgym.executor.docker.pool import _Pool, _Reaper
from execgym.executor.docker.session import DockerSession

if TYPE_CHECKING:
    import docker as docker_sdk

__all__ = ["DockerExecutor", "DockerSandbox"]

_live_executors: weakref.WeakSet[DockerExecutor] = weakref.WeakSet()


@atexit.register
def _close_all_executors() -> None:
    # At exit, sandboxes still open go too: their containers are queued for removal and close() waits.
    for ex in list(_live_executors):
        for sb in list(ex._sandboxes):
            with contextlib.suppress(Exception):
                sb.close()
        ex.close()


# ----------------------------------------------------------------------------------- executor


class DockerExecutor(Executor):
    """Sandboxes as locked-down containers (see the module docs), with a warm pool per (image, limits).

    ``pool_size`` started containers are kept ready for every (image, limits) seen so far (0 disables
    the pool); ``cpus`` is each container's CPU quota; ``images`` maps extra kinds to image tags.

    A container is used by one sandbox only: closing the sandbox queues the container for removal on a
    background thread (:meth:`wait_removed` waits for the queue; :meth:`close`, also run at exit, does),
    and the pool refills itself with new ones. Every container carries the label ``execgym.executor`` =
    :attr:`id` as well as the owner labels. Safe to share between threads (vector envs, async rollouts).

    >>> from execgym.executor.docker import docker_available, image_available
    >>> ok, _ = docker_available()
    >>> if ok and image_available("python")[0]:
    ...     with DockerExecutor(pool_size=0) as ex, ex.sandbox() as sb:
    ...         print(sb.run(["python", "-c", "print(2 ** 10)"]).stdout.strip())
    ... else:
    ...     print(1024)
    1024
    """

    name = "docker"

    def __init__(
        self,
        *,
        pool_size: int = 2,
        cpus: float = 1.0,
        images: Mapping[str, str] | None = None,
        client: docker_sdk.DockerClient | None = None,
    ) -> None:
        self.client = client or _client()
        self.api = self.client.api
        self.pool_size = pool_size
        self.cpus = cpus
        self.images = dict(images or {})
        self._pools: dict[tuple[str, Limits], _Pool] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._drained = False  # closed and drained: later removals happen at once, in the caller
        self._reaper = _Reaper(max_pending=max(32, 4 * pool_size))
        self._sandboxes: weakref.WeakSet[DockerSandbox] = weakref.WeakSet()
        self.id = uuid.uuid4().hex[:16]
        _live_executors.add(self)

    @property
    def removal_errors(self) -> list[str]:
        """Background removals that failed (the containers stay labelled for ``execgym sandbox gc``)."""
        return list(self._reaper.errors)

    def wait_removed(self, timeout: float = 60.0) -> bool:
        """Wait until every container handed back so far is removed; False if some are still pending."""
        return self._reaper.drain(timeout)

    def _retire(self, slot: _Slot) -> None:
        """Remove a container that must never be used again: in the background while the executor lives."""
        slot.used = True
        if self._drained:
            slot.drop_loader()
            with contextlib.suppress(Exception):
                slot.destroy()
            return
        self._reaper.retire(slot)

    # -- containers -----------------------------------------------------------------------------------

    def _create_slot(self, image: str, limits: Limits) -> _Slot:
        import docker

        labels = {**_labels(), EXECUTOR_ID: self.id}
        opts = f"uid=1000,gid=1000,mode=0755{f',size={limits.disk_bytes}' if limits.disk_bytes else ''}"
        try:
            volume = self.client.volumes.create(
                driver="local", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": opts}, labels=labels
            )
        except docker.errors.DockerException as e:
            raise InfraError(f"cannot create the sandbox volume: {e}") from e
        tmp_opts = "mode=1777" + (f",size={limits.disk_bytes}" if limits.disk_bytes else "")
        kwargs: dict[str, Any] = {
            "command": [*_AGENT, "idle", "{}"],
            "user": USER,
            "working_dir": WORKDIR,
            "network_mode": "bridge" if limits.network else "none",
            "read_only": True,
            "tmpfs": {"/tmp": tmp_opts},
            "volumes": {volume.name: {"bind": WORKDIR, "mode": "rw"}},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "labels": labels,
            "nano_cpus": int(self.cpus * 1e9),
            "hostname": "sandbox",
            "stop_signal": "SIGKILL",
            "environment": {"HOME": WORKDIR},
            "detach": True,
        }
        if limits.memory_bytes is not None:
            kwargs["mem_limit"] = limits.memory_bytes
            kwargs["memswap_limit"] = limits.memory_bytes
        if limits.max_processes is not None:
            kwargs["pids_limit"] = limits.max_processes + _EXTRA_PIDS
        kwargs.pop("detach")
        container = None
        try:
            container = self.client.containers.create(image, **kwargs)
            container.start()
        except docker.errors.ImageNotFound as e:
            _Slot(container, volume).destroy() if container is not None else _safe_remove_volume(volume)
            name = next((k for k, v in DEFAULT_IMAGES.items() if v == image), None)
            hint = f"; build it with `execgym images build {name}`" if name else ""
            raise InfraError(f"image {image} not found{hint}") from e
        except docker.errors.DockerException as e:
            with contextlib.suppress(Exception):  # created but not started: it must not stay behind
                _Slot(container, volume).destroy() if container is not None else _safe_remove_volume(volume)
            raise InfraError(f"cannot start a sandbox container from {image}: {e}") from e
        return _Slot(container, volume)

    def _start_loader(self, slot: _Slot) -> _ExecStream:
        """Start the exec that will extract the first sandbox contents (a tar on its stdin) into /work."""
        import docker

        try:
            env = {"HOME": WORKDIR, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
            return open_exec(self.api, slot.container.id, ["python3", "-I", "-S", "-c", _LOADER], stdin=True, env=env)
        except docker.errors.DockerException as e:
            raise InfraError(f"cannot start the loader in {slot.container.short_id}: {e}") from e

    def _pool(self, image: str, limits: Limits) -> _Pool | None:
        if self.pool_size <= 0:
            return None
        key = (image, limits)
        with self._lock:
            if self._closed:
                raise InfraError("executor is closed")
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _Pool(self, image, limits, self.pool_size)
        return pool

    def warm(self, spec: SandboxSpec | None = None, timeout: float = 120.0) -> bool:
        """Fill the pool for ``spec``'s image and limits now; True once ``pool_size`` containers wait."""
        spec = spec or SandboxSpec()
        pool = self._pool(resolve_image(spec.image, self.images), spec.limits)
        return pool.wait_full(timeout) if pool is not None else True

    def sandbox(self, spec: SandboxSpec | None = None) -> DockerSandbox:
        spec = spec or SandboxSpec()
        image = resolve_image(spec.image, self.images)
        pool = self._pool(image, spec.limits)
        has_contents = spec.workdir_from is not None or bool(spec.files)
        sb = None
        while pool is not None and sb is None:
            slot = pool.acquire()
            if slot is None:
                break
            # A container that died while waiting (killed, daemon restart) is retired, and the pool makes
            # a new one. Loading the first contents proves the container alive; without any, ask the daemon.
            if not has_contents and not _running(slot):
                self._retire(slot)
                continue
            with contextlib.suppress(_DeadContainer):  # DockerSandbox retired it
                sb = DockerSandbox(self, spec, slot)
        if sb is None:
            slot = self._create_slot(image, spec.limits)
            slot.used = True
            sb = DockerSandbox(self, spec, slot)
        self._sandboxes.add(sb)
        return sb

    def close(self, timeout: float = 60.0) -> None:
        """Stop the pools and wait until every container they or closed sandboxes held is removed.

        Sandboxes still open stay usable; closing one later removes its container at once.
        """
        with self._lock:
            self._closed = True
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.stop()
        deadline = time.monotonic() + timeout
        for pool in pools:  # a container still being created is retired by its thread when it is ready
            pool.thread.join(max(0.0, deadline - time.monotonic()))
        self._reaper.drain(max(0.0, deadline - time.monotonic()))
        self._drained = True


class _DeadContainer(InfraError):
    """A pooled container found dead when handed out: the caller takes another one."""


class DockerSandbox(Sandbox):
    """One container (see :class:`DockerExecutor`); ``workdir`` is ``/work``.

    >>> from execgym.executor.docker import docker_available, image_available
    >>> ok, _ = docker_available()
    >>> if ok and image_available("python")[0]:
    ...     with DockerExecutor(pool_size=0).sandbox(SandboxSpec(files={"a.txt": "hi"})) as sb:
    ...         print(sb.run("cat a.txt").stdout)
    ... else:
    ...     print("hi")
    hi
    """

    workdir = WORKDIR

    def __init__(self, executor: DockerExecutor, spec: SandboxSpec, slot: _Slot) -> None:
        super().__init__(spec)
        self.executor = executor
        self.api = executor.api
        self.slot = slot
        self.container = slot.container
        self.env = spec.environment(sandbox_environment(WORKDIR, "/tmp"))
        try:
            if spec.workdir_from is not None or spec.files:
                # One archive for the initial contents: the volume is known to be empty, so no
                # round trips are needed to check parents (symlinks are judged on the host copy).
                data = _initial_tar_cached(spec)
                loaded = self._load(data)
                if loaded is False and not _running(slot):
                    raise _DeadContainer(f"docker sandbox {self.container.short_id}: died in the pool")
                if not loaded:
                    self._put_tar(data)
            slot.drop_loader()
        except BaseException:
            self.close()
            raise

    def _load(self, data: bytes) -> bool | None:
        """Hand the first contents to the slot's pre-started loader: None if it has none, else whether it
        extracted them (the container was running then)."""
        loader, self.slot.loader = self.slot.loader, None
        if loader is None:
            return None
        deadline = time.monotonic() + 60.0 + len(data) / (8 * MiB)
        out = b""
        try:
            loader.send(data, deadline)
            loader.close_stdin()
            for kind, chunk in loader.frames(deadline):
                if kind == 1:
                    out += chunk
                    if out.endswith(b"\n"):
                        break
        except (OSError, TimeoutError):
            return False
        finally:
            loader.close()
        return out == b"execgym-load-ok\n"

    # -- docker plumbing --------------------------------------------------------------------------

    def _infra(self, what: str, e: Exception) -> InfraError:
        return InfraError(f"docker sandbox {self.container.short_id}: {what}: {e}")

    # -- what sessions use ------------------------------------------------------------------------

    def exec(
        self, argv: list[str], *, stdin: bool, env: Mapping[str, str] | None = None, workdir: str = WORKDIR
    ) -> _ExecStream:
        """Start ``argv`` in the container as the sandbox user (``env``: the sandbox's) and attach to it."""
        import docker

        if self._closed:
            raise InfraError("sandbox is closed")
        try:
            env = self.env if env is None else env
            return open_exec(self.api, self.container.id, argv, stdin=stdin, env=env, workdir=workdir)
        except docker.errors.DockerException as e:
            raise self._infra("exec failed (container gone?)", e) from e

    def agent(self, mode: str, config: Mapping[str, Any], *, timeout: float = 10.0) -> bool:
        """Run the in-container agent in ``mode`` (a kill) to its end; False if it could not be started."""
        try:
            stream = self.exec([*_AGENT, mode, json.dumps(config)], stdin=False)
        except InfraError:
            return False
        stream.drain(timeout)
        return True

    def killall(self) -> None:
        """Kill every process of the sandbox user (the supervisor, PID 1, is immune)."""
        self.agent("killall", {})

    def exec_info(self, exec_id: str) -> dict[str, Any]:
        """What the daemon knows of an exec (``ExitCode``, ...); empty when it cannot say."""
        try:
            return dict(self.api.exec_inspect(exec_id))
        except Exception:
            return {}

    def _put_tar(self, data: bytes) -> None:
        import docker

        try:
            ok = self.api.put_archive(self.container.id, WORKDIR, data)
        except docker.errors.DockerException as e:
            raise self._infra("put_archive failed", e) from e
        if not ok:
            raise InfraError(f"docker sandbox {self.container.short_id}: put_archive refused")

    # -- run --------------------------------------------------------------------------------------------

    def _run(self, argv: list[str], timeout: float, stdin: bytes | None, env: dict[str, str], cwd: str) -> ExecResult:
        limits = self.spec.limits
        config = {
            "argv": argv,
            "timeout": timeout,
            "cpu_s": limits.cpu_time_s,
            "rlimits": {"core": 0},
            "output_bytes": limits.output_bytes,
        }
        start = time.monotonic()
        stream = self.exec([*_AGENT, "run", json.dumps(config)], stdin=stdin is not None, env=env, workdir=cwd)
        try:
            return self._collect(stream, stdin, start, timeout)
        finally:
            stream.close()

    def _collect(self, stream: _ExecStream, data: bytes | None, start: float, timeout: float) -> ExecResult:
        limits = self.spec.limits
        cap = limits.output_bytes + 65536  # the supervisor already caps; room for its trailer
        out, err = _agent.Capture(cap, 0), _agent.Capture(cap)
        deadline = start + timeout + 5.0
        if data is not None:
            with contextlib.suppress(TimeoutError, OSError):
                stream.send(data, deadline)
            stream.close_stdin()
        backstop = False
        while True:
            for kind, chunk in stream.frames(deadline):
                (out if kind == 1 else err).feed(chunk)
            if stream.eof:
                break
            if backstop:
                raise InfraError(f"docker sandbox {self.container.short_id}: exec did not end after a kill")
            self.killall()  # the in-container supervisor did not stop it: stop everything
            backstop = True
            deadline = time.monotonic() + 10.0
        duration = time.monotonic() - start
        raw_err = err.value()
        status: dict[str, Any] = {}
        mark = raw_err.rfind(_agent.STATUS_MARK)
        if mark >= 0:
            try:
                status = json.loads(raw_err[mark + len(_agent.STATUS_MARK) :])
            except ValueError:
                status = {}
            raw_err = raw_err[:mark]
        if not status:
            info = self.exec_info(stream.exec_id)
            code = info.get("ExitCode")
            status = {"code": -9 if code is None else code, "timed_out": backstop, "truncated": False}
        timed_out = bool(status.get("timed_out")) or backstop
        code = int(status.get("code", -9))
        cpu_limited = limits.cpu_time_s is not None and status.get("cpu_s", 0.0) >= limits.cpu_time_s - 0.05
        oom = bool(status.get("oom_kill")) or looks_out_of_memory(
            err.tail if mark < 0 else raw_err[-8192:],
            code,
            killed_by_us=timed_out or cpu_limited,
            memory_limited=limits.memory_bytes is not None,
        )
        truncated = bool(status.get("truncated")) or out.truncated or err.truncated
        return ExecResult(
            exit_code=code,
            stdout=out.value()[: limits.output_bytes].decode(errors="replace"),
            stderr=raw_err[: limits.output_bytes].decode(errors="replace"),
            duration_s=duration,
            timed_out=timed_out,
            truncated=truncated,
            oom_killed=oom and not timed_out,
        )

    # -- files -----------------------------------------------------------------------------------------

    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        entries = {}
        for path, content in files.items():
            rel = validate_relpath(path)
            entries[rel] = content.encode() if isinstance(content, str) else bytes(content)
        if not entries:
            return
        with self.lock:
            missing = self._check_parents(entries)
            self._put_tar(_tar_files(entries, missing))

    def _check_parents(self, entries: Mapping[str, bytes]) -> list[str]:
        """Refuse writes through a symlink that leads out of /work; return the directories to create."""
        dirs = {posixpath.dirname(p) for p in entries} - {""}
        parents = sorted({"/".join(d.split("/")[:i]) for d in dirs for i in range(1, d.count("/") + 2)})
        missing: list[str] = []
        for d in [*parents, *sorted(entries)]:
            if any(d.startswith(m + "/") for m in missing):
                if d not in entries:
                    missing.append(d)
                continue
            info = self._stat(f"{WORKDIR}/{d}")
            if info is None:
                if d not in entries:
                    missing.append(d)
                continue
            _check_link(d, info)
        return missing

    def _stat(self, path: str) -> dict[str, Any] | None:
        import docker

        try:
            return _stat_path(self.api, self.container.id, path)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException as e:
            raise self._infra("stat failed", e) from e

    def read_file(self, path: str) -> bytes:
        import docker

        rel = validate_relpath(path)
        parts = rel.split("/")
        with self.lock:
            for i in range(1, len(parts)):  # Docker follows symlinks in parents silently: check them
                prefix = "/".join(parts[:i])
                info = self._stat(f"{WORKDIR}/{prefix}")
                if info is None:
                    raise FileNotFoundError(f"no such file in sandbox: {path}")
                _check_link(prefix, info)
            current = f"{WORKDIR}/{rel}"
            for _ in range(2):  # a final symlink is archived as a link: fetch its (resolved) target
                try:
                    chunks, info = self.api.get_archive(self.container.id, current)
                    raw = b"".join(chunks)
                except docker.errors.NotFound as e:
                    raise FileNotFoundError(f"no such file in sandbox: {path}") from e
                except docker.errors.DockerException as e:
                    raise self._infra("get_archive failed", e) from e
                if info and info.get("linkTarget"):
                    current = _check_link(rel, info)
                    continue
                with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                    member = tar.next()
                    if member is None or not member.isfile():
                        raise PathError(f"path {path!r} is not a regular file")
                    f = tar.extractfile(member)
                    assert f is not None
                    return f.read()
            raise PathError(f"path {path!r}: too many levels of symbolic links")

    # -- sessions --------------------------------------------------------------------------------------

    def _new_session(self, argv: list[str], env: dict[str, str]) -> DockerSession:
        return DockerSession(self, argv, env)

    def _release(self) -> None:
        self.executor._retire(self.slot)  # removed in the background; never handed out again
