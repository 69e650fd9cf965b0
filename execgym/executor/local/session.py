"""A JSON-lines worker under a local sandbox's supervisor."""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from execgym.executor.base import InfraError, Session, send_all
from execgym.executor.local.supervisor import Exit, job_ids

if TYPE_CHECKING:
    from execgym.executor.local.sandbox import LocalSandbox

__all__ = ["LocalSession"]

_CHUNK = 1 << 16


class LocalSession(Session):
    """A JSON-lines worker under a :class:`LocalSandbox`'s supervisor (see :class:`Session`).

    It speaks to its sandbox only through :meth:`LocalSandbox.supervisor`,
    :meth:`LocalSandbox.live_supervisor`, :attr:`LocalSandbox.generation` and :meth:`LocalSandbox.give_pipes`.

    >>> from execgym.executor.local import LocalExecutor
    >>> code = "import json,sys\\nfor l in sys.stdin: print(json.dumps(json.loads(l)*2), flush=True)"
    >>> with LocalExecutor().sandbox() as sb:
    ...     print(sb.session(["python", "-c", code]).request(21).value)
    42
    """

    def __init__(self, sandbox: LocalSandbox, argv: list[str], env: Mapping[str, str]) -> None:
        super().__init__(sandbox, argv, env)
        self.sb = sandbox
        self._job = -1
        self._generation = -1  # the supervisor generation the worker runs under
        self._fds: tuple[int, int, int] | None = None  # its stdin (ours to write), stdout, stderr
        self._exited = False
        self._start()

    def _start(self) -> None:
        sup = self.sb.supervisor()
        self._generation = self.sb.generation
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.sb.give_pipes(in_r, out_r, err_r)
        self._job = next(job_ids)
        spawn = {
            "op": "spawn",
            "id": self._job,
            "argv": self.argv,
            "env": self.env,
            "cwd": self.sb.workdir,
            "kind": "session",
        }
        try:
            sup.send(spawn, (in_r, out_w, err_w))
        except BaseException:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        os.set_blocking(in_w, False)
        os.set_blocking(err_r, False)
        self._fds = (in_w, out_r, err_r)
        self._exited = False

    def detach(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    def _kill_worker(self) -> None:
        sup = self.sb.live_supervisor(self._generation)
        if sup is not None:
            with contextlib.suppress(InfraError):  # a supervisor breaking the protocol is killed: so is the worker
                sup.pump()
                if sup.exits.pop(self._job, None) is None and not self._exited:
                    sup.send({"op": "kill", "id": self._job})
                    sup.wait_exit(self._job, 5.0)
        self._exited = True
        self._drain_stderr()
        self.detach()

    def _worker_alive(self) -> bool:
        sup = self.sb.live_supervisor(self._generation)
        if self._fds is None or sup is None:
            return False
        sup.pump()
        return self._job not in sup.exits  # else it died since the last request

    def _send(self, data: bytes, deadline: float) -> None:
        assert self._fds is not None
        send_all(self._fds[0], data, deadline)

    def _receive(self, deadline: float) -> bool:
        assert self._fds is not None
        _, out_r, err_r = self._fds
        poller = select.poll()
        poller.register(out_r, select.POLLIN)
        poller.register(err_r, select.POLLIN)
        for fd, _ev in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            if fd == err_r:
                self._drain_stderr()
                continue
            data = os.read(out_r, _CHUNK)
            if not data:
                return False
            self._buf += data
        return True

    def _drain_stderr(self) -> None:
        if self._fds is None:
            return
        while True:
            try:
                data = os.read(self._fds[2], _CHUNK)
            except BlockingIOError:
                return
            if not data:
                return
            self._stderr.feed(data)

    def _death_note(self, what: str) -> str:
        sup = self.sb.live_supervisor(self._generation)
        code = None
        if sup is not None:
            ex = sup.wait_exit(self._job, 2.0)
            self._exited = ex is not None
            if isinstance(ex, Exit):
                code = ex.code
            elif isinstance(ex, str):
                return f"worker could not start: {ex}"
        return f"{what} (exit code {code})"
