"""Start an env server in a child process and stop it: for tests, benchmarks and local trainers.

Example:
    >>> with ServerProcess(["execgym/TextToSQL-v0"]) as server:   # doctest: +SKIP
    ...     server.url
    'http://127.0.0.1:41873'
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO

__all__ = ["ServerProcess", "free_port", "wait_until_healthy"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float,
                       stderr: Callable[[], str] = str) -> None:
    """Wait until the server ``process`` answers ``GET url/health``; TimeoutError after ``timeout_s``, and
    RuntimeError with the end of ``stderr()`` if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {stderr().strip()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server not ready at {url} after {timeout_s:.0f} s")


def _parent_path() -> str:
    """This process's import path, so that the server imports the same execgym (an uninstalled checkout too)."""
    return os.pathsep.join(p for p in sys.path if p)


class ServerProcess:
    """``python -m execgym.server`` on ``host:port`` (a free port by default), ready when entered.

    ``kill()`` ends it at once (SIGKILL, as a crash would), ``start()`` starts it again on the same port.
    """

    def __init__(self, env_ids: Sequence[str], *, host: str = "127.0.0.1", port: int | None = None,
                 max_sessions: int = 64, idle_timeout_s: float = 600.0, startup_timeout_s: float = 60.0) -> None:
        self.env_ids = list(env_ids)
        self.host, self.port = host, port or free_port(host)
        self.max_sessions, self.idle_timeout_s = max_sessions, idle_timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "execgym.server", "--env", ",".join(self.env_ids), "--host", self.host,
               "--port", str(self.port), "--max-sessions", str(self.max_sessions),
               "--idle-timeout", str(self.idle_timeout_s)]
        # A file, not a pipe: nobody reads a pipe while the server runs, and a full one would block its logging.
        self._close_log()  # a restart after kill(): the earlier run's log goes
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (open while the server runs; stop() closes it)
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._stderr,
                                        env={**os.environ, "PYTHONPATH": _parent_path()})
        try:
            wait_until_healthy(self.url, self.process, self.startup_timeout_s, self.stderr)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stderr(self) -> str:
        """What the server wrote to stderr so far (its log and any traceback)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def kill(self) -> None:
        """End the server at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """End the server gracefully (SIGINT, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
