"""The cgroups of a local sandbox (as root): a ``pids`` limit that binds root and one memory limit for all
its processes together.

>>> memory_limit_scope() in ("sandbox", "process")
True
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
import time
from functools import cache
from pathlib import Path

__all__ = ["SandboxCgroups", "cgroup_parents", "memory_limit_scope"]

_ids = itertools.count(1)


class SandboxCgroups:
    """The cgroups holding one sandbox: ``pids`` (root only: RLIMIT_NPROC does not bind root) and
    ``memory`` (a limit on the whole sandbox, not per process). One directory per controller on cgroup
    v1, one directory with both on v2. Either may be missing where this process cannot create it.
    """

    def __init__(self, pids: Path | None, memory: Path | None, dirs: list[Path]) -> None:
        self.pids_dir = pids
        self.memory_dir = memory
        self.dirs = dirs

    @classmethod
    def create(cls, max_procs: int | None, memory_bytes: int | None) -> SandboxCgroups | None:
        if os.geteuid() != 0 or (max_procs is None and memory_bytes is None):
            return None
        wanted = {"pids": max_procs, "memory": memory_bytes}
        made: dict[Path, set[str]] = {}  # cgroup directory -> controllers configured in it
        got: dict[str, Path] = {}
        name = f"execgym-{os.getpid()}-{next(_ids)}"
        for controller, value in wanted.items():
            if value is None:
                continue
            for base in cgroup_parents(controller):
                path = base / name
                try:
                    if path not in made:
                        _remove_stale_cgroups(base)
                        path.mkdir()
                        made[path] = set()
                    _configure(path, controller, value)
                except OSError:
                    if path in made and not made[path]:
                        with contextlib.suppress(OSError):
                            path.rmdir()
                        del made[path]
                    continue
                made[path].add(controller)
                got[controller] = path
                break
        if not made:
            return None
        return cls(got.get("pids"), got.get("memory"), list(made))

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_kills(self) -> int | None:
        """How many processes the kernel's OOM killer has killed in the memory cgroup so far."""
        if self.memory_dir is None:
            return None
        for name in ("memory.events", "memory.oom_control"):
            try:
                for line in (self.memory_dir / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
            except (OSError, ValueError):
                continue
        return None

    def pids(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                out.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        return sorted(out)

    def adopt(self, pid: int) -> None:
        """Move process ``pid`` (a pid of this machine) into these cgroups: what it starts later is born in them.

        Raises OSError when the move did not take (the process is gone, or this process may not move it).
        """
        for path in self.procs_files:
            Path(path).write_text(str(pid))
        if pid not in self.pids():
            raise OSError(errno.ESRCH, f"process {pid} is not in the cgroups it was moved to")

    def destroy(self) -> None:
        for _ in range(2000):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.001)
        for d in self.dirs:
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)  # a killed task leaves the cgroup a moment after its death
        self.dirs = []


def _configure(path: Path, controller: str, value: int) -> None:
    """Set one controller's limit in a fresh cgroup (v2 names first, then v1)."""
    if controller == "pids":
        (path / "pids.max").write_text(str(value))
        return
    if (path / "memory.max").exists():  # v2
        (path / "memory.max").write_text(str(value))
        with contextlib.suppress(OSError):
            (path / "memory.swap.max").write_text("0")
        return
    (path / "memory.limit_in_bytes").write_text(str(value))
    with contextlib.suppress(OSError):  # absent without swap accounting; then there is no swap to count
        (path / "memory.memsw.limit_in_bytes").write_text(str(value))
    if int((path / "memory.limit_in_bytes").read_text()) > value:
        raise OSError(errno.EINVAL, "memory limit did not take")


def _remove_stale_cgroups(base: Path) -> None:
    """Remove empty sandbox cgroups whose owner process is gone (left by a crashed run)."""
    try:
        entries = list(base.glob("execgym-*-*"))
    except OSError:
        return
    for path in entries:
        try:
            owner = int(path.name.split("-")[1])
            os.kill(owner, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                path.rmdir()  # fails (EBUSY) while processes remain in it: then it is not stale
        except (ValueError, PermissionError):
            continue


@cache
def cgroup_parents(controller: str) -> tuple[Path, ...]:
    """Directories under which this process may create a cgroup with ``controller`` (v1 first, then v2)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return ()
    v1_path = next(
        (ln.split(":", 2)[2] for ln in own if ln.count(":") >= 2 and controller in ln.split(":")[1].split(",")), None
    )
    v2_path = next((ln.split(":", 2)[2] for ln in own if ln.startswith("0::")), None)
    out: list[Path] = []
    for line in mounts:
        parts = line.split()
        if len(parts) < 4:
            continue
        mnt, fstype, opts = parts[1], parts[2], parts[3].split(",")
        if fstype == "cgroup" and controller in opts and v1_path is not None:
            out.insert(0, Path(mnt) / v1_path.lstrip("/"))
        elif fstype == "cgroup2" and v2_path is not None:
            base = Path(mnt) / v2_path.lstrip("/")
            try:
                if controller not in (base / "cgroup.controllers").read_text().split():
                    continue
                if controller not in (base / "cgroup.subtree_control").read_text().split():
                    (base / "cgroup.subtree_control").write_text(f"+{controller}")
            except OSError:
                continue
            out.append(base)
    return tuple(p for p in out if os.access(p, os.W_OK))


def memory_limit_scope() -> str:
    """``"sandbox"`` where a memory cgroup can hold a whole sandbox here, else ``"process"`` (RLIMIT_AS only).

    >>> memory_limit_scope() in ("sandbox", "process")
    True
    """
    return "sandbox" if os.geteuid() == 0 and cgroup_parents("memory") else "process"
