"""The Docker backend: one container per sandbox, driven with the ``docker`` SDK (docker-py).

Every container runs with ``network_mode="none"`` (unless ``Limits.network``), ``mem_limit`` =
``memswap_limit`` = ``Limits.memory_bytes``, ``nano_cpus``, ``pids_limit``, a read-only root file
system, the work directory ``/work`` on a size-limited tmpfs volume (``Limits.disk_bytes``; a volume
rather than a plain tmpfs mount because ``put_archive``/``get_archive`` cannot reach those), a
size-limited tmpfs ``/tmp``, ``cap_drop=["ALL"]``, ``no-new-privileges`` and the unprivileged user
``1000:1000``. PID 1 is the stdlib supervisor (:mod:`execgym.executor._agent` ``idle``), which reaps
orphans; images only need ``python3`` (3.8+).

Commands go through ``docker exec`` of the same supervisor in ``run`` mode: it spawns the command in a
new session as a child subreaper, relays its output capped at ``Limits.output_bytes`` per stream,
enforces the timeout by killing the process group and every orphan from *inside* the container, and
ends stderr with a status trailer (exit code, whether it timed out, the cgroup's OOM-kill count). If the
exec outlives its timeout by more than a few seconds anyway, a second exec kills every process of the
sandbox user. ``oom_killed`` is exact where the container's memory cgroup exposes ``oom_kill``
(cgroup v1 ``memory.oom_control`` / v2 ``memory.events``), else the shared heuristic.

Sessions are ``docker exec -i`` attach sockets carrying JSON lines (``exec_create(stdin=True)`` +
``exec_start(socket=True)``); the worker's process group is recorded in a pid file under ``/tmp`` so a
timeout can kill it from a second exec.

A warm pool keeps ``pool_size`` started containers per (image, limits) ready, refilled by a background
thread, so acquiring a sandbox costs no container start. Each waiting container already runs a loader
(a ``docker exec -i`` that extracts a tar from stdin into ``/work``), so the first contents (cached as a
tar per repository state) go in with one socket write instead of a ``put_archive``. A container serves
one sandbox only: closing the sandbox queues it for removal on a background thread, so neither a reset
nor a close waits for the daemon; :meth:`DockerExecutor.close` (also run at exit) waits for the queue.
A pooled container found dead is replaced; a background creation that failed is raised as
:class:`InfraError` by the next acquire that finds the pool empty. Containers and volumes carry the
labels ``execgym.sandbox=1``, ``execgym.owner_pid``, ``execgym.owner_host`` and ``execgym.executor``;
:func:`gc_sandboxes` removes those whose owner process is dead (or all of them).

>>> ok, why = docker_available()
>>> isinstance(ok, bool)
True
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import io
import itertools
import json
import os
import posixpath
import select
import socket
import struct
import tarfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
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
    Session,
    SessionReply,
    looks_out_of_memory,
    normalize_cmd,
    validate_relpath,
)

if TYPE_CHECKING:
    import docker as docker_sdk
    from docker.models.containers import Container
    from docker.models.volumes import Volume

__all__ = [
    "DEFAULT_IMAGES",
    "LABEL",
    "DockerExecutor",
    "DockerSandbox",
    "DockerSession",
    "docker_available",
    "gc_sandboxes",
    "image_available",
]

LABEL = "execgym.sandbox"
OWNER_PID = "execgym.owner_pid"
OWNER_HOST = "execgym.owner_host"
EXECUTOR_ID = "execgym.executor"
IMAGE_VERSION = "0.1"
DEFAULT_IMAGES = {"python": f"execgym/python:{IMAGE_VERSION}", "cad": f"execgym/cad:{IMAGE_VERSION}"}
USER = "1000:1000"
WORKDIR = "/work"
_AGENT_SOURCE = Path(_agent.__file__).read_text()
_AGENT = ["python3", "-I", "-S", "-c", _AGENT_SOURCE]
# The loader (see _Slot): extracts a tar from stdin into the work dir, then says whether it worked. The
# tar is built on the host by execgym itself (``_initial_tar``), so it is extracted as put_archive would.
_LOADER = (
    "import sys, tarfile\n"
    "try:\n"
    "    with tarfile.open(fileobj=sys.stdin.buffer, mode='r|') as t:\n"
    "        kw = {'filter': 'fully_trusted'} if hasattr(tarfile, 'fully_trusted_filter') else {}\n"
    "        t.extractall('/work', **kw)\n"
    "except BaseException as e:\n"
    "    sys.stdout.write('execgym-load-failed: %s: %s\\n' % (type(e).__name__, e))\n"
    "else:\n"
    "    sys.stdout.write('execgym-load-ok\\n')\n"
    "sys.stdout.flush()\n"
)
_EXTRA_PIDS = 16  # the supervisor, exec wrappers and session wrappers count against pids_limit
_ids = itertools.count(1)


def _client(timeout: int = 60) -> docker_sdk.DockerClient:
    try:
        import docker
    except ImportError as e:
        raise InfraError("the docker backend needs the docker SDK: pip install 'execgym[docker]'") from e
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:
        raise InfraError(f"no Docker daemon reachable ({e}); start dockerd or set DOCKER_HOST") from e
    return client


def docker_available() -> tuple[bool, str]:
    """Whether a Docker daemon answers here; the reason when not (suitable for ``pytest.skip``).

    >>> ok, reason = docker_available()
    >>> ok or "dockerd" in reason or "docker SDK" in reason
    True
    """
    try:
        client = _client(timeout=10)
    except InfraError as e:
        return False, str(e)
    client.close()
    return True, "docker daemon is reachable"


def image_available(image: str = "python") -> tuple[bool, str]:
    """Whether the image for a kind (or a full reference) is present locally; the reason when not.

    >>> image_available("python")[1].startswith(("image", "no Docker", "the docker"))
    True
    """
    ref = resolve_image(image)
    try:
        client = _client(timeout=10)
    except InfraError as e:
        return False, str(e)
    try:
        import docker

        try:
            client.images.get(ref)
        except docker.errors.ImageNotFound:
            name = next((k for k, v in DEFAULT_IMAGES.items() if v == ref), None)
            hint = f"build it with `execgym images build {name}`" if name else "pull or build it"
            return False, f"image {ref} is missing: {hint}"
        except Exception as e:  # a daemon too busy to answer counts as unavailable, not as a crash
            return False, f"no Docker daemon answering ({e}); start dockerd"
        return True, f"image {ref} is present"
    finally:
        client.close()


def resolve_image(image: str, images: Mapping[str, str] | None = None) -> str:
    """Map a kind (``"python"``, ``"cad"``) to its image tag; full references pass through.

    >>> resolve_image("python")
    'execgym/python:0.1'
    >>> resolve_image("busybox:latest")
    'busybox:latest'
    """
    table = {**DEFAULT_IMAGES, **(images or {})}
    if image in table:
        return table[image]
    if "/" in image or ":" in image or "@" in image:
        return image
    raise ValueError(f"unknown image kind {image!r}: use one of {sorted(table)} or a full image reference")


def _labels() -> dict[str, str]:
    return {LABEL: "1", OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gc_sandboxes(all: bool = False, client: docker_sdk.DockerClient | None = None) -> int:
    """Remove sandbox containers and volumes left by crashed runs; returns how many containers went.

    Without ``all``, only those whose owner process (same host) is dead; with ``all``, every one,
    including those of live runs.

    >>> ok, _ = docker_available()
    >>> gc_sandboxes() >= 0 if ok else True
    True
    """
    import docker

    client = client or _client()
    host = socket.gethostname()

    def orphaned(labels: Mapping[str, str]) -> bool:
        if all:
            return True
        if labels.get(OWNER_HOST) != host:
            return False
        try:
            return not _pid_alive(int(labels.get(OWNER_PID, "0")))
        except ValueError:
            return True

    removed = 0
    # The low-level listing: one call, no inspect per container (one being removed meanwhile is fine).
    for c in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
        if orphaned(c.get("Labels") or {}):
            try:
                client.api.remove_container(c["Id"], force=True, v=True)
                removed += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:  # already being removed (by its owner's background removal)
                if "in progress" not in str(e):
                    raise
    for v in client.volumes.list(filters={"label": f"{LABEL}=1"}):
        if orphaned(v.attrs.get("Labels") or {}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                v.remove(force=True)  # APIError: still in use by a container being removed
    return removed


# ---------------------------------------------------------------------------------- warm pool


class _Slot:
    """A started container plus its work volume, and (for pooled ones) its pre-started loader.

    The loader is a ``docker exec -i`` started while the container waits in the pool: it extracts a tar
    read from stdin into ``/work``, so filling a new sandbox costs a socket write instead of a
    ``put_archive`` (which makes the daemon start a helper process every time). A slot is handed out
    at most once (``used``); it is never put back in a pool.
    """

    def __init__(self, container: Container, volume: Volume) -> None:
        self.container = container
        self.volume = volume
        self.loader: _ExecStream | None = None
        self.used = False

    def drop_loader(self) -> None:
        if self.loader is not None:
            with contextlib.suppress(Exception):
                self.loader.close()  # the loader reads EOF and exits
            self.loader = None

    def destroy(self) -> None:
        import docker

        self.drop_loader()
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if "already in progress" not in str(e) and "is being removed" not in str(e):
                raise
        for _ in range(20):
            try:
                self.volume.remove(force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError:
                time.sleep(0.05)


class _Reaper:
    """Removes used containers on a background thread, so closing a sandbox costs no daemon round trip.

    ``retire`` never blocks on the daemon (only when ``max_pending`` removals are already queued, so a
    fast producer cannot pile up running containers); ``drain`` waits until every retired container
    is gone. A removal that fails is retried, then recorded in ``errors`` (the container keeps its
    labels, so ``execgym sandbox gc`` finds it); it never raises into the code that closed the sandbox.
    """

    def __init__(self, max_pending: int = 32, attempts: int = 3) -> None:
        self.max_pending = max_pending
        self.attempts = attempts
        self.queue: collections.deque[_Slot] = collections.deque()
        self.busy = 0
        self.cond = threading.Condition()
        self.errors: collections.deque[str] = collections.deque(maxlen=100)
        self.removed = 0
        self.thread: threading.Thread | None = None

    def retire(self, slot: _Slot) -> None:
        slot.drop_loader()
        with self.cond:
            while len(self.queue) + self.busy >= self.max_pending:
                self.cond.wait(1.0)
            self.queue.append(slot)
            self.cond.notify_all()
            if self.thread is not None and self.thread.is_alive():
                return
            try:
                self.thread = threading.Thread(target=self._loop, name="execgym-docker-reaper", daemon=True)
                self.thread.start()
                return
            except RuntimeError:  # no new threads (interpreter shutdown): remove it here
                self.thread = None
                self.queue.remove(slot)
        with contextlib.suppress(Exception):
            slot.destroy()

    def pending(self) -> int:
        with self.cond:
            return len(self.queue) + self.busy

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    if not self.cond.wait(30.0) and not self.queue:
                        self.thread = None  # idle: a later retire starts a new thread
                        return
                slot = self.queue.popleft()
                self.busy += 1
            try:
                self._remove(slot)
            finally:
                with self.cond:
                    self.busy -= 1
                    self.cond.notify_all()

    def _remove(self, slot: _Slot) -> None:
        for attempt in range(self.attempts):
            try:
                slot.destroy()
                with self.cond:
                    self.removed += 1
                return
            except Exception as e:  # the daemon hiccuped: retry, then leave it to gc
                if attempt == self.attempts - 1:
                    with self.cond:
                        self.errors.append(f"{slot.container.short_id}: {type(e).__name__}: {e}")
                    return
                time.sleep(0.2 * (attempt + 1))

    def drain(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.queue or self.busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
        return True


class _Pool:
    """Keeps ``size`` fresh started containers for one (image, limits) ready; refilled in the background.

    Only containers made by the refill thread enter ``ready``; each is handed out once. A creation that
    failed in the background is kept in ``error`` and raised (as :class:`InfraError`) by the next
    ``acquire`` that finds no ready container, never handed out.
    """

    def __init__(self, executor: DockerExecutor, image: str, limits: Limits, size: int) -> None:
        self.executor = executor
        self.image = image
        self.limits = limits
        self.size = size
        self.ready: collections.deque[_Slot] = collections.deque()
        self.cond = threading.Condition()
        self.creating = 0
        self.stopped = False
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._refill, name=f"execgym-pool-{image}", daemon=True)
        self.thread.start()

    def _refill(self) -> None:
        while True:
            with self.cond:
                while not self.stopped and len(self.ready) + self.creating >= self.size:
                    self.cond.wait()
                if self.stopped:
                    return
                self.creating += 1
            slot = None
            try:
                slot = self.executor._create_slot(self.image, self.limits)
                slot.loader = self.executor._start_loader(slot)
            except Exception as e:  # kept for the next acquire to report; retried after a pause
                if slot is not None:
                    self.executor._retire(slot)
                with self.cond:
                    self.creating -= 1
                    self.error = e
                    self.cond.notify_all()
                time.sleep(1.0)
                continue
            with self.cond:
                self.creating -= 1
                self.error = None
                if not self.stopped:
                    self.ready.append(slot)
                    self.cond.notify_all()
                    continue
            self.executor._retire(slot)
            return

    def acquire(self) -> _Slot | None:
        with self.cond:
            if self.ready:
                slot = self.ready.popleft()
                slot.used = True
            elif self.error is not None:
                error, self.error = self.error, None
                self.cond.notify_all()
                raise InfraError(f"the warm pool could not start a {self.image} container: {error}") from error
            else:
                slot = None
            self.cond.notify_all()
        return slot

    def wait_full(self, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.ready) < self.size:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            slots = list(self.ready)
            self.ready.clear()
            self.cond.notify_all()
        for slot in slots:
            self.executor._retire(slot)


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
            exec_id = self.api.exec_create(
                slot.container.id,
                ["python3", "-I", "-S", "-c", _LOADER],
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                user=USER,
                workdir=WORKDIR,
                environment={"HOME": WORKDIR, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
            )["Id"]
            return _ExecStream(self.api, exec_id)
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


def _running(slot: _Slot) -> bool:
    try:
        slot.container.reload()
    except Exception:
        return False
    if slot.container.status != "running":
        return False
    if slot.loader is not None:
        slot.loader.poll()  # its stream ends when the container's processes were killed
        if slot.loader.eof:
            return False
    return True


def _safe_remove_volume(volume: Volume) -> None:
    with contextlib.suppress(Exception):
        volume.remove(force=True)


# ----------------------------------------------------------------------------- exec streams


class _ExecStream:
    """The multiplexed stdout/stderr frames of an attached ``docker exec`` (no TTY)."""

    def __init__(self, api: Any, exec_id: str) -> None:
        self.exec_id = exec_id
        sock = api.exec_start(exec_id, socket=True)
        self.holder = sock  # keeps the response (and so the connection) alive
        raw = getattr(sock, "_sock", sock)
        self.sock: socket.socket = raw
        self.sock.setblocking(False)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError from None
                _wait_fd(self.sock.fileno(), select.POLLOUT, left)

    def poll(self) -> None:
        """Take in whatever has arrived, without waiting (notices EOF of a worker that died)."""
        while not self.eof:
            r = _wait_fd(self.sock.fileno(), select.POLLIN, 0)
            if not r:
                return
            try:
                chunk = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.buf += chunk

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def frames(self, deadline: float) -> Iterator[tuple[int, bytes]]:
        """Yield (stream, data) until EOF; stops (without EOF) when ``deadline`` passes."""
        while True:
            while len(self.buf) >= 8:
                kind, size = struct.unpack(">BxxxL", self.buf[:8])
                if len(self.buf) < 8 + size:
                    break
                data, self.buf = self.buf[8 : 8 + size], self.buf[8 + size :]
                yield kind, data
            if self.eof:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            r = _wait_fd(self.sock.fileno(), select.POLLIN, left)
            if not r:
                return
            try:
                chunk = self.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.buf += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            with contextlib.suppress(Exception):
                self.holder.close()


# ------------------------------------------------------------------------------------ sandbox


class DockerSandbox(Sandbox):
    """One container (see :class:`DockerExecutor`); ``workdir`` is ``/work``.

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
        self.executor = executor
        self.api = executor.api
        self.spec = spec
        self.slot = slot
        self.container = slot.container
        self._lock = threading.RLock()
        self._closed = False
        self._sessions: list[DockerSession] = []
        self.env = spec.environment(
            {
                "HOME": WORKDIR,
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                "TMPDIR": "/tmp",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
                "TERM": "dumb",
            }
        )
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

    def _exec(
        self, argv: list[str], *, stdin: bool, env: Mapping[str, str] | None = None, workdir: str = WORKDIR
    ) -> _ExecStream:
        import docker

        if self._closed:
            raise InfraError("sandbox is closed")
        try:
            exec_id = self.api.exec_create(
                self.container.id,
                argv,
                stdin=stdin,
                stdout=True,
                stderr=True,
                tty=False,
                user=USER,
                workdir=workdir,
                environment=dict(env if env is not None else self.env),
            )["Id"]
            return _ExecStream(self.api, exec_id)
        except docker.errors.DockerException as e:
            raise self._infra("exec failed (container gone?)", e) from e

    def _killall(self) -> None:
        """Kill every process of the sandbox user (the supervisor, PID 1, is immune)."""
        try:
            stream = self._exec([*_AGENT, "killall", "{}"], stdin=False)
            for _ in stream.frames(time.monotonic() + 10):
                pass
            stream.close()
        except InfraError:
            pass

    def _put_tar(self, data: bytes) -> None:
        import docker

        try:
            ok = self.api.put_archive(self.container.id, WORKDIR, data)
        except docker.errors.DockerException as e:
            raise self._infra("put_archive failed", e) from e
        if not ok:
            raise InfraError(f"docker sandbox {self.container.short_id}: put_archive refused")

    # -- run --------------------------------------------------------------------------------------------

    def run(
        self,
        cmd: str | Sequence[str],
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> ExecResult:
        argv = normalize_cmd(cmd)
        limits = self.spec.limits
        timeout = limits.wall_time_s if timeout is None else float(timeout)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        config = {
            "argv": argv,
            "timeout": timeout,
            "cpu_s": limits.cpu_time_s,
            "rlimits": {"core": 0},
            "output_bytes": limits.output_bytes,
        }
        workdir = WORKDIR if cwd is None else posixpath.join(WORKDIR, validate_relpath(cwd))
        with self._lock:
            start = time.monotonic()
            stream = self._exec(
                [*_AGENT, "run", json.dumps(config)],
                stdin=data is not None,
                env={**self.env, **(env or {})},
                workdir=workdir,
            )
            try:
                return self._collect(stream, data, start, timeout)
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
            self._killall()  # the in-container supervisor did not stop it: stop everything
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
            info = self._exec_info(stream.exec_id)
            status = {"code": info.get("ExitCode") or -9, "timed_out": backstop, "truncated": False}
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

    def _exec_info(self, exec_id: str) -> dict[str, Any]:
        try:
            return dict(self.api.exec_inspect(exec_id))
        except Exception:
            return {}

    # -- files -----------------------------------------------------------------------------------------

    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        entries = {}
        for path, content in files.items():
            rel = validate_relpath(path)
            entries[rel] = content.encode() if isinstance(content, str) else bytes(content)
        if not entries:
            return
        with self._lock:
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
        with self._lock:
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

    def session(self, cmd: str | Sequence[str], *, env: Mapping[str, str] | None = None) -> DockerSession:
        with self._lock:
            s = DockerSession(self, normalize_cmd(cmd), {**self.env, **(env or {})})
            self._sessions.append(s)
            return s

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for s in self._sessions:
                s._drop_stream()
            self.executor._retire(self.slot)  # removed in the background; never handed out again

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.close()


def _check_link(path: str, info: Mapping[str, Any]) -> str:
    """Docker reports a symlink's target fully resolved inside the container: it must stay in /work."""
    target = info.get("linkTarget") or ""
    if target and target != WORKDIR and not target.startswith(WORKDIR + "/"):
        raise PathError(f"path {path!r} goes through a symlink to {target!r}, outside the sandbox")
    return target


def _stat_path(api: Any, container_id: str, path: str) -> dict[str, Any]:
    """``HEAD /containers/{id}/archive``: the path's stat (name, size, mode, linkTarget) without content."""
    import base64

    # docker-py has no HEAD helper; its APIClient is a requests.Session, so .head() does the call.
    url = api._url("/containers/{0}/archive", container_id)
    res = api.head(url, params={"path": path})
    api._raise_for_status(res)
    header = res.headers.get("x-docker-container-path-stat")
    return json.loads(base64.b64decode(header)) if header else {}


def _tarinfo(name: str, size: int, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.uid = info.gid = 1000
    info.mtime = int(time.time())
    return info


def _tar_files(entries: Mapping[str, bytes], mkdirs: Sequence[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in mkdirs:  # Docker would create missing parents owned by root
            info = _tarinfo(d, 0, 0o755)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for rel, data in entries.items():
            tar.addfile(_tarinfo(rel, len(data)), io.BytesIO(data))
    return buf.getvalue()


_tar_cache: collections.OrderedDict[tuple[Any, ...], bytes] = collections.OrderedDict()
_tar_cache_lock = threading.Lock()
_TAR_CACHE_BYTES = 256 * MiB


def _tree_state(root: Path) -> tuple[tuple[str, int, int, int, int], ...]:
    """What the tar of ``root`` depends on: every entry's path, inode, mode, size and mtime (lstat)."""
    state = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            st = os.lstat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            state.append((rel, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns))
    return tuple(state)


def _initial_tar_cached(spec: SandboxSpec) -> bytes:
    """:func:`_initial_tar`, cached per (repository state, files): a reset does not re-read the tree.

    The key holds every entry's lstat (so an edited, added or removed file makes a new archive) and a
    digest of ``spec.files``; the cache keeps at most 256 MiB of archives, least recently used first out.
    """
    import hashlib

    digest = hashlib.sha256()
    for path, content in sorted(spec.files.items()):
        data = content.encode() if isinstance(content, str) else bytes(content)
        digest.update(b"%d:%s\0%d:" % (len(path.encode()), path.encode(), len(data)))
        digest.update(data)
    root = Path(spec.workdir_from) if spec.workdir_from is not None else None
    key = (os.path.realpath(root) if root is not None else None, _tree_state(root) if root else (), digest.digest())
    with _tar_cache_lock:
        data = _tar_cache.get(key)
        if data is not None:
            _tar_cache.move_to_end(key)
            return data
    data = _initial_tar(spec)
    with _tar_cache_lock:
        _tar_cache[key] = data
        while sum(len(v) for v in _tar_cache.values()) > _TAR_CACHE_BYTES and len(_tar_cache) > 1:
            _tar_cache.popitem(last=False)
    return data


def _initial_tar(spec: SandboxSpec) -> bytes:
    """The work directory's first contents: ``spec.workdir_from`` then ``spec.files`` on top."""
    buf = io.BytesIO()
    root = Path(spec.workdir_from) if spec.workdir_from is not None else None

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 1000
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buf, mode="w") as tar:
        if root is not None:
            for entry in sorted(root.iterdir()):
                tar.add(entry, arcname=entry.name, filter=owned)
        made: set[str] = set()
        for path, content in spec.files.items():
            rel = validate_relpath(path)
            if root is not None:
                real_root = os.path.realpath(root)
                real = os.path.realpath(root / rel)
                if real != real_root and not real.startswith(real_root + os.sep):
                    raise PathError(f"path {path!r} goes through a symlink outside the sandbox")
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in made and not (root is not None and (root / d).exists()):
                    made.add(d)
                    info = _tarinfo(d, 0, 0o755)
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
            data = content.encode() if isinstance(content, str) else bytes(content)
            tar.addfile(_tarinfo(rel, len(data)), io.BytesIO(data))
    return buf.getvalue()


# ------------------------------------------------------------------------------------ sessions


class DockerSession(Session):
    """A JSON-lines worker on a ``docker exec -i`` attach socket (see :class:`Session`).

    >>> ok, _ = docker_available()
    >>> code = "import json,sys\\nfor l in sys.stdin: print(json.dumps(json.loads(l)+1), flush=True)"
    >>> if ok and image_available("python")[0]:
    ...     with DockerExecutor(pool_size=0).sandbox() as sb:
    ...         print(sb.session(["python", "-c", code]).request(41).value)
    ... else:
    ...     print(42)
    42
    """

    def __init__(self, sandbox: DockerSandbox, argv: list[str], env: dict[str, str]) -> None:
        self.sb = sandbox
        self.argv = argv
        self.env = env
        self.restarts = 0
        self._closed = False
        self._stream: _ExecStream | None = None
        self._buf = b""
        self._stderr = _agent.Capture(sandbox.spec.limits.output_bytes, 0)
        self._start()

    def _start(self) -> None:
        self._pidfile = f"/tmp/.execgym/session-{next(_ids)}.pgid"
        config = {"argv": self.argv, "pidfile": self._pidfile, "rlimits": {"core": 0}}
        self._stream = self.sb._exec([*_AGENT, "session", json.dumps(config)], stdin=True, env=self.env)
        self._buf = b""

    def _drop_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _kill_worker(self) -> None:
        if self._stream is None:
            return
        stream = self._stream
        stream.poll()
        if stream.eof:
            self._drop_stream()
            return
        try:
            killer = self.sb._exec([*_AGENT, "kill", json.dumps({"pidfile": self._pidfile})], stdin=False)
            for _ in killer.frames(time.monotonic() + 10):
                pass
            killer.close()
            for kind, chunk in stream.frames(time.monotonic() + 3.0):
                if kind == 2:
                    self._stderr.feed(chunk)
            if not stream.eof:
                self.sb._killall()
        except InfraError:
            pass
        self._drop_stream()

    def _restart(self) -> None:
        self._kill_worker()
        self.restarts += 1
        self._start()

    def _take_stderr(self) -> str:
        text = self._stderr.value().decode(errors="replace")
        self._stderr = _agent.Capture(self.sb.spec.limits.output_bytes, 0)
        return text

    def request(self, message: Any, timeout: float | None = None) -> SessionReply:
        line = (json.dumps(message) + "\n").encode()
        timeout = self.sb.spec.limits.wall_time_s if timeout is None else float(timeout)
        with self.sb._lock:
            if self._closed:
                raise InfraError("session is closed")
            start = time.monotonic()
            restarted = False
            if self._stream is not None:
                self._stream.poll()
                for kind, chunk in self._stream.frames(start):
                    if kind == 1:
                        self._buf += chunk
                    else:
                        self._stderr.feed(chunk)
            if self._stream is None or self._stream.eof:
                self._restart()
                restarted = True
            value, error, timed_out = self._exchange(line, start + timeout)
            if error is not None:
                if timed_out:
                    self._kill_worker()
                stderr = self._take_stderr()
                self._restart()
                return SessionReply(None, False, error, timed_out, True, time.monotonic() - start, stderr)
            return SessionReply(value, True, None, False, restarted, time.monotonic() - start, self._take_stderr())

    def _exchange(self, line: bytes, deadline: float) -> tuple[Any, str | None, bool]:
        stream = self._stream
        assert stream is not None
        try:
            stream.send(line, deadline)
        except TimeoutError:
            return None, "timed out writing the request (worker not reading stdin)", True
        except OSError:
            return None, "worker exited before the request was written", False
        cap = self.sb.spec.limits.output_bytes
        while True:
            reply = self._take_reply(cap)
            if reply is not None:
                return reply
            if stream.eof:
                code = self.sb._exec_info(stream.exec_id).get("ExitCode")
                return None, f"worker exited without replying (exit code {code})", False
            if time.monotonic() >= deadline:
                return None, "no reply before the timeout: worker killed", True
            for kind, chunk in stream.frames(deadline):
                if kind == 1:
                    self._buf += chunk
                    if b"\n" in chunk:
                        break
                else:
                    self._stderr.feed(chunk)

    def close(self) -> None:
        with self.sb._lock:
            if self._closed:
                return
            self._closed = True
            if not self.sb._closed:
                self._kill_worker()
            self._drop_stream()


def _wait_fd(fd: int, events: int, timeout: float | None) -> bool:
    """Wait until ``fd`` is ready (poll, not select: descriptors above 1024 are fine)."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))
