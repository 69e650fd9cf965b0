"""One CAD worker host per machine: the agent fork server and the trusted grader that every CAD env shares.

Within one process, CAD envs share a :class:`~execgym.envs.cad.grading.ForkServer` and a
:class:`~execgym.envs.cad.grading.SharedGrader` (``share_workers="process"``). With ``share_workers="host"``
(the default for the local executor) they are not started in the process at all: a small daemon of this
module (one per user, executor, image, grader memory and version of this code) owns them, and the envs of
every process on the machine (a vector env's subprocesses, Ray workers, several trainers) talk to it. So
CadQuery is imported twice per machine, once for the fork server and once for the grader, whatever the number
of processes.

How it is reached and kept:

- The daemon listens on an abstract Unix socket (Linux), which the forked agent workers cannot reach: they
  run in network namespaces of their own. Every connection must pass ``multiprocessing.connection``'s HMAC
  challenge with a key the daemon writes to a file only this user can read (in a ``0700`` directory).
- The daemon grades with one trusted grader, and starts more (up to ``$EXECGYM_CAD_GRADERS``, default the
  machine's cores) only while every one is busy, so that envs of different processes grade in parallel.
- Each env holds one connection per worker kind. When a connection ends (the env closed, or its process
  died), the daemon kills the agent workers forked for it. When no connection is left for ``LINGER_S``
  seconds, the daemon stops its workers and exits.
- Starting is serialised by a lock file: the first env to find no daemon starts one (a detached subprocess)
  and waits for it; the others wait on the lock and then connect.
- A daemon that dies is replaced on the next call (once per call); the grader's client replays the
  references its env registered into the new one. A daemon that cannot start is an
  :class:`~execgym.core.errors.InfraError` with the tail of its log.

Agent code never runs in the daemon: it runs in the forked workers (each in namespaces of its own, with a
memory cgroup of its own as root), exactly as with a process's own fork server; only the place where the
fork server lives changes.

Example:
    >>> from execgym.envs.cad.host import HostForkServer, host_daemons
    >>> server = HostForkServer.acquire("local", image="cad")        # doctest: +SKIP
    >>> server.wait_ready(); server.ping()["ok"]                      # doctest: +SKIP
    True
    >>> len(host_daemons()) >= 1                                      # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from execgym.core.errors import InfraError

LINGER_S = 2.0
START_TIMEOUT_S = 120.0
_SOCKET_PREFIX = "\0execgym-cad-host-"


# ============================================================================================ naming


def runtime_dir() -> Path:
    """This user's private directory of host daemons (keys, locks, logs); refused when someone else could write it."""
    path = Path(tempfile.gettempdir()) / f"execgym-cad-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise InfraError(f"{path} is not a private directory of this user: CAD host daemons will not use it")
    return path


def _code_digest() -> str:
    """A digest of the code a daemon runs: a daemon of older code is never reused by newer clients."""
    from execgym.envs.cad.kernel import kernel_source

    digest = hashlib.sha256(kernel_source().encode())
    here = Path(__file__).resolve().parent
    for name in ("grading.py", "host.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


_DIGEST: str | None = None


def host_name(executor: str, image: str, memory_bytes: int) -> str:
    """The name of the daemon for these settings (its socket, key, lock and log files are named after it)."""
    global _DIGEST
    if _DIGEST is None:
        _DIGEST = _code_digest()
    # The interpreter by what it is and which environment it runs in: ``python`` and ``python3.11`` of one install
    # share a daemon, two virtualenvs over one interpreter do not.
    ident = json.dumps([executor, image, int(memory_bytes), os.path.realpath(sys.executable), sys.prefix, _DIGEST])
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def host_daemons() -> list[int]:
    """The pids of this user's live CAD host daemons (for tests and benchmarks)."""
    pids = []
    for pid_file in runtime_dir().glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:3] == [b"-m", b"execgym.envs.cad.host"]:
                pids.append(pid)
    return sorted(pids)


# ============================================================================================ daemon


class _Daemon:
    """The serving side: owns one fork server and one grader, and answers every client's connection."""

    def __init__(self, name: str, executor: str, image: str, memory_bytes: int) -> None:
        from execgym.envs.cad.grading import ForkServer, SharedGrader

        self.name = name
        self.dir = runtime_dir()
        self.generation = secrets.token_hex(8)
        self.server = ForkServer(executor, image=image, key=("host-forkserver", executor, image))
        self.grader = _GraderPool(lambda i: SharedGrader(executor, memory_bytes=memory_bytes,
                                                         key=("host-grader", executor, memory_bytes, i)))
        self.lock = threading.Lock()
        self.active = 0
        self.idle_since = time.monotonic()
        key = secrets.token_bytes(32)
        self.listener = Listener(_SOCKET_PREFIX + name, family="AF_UNIX", authkey=key)
        _write_private(self.dir / f"{name}.key", key)
        _write_private(self.dir / f"{name}.pid", str(os.getpid()).encode())

    def run(self) -> None:
        # The grader imports CadQuery while the first clients connect; the fork server starts when an env with
        # forked agent workers asks for it (at once, from its own launch), so envs that run their agent in a
        # sandbox of their own (fork_agent_workers=False) do not pay for an idle one.
        self.grader.launch()
        threading.Thread(target=self._accept, name="execgym-cad-host-accept", daemon=True).start()
        try:
            while not self._should_stop():
                time.sleep(0.2)
        finally:
            self.server.shutdown()
            self.grader.shutdown()

    def _should_stop(self) -> bool:
        with self.lock:
            if self.active or time.monotonic() - self.idle_since < LINGER_S:
                return False
        # Under the start lock, so that no client connects between this check and the listener's end.
        with _start_lock(self.dir, self.name):
            with self.lock:
                if self.active:
                    return False
                self.active = -1  # refuse connections accepted from now on
            for suffix in (".key", ".pid"):
                with contextlib.suppress(OSError):
                    (self.dir / f"{self.name}{suffix}").unlink()
            with contextlib.suppress(OSError):
                self.listener.close()
        return True

    def _accept(self) -> None:
        while True:
            try:
                conn = self.listener.accept()
            except OSError:  # closed: the daemon is stopping
                return
            except Exception:  # a client that failed the handshake
                continue
            threading.Thread(target=self._serve, args=(conn,), name="execgym-cad-host-client", daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        with self.lock:
            if self.active < 0:
                conn.close()
                return
            self.active += 1
        tokens: set[str] = set()
        try:
            while True:
                try:
                    target, method, args, kwargs = conn.recv()
                except (EOFError, OSError, ValueError, TypeError):
                    return
                try:
                    reply: tuple[bool, Any] = (True, self._dispatch(target, method, args, kwargs, tokens))
                except Exception as exc:
                    reply = (False, exc)
                try:
                    conn.send(reply)
                except (OSError, ValueError):
                    return
                except Exception as exc:  # the reply could not be pickled
                    conn.send((False, InfraError(f"the CAD host could not send its reply: {exc}")))
        finally:
            for token in tokens:  # this env's workers: its connection is gone, so is it
                with contextlib.suppress(Exception):
                    self.server.call({"op": "kill", "token": token}, timeout=30.0)
            conn.close()
            with self.lock:
                self.active -= 1
                self.idle_since = time.monotonic()

    def _dispatch(self, target: str, method: str, args: tuple, kwargs: dict, tokens: set[str]) -> Any:
        if target == "host" and method == "hello":
            return {"generation": self.generation, "pid": os.getpid()}
        if target == "server" and method in ("launch", "wait_ready", "sandbox_paths", "host_pids"):
            return getattr(self.server, method)()
        if target == "server" and method == "call":
            message, timeout = args
            reply = self.server.call(message, timeout)
            if message.get("op") == "spawn" and reply.get("ok"):
                tokens.add(str(message.get("token")))
            elif message.get("op") == "kill":
                tokens.discard(str(message.get("token")))
            return reply
        if target == "grader" and method in ("launch", "wait_ready", "status"):
            return getattr(self.grader, method)()
        if target == "grader" and method in ("register", "summary", "grade", "inspect", "tessellate"):
            return self.grader.call(method, args, kwargs)
        raise ValueError(f"the CAD host has no call {target}.{method}")


def grader_pool_size() -> int:
    """How many trusted graders a daemon may run at once: ``$EXECGYM_CAD_GRADERS``, else the machine's cores."""
    value = os.environ.get("EXECGYM_CAD_GRADERS", "").strip()
    try:
        return max(1, int(value)) if value else max(1, os.cpu_count() or 1)
    except ValueError:
        raise InfraError(f"EXECGYM_CAD_GRADERS must be a positive integer, got {value!r}") from None


class _GraderPool:
    """The daemon's graders: one to begin with, one more (up to :func:`grader_pool_size`) only while every grader
    is busy, so that envs in different processes grade in parallel as they did with a grader each.

    A reference registered through one grader is built in another the first time that one grades against it.
    """

    def __init__(self, make: Any) -> None:
        self.make = make
        self.size = grader_pool_size()
        self.graders: list[Any] = [make(0)]
        self.free: list[Any] = list(self.graders)
        self.cond = threading.Condition()
        self.starting = False  # a grader is being started (importing CadQuery) in the background
        self.closed = False
        self.references: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> how it was registered
        self.summaries: dict[str, dict[str, Any]] = {}  # key -> the reference's summary (fixed once built)
        self.ready = threading.Event()  # the first grader has imported CadQuery

    def launch(self) -> None:
        if not self.ready.is_set():
            self.graders[0].launch()

    def wait_ready(self) -> None:
        # Once a grader is up, an env's reset does not queue behind another env's grading call to ask again (a
        # grader whose worker died restarts it on its next call).
        if not self.ready.is_set():
            self.graders[0].wait_ready()
            self.ready.set()

    def _grow(self, index: int) -> None:
        """Start one more grader; it joins the free ones once it has imported CadQuery."""
        grader = self.make(index)
        try:
            grader.launch()
            grader.wait_ready()
        except Exception:  # the pool stays as it is: callers go on with the graders it has
            with contextlib.suppress(Exception):
                grader.shutdown()
            grader = None
        with self.cond:
            self.starting = False
            if grader is not None and self.closed:
                with contextlib.suppress(Exception):
                    grader.shutdown()
            elif grader is not None:
                self.graders.append(grader)
                self.free.append(grader)
            self.cond.notify_all()

    @contextlib.contextmanager
    def _one(self, key: str | None = None) -> Iterator[Any]:
        with self.cond:
            while not self.free:
                # Every grader is busy: start one more in the background (never more than one at a time), and
                # take whichever is free first, so a caller never waits for a CadQuery import it did not need.
                if not self.starting and not self.closed and len(self.graders) < self.size:
                    self.starting = True
                    threading.Thread(target=self._grow, args=(len(self.graders),), name="execgym-cad-grow",
                                     daemon=True).start()
                self.cond.wait()
            # A free grader that holds ``key``'s reference already, else any: no reference is built twice while
            # a grader that has it is free.
            at = next((i for i in range(len(self.free) - 1, -1, -1) if key in self.free[i]._registrations), -1)
            grader = self.free.pop(at)
        try:
            yield grader
        finally:
            with self.cond:
                self.free.append(grader)
                self.cond.notify()

    def status(self) -> dict[str, Any]:
        """How many graders run, how many may, and whether one is being started in the background."""
        with self.cond:
            return {"graders": len(self.graders), "max_graders": self.size, "starting": self.starting}

    def call(self, method: str, args: tuple, kwargs: dict[str, Any]) -> Any:
        # A reference registered before, and its summary, are answered without a grader: an env's reset does not
        # wait for another env's grading call to finish (the other graders build the reference when first used).
        if method == "register" and args:
            from execgym.envs.cad.grading import CADGrader

            known = CADGrader.reference_key(args[0], kwargs.get("code"), kwargs.get("mesh_path"))
            if known in self.references:
                return known
        if method == "summary" and args and args[0] in self.summaries:
            return dict(self.summaries[args[0]])
        key = None  # the reference the call grades against (a register call makes it)
        if method == "tessellate":
            key = kwargs.get("key")
        elif method != "register" and args:
            key = args[0]
        with self._one(key) as grader:
            if method == "register":
                key = grader.register(*args, **kwargs)
                self.references[key] = (args[0], dict(kwargs))
                return key
            if key is not None and key in self.references and key not in grader._registrations:
                task_id, options = self.references[key]
                grader.register(task_id, **options)
            value = getattr(grader, method)(*args, **kwargs)
            if method == "summary":
                self.summaries[args[0]] = dict(value)
            return value

    def shutdown(self) -> None:
        with self.cond:
            self.closed = True
        for grader in self.graders:
            with contextlib.suppress(Exception):
                grader.shutdown()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def _start_lock(directory: Path, name: str) -> Iterator[None]:
    fd = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ============================================================================================ client

_CLIENTS: weakref.WeakSet[HostClient] = weakref.WeakSet()


class HostClient:
    """One connection to the host daemon for these settings, started when there is none.

    :meth:`call` sends one request and returns its value (or raises what the daemon raised). A daemon that is
    gone is replaced once per call; that failing too is an :class:`~execgym.core.errors.InfraError`.
    ``generation`` names the daemon last spoken to (a new one holds none of the old one's state).
    """

    def __init__(self, executor: str, image: str, memory_bytes: int) -> None:
        self.settings = (executor, image, int(memory_bytes))
        self.name = host_name(executor, image, memory_bytes)
        self.generation: str | None = None
        self.daemon_pid: int | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        _CLIENTS.add(self)

    def call(self, target: str, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            for attempt in range(2):
                try:
                    conn = self._connected()
                    conn.send((target, method, args, kwargs))
                    ok, value = conn.recv()
                    break
                except (EOFError, OSError) as exc:
                    self._drop()
                    if attempt:
                        raise InfraError(f"lost the CAD worker host twice: {type(exc).__name__}: {exc}") from exc
            if ok:
                return value
            raise value

    def connect(self) -> str:
        """Connect (starting the daemon when there is none) and return the daemon's generation."""
        with self._lock:
            for attempt in range(2):
                try:
                    self._connected()
                    break
                except (EOFError, OSError) as exc:
                    self._drop()
                    if attempt:
                        raise InfraError(f"could not reach the CAD worker host: {type(exc).__name__}: {exc}") from exc
            assert self.generation is not None
            return self.generation

    def _connected(self) -> Connection:
        if self._conn is None:
            directory = runtime_dir()
            with _start_lock(directory, self.name):
                conn = self._try_connect(directory)
                if conn is None:
                    conn = self._start(directory)
            conn.send(("host", "hello", (), {}))
            ok, value = conn.recv()
            if not ok:
                conn.close()
                raise InfraError(f"the CAD worker host refused this client: {value}")
            self._conn, self.generation, self.daemon_pid = conn, value["generation"], value["pid"]
        return self._conn

    def _try_connect(self, directory: Path) -> Connection | None:
        try:
            key = (directory / f"{self.name}.key").read_bytes()
            return Client(_SOCKET_PREFIX + self.name, family="AF_UNIX", authkey=key)
        except (OSError, EOFError):
            return None

    def _start(self, directory: Path) -> Connection:
        executor, image, memory_bytes = self.settings
        log = directory / f"{self.name}.log"
        root = str(Path(__file__).resolve().parents[3])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        argv = [sys.executable, "-m", "execgym.envs.cad.host", self.name, executor, image, str(memory_bytes)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            conn = self._try_connect(directory)
            if conn is not None:
                return conn
            if proc.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(Exception):
                    proc.kill()
                tail = log.read_text(errors="replace").strip()[-1500:]
                raise InfraError(f"the CAD worker host did not start (exit status {proc.poll()}): {tail}")
            time.sleep(0.02)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        """End this connection (the daemon kills the agent workers forked for it)."""
        with self._lock:
            self._drop()


def _forget_connections_in_child() -> None:
    """A forked child never speaks on its parent's connections (they are the parent's envs')."""
    for client in list(_CLIENTS):
        client._lock = threading.Lock()
        conn, client._conn = client._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()  # this process's copy of the socket only: the parent's connection stays open


os.register_at_fork(after_in_child=_forget_connections_in_child)


class HostForkServer:
    """The host daemon's agent fork server, with :class:`~execgym.envs.cad.grading.ForkServer`'s interface.

    Example:
        >>> server = HostForkServer.acquire("local", image="cad")   # doctest: +SKIP
        >>> server.release()                                         # doctest: +SKIP
    """

    def __init__(self, executor: str = "local", *, image: str = "cad", memory_bytes: int = 2 * 1024**3) -> None:
        self.client = HostClient(executor, image, memory_bytes)

    @classmethod
    def acquire(cls, executor: str = "local", *, image: str = "cad", memory_bytes: int = 2 * 1024**3) -> HostForkServer:
        """A connection to the daemon of these settings (``memory_bytes``: its grader's, the env's ``memory_mb``)."""
        return cls(executor, image=image, memory_bytes=memory_bytes)

    def launch(self) -> None:
        self.client.call("server", "launch")

    def wait_ready(self) -> None:
        self.client.call("server", "wait_ready")

    def call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self.client.call("server", "call", message, timeout)

    def sandbox_paths(self) -> tuple[str, str]:
        return self.client.call("server", "sandbox_paths")

    def host_pids(self) -> list[int]:
        return self.client.call("server", "host_pids")

    def ping(self) -> dict[str, Any]:
        return self.call({"op": "ping"}, timeout=300.0)

    def release(self) -> None:
        self.client.close()


class HostGrader:
    """The host daemon's trusted grader, with :class:`~execgym.envs.cad.grading.CADGrader`'s interface.

    The references this env registered are registered again in a daemon that replaced a lost one.

    Example:
        >>> grader = HostGrader("local", memory_bytes=2 * 1024**3)                  # doctest: +SKIP
        >>> key = grader.register("t1", code="import cadquery as cq\\nresult = cq.Workplane().box(2, 2, 2)")
        ...                                                                          # doctest: +SKIP
        >>> grader.summary(key)["volume"]                                           # doctest: +SKIP
        8.0
    """

    def __init__(self, executor: str = "local", *, memory_bytes: int = 2 * 1024**3, image: str = "cad") -> None:
        self.client = HostClient(executor, image, memory_bytes)
        self._registered: dict[str, tuple[str, dict[str, Any]]] = {}
        self._generation: str | None = None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        for _ in range(3):
            generation = self.client.connect()
            if generation != self._generation:  # a new daemon holds none of this env's references: again
                for task_id, options in self._registered.values():
                    self.client.call("grader", "register", task_id, **options)
                self._generation = generation
            try:
                value = self.client.call("grader", method, *args, **kwargs)
            except Exception:
                if self.client.generation != generation:
                    continue  # the daemon was replaced during the call: register again, then call again
                raise
            if self.client.generation == generation:
                return value
        raise InfraError("the CAD worker host was replaced three times during one grading call")

    def start(self) -> None:
        self.wait_ready()

    def launch(self) -> None:
        self._call("launch")

    def wait_ready(self) -> None:
        self._call("wait_ready")

    def pool_status(self) -> dict[str, Any]:
        """The daemon's grader pool: ``graders`` running, ``max_graders`` and whether one is ``starting``."""
        return self._call("status")

    def register(self, task_id: str, **kwargs: Any) -> str:
        key = self._call("register", task_id, **kwargs)
        self._registered[key] = (task_id, kwargs)
        return key

    def summary(self, key: str) -> dict[str, Any]:
        return self._call("summary", key)

    def grade(self, key: str, brep: bytes, **kwargs: Any) -> dict[str, Any]:
        return self._call("grade", key, brep, **kwargs)

    def inspect(self, key: str, brep: bytes, **kwargs: Any) -> dict[str, Any]:
        return self._call("inspect", key, brep, **kwargs)

    def tessellate(self, **kwargs: Any) -> Any:
        return self._call("tessellate", **kwargs)

    def close(self) -> None:
        self.client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the CAD worker host daemon (started by the envs themselves)")
    parser.add_argument("name")
    parser.add_argument("executor")
    parser.add_argument("image")
    parser.add_argument("memory_bytes", type=int)
    args = parser.parse_args(argv)
    _Daemon(args.name, args.executor, args.image, args.memory_bytes).run()


if __name__ == "__main__":
    main()
