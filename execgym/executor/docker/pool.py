"""The warm pool of the Docker backend: started containers waiting per (image, limits), and the background
removal of used ones."""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from typing import TYPE_CHECKING

from execgym.executor.base import InfraError, Limits
from execgym.executor.docker.container import _Slot

if TYPE_CHECKING:
    from execgym.executor.docker.sandbox import DockerExecutor

__all__ = ["_Pool", "_Reaper"]


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
