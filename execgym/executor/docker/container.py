"""Containers of the Docker backend: the daemon client, images, labels and garbage collection, a started
container with its work volume (:class:`_Slot`), and the attached ``docker exec`` streams everything runs on.

>>> resolve_image("cad")
'execgym/cad:0.1'
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from execgym.executor.base import AGENT_SOURCE, InfraError, send_all, wait_fd

if TYPE_CHECKING:
    import docker as docker_sdk
    from docker.models.containers import Container
    from docker.models.volumes import Volume

__all__ = [
    "DEFAULT_IMAGES",
    "EXECUTOR_ID",
    "LABEL",
    "OWNER_HOST",
    "OWNER_PID",
    "USER",
    "WORKDIR",
    "docker_available",
    "gc_sandboxes",
    "image_available",
    "open_exec",
    "resolve_image",
]

LABEL = "execgym.sandbox"
OWNER_PID = "execgym.owner_pid"
OWNER_HOST = "execgym.owner_host"
EXECUTOR_ID = "execgym.executor"
IMAGE_VERSION = "0.1"
DEFAULT_IMAGES = {"python": f"execgym/python:{IMAGE_VERSION}", "cad": f"execgym/cad:{IMAGE_VERSION}"}
USER = "1000:1000"
WORKDIR = "/work"
_AGENT = ["python3", "-I", "-S", "-c", AGENT_SOURCE]
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


def open_exec(
    api: Any, container_id: str, argv: list[str], *, stdin: bool, env: Mapping[str, str], workdir: str = WORKDIR
) -> _ExecStream:
    """Start ``argv`` as the sandbox user in the container and attach to it (raises the SDK's errors)."""
    opts = {"stdout": True, "stderr": True, "tty": False, "user": USER}
    exec_id = api.exec_create(container_id, argv, stdin=stdin, workdir=workdir, environment=dict(env), **opts)["Id"]
    return _ExecStream(api, exec_id)


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
        send_all(self.sock.fileno(), data, deadline, self.sock.send)

    def _take_in(self, timeout: float) -> bool | None:
        """Receive one chunk: True when data (or EOF) came, False when nothing came in time, None when the
        socket only looked ready."""
        if not wait_fd(self.sock.fileno(), select.POLLIN, timeout):
            return False
        try:
            chunk = self.sock.recv(1 << 16)
        except BlockingIOError:
            return None
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        return True

    def poll(self) -> None:
        """Take in whatever has arrived, without waiting (notices EOF of a worker that died)."""
        while not self.eof:
            if not self._take_in(0):
                return

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
            if left <= 0 or self._take_in(left) is False:
                return

    def drain(self, timeout: float) -> None:
        """Read the stream to its end (or ``timeout``), throwing the output away, and close it."""
        try:
            for _ in self.frames(time.monotonic() + timeout):
                pass
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            with contextlib.suppress(Exception):
                self.holder.close()
