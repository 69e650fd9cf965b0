"""A JSON-lines worker on a ``docker exec -i`` attach socket."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from execgym.executor.base import Session
from execgym.executor.docker.container import _AGENT

if TYPE_CHECKING:
    from execgym.executor.docker.container import _ExecStream
    from execgym.executor.docker.sandbox import DockerSandbox

__all__ = ["DockerSession"]

_ids = itertools.count(1)


class DockerSession(Session):
    """A JSON-lines worker on a ``docker exec -i`` attach socket (see :class:`Session`).

    It speaks to its sandbox only through :meth:`DockerSandbox.exec`, :meth:`DockerSandbox.agent`,
    :meth:`DockerSandbox.killall` and :meth:`DockerSandbox.exec_info`.

    >>> from execgym.executor.docker import DockerExecutor, docker_available, image_available
    >>> ok, _ = docker_available()
    >>> code = "import json,sys\\nfor l in sys.stdin: print(json.dumps(json.loads(l)+1), flush=True)"
    >>> if ok and image_available("python")[0]:
    ...     with DockerExecutor(pool_size=0).sandbox() as sb:
    ...         print(sb.session(["python", "-c", code]).request(41).value)
    ... else:
    ...     print(42)
    42
    """

    def __init__(self, sandbox: DockerSandbox, argv: list[str], env: Mapping[str, str]) -> None:
        super().__init__(sandbox, argv, env)
        self.sb = sandbox
        self._stream: _ExecStream | None = None
        self._pidfile = ""
        self._start()

    def _start(self) -> None:
        # The worker's process group goes in a pid file, so that a second exec can kill it.
        self._pidfile = f"/tmp/.execgym/session-{next(_ids)}.pgid"
        config = {"argv": self.argv, "pidfile": self._pidfile, "rlimits": {"core": 0}}
        self._stream = self.sb.exec([*_AGENT, "session", json.dumps(config)], stdin=True, env=self.env)

    def detach(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _kill_worker(self) -> None:
        stream = self._stream
        if stream is None:
            return
        stream.poll()
        if not stream.eof and self.sb.agent("kill", {"pidfile": self._pidfile}):
            for kind, chunk in stream.frames(time.monotonic() + 3.0):
                if kind == 2:
                    self._stderr.feed(chunk)
            if not stream.eof:
                self.sb.killall()
        self.detach()

    def _worker_alive(self) -> bool:
        if self._stream is None:
            return False
        self._stream.poll()
        self._take_in(self._stream, time.monotonic())  # what arrived since the last request, without waiting
        return not self._stream.eof

    def _send(self, data: bytes, deadline: float) -> None:
        assert self._stream is not None
        self._stream.send(data, deadline)

    def _receive(self, deadline: float) -> bool:
        assert self._stream is not None
        self._take_in(self._stream, deadline)
        return not self._stream.eof

    def _take_in(self, stream: _ExecStream, deadline: float) -> None:
        """Sort the stream's frames into stdout and stderr until a line ends, EOF or ``deadline``."""
        for kind, chunk in stream.frames(deadline):
            if kind != 1:
                self._stderr.feed(chunk)
                continue
            self._buf += chunk
            if b"\n" in chunk:
                return

    def _death_note(self, what: str) -> str:
        code = self.sb.exec_info(self._stream.exec_id).get("ExitCode") if self._stream is not None else None
        return f"{what} (exit code {code})"
