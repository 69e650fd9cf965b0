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

from execgym.executor.docker.container import (
    DEFAULT_IMAGES,
    EXECUTOR_ID,
    IMAGE_VERSION,
    LABEL,
    OWNER_HOST,
    OWNER_PID,
    _Slot,
    docker_available,
    gc_sandboxes,
    image_available,
    resolve_image,
)
from execgym.executor.docker.pool import _Pool, _Reaper
from execgym.executor.docker.sandbox import DockerExecutor, DockerSandbox
from execgym.executor.docker.session import DockerSession

__all__ = [
    "DEFAULT_IMAGES",
    "EXECUTOR_ID",
    "IMAGE_VERSION",
    "LABEL",
    "OWNER_HOST",
    "OWNER_PID",
    "DockerExecutor",
    "DockerSandbox",
    "DockerSession",
    "_Pool",
    "_Reaper",
    "_Slot",
    "docker_available",
    "gc_sandboxes",
    "image_available",
    "resolve_image",
]
