"""Process hygiene for kernel workers: resource limits, hardening, killing strays, restoring scratch places."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import time
from collections.abc import Callable
from typing import Any


class WorkerState:
    """What a worker learns about itself once, set by the fork server and read by the plumbing."""

    vm_size_fallback = 0  # the worker's size when it forked, for namespaced workers that cannot see /proc
    pid_namespace_init = False  # True in a forked env worker: pid 1 of a PID namespace of its own


STATE = WorkerState()


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return STATE.vm_size_fallback


def _set_limit(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, hard))


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent (the worker) dies (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except Exception:
        return False


def harden_worker() -> dict[str, bool]:
    """Make this worker unreachable from the programs it forks, and the parent of every process they leave.

    Not dumpable: a child of the same uid cannot ptrace it or open ``/proc/<pid>/fd`` / ``mem``, so it cannot
    write into the worker's request or reply pipes. Child subreaper: a process a program detaches with
    ``fork`` + ``setsid`` is re-parented to the worker (not to the sandbox's init), so :func:`kill_strays`
    finds and kills it after every job.
    """
    return {
        "not_dumpable": _prctl(_PR_SET_DUMPABLE, 0),
        "subreaper": _prctl(_PR_SET_CHILD_SUBREAPER, 1),
    }


def _child_pids() -> set[int]:
    """This process's children (subreaper: including every orphan its descendants left)."""
    me = os.getpid()
    pids: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{me}/task"):
            with open(f"/proc/{me}/task/{tid}/children") as f:
                pids.update(int(x) for x in f.read().split())
        return pids
    except (OSError, ValueError):
        pass
    for name in os.listdir("/proc"):  # kernels without /proc/<pid>/task/<tid>/children
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == me:
                pids.add(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def kill_strays(keep: set[int] | frozenset[int] = frozenset(), budget_s: float = 5.0) -> bool:
    """SIGKILL and reap every child of this process except ``keep``, until none is left; False if some survive.

    Orphans of killed children are re-parented here (see :func:`harden_worker`) and caught by the next round.
    In a forked env worker (pid 1 of its own PID namespace, see :class:`ForkServer`) ``kill(-1)`` reaches every
    process of the namespace, and nothing outside it.
    """
    deadline = time.monotonic() + budget_s
    if STATE.pid_namespace_init and not keep:
        return _kill_namespace(deadline)
    while True:
        strays = _child_pids() - set(keep)
        if not strays:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in strays:
            _quiet(os.kill, pid, signal.SIGKILL)
        for pid in strays:
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.002)


def _kill_namespace(deadline: float) -> bool:
    """SIGKILL every other process of this PID namespace (this process is its init) and reap them all."""
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


class Scratch:
    """The writable places of the sandbox, put back as they were at start after every job.

    Programs can write to the work directory and the temporary directories; nothing they leave there may
    reach a later job (another episode's program) or the worker itself.
    """

    def __init__(self, roots: list[str], limit: int = 20_000) -> None:
        self.roots = []
        for root in roots:
            real = os.path.realpath(root)
            if os.path.isdir(real) and os.access(real, os.W_OK) and real != "/" and real not in self.roots:
                self.roots.append(real)
        self.limit = limit
        self.baseline = {root: self._entries(root) for root in self.roots}

    def _entries(self, root: str) -> set[str]:
        out: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                out.add(os.path.relpath(os.path.join(dirpath, name), root))
                if len(out) >= self.limit:
                    return out
        return out

    def restore(self) -> None:
        """Remove everything created under the roots since start (permissions a program took away are restored)."""
        for root in self.roots:
            known = self.baseline[root]
            for dirpath, dirnames, filenames in os.walk(root, topdown=True):
                for name in list(dirnames) + filenames:
                    path = os.path.join(dirpath, name)
                    if os.path.relpath(path, root) in known and not os.path.islink(path):
                        continue
                    if name in dirnames:
                        dirnames.remove(name)
                    _force_remove(path)


def _force_remove(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        _quiet(os.unlink, path)
        return
    _quiet(os.chmod, path, 0o700)  # a program may have taken its own permissions away
    for dirpath, dirnames, _ in os.walk(path):
        _quiet(os.chmod, dirpath, 0o700)
        for name in dirnames:
            _quiet(os.chmod, os.path.join(dirpath, name), 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _max_fd() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 65536 if soft == resource.RLIM_INFINITY else min(int(soft), 1 << 20)


def _quiet(fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(OSError):
        fn(*args)
