"""The embedded default backend: a private temp directory per sandbox, no daemon.

Each sandbox gets one supervisor process (:mod:`execgym.executor._agent` in ``serve`` mode) started on
first use. The host sends it spawn requests with the command's stdio pipes attached (SCM_RIGHTS); it
``posix_spawn`` s the command in a new session, so a ``run`` costs about what a bare
``subprocess.run`` does. The host reads the pipes itself, capping each stream at
``Limits.output_bytes`` while draining (nothing beyond the cap is kept), and on timeout asks the
supervisor to kill the command's process group and every orphan it left.

What is enforced, and how:

* **Always**: environment scrubbed (only ``PATH``, ``HOME`` = work dir, ``LANG``/``LC_ALL``,
  ``TMPDIR``, ``PYTHONDONTWRITEBYTECODE``, ``PYTHONUNBUFFERED``, single-threaded BLAS/OpenMP, the spec's
  ``env`` and ``pass_env``); wall-time timeout killing the whole process group and orphans; output
  caps; RLIMIT_AS (memory), RLIMIT_CPU (per process, ``run`` commands only), RLIMIT_FSIZE (largest
  file = ``disk_bytes``), RLIMIT_CORE = 0; ``write_files``/``read_file`` refuse absolute paths, ``..``
  and symlinks that resolve outside the work directory (resolved component by component with
  ``O_NOFOLLOW``, so a symlink swapped in concurrently cannot redirect them).
* **With bubblewrap** (``bwrap`` installed and able to build the sandbox; probed once, with the real
  configuration): only what a sandbox needs is mounted, read-only: ``/usr`` (and the merged-``/usr`` links),
  an allowlist of ``/etc`` (loader cache, alternatives, name resolution, TLS roots, time zone; ``passwd``
  and ``group`` generated per sandbox), the interpreter's prefixes and ``sys.path`` minus execgym's checkout
  (an editable install's source, its ``.git`` and ``execgym/assets`` stay out; a package installed inside
  a bound directory is masked), minus the calling script's folder and any entry that is or holds ``/tmp``,
  ``/dev``, ``/proc``, ``/etc`` or the work dir. Read-write: the work dir, a private ``/tmp`` and
  ``/dev/shm``. Also a minimal ``/dev``, its own ``/proc`` (``/proc/sys`` read-only) and PID namespace
  (the supervisor is PID 1, so ``close()`` or a crash of the host takes every process down with it), no
  network unless ``Limits.network`` (``--unshare-net``: only a private loopback; with the network on, the
  host's network namespace is shared, abstract Unix sockets included). No ``/root``, ``/home``, ``/run``, ``/var``,
  ``/sys`` nor any host socket exists inside.
* **Identity**: as root, bubblewrap builds the sandbox (it can then bind an interpreter under a private
  home) and the supervisor drops to :data:`SANDBOX_UID`/:data:`SANDBOX_GID` before anything else runs: no
  supplementary groups, empty capability bounding set, ``no_new_privs`` (see ``_agent.drop_privileges``).
  The work dir and the commands' stdio pipes are given to that uid. As a normal user bwrap creates a user
  namespace and commands run as that user, in which RLIMIT_NPROC counts only the sandbox's own processes.
* **Control channel**: the socket to the supervisor is reachable from no command: the supervisor marks
  every descriptor it holds close-on-exec, receives the stdio pipes close-on-exec, closes the socket again
  in each ``posix_spawn`` and is not dumpable (commands of the same uid cannot ptrace it or open
  ``/proc/1/fd``); as PID 1 of the sandbox it gets only the signals it handles (SIGCHLD). The host checks
  every message (JSON object, known op, a job it is waiting for, field types); a malformed or unexpected
  one kills the supervisor (and every command with it) and raises :class:`InfraError`.
* **Process limit**: RLIMIT_NPROC, which the kernel ignores for root; as root the supervisor is placed in its
  own ``pids`` cgroup (v1, or v2 where the cgroup tree is writable) with ``pids.max`` = ``max_processes``.
* **Memory**: as root, a ``memory`` cgroup per sandbox (v1 ``memory.limit_in_bytes`` and ``memsw``, or v2
  ``memory.max`` and ``memory.swap.max=0``) caps all of its processes together; elsewhere the limit is
  RLIMIT_AS, per process. :attr:`LocalSandbox.memory_scope` says which holds.
* **Without bubblewrap** :class:`LocalExecutor` refuses to make sandboxes unless asked explicitly
  (``use_bwrap=False`` or ``$EXECGYM_LOCAL_UNCONFINED=1``); then only the list under *Always* remains:
  commands run as the calling user (root included) with the full host file system readable *and writable* by
  that user, the host network reachable, and host processes of the same user visible.
  ``Limits(network=False)`` cannot be honoured and is reported by :attr:`LocalExecutor.isolation` and a
  one-time warning. Use the Docker backend for untrusted code on such machines.

Out-of-memory detection (``ExecResult.oom_killed``): true when the memory cgroup's OOM-kill counter rose
during the command (any of its processes was killed), or, as RLIMIT_AS makes allocations fail rather than
invoking an OOM killer, when a memory limit is set and the command's stderr ends in an allocation failure
(``MemoryError``, ``std::bad_alloc``, ``Cannot allocate memory``, ``out of memory``), or it died of a
SIGKILL that neither the timeout nor the CPU limit sent.

>>> from execgym.executor.base import Limits, SandboxSpec
>>> ex = LocalExecutor()
>>> with ex.sandbox(SandboxSpec(files={"hello.py": "print('hi')"})) as sb:
...     r = sb.run(["python", "hello.py"], timeout=10)
>>> (r.exit_code, r.stdout, r.timed_out)
(0, 'hi\\n', False)
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import json
import os
import select
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from execgym.executor import _agent
from execgym.executor.base import (
    ExecResult,
    Executor,
    InfraError,
    PathError,
    Sandbox,
    SandboxSpec,
    Session,
    SessionReply,
    looks_out_of_memory,
    normalize_cmd,
    validate_relpath,
)

__all__ = [
    "SANDBOX_GID",
    "SANDBOX_UID",
    "LocalExecutor",
    "LocalSandbox",
    "LocalSession",
    "bwrap_status",
    "memory_limit_scope",
]

_AGENT_SOURCE = Path(_agent.__file__).read_text()
_PACKAGE_DIR = Path(_agent.__file__).resolve().parents[1]  # the execgym package
_CHUNK = 1 << 16
_ids = itertools.count(1)


# --------------------------------------------------------------------------------------- bubblewrap

#: The uid/gid sandboxed commands run as when the host user is root ("nobody" on most systems).
SANDBOX_UID = 65534
SANDBOX_GID = 65534

# What of /etc a sandbox sees: the dynamic loader, Debian's alternatives (targets of /usr/bin links),
# name resolution and TLS roots (for Limits(network=True)), time zone, fonts. Nothing else of the host's
# /etc (users, ssh, docker, credentials) is bound; passwd and group are generated per sandbox.
_ETC_ALLOWED = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone", "nsswitch.conf",
    "host.conf", "hosts", "resolv.conf", "gai.conf", "protocols", "services", "ssl", "ca-certificates",
    "ca-certificates.conf", "pki", "crypto-policies", "mime.types", "os-release", "fonts", "gitconfig",
)  # fmt: skip
_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _package_checkout() -> Path:
    """The directory execgym must not be seen through: its source checkout, or the installed package."""
    for d in (_PACKAGE_DIR, *_PACKAGE_DIR.parents):
        if (d / ".git").exists() or ((d / "pyproject.toml").is_file() and (d / "execgym").is_dir()):
            return d
    return _PACKAGE_DIR


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _script_folders() -> set[Path]:
    """What this process's ``sys.path[0]`` slot may hold: the running script's folder, or the working
    directory (``-m``); nothing when isolated (``-I``, ``-P``). They are the caller's, not libraries."""
    if sys.flags.isolated or getattr(sys.flags, "safe_path", False):
        return set()
    out: set[Path] = set()
    if sys.path and sys.path[0] and os.path.isabs(sys.path[0]):
        out.add(Path(sys.path[0]).resolve())
    script = sys.argv[0] if sys.argv else ""
    if script not in ("", "-c", "-m") and os.path.isfile(script):
        out.add(Path(script).resolve().parent)
    return out


#: Places a sandbox has its own, private version of: a ``sys.path`` entry that is (or contains) one of
#: them is never bound over it.
_PRIVATE_DIRS = (Path("/tmp"), Path("/dev/shm"), Path("/dev"), Path("/proc"), Path("/etc"))


@cache
def _interpreter_dirs(python: str) -> tuple[str, ...]:
    """Directories ``python`` needs: its prefixes and its ``sys.path``, minus execgym's checkout.

    A prefix is bound even inside the checkout (a ``.venv`` there); other ``sys.path`` entries inside
    the checkout (an editable install's source, added by a ``.pth`` file) are not. Nor are: ``''`` and
    relative entries, the folder of the running script (or the working directory, for ``-m`` / ``-c``)
    unless it lies inside a prefix (e.g. a console script's ``bin``), and any entry that is or contains
    ``/tmp``, ``/dev/shm``, ``/dev``, ``/proc`` or ``/etc``, which the sandbox has its own of. (A script in
    ``/tmp`` once bound the host's ``/tmp`` over the sandbox's, hiding its work dir.)
    """
    if python == sys.executable:
        info = [sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]
        callers = _script_folders()
    else:
        code = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]))"
        try:
            out = subprocess.run([python, "-I", "-c", code], capture_output=True, timeout=30, check=True).stdout
            info = json.loads(out)
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            raise InfraError(f"cannot inspect the sandbox interpreter {python!r}: {e}") from e
        callers = set()  # -I: no script folder on that path
    exe = Path(python).resolve()
    prefixes = [Path(p).resolve() for p in info[:3] if p] + [Path(python).parent.resolve(), exe.parent]
    checkout = _package_checkout()
    dirs: list[Path] = []
    for i, entry in enumerate([*prefixes, *info[3:]]):
        if not isinstance(entry, (str, Path)) or not os.path.isabs(entry) or not os.path.exists(entry):
            continue
        p = Path(entry).resolve()
        if p.is_file():  # a zip on sys.path
            p = p.parent
        if p == Path("/") or p == checkout or any(d.is_relative_to(p) for d in _PRIVATE_DIRS):
            continue
        in_prefix = any(p.is_relative_to(q) for q in prefixes if q != checkout)
        if i >= len(prefixes) and not in_prefix and (p.is_relative_to(checkout) or p in callers):
            continue
        if p.is_relative_to("/usr") or any(p.is_relative_to(q) for q in dirs):
            continue
        dirs = [q for q in dirs if not q.is_relative_to(p)] + [p]
    return tuple(sorted(str(p) for p in dirs))


def _bwrap_args(
    workdir: str, network: bool, tmp_size: int | None, *, python: str = sys.executable, etc_dir: str | None = None
) -> list[str]:
    """The bubblewrap command line of one sandbox: only the paths a sandbox needs, read-only.

    Bound: ``/usr`` (and the merged-``/usr`` links or directories beside it), an allowlist of ``/etc``,
    the interpreter's prefixes and ``sys.path`` (without execgym's checkout), the work dir (read-write).
    Private: ``/tmp``, ``/dev/shm``, a minimal ``/dev``, ``/proc`` of a new PID namespace. Nothing else of
    the host (``/root``, ``/home``, ``/run``, ``/var``, ``/sys``, sockets, the checkout and its ``.git``)
    exists inside. Any bound directory that still contains execgym's checkout gets it masked.
    """
    size = ["--size", str(tmp_size)] if tmp_size else []
    args = ["bwrap", "--ro-bind", "/usr", "/usr"]
    for name in _USR_LINKS:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            args += ["--ro-bind", str(host), str(host)]
    args += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC_ALLOWED:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    if etc_dir is not None:
        for name in ("passwd", "group"):
            args += ["--ro-bind", os.path.join(etc_dir, name), f"/etc/{name}"]
    args += [
        "--dev", "/dev",
        "--proc", "/proc",
        "--ro-bind", "/proc/sys", "/proc/sys",  # read-only whatever the file modes say
        *size, "--perms", "1777", "--tmpfs", "/tmp",
        *size, "--perms", "1777", "--tmpfs", "/dev/shm",
    ]  # fmt: skip
    made = {"/", "/usr", "/etc", "/tmp", "/dev", "/proc"}
    bound = [Path("/usr")]
    work = Path(workdir)
    # Never over (or inside) the work dir: a folder holding it would hide it behind the host's copy,
    # whose sandbox root is mode 0700.
    lib_dirs = [d for d in _interpreter_dirs(python) if not _overlaps(Path(d), work)]
    for d in [*lib_dirs, workdir]:
        for parent in reversed(Path(d).parents):
            if str(parent) not in made and not any(parent.is_relative_to(b) for b in bound):
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--bind" if d == workdir else "--ro-bind", d, d]
        bound.append(Path(d))
        made.add(d)
    for hidden in sorted({_package_checkout(), _PACKAGE_DIR}):
        if any(hidden.is_relative_to(b) for b in bound[:-1]):  # e.g. a non-editable install in site-packages
            args += ["--tmpfs", str(hidden), "--remount-ro", str(hidden)]
    args += ["--remount-ro", "/"]  # the skeleton bwrap made (/etc, mount points) is read-only too
    args += [
        "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", "sandbox",
        "--die-with-parent", "--as-pid-1",
        "--chdir", workdir,
    ]  # fmt: skip
    if not network:
        args.append("--unshare-net")
    if os.geteuid() == 0:
        # The supervisor spends these three on becoming SANDBOX_UID (see _agent.drop_privileges).
        args += ["--cap-drop", "ALL"] + [a for c in ("SETUID", "SETGID", "SETPCAP") for a in ("--cap-add", f"CAP_{c}")]
    return args


def _write_identity(etc_dir: str, uid: int, gid: int, home: str) -> None:
    """Generated ``/etc/passwd`` and ``/etc/group`` naming only root and the sandbox user."""
    os.makedirs(etc_dir, exist_ok=True)
    Path(etc_dir, "passwd").write_text(
        f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nsandbox:x:{uid}:{gid}:sandbox:{home}:/bin/sh\n"
    )
    Path(etc_dir, "group").write_text(f"root:x:0:\nsandbox:x:{gid}:\n")


@cache
def bwrap_status() -> tuple[bool, str]:
    """Whether bubblewrap works here (probed once per process), and why not if it does not.

    The probe runs the real configuration: as root it must also drop to ``SANDBOX_UID``.

    >>> ok, why = bwrap_status()
    >>> isinstance(ok, bool) and isinstance(why, str)
    True
    """
    exe = shutil.which("bwrap")
    if exe is None:
        return False, "bwrap is not installed"
    with tempfile.TemporaryDirectory(prefix="execgym-probe-") as d:
        work = os.path.join(d, "work")
        os.mkdir(work)
        _write_identity(os.path.join(d, "etc"), *_sandbox_ids(), work)
        try:
            argv = [*_bwrap_args(work, network=False, tmp_size=1 << 20, etc_dir=os.path.join(d, "etc")), "--"]
        except InfraError as e:
            return False, str(e)
        config = {"drop": list(_sandbox_ids()) if os.geteuid() == 0 else None}
        argv += [sys.executable, "-I", "-S", "-c", _AGENT_SOURCE, "probe", json.dumps(config)]
        try:
            p = subprocess.run(argv, capture_output=True, timeout=20, env={"PATH": os.defpath})
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"bwrap failed to start: {e}"
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        return False, f"bwrap is installed but unusable (user namespaces disabled?): {err[-1] if err else p.returncode}"
    return True, "bwrap works"


def _sandbox_ids() -> tuple[int, int]:
    """The uid/gid sandboxed commands run as: SANDBOX_UID when the host user is root, else the user's own."""
    if os.geteuid() == 0:
        return SANDBOX_UID, SANDBOX_GID
    return os.getuid(), os.getgid()


# ------------------------------------------------------------------------------------------ cgroups


class _SandboxCgroups:
    """The cgroups holding one sandbox: ``pids`` (root only: RLIMIT_NPROC does not bind root) and
    ``memory`` (a limit on the whole sandbox, not per process). One directory per controller on cgroup
    v1, one directory with both on v2. Either may be missing where this process cannot create it.
    """

    def __init__(self, pids: Path | None, memory: Path | None, dirs: list[Path]) -> None:
        self.pids_dir = pids
        self.memory_dir = memory
        self.dirs = dirs

    @classmethod
    def create(cls, max_procs: int | None, memory_bytes: int | None) -> _SandboxCgroups | None:
        if os.geteuid() != 0 or (max_procs is None and memory_bytes is None):
            return None
        wanted = {"pids": max_procs, "memory": memory_bytes}
        made: dict[Path, set[str]] = {}  # cgroup directory -> controllers configured in it
        got: dict[str, Path] = {}
        name = f"execgym-{os.getpid()}-{next(_ids)}"
        for controller, value in wanted.items():
            if value is None:
                continue
            for base in _cgroup_parents(controller):
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
def _cgroup_parents(controller: str) -> tuple[Path, ...]:
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
    return "sandbox" if os.geteuid() == 0 and _cgroup_parents("memory") else "process"


# -------------------------------------------------------------------------------------- supervisor


@dataclass
class _Exit:
    code: int
    killed: bool
    cpu_s: float


class _Supervisor:
    """Host side of one ``_agent serve`` process."""

    def __init__(self, sandbox: LocalSandbox) -> None:
        self.sandbox = sandbox
        self.exits: dict[int, _Exit | str] = {}  # job id -> exit, or a spawn error message
        self.pending: set[int] = set()  # job ids spawned and not yet reported
        self.dead = False
        #: Why the supervisor was killed for breaking the protocol (a malformed or unexpected message).
        self.fault: str | None = None
        limits = sandbox.spec.limits
        bwrap = sandbox.executor.use_bwrap
        rlimits: dict[str, int | None] = {"core": 0, "as": limits.memory_bytes, "fsize": limits.disk_bytes}
        self.cgroup = _SandboxCgroups.create(limits.max_processes, limits.memory_bytes)
        if limits.max_processes is not None and (self.cgroup is None or self.cgroup.pids_dir is None):
            # RLIMIT_NPROC counts every process of the uid outside a user namespace: leave room for the
            # ones that already exist (the sandbox uid's, when running as root, are other sandboxes').
            if not bwrap:
                rlimits["nproc"] = limits.max_processes + _user_process_count(os.getuid())
            elif os.geteuid() == 0:
                rlimits["nproc"] = limits.max_processes + _user_process_count(sandbox.uid)
            else:
                rlimits["nproc"] = limits.max_processes
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = parent
        config = {
            "fd": child.fileno(),
            "rlimits": rlimits,
            "cpu_s": limits.cpu_time_s,
            "drop": [sandbox.uid, sandbox.gid] if sandbox.drops_privileges else None,
        }
        argv = [sandbox.executor.python, "-I", "-S", *_agent_program(bwrap), "serve", json.dumps(config)]
        if bwrap:
            argv = [*sandbox.bwrap_argv(), "--", *argv]
        if self.cgroup is not None:
            # Join the cgroups before exec so that nothing escapes them, not even for an instant.
            joins = " && ".join(f"echo $$ > {shlex.quote(f)}" for f in self.cgroup.procs_files)
            argv = ["/bin/sh", "-c", f'{joins} && exec "$@"', "sh", *argv]
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(child.fileno(),),
                env={"PATH": os.defpath, "LANG": "C.UTF-8"},
                cwd=sandbox.host_workdir,
                start_new_session=True,
            )
        finally:
            child.close()
        try:
            msg = self.recv(timeout=30, expect="ready")
        except InfraError as e:
            msg = {"error": str(e)}
        if msg is None or msg.get("op") != "ready":
            err = self._stderr()
            self.kill()
            raise InfraError(f"local sandbox supervisor failed to start: {err or msg}")

    def _stderr(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)  # it closed the socket: its exit (and bwrap's message) is moments away
        if self.proc.poll() is None or self.proc.stderr is None or self.proc.stderr.closed:
            return ""
        return self.proc.stderr.read().decode(errors="replace")[-2000:]

    def send(self, msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
        if self.dead:
            raise InfraError(f"local sandbox supervisor is gone{f' ({self.fault})' if self.fault else ''}")
        if msg.get("op") == "spawn":
            self.pending.add(msg["id"])
        data = json.dumps(msg).encode()
        chunks = [data[i : i + 60000] for i in range(0, len(data), 60000)] or [b""]
        try:
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(_fd_array(fds)))] if last and fds else []
                self.sock.sendmsg([(b"." if last else b"+") + chunk], anc)
        except OSError as e:
            self.dead = True
            raise InfraError(f"local sandbox supervisor is gone: {e}") from e

    def recv(self, timeout: float | None = 0.0, *, expect: str | None = None) -> dict[str, Any] | None:
        """One control message, or None when none arrived in time (or the supervisor died).

        Every message is checked (JSON, its op, field types, a job id that is awaited); anything else
        means the channel can no longer be trusted: the supervisor is killed (and every command with it)
        and :class:`InfraError` raised, never another exception.
        """
        if self.dead:
            return None
        if timeout != 0.0:
            r = _wait_fd(self.sock.fileno(), select.POLLIN, timeout)
            if not r:
                return None
        try:
            data = self.sock.recv(1 << 17, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self.dead = True
            return None
        try:
            msg = json.loads(data)
            why = self._invalid(msg, expect)
        except (ValueError, RecursionError) as e:
            msg, why = None, f"not JSON ({type(e).__name__})"
        if why is not None:
            self.fault = f"protocol violation: {why}: {bytes(data[:80])!r}"
            self.kill()
            raise InfraError(f"local sandbox supervisor sent an invalid control message ({why}); sandbox stopped")
        return msg

    def _invalid(self, msg: Any, expect: str | None) -> str | None:
        """Why ``msg`` is not a message the supervisor may send now, or None if it is."""
        if not isinstance(msg, dict):
            return "not an object"
        op = msg.get("op")
        if expect is not None and op != expect:
            return f"expected {expect!r}, got op {op!r}"
        if op == "ready":
            return None if expect == "ready" and _is_int(msg.get("pid")) else "unexpected 'ready'"
        if op not in ("exit", "error"):
            return f"unexpected op {op!r}"
        job = msg.get("id")
        if not _is_int(job) or job not in self.pending:
            return f"{op!r} for job {job!r}, which is not running"
        if op == "error":
            return None if isinstance(msg.get("error"), str) else "'error' without a message"
        if not _is_int(msg.get("code")) or not isinstance(msg.get("killed"), bool):
            return "'exit' without an integer code and a boolean killed"
        cpu = msg.get("cpu_s")
        if not isinstance(cpu, (int, float)) or isinstance(cpu, bool) or not 0 <= cpu < 1e12:
            return "'exit' with a bad cpu_s"
        return None

    def pump(self) -> None:
        """File every pending control message under its job id."""
        while (msg := self.recv()) is not None:
            self.file(msg)

    def file(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "exit":
            self.pending.discard(msg["id"])
            self.exits[msg["id"]] = _Exit(msg["code"], msg["killed"], float(msg["cpu_s"]))
        elif op == "error":
            self.pending.discard(msg["id"])
            self.exits[msg["id"]] = msg["error"]

    def wait_exit(self, job: int, timeout: float) -> _Exit | str | None:
        deadline = time.monotonic() + timeout
        while job not in self.exits:
            left = deadline - time.monotonic()
            if left <= 0 or self.dead:
                return None
            msg = self.recv(timeout=left)
            if msg is not None:
                self.file(msg)
        return self.exits.pop(job)

    def shutdown(self) -> None:
        if not self.dead:
            with contextlib.suppress(InfraError):
                self.send({"op": "shutdown"})
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()

    def kill(self) -> None:
        self.dead = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.destroy()
            self.cgroup = None
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.sock.close()


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _agent_program(hidden: bool) -> list[str]:
    """The supervisor by path (readable in ``ps``), or as ``-c`` source where bubblewrap hides the package."""
    return ["-c", _AGENT_SOURCE] if hidden else [str(Path(_agent.__file__).resolve())]


def _fd_array(fds: Sequence[int]) -> bytes:
    return b"".join(int(fd).to_bytes(4, sys.byteorder) for fd in fds)


def _user_process_count(uid: int) -> int:
    """Processes of ``uid`` now (RLIMIT_NPROC counts them all when there is no user namespace)."""
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


# ----------------------------------------------------------------------------------------- executor


UNCONFINED_ENV = "EXECGYM_LOCAL_UNCONFINED"


class LocalExecutor(Executor):
    """Sandboxes as private temp directories on this machine (see the module docs for the isolation).

    ``use_bwrap``: ``None`` uses bubblewrap when it works here and otherwise *refuses* to make sandboxes
    (unless ``$EXECGYM_LOCAL_UNCONFINED=1``); ``False`` runs without it (no isolation, by explicit
    choice); ``True`` requires it. ``python`` is the interpreter behind ``python`` inside sandboxes
    (default: this one).

    >>> ex = LocalExecutor()
    >>> with ex.sandbox() as sb:
    ...     print(sb.run("echo $((6 * 7))").stdout.strip())
    42
    """

    name = "local"

    def __init__(
        self,
        *,
        use_bwrap: bool | None = None,
        python: str | None = None,
        tmp_root: str | os.PathLike[str] | None = None,
    ) -> None:
        ok, why = bwrap_status() if use_bwrap is not False else (False, "disabled by use_bwrap=False")
        if use_bwrap and not ok:
            raise InfraError(f"use_bwrap=True but {why}")
        self.use_bwrap = ok
        self.bwrap_reason = why
        self.unconfined_allowed = use_bwrap is False or os.environ.get(UNCONFINED_ENV, "") == "1"
        self.python = python or sys.executable
        self.tmp_root = os.fspath(tmp_root) if tmp_root is not None else None

    @property
    def memory_scope(self) -> str:
        """``"sandbox"``: ``Limits.memory_bytes`` caps all of a sandbox's processes together (a memory
        cgroup); ``"process"``: it caps each process on its own (RLIMIT_AS only, no cgroup available)."""
        return memory_limit_scope()

    @property
    def isolation(self) -> str:
        """A one-line statement of what confines sandboxes on this machine."""
        mem = "memory limit per sandbox (cgroup)" if self.memory_scope == "sandbox" else "memory limit per process"
        if self.use_bwrap:
            who = f"uid {SANDBOX_UID} (host root dropped)" if os.geteuid() == 0 else "the calling user"
            return (
                f"bubblewrap: runs as {who}, only /usr, the interpreter and the work dir visible (read-only but the "
                f"work dir), private /tmp, PID/IPC/UTS namespaces, network off unless allowed, {mem}, rlimits"
            )
        return (
            f"rlimits and process-group kill only ({self.bwrap_reason}); no file-system or network isolation, "
            f"runs as the calling user, {mem}"
        )

    def sandbox(self, spec: SandboxSpec | None = None) -> LocalSandbox:
        spec = spec or SandboxSpec()
        if not self.use_bwrap and not self.unconfined_allowed:
            raise InfraError(
                f"local sandbox refused: bubblewrap is needed to confine untrusted code and {self.bwrap_reason}; "
                f"install bubblewrap (and allow user namespaces), use executor='docker', or opt in to running "
                f"unconfined with LocalExecutor(use_bwrap=False) or {UNCONFINED_ENV}=1"
            )
        if not spec.limits.network and not self.use_bwrap:
            _warn_no_network_isolation(self.bwrap_reason)
        return LocalSandbox(self, spec)


@cache
def _warn_no_network_isolation(reason: str) -> None:
    warnings.warn(
        f"execgym local executor: network cannot be disabled without bubblewrap ({reason}); "
        "sandboxed code can reach the network. Use executor='docker' for untrusted code.",
        RuntimeWarning,
        stacklevel=3,
    )


_open_sandboxes: weakref.WeakSet[LocalSandbox] = weakref.WeakSet()


@atexit.register
def _close_open_sandboxes() -> None:
    for sb in list(_open_sandboxes):
        with contextlib.suppress(Exception):
            sb.close()


class LocalSandbox(Sandbox):
    """One private work directory plus its supervisor (started on first use).

    >>> from execgym.executor.base import SandboxSpec
    >>> with LocalExecutor().sandbox() as sb:
    ...     sb.write_files({"d/a.txt": "x"})
    ...     print(sb.run(["cat", "d/a.txt"]).stdout)
    x
    """

    def __init__(self, executor: LocalExecutor, spec: SandboxSpec) -> None:
        self.executor = executor
        self.spec = spec
        self.id = f"{os.getpid()}-{next(_ids)}"
        self.root = tempfile.mkdtemp(prefix="execgym-", dir=executor.tmp_root)
        self.host_workdir = os.path.join(self.root, "work")
        self.workdir = self.host_workdir  # bwrap binds it at the same path
        self.uid, self.gid = _sandbox_ids() if executor.use_bwrap else (os.getuid(), os.getgid())
        #: True when the host user is root and commands run as SANDBOX_UID (the work dir is theirs).
        self.drops_privileges = executor.use_bwrap and os.geteuid() == 0
        self._owner = (self.uid, self.gid) if self.drops_privileges else None
        self._lock = threading.RLock()
        self._sup: _Supervisor | None = None
        self._generation = 0
        self._sessions: list[LocalSession] = []
        self._closed = False
        self._devnull = -1
        try:
            if spec.workdir_from is not None:
                shutil.copytree(spec.workdir_from, self.host_workdir, symlinks=True)
            else:
                os.mkdir(self.host_workdir)
            if self._owner is not None:
                _chown_tree(self.host_workdir, *self._owner)
                # bwrap enters it (--chdir) as a root without CAP_DAC_*: it must be searchable by others.
                os.chmod(self.host_workdir, 0o755)
            os.mkdir(os.path.join(self.root, "tmp"))
            if executor.use_bwrap:
                _write_identity(os.path.join(self.root, "etc"), self.uid, self.gid, self.workdir)
            if spec.files:
                self.write_files(spec.files)
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        py_dir = os.path.dirname(executor.python)
        self._base_env = {
            "PATH": f"{py_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": self.workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TMPDIR": "/tmp" if executor.use_bwrap else os.path.join(self.root, "tmp"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "TERM": "dumb",
            "EXECGYM_SANDBOX": self.id,
        }
        self.env = spec.environment(self._base_env)
        _open_sandboxes.add(self)

    # -- supervisor -------------------------------------------------------------------------------

    def bwrap_argv(self) -> list[str]:
        limits = self.spec.limits
        return _bwrap_args(
            self.host_workdir,
            limits.network,
            limits.disk_bytes,
            python=self.executor.python,
            etc_dir=os.path.join(self.root, "etc"),
        )

    @property
    def memory_scope(self) -> str:
        """``"sandbox"`` if this sandbox's memory limit holds for all its processes together (a memory
        cgroup), ``"process"`` if it holds per process only (RLIMIT_AS), ``"none"`` without a limit."""
        if self.spec.limits.memory_bytes is None:
            return "none"
        sup = self._sup
        if sup is not None and not sup.dead:
            return "sandbox" if sup.cgroup is not None and sup.cgroup.memory_dir is not None else "process"
        return memory_limit_scope()

    def _supervisor(self) -> _Supervisor:
        if self._closed:
            raise InfraError("sandbox is closed")
        if self._sup is None or self._sup.dead:
            if self._sup is not None:
                self._sup.kill()
            self._sup = _Supervisor(self)
            self._generation += 1
        return self._sup

    # -- run -------------------------------------------------------------------------------------------

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
        timeout = self.spec.limits.wall_time_s if timeout is None else float(timeout)
        with self._lock:
            sup = self._supervisor()
            return _Run(self, sup, argv, timeout, stdin, env, cwd).execute()

    def _give_pipes(self, *fds: int) -> None:
        """Make the command's stdio pipes the sandbox user's, so that it can reopen them (``/dev/stderr``,
        ``/dev/fd/N``): a pipe made by root is mode 0600, root's."""
        if self._owner is not None:
            for fd in fds:
                if fd >= 0:
                    os.fchown(fd, *self._owner)

    def _job_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        if not env:
            return self.env
        return {**self.env, **env}

    def _job_cwd(self, cwd: str | None) -> str:
        if cwd is None:
            return self.workdir
        return os.path.join(self.workdir, validate_relpath(cwd))

    # -- files -----------------------------------------------------------------------------------------

    def write_files(self, files: Mapping[str, str | bytes]) -> None:
        for path, content in files.items():
            rel = validate_relpath(path)
            data = content.encode() if isinstance(content, str) else bytes(content)
            fd = _open_inside(
                self.host_workdir, rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, create_parents=True, owner=self._owner
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)

    def read_file(self, path: str) -> bytes:
        rel = validate_relpath(path)
        fd = _open_inside(self.host_workdir, rel, os.O_RDONLY, create_parents=False)
        with os.fdopen(fd, "rb") as f:
            return f.read()

    # -- sessions --------------------------------------------------------------------------------------

    def session(self, cmd: str | Sequence[str], *, env: Mapping[str, str] | None = None) -> LocalSession:
        with self._lock:
            s = LocalSession(self, normalize_cmd(cmd), env)
            self._sessions.append(s)
            return s

    # -- close -----------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for s in self._sessions:
                s._close_pipes()
            if self._sup is not None:
                self._sup.shutdown()
                self._sup = None
            if self._devnull >= 0:
                os.close(self._devnull)
                self._devnull = -1
            shutil.rmtree(self.root, ignore_errors=True)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.close()


class _Run:
    """One command's life: spawn through the supervisor, pump pipes, enforce the deadline."""

    def __init__(
        self,
        sb: LocalSandbox,
        sup: _Supervisor,
        argv: list[str],
        timeout: float,
        stdin: str | bytes | None,
        env: Mapping[str, str] | None,
        cwd: str | None,
    ) -> None:
        self.sb, self.sup, self.argv, self.timeout = sb, sup, argv, timeout
        self.stdin = stdin.encode() if isinstance(stdin, str) else stdin
        self.env = sb._job_env(env)
        self.cwd = sb._job_cwd(cwd)

    def execute(self) -> ExecResult:
        cap = self.sb.spec.limits.output_bytes
        job = next(_ids)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if self.stdin is None:
            in_r = os.dup(self.sb._devnull)
            in_w = -1
        else:
            in_r, in_w = os.pipe()
            os.set_blocking(in_w, False)
        self.sb._give_pipes(out_r, err_r, in_w)
        cgroup = self.sup.cgroup
        oom_before = cgroup.oom_kills() if cgroup is not None else None
        start = time.monotonic()
        try:
            self.sup.send(
                {"op": "spawn", "id": job, "argv": self.argv, "env": self.env, "cwd": self.cwd, "kind": "run"},
                (in_r, out_w, err_w),
            )
        finally:
            os.close(in_r)
            os.close(out_w)
            os.close(err_w)
        out, err = _agent.Capture(cap, 0), _agent.Capture(cap)
        streams = {out_r: out, err_r: err}
        pending = memoryview(self.stdin or b"")
        poller = select.poll()
        poller.register(out_r, select.POLLIN)
        poller.register(err_r, select.POLLIN)
        poller.register(self.sup.sock, select.POLLIN)
        if in_w >= 0:
            poller.register(in_w, select.POLLOUT)
        deadline = start + self.timeout
        timed_out = False
        result: _Exit | str | None = None
        open_streams = 2
        try:
            while open_streams or result is None:
                now = time.monotonic()
                if now >= deadline and not timed_out and (result is None or open_streams):
                    timed_out = True
                    self.sup.send({"op": "kill", "id": job})
                    deadline = now + 5.0  # the supervisor answers a kill in milliseconds
                elif now >= deadline and timed_out:
                    # The supervisor did not report the kill: it is wedged, restart it.
                    self.sup.kill()
                    result = result or _Exit(-signal.SIGKILL, True, 0.0)
                    break
                if self.sup.dead and result is None:
                    result = _Exit(-signal.SIGKILL, False, 0.0)
                    err.feed(b"\n[execgym: sandbox supervisor died]\n")
                for fd, ev in poller.poll(max(0.0, deadline - now) * 1000):
                    if fd == self.sup.sock.fileno():
                        if ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN:
                            self.sup.dead = True
                            poller.unregister(fd)
                            continue
                        self.sup.pump()
                        if job in self.sup.exits:
                            result = self.sup.exits.pop(job)
                        if self.sup.dead:
                            poller.unregister(fd)
                    elif fd == in_w:
                        try:
                            n = os.write(in_w, pending[:_CHUNK])
                            pending = pending[n:]
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            poller.unregister(in_w)
                            os.close(in_w)
                            in_w = -1
                    else:
                        data = os.read(fd, _CHUNK)
                        if data:
                            streams[fd].feed(data)
                        else:
                            poller.unregister(fd)
                            open_streams -= 1
                if isinstance(result, str):
                    break
        finally:
            for fd in (out_r, err_r, in_w):
                if fd >= 0:
                    os.close(fd)
        duration = time.monotonic() - start
        if isinstance(result, str):  # the spawn itself failed (command not found, not executable)
            return ExecResult(
                127, "", f"execgym: cannot run {self.argv[0]!r}: {result}\n", duration, False, False, False
            )
        assert result is not None
        limits = self.sb.spec.limits
        cpu_limited = limits.cpu_time_s is not None and result.cpu_s >= limits.cpu_time_s - 0.05
        oom = looks_out_of_memory(
            err.tail,
            result.code,
            killed_by_us=timed_out or result.killed or cpu_limited,
            memory_limited=limits.memory_bytes is not None,
        )
        if oom_before is not None and cgroup is not None:
            # The memory cgroup counts the kernel's OOM kills: any during the run means one of its
            # processes (not necessarily the first) died for lack of memory.
            oom = oom or (cgroup.oom_kills() or 0) > oom_before
        return ExecResult(
            exit_code=result.code,
            stdout=out.value().decode(errors="replace"),
            stderr=err.value().decode(errors="replace"),
            duration_s=duration,
            timed_out=timed_out,
            truncated=out.truncated or err.truncated,
            oom_killed=oom and not timed_out,
        )


class LocalSession(Session):
    """A JSON-lines worker under a :class:`LocalSandbox`'s supervisor (see :class:`Session`).

    >>> from execgym.executor.base import SandboxSpec
    >>> code = "import json,sys\\nfor l in sys.stdin: print(json.dumps(json.loads(l)*2), flush=True)"
    >>> with LocalExecutor().sandbox() as sb:
    ...     print(sb.session(["python", "-c", code]).request(21).value)
    42
    """

    def __init__(self, sandbox: LocalSandbox, argv: list[str], env: Mapping[str, str] | None) -> None:
        self.sb = sandbox
        self.argv = argv
        self.env = sandbox._job_env(env)
        self.restarts = 0
        self._job = -1
        self._fds: tuple[int, int, int] | None = None
        self._buf = b""
        self._stderr = _agent.Capture(sandbox.spec.limits.output_bytes, 0)
        self._closed = False
        with sandbox._lock:
            self._start()

    def _start(self) -> None:
        sup = self.sb._supervisor()
        self._generation = self.sb._generation
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.sb._give_pipes(in_r, out_r, err_r)
        self._job = next(_ids)
        try:
            sup.send(
                {
                    "op": "spawn",
                    "id": self._job,
                    "argv": self.argv,
                    "env": self.env,
                    "cwd": self.sb.workdir,
                    "kind": "session",
                },
                (in_r, out_w, err_w),
            )
        except BaseException:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            raise
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        os.set_blocking(err_r, False)
        self._fds = (in_w, out_r, err_r)
        self._buf = b""
        self._exited = False

    def _close_pipes(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None

    def _kill_worker(self) -> None:
        sup = self.sb._sup
        if sup is not None and not sup.dead and self._generation == self.sb._generation:
            with contextlib.suppress(InfraError):  # a supervisor breaking the protocol is killed: so is the worker
                sup.pump()
                if sup.exits.pop(self._job, None) is None and not self._exited:
                    sup.send({"op": "kill", "id": self._job})
                    sup.wait_exit(self._job, 5.0)
        self._exited = True
        self._close_pipes()

    def _restart(self) -> None:
        self._kill_worker()
        self.restarts += 1
        self._start()

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

    def _take_stderr(self) -> str:
        self._drain_stderr()
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
            sup = self.sb._sup
            if self._fds is None or sup is None or sup.dead or self._generation != self.sb._generation:
                self._restart()
                restarted = True
            else:
                sup.pump()
                if self._job in sup.exits:  # died since the last request
                    self._restart()
                    restarted = True
            assert self._fds is not None
            value, error, timed_out = self._exchange(line, start + timeout)
            if error is not None:
                stderr = self._take_stderr()
                self._restart()
                return SessionReply(None, False, error, timed_out, True, time.monotonic() - start, stderr)
            return SessionReply(value, True, None, False, restarted, time.monotonic() - start, self._take_stderr())

    def _exchange(self, line: bytes, deadline: float) -> tuple[Any, str | None, bool]:
        assert self._fds is not None
        in_w, out_r, err_r = self._fds
        try:
            _write_with_deadline(in_w, line, deadline)
        except BrokenPipeError:
            return None, self._death_note("worker exited before the request was written"), False
        except TimeoutError:
            return None, "timed out writing the request (worker not reading stdin)", True
        cap = self.sb.spec.limits.output_bytes
        poller = select.poll()
        poller.register(out_r, select.POLLIN)
        poller.register(err_r, select.POLLIN)
        while True:
            reply = self._take_reply(cap)
            if reply is not None:
                return reply
            left = deadline - time.monotonic()
            if left <= 0:
                return None, "no reply before the timeout: worker killed", True
            for fd, _ev in poller.poll(left * 1000):
                if fd == err_r:
                    self._drain_stderr()
                    continue
                data = os.read(out_r, _CHUNK)
                if not data:
                    return None, self._death_note("worker exited without replying"), False
                self._buf += data

    def _death_note(self, what: str) -> str:
        sup = self.sb._sup
        code = None
        if sup is not None:
            ex = sup.wait_exit(self._job, 2.0)
            self._exited = ex is not None
            if isinstance(ex, _Exit):
                code = ex.code
            elif isinstance(ex, str):
                return f"worker could not start: {ex}"
        return f"{what} (exit code {code})"

    def close(self) -> None:
        with self.sb._lock:
            if self._closed:
                return
            self._closed = True
            self._kill_worker()


def _write_with_deadline(fd: int, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    os.set_blocking(fd, False)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError from None
            _wait_fd(fd, select.POLLOUT, left)


# ----------------------------------------------------------------------------- confined file access


def _open_inside(root: str, rel: str, flags: int, *, create_parents: bool, owner: tuple[int, int] | None = None) -> int:
    """Open ``rel`` under ``root`` following symlinks only while they stay inside ``root``.

    ``owner``: uid/gid given to the file and the directories this call creates (the sandbox user's).

    Every component is opened relative to its parent's descriptor with ``O_NOFOLLOW``; a symlink is
    read and its target spliced into the remaining path, so nothing can redirect the walk outside.
    Only regular files are returned (a FIFO would block the host).
    """
    root_real = os.path.realpath(root)
    pending = rel.split("/")
    stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    hops = 0
    try:
        while pending:
            name = pending.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) == 1:
                    raise PathError(f"path {rel!r} resolves outside the sandbox")
                os.close(stack.pop())
                continue
            cur = stack[-1]
            if not pending:
                try:
                    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644, dir_fd=cur)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                        raise
                    if e.errno != errno.ELOOP:
                        raise PathError(f"path {rel!r} is not a regular file") from e
                else:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        os.close(fd)
                        raise PathError(f"path {rel!r} is not a regular file")
                    os.set_blocking(fd, True)
                    if owner is not None and flags & os.O_CREAT:
                        os.fchown(fd, *owner)
                    return fd
            else:
                try:
                    stack.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur))
                    continue
                except FileNotFoundError:
                    if not create_parents:
                        raise
                    os.mkdir(name, 0o755, dir_fd=cur)
                    if owner is not None:
                        os.chown(name, *owner, dir_fd=cur, follow_symlinks=False)
                    pending.insert(0, name)
                    continue
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
            try:
                target = os.readlink(name, dir_fd=cur)
            except OSError as e:
                raise NotADirectoryError(errno.ENOTDIR, f"not a directory in sandbox path {rel!r}", name) from e
            hops += 1
            if hops > 40:
                raise PathError(f"path {rel!r}: too many levels of symbolic links")
            if target.startswith("/"):
                real_target = os.path.normpath(target)
                if real_target != root_real and not real_target.startswith(root_real + "/"):
                    raise PathError(f"path {rel!r} goes through a symlink to {target!r}, outside the sandbox")
                while len(stack) > 1:
                    os.close(stack.pop())
                target = os.path.relpath(real_target, root_real)
            pending = [p for p in target.split("/") if p] + pending
        raise PathError(f"path {rel!r} names a directory")
    finally:
        for fd in stack:
            os.close(fd)


def _chown_tree(top: str, uid: int, gid: int) -> None:
    """Give a freshly made work directory (and everything copied into it) to the sandbox user."""
    os.lchown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


def _wait_fd(fd: int, events: int, timeout: float | None) -> bool:
    """Wait until ``fd`` is ready (poll, not select: descriptors above 1024 are fine)."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))
