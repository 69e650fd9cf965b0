"""The CAD kernel worker: runs CadQuery programs and grades parts, in processes the env never shares.

This file is a standalone script (standard library, numpy and CadQuery only; scipy is used when present)
that the env sends into a sandbox as ``python -c <this file> MODE`` and speaks JSON lines with
(:class:`execgym.executor.base.Session`). Three modes:

``agent``   holds CadQuery imported once; every ``run`` request executes the agent's program in a fresh
            ``fork`` of that pristine process (its own process group, memory and CPU limits, a wall-clock
            deadline, a private scratch directory), so a crash, an endless loop or a monkey-patched
            module never outlives the request and the next one costs milliseconds, not an import.
            The reply carries the part's measurements and its BREP bytes.
``grader``  a trusted process the agent's code never ran in. It builds reference parts from the tasks'
            reference programs (in forked children as well) or loads reference meshes, caches them, and
            grades agent parts it receives only as BREP bytes: exact volume IoU with the kernel's
            boolean ``common`` (voxel IoU from meshes when booleans fail), chamfer distance on surface
            samples, bounding-box and volume errors, key dimensions; it also tessellates parts for
            rendering. Loading and grading an agent's BREP also happens in a forked child, so a
            malformed part can only fail its own grade.

``forkserver``  the agent side shared by a process's envs: holds CadQuery imported once and forks, per env,
            an ``agent`` worker isolated in namespaces of its own that talks to its env on two FIFOs
            (:class:`ForkServer`).

Requests are objects with an ``op`` key; replies are objects with ``ok``. The module also imports
cleanly as a library (CadQuery is imported lazily), which the env's tests use for the pure-numpy parts:

>>> import numpy as np
>>> V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
>>> F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
>>> round(mesh_volume(V, F), 6)
0.166667
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import io
import itertools
import json
import linecache
import math
import os
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

PROTOCOL = 1
PROGRAM_FILENAME = "<cadquery program>"
MAX_PART_BYTES = 48 * 1024 * 1024
OUTPUT_TAIL = 2000
TWO_PI = 2.0 * math.pi
# The most solids and faces a part may have to be graded (or four times the reference's, if more): a cheap
# compound of thousands of boxes would otherwise cost the grader minutes of booleans and tessellation.
MAX_GRADE_SOLIDS = 500
MAX_GRADE_FACES = 20_000

_channel: Any = None  # the private reply stream (fd 1 is redirected to stderr so C libraries cannot corrupt it)


# =============================================================================================== plumbing


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _array_b64(array: np.ndarray, dtype: str) -> str:
    return _b64(np.ascontiguousarray(array, dtype=dtype).tobytes())


_VM_SIZE_FALLBACK = 0  # the worker's size when it forked, for namespaced workers that cannot see /proc


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _VM_SIZE_FALLBACK


def _set_limit(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, hard))


def _read_tail(f: Any, limit: int = OUTPUT_TAIL) -> str:
    try:
        f.flush()
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        text = f.read().decode("utf-8", errors="replace")
    except (OSError, ValueError):
        return ""
    if size > limit:
        text = f"[... {size - limit} bytes of output cut ...]\n" + text
    return text


def _write_message(fd: int, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        data = os.read(fd, min(n - got, 1 << 20))
        if not data:
            return None
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


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
    if _PID_NAMESPACE_INIT and not keep:
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


_PID_NAMESPACE_INIT = False  # True in a forked env worker: pid 1 of a PID namespace of its own


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


class _Spare:
    """A forked child waiting for its one job."""

    def __init__(self, pid: int, command_fd: int, result_fd: int, out_file: Any, scratch: str) -> None:
        self.pid, self.command_fd, self.result_fd = pid, command_fd, result_fd
        self.out_file, self.scratch = out_file, scratch

    def discard(self) -> None:
        _quiet(os.killpg, self.pid, signal.SIGKILL)
        _quiet(os.kill, self.pid, signal.SIGKILL)
        _quiet(os.close, self.command_fd)
        _quiet(os.close, self.result_fd)
        self.out_file.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class Zygote:
    """Runs named jobs in forks of this process, keeping one spare fork ready between requests.

    Forking a process holding CadQuery costs tens of milliseconds (page tables of ~0.5 GB); the spare is
    forked after a reply has been sent, while the agent thinks, so a request only pays for its job. Each
    job gets a fresh child: its own process group (killed as a whole afterwards), a scratch working
    directory, ``/dev/null`` as stdin, stdout/stderr captured to a file, RLIMIT_AS = its size +
    ``memory_bytes``, RLIMIT_CPU = ``timeout`` + 1 s and a wall-clock deadline. A timeout, a crash or a
    limit comes back as ``{"ok": False, "kind": ..., "error": ...}``, never as an exception.
    """

    def __init__(
        self, jobs: dict[str, Callable[[dict[str, Any]], dict[str, Any]]], scratch: Scratch | None = None
    ) -> None:
        self.jobs = jobs
        self.spare: _Spare | None = None
        self._dead: list[int] = []
        self.scratch = scratch
        self.clean = True  # False once a job left a process that could not be killed: the worker must go

    def prepare(self) -> None:
        """Fork the spare child now (call when idle)."""
        self._reap()
        if self.spare is None:
            self.spare = self._fork()

    def invalidate(self) -> None:
        """Drop the spare (this process's state changed and a fresh fork must see it)."""
        if self.spare is not None:
            self.spare.discard()
            self._dead.append(self.spare.pid)
            self.spare = None
        self._reap()

    def _reap(self) -> None:
        alive = []
        for pid in self._dead:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if done == 0:
                alive.append(pid)
        self._dead = alive

    def _fork(self) -> _Spare:
        command_r, command_w = os.pipe()
        result_r, result_w = os.pipe()
        out_file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the spare child, closed by discard()
        scratch = tempfile.mkdtemp(prefix="cad-run-")
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(command_w)
                os.close(result_r)
                self._child(command_r, result_w, out_file.fileno(), scratch)
            except BaseException:
                code = 70
            finally:
                os._exit(code)
        os.close(command_r)
        os.close(result_w)
        _quiet(os.setpgid, pid, pid)
        return _Spare(pid, command_w, result_r, out_file, scratch)

    def _child(self, command_fd: int, result_fd: int, out_fd: int, scratch: str) -> None:
        os.setpgid(0, 0)
        _die_with_parent()
        # The job keeps its own three pipes/files and nothing else of the worker's (its request and reply
        # streams included).
        keep = sorted({command_fd, result_fd, out_fd})
        low = 3
        for fd in keep:
            if fd > low:
                os.closerange(low, fd)
            low = max(low, fd + 1)
        os.closerange(low, _max_fd())
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = sys.stdout
        os.chdir(scratch)
        header = _read_exactly(command_fd, 8)
        if header is None:  # the parent went away or dropped this spare
            return
        message = json.loads(_read_exactly(command_fd, struct.unpack("<Q", header)[0]) or b"{}")
        if message.get("memory_bytes"):
            _set_limit(resource.RLIMIT_AS, _vm_size_bytes() + int(message["memory_bytes"]))
        _set_limit(resource.RLIMIT_CPU, math.ceil(float(message.get("timeout", 60))) + 1)
        try:
            result = self.jobs[message["job"]](message.get("args") or {})
        except MemoryError:
            result = {"ok": False, "kind": "memory", "error": "MemoryError: the program ran out of memory"}
        except BaseException as exc:  # report, never die silently
            result = {"ok": False, "kind": "internal", "error": f"{type(exc).__name__}: {exc}"}
        try:
            payload = {**result, "output": _read_tail(io.FileIO(out_fd, "r", closefd=False))}
            _write_message(result_fd, payload)
        except MemoryError:
            _write_message(result_fd, {"ok": False, "kind": "memory", "error": "MemoryError: out of memory"})

    def run(self, job: str, args: dict[str, Any], *, timeout: float, memory_bytes: int | None = None) -> dict[str, Any]:
        """Run one job in a fresh child and return its result dict."""
        self.prepare()
        spare, self.spare = self.spare, None
        assert spare is not None
        start = time.monotonic()
        result: dict[str, Any] | None = None
        timed_out = False
        try:
            _write_message(
                spare.command_fd, {"job": job, "args": args, "timeout": timeout, "memory_bytes": memory_bytes}
            )
            result, timed_out = self._collect(spare.result_fd, start + timeout)
        except OSError:
            result = None
        duration = time.monotonic() - start
        status = None
        if result is None:
            if not timed_out:  # it died: its exit status says how
                _quiet(os.killpg, spare.pid, signal.SIGKILL)
                try:
                    _, status = os.waitpid(spare.pid, 0)
                except ChildProcessError:
                    status = None
            output = _read_tail(spare.out_file)
        else:
            output = ""
        spare.discard()  # kills what it left running (and the child itself, if it timed out)
        if status is None:
            self._dead.append(spare.pid)
        # Whatever the job detached from its process group (fork + setsid) is this process's child now:
        # kill it before anything else runs, then put the writable places back as they were.
        if not kill_strays():
            self.clean = False
        self._dead.clear()
        if self.scratch is not None:
            self.scratch.restore()
        if timed_out:
            return {
                "ok": False,
                "kind": "timeout",
                "timed_out": True,
                "output": output,
                "duration_s": duration,
                "error": f"TimeoutError: the program did not finish within {timeout:g} s and was stopped",
            }
        if result is None:
            result = {"ok": False, **_death_reason(status, timeout), "output": output}
        result["duration_s"] = duration
        return result

    @staticmethod
    def _collect(fd: int, deadline: float) -> tuple[dict[str, Any] | None, bool]:
        buf = b""
        need = 8
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, True
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            data = os.read(fd, 1 << 20)
            if not data:
                return None, False
            buf += data
            if need == 8 and len(buf) >= 8:
                need = 8 + struct.unpack("<Q", buf[:8])[0]
            if len(buf) >= need > 8:
                try:
                    value = json.loads(buf[8:need])
                except ValueError:
                    return None, False
                return (value if isinstance(value, dict) else None), False


def _death_reason(status: int | None, timeout: float) -> dict[str, Any]:
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in set(signal.Signals) else str(sig)
        if sig == signal.SIGXCPU:
            return {"kind": "timeout", "error": f"the program was stopped: it used more than {timeout:g} s of CPU"}
        if sig == signal.SIGKILL:
            return {"kind": "memory", "error": "the program was killed (most likely for using too much memory)"}
        return {"kind": "crash", "error": f"the program was stopped by signal {name}: the geometry kernel crashed"}
    code = os.WEXITSTATUS(status) if status is not None else "unknown"
    return {"kind": "crash", "error": f"the program's process exited (status {code}) without a result"}


def run_forked(fn: Callable[[], dict[str, Any]], *, timeout: float, memory_bytes: int | None = None) -> dict[str, Any]:
    """Run ``fn`` once in a fresh fork under the :class:`Zygote` limits and return its result."""
    zygote = Zygote({"fn": lambda _args: fn()})
    try:
        return zygote.run("fn", {}, timeout=timeout, memory_bytes=memory_bytes)
    finally:
        zygote.invalidate()


# =========================================================================================== programs


class ProgramError(Exception):
    """The agent's (or a reference) program failed; ``kind`` is syntax / runtime / no_result / not_3d."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _cq() -> Any:
    import cadquery

    return cadquery


def _format_exception(exc: BaseException, max_lines: int = 14) -> str:
    """The exception with the traceback's last lines, starting at the program's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != PROGRAM_FILENAME:
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    text = "".join(lines).rstrip().splitlines()
    if len(text) > max_lines:
        text = ["Traceback (most recent call last, earlier lines cut):", *text[-(max_lines - 1) :]]
    return "\n".join(text)


def exec_program(code: str, *, fallback_last: bool = False) -> Any:
    """Execute a CadQuery program and return its part as a ``cadquery.Shape``.

    The part is the variable ``result``, else what ``show_object`` was given, else (``fallback_last``,
    for dataset reference programs) the last Workplane / Shape / Assembly the program assigned.
    """
    cq = _cq()
    shown: list[Any] = []

    def show_object(obj: Any, name: Any = None, options: Any = None, **_: Any) -> None:
        shown.append(obj)

    def debug(obj: Any, *_: Any, **__: Any) -> None:
        return None

    linecache.cache[PROGRAM_FILENAME] = (len(code), None, code.splitlines(True), PROGRAM_FILENAME)
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "cq": cq,
        "cadquery": cq,
        "show_object": show_object,
        "debug": debug,
    }
    try:
        compiled = compile(code, PROGRAM_FILENAME, "exec")
    except (SyntaxError, ValueError) as exc:
        raise ProgramError("syntax", "".join(traceback.format_exception_only(type(exc), exc)).rstrip()) from None
    try:
        exec(compiled, namespace)
    except SystemExit:
        pass
    except MemoryError:
        raise ProgramError("memory", "MemoryError: the program ran out of memory") from None
    except BaseException as exc:
        raise ProgramError("runtime", _format_exception(exc)) from None
    if namespace.get("result") is not None:
        obj = namespace["result"]
    elif shown:
        obj = shown if len(shown) > 1 else shown[0]
    elif fallback_last:
        candidates = [v for k, v in namespace.items() if not k.startswith("__") and _is_geometry(v)]
        if not candidates:
            raise ProgramError("no_result", "the program defines no Workplane, Shape or Assembly")
        obj = candidates[-1]
    else:
        raise ProgramError(
            "no_result",
            "the program ran but defined no part: assign it to a variable named `result` "
            "(a cq.Workplane or a Shape), or call show_object(part)",
        )
    return to_shape(obj)


def _is_geometry(value: Any) -> bool:
    cq = _cq()
    return isinstance(value, cq.Workplane | cq.Shape | cq.Assembly)


def to_shape(obj: Any) -> Any:
    """Turn a Workplane / Shape / Assembly / OCP shape (or a list of them) into one ``cadquery.Shape``."""
    cq = _cq()
    from OCP.TopoDS import TopoDS_Shape

    shapes: list[Any] = []

    def collect(item: Any) -> None:
        if isinstance(item, cq.Workplane):
            values = [v for v in item.vals() if isinstance(v, cq.Shape)]
            if not values:
                kinds = sorted({type(v).__name__ for v in item.vals()}) or ["nothing"]
                raise ProgramError(
                    "not_3d",
                    f"`result` is a Workplane holding {', '.join(kinds)}, not a 3D shape (did you forget to extrude?)",
                )
            shapes.extend(values)
        elif isinstance(item, cq.Shape):
            shapes.append(item)
        elif isinstance(item, cq.Assembly):
            shapes.append(item.toCompound())
        elif isinstance(item, TopoDS_Shape):
            shapes.append(cq.Shape.cast(item))
        elif isinstance(item, list | tuple):
            for sub in item:
                collect(sub)
        elif isinstance(item, cq.Sketch):
            raise ProgramError("not_3d", "`result` is a 2D Sketch, not a 3D shape (extrude it first)")
        else:
            raise ProgramError("not_3d", f"`result` is a {type(item).__name__}, expected a cq.Workplane or a cq.Shape")

    collect(obj)
    if not shapes:
        raise ProgramError("not_3d", "`result` holds no shape")
    if not any(s.Faces() for s in shapes):
        kinds = sorted({type(s).__name__ for s in shapes})
        raise ProgramError(
            "not_3d", f"`result` holds only {', '.join(kinds)} (no faces): extrude, revolve or loft it into a solid"
        )
    if len(shapes) == 1:
        return shapes[0]
    return cq.Compound.makeCompound(shapes)


# ======================================================================================= measurements


def shape_bbox(shape: Any) -> tuple[np.ndarray, np.ndarray]:
    """The tight axis-aligned bounding box (min corner, max corner), from the exact geometry."""
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib

    box = Bnd_Box()
    BRepBndLib.AddOptimal_s(shape.wrapped, box, False, False)
    if box.IsVoid():
        return np.zeros(3), np.zeros(3)
    x0, y0, z0, x1, y1, z1 = box.Get()
    return np.array([x0, y0, z0]), np.array([x1, y1, z1])


def measure(shape: Any) -> dict[str, Any]:
    """Volume, bounding box, counts and validity of a shape (what the agent sees after a run)."""
    from OCP.BRep import BRep_Tool

    lo, hi = shape_bbox(shape)
    solids = shape.Solids()
    shells = shape.Shells()
    faces = shape.Faces()
    try:
        volume = float(sum(s.Volume() for s in solids))  # a wire's or a sheet's "volume" means nothing
    except Exception:
        volume = 0.0
    try:
        area = float(shape.Area())
    except Exception:
        area = 0.0
    try:
        valid = bool(shape.isValid())
    except Exception:
        valid = False
    closed = bool(shells) and all(BRep_Tool.IsClosed_s(s.wrapped) for s in shells)
    faces_in_solids = sum(len(s.Faces()) for s in solids)
    closed = closed and faces_in_solids == len(faces)
    return {
        "volume": volume,
        "area": area,
        "bbox_min": lo.tolist(),
        "bbox_max": hi.tolist(),
        "size": (hi - lo).tolist(),
        "solids": len(solids),
        "shells": len(shells),
        "faces": len(faces),
        "edges": len(shape.Edges()),
        "valid": valid,
        "closed": closed,
        "valid_solid": bool(solids) and valid and closed and volume > 1e-9,
    }


def export_brep(shape: Any) -> bytes:
    buf = io.BytesIO()
    shape.exportBrep(buf)
    return buf.getvalue()


def import_brep(data: bytes) -> Any:
    cq = _cq()
    shape = cq.Shape.importBrep(io.BytesIO(data))
    if shape is None or shape.wrapped.IsNull():
        raise ValueError("the BREP data holds no shape")
    return shape


def features(shape: Any) -> dict[str, Any]:
    """Cylindrical surfaces (grouped by axis and radius), axis-aligned planes and circular edges.

    These are what key dimensions are checked against: a hole is a concave cylinder group whose faces
    go all the way round, a fillet a partial one, a step a plane at some height, a chamfer or
    countersink a circle of some diameter.
    """
    from OCP.BRepAdaptor import BRepAdaptor_Curve, BRepAdaptor_Surface
    from OCP.BRepGProp import BRepGProp_Face
    from OCP.GeomAbs import GeomAbs_Circle, GeomAbs_Cone, GeomAbs_Cylinder, GeomAbs_Plane
    from OCP.gp import gp_Pnt, gp_Vec

    groups: dict[tuple, dict[str, Any]] = {}
    planes: list[dict[str, Any]] = []
    cones: list[dict[str, Any]] = []
    for face in shape.Faces():
        surface = BRepAdaptor_Surface(face.wrapped)
        kind = surface.GetType()
        if kind == GeomAbs_Cylinder:
            cyl = surface.Cylinder()
            axis = cyl.Axis()
            loc = np.array([axis.Location().X(), axis.Location().Y(), axis.Location().Z()])
            direction = np.array([axis.Direction().X(), axis.Direction().Y(), axis.Direction().Z()])
            direction = _canonical_direction(direction)
            foot = loc - direction * float(loc @ direction)
            u0, u1 = surface.FirstUParameter(), surface.LastUParameter()
            v0, v1 = surface.FirstVParameter(), surface.LastVParameter()
            point, normal = gp_Pnt(), gp_Vec()
            BRepGProp_Face(face.wrapped).Normal((u0 + u1) / 2, (v0 + v1) / 2, point, normal)
            p = np.array([point.X(), point.Y(), point.Z()])
            radial = (p - loc) - direction * float((p - loc) @ direction)
            n = np.array([normal.X(), normal.Y(), normal.Z()])
            convex = bool(n @ radial > 0)
            radius = float(cyl.Radius())
            key = (round(radius, 4), convex, *np.round(direction, 5), *np.round(foot, 4))
            group = groups.setdefault(
                key,
                {
                    "radius": radius,
                    "convex": convex,
                    "axis": direction.tolist(),
                    "point": foot.tolist(),
                    "span": 0.0,
                    "t_range": [math.inf, -math.inf],
                },
            )
            group["span"] += abs(u1 - u0)
            # The face's extent along the (canonical) axis, measured from ``point``: where a hole starts and ends.
            own = np.array([cyl.Axis().Direction().X(), cyl.Axis().Direction().Y(), cyl.Axis().Direction().Z()])
            base, sign = float((loc - foot) @ direction), float(own @ direction)
            for v in (v0, v1):
                if math.isfinite(v):
                    t = base + v * sign
                    group["t_range"] = [min(group["t_range"][0], t), max(group["t_range"][1], t)]
        elif kind == GeomAbs_Plane:
            pln = surface.Plane()
            ax = pln.Axis()
            normal = _canonical_direction(np.array([ax.Direction().X(), ax.Direction().Y(), ax.Direction().Z()]))
            origin = np.array([ax.Location().X(), ax.Location().Y(), ax.Location().Z()])
            planes.append({"normal": normal.tolist(), "offset": float(origin @ normal)})
        elif kind == GeomAbs_Cone:
            cone = surface.Cone()
            direction = cone.Axis().Direction()
            radii = []
            for edge in face.Edges():
                curve = BRepAdaptor_Curve(edge.wrapped)
                if curve.GetType() == GeomAbs_Circle:
                    radii.append(float(curve.Circle().Radius()))
                else:
                    radii.append(0.0 if edge.Length() < 1e-9 else -1.0)
            known = [r for r in radii if r >= 0]
            if known:
                cones.append(
                    {
                        "axis": _canonical_direction(np.array([direction.X(), direction.Y(), direction.Z()])).tolist(),
                        "semi_angle": float(cone.SemiAngle()),
                        "r_min": min(known),
                        "r_max": max(known),
                    }
                )
    circles: dict[tuple, dict[str, Any]] = {}
    for edge in shape.Edges():
        curve = BRepAdaptor_Curve(edge.wrapped)
        if curve.GetType() != GeomAbs_Circle:
            continue
        circ = curve.Circle()
        center = np.array([circ.Location().X(), circ.Location().Y(), circ.Location().Z()])
        direction = _canonical_direction(
            np.array([circ.Axis().Direction().X(), circ.Axis().Direction().Y(), circ.Axis().Direction().Z()])
        )
        key = (round(circ.Radius(), 4), *np.round(center, 4), *np.round(direction, 5))
        circles.setdefault(key, {"radius": float(circ.Radius()), "center": center.tolist(), "axis": direction.tolist()})
    cylinders = list(groups.values())
    for group in cylinders:
        group["full"] = group["span"] >= TWO_PI - 1e-3
        if not all(math.isfinite(t) for t in group["t_range"]):
            group["t_range"] = None
    return {"cylinders": cylinders, "planes": planes, "circles": list(circles.values()), "cones": cones}


def _canonical_direction(v: np.ndarray) -> np.ndarray:
    v = v / (np.linalg.norm(v) or 1.0)
    i = int(np.argmax(np.abs(v)))
    return -v if v[i] < 0 else v


# ========================================================================================= key dimensions


def _tol(value: float, abs_tol: float, rel_tol: float) -> float:
    return max(abs_tol, rel_tol * abs(value))


def _axis_vector(axis: Any) -> np.ndarray | None:
    if axis is None:
        return None
    if isinstance(axis, str):
        return np.eye(3)["xyz".index(axis.lower())]
    v = np.asarray(axis, dtype=float)
    return _canonical_direction(v)


def check_key_dims(
    key_dims: list[dict[str, Any]],
    feats: dict[str, Any],
    bbox: tuple[np.ndarray, np.ndarray],
    volume: float,
    *,
    abs_tol: float = 0.05,
    rel_tol: float = 0.005,
    pos_rel_tol: float = 0.0025,
    shape: Any = None,
) -> list[dict[str, Any]]:
    """Check each key dimension against a part's features; one ``{"label", "passed", "found"}`` per entry.

    Sizes must match within ``max(abs_tol, rel_tol * size)``, positions within
    ``max(abs_tol, pos_rel_tol * largest extent)``, counts exactly. A ``hole`` is a through hole unless
    its entry says ``"through": False`` (a blind one, whose depth a ``level`` entry checks), and so is an
    ``arc`` whose entry says ``"through": True`` (a through slot's rounded ends): given the
    part's ``shape``, each matching hole's axis must be free of material along its length and past both
    of its ends (see ``axis_blocked``), so that a shallow dimple of the right diameter does not pass.
    """
    lo, hi = bbox
    extent = hi - lo
    pos_tol = max(abs_tol, pos_rel_tol * float(extent.max() if extent.size else 0.0))
    results = []
    for spec in key_dims:
        kind = spec.get("kind")
        label = spec.get("label") or kind
        passed = False
        found: Any = None
        if kind == "extent":
            i = "xyz".index(spec["axis"])
            found = float(extent[i])
            passed = abs(found - spec["value"]) <= _tol(spec["value"], abs_tol, rel_tol)
        elif kind == "volume":
            found = volume
            passed = abs(volume - spec["value"]) <= max(abs_tol**3, rel_tol * abs(spec["value"]))
        elif kind in ("hole", "cylinder", "arc"):
            radius = spec["diameter"] / 2 if "diameter" in spec else spec["radius"]
            tol = _tol(radius, abs_tol / 2, rel_tol)
            axis = _axis_vector(spec.get("axis"))
            matches = []
            for g in feats["cylinders"]:
                if abs(g["radius"] - radius) > tol:
                    continue
                if kind == "hole" and (g["convex"] or not g["full"]):
                    continue
                if kind == "cylinder" and (not g["convex"] or not g["full"]):
                    continue
                if kind == "arc":
                    if g["full"]:
                        continue
                    if spec.get("convex") is not None and g["convex"] != bool(spec["convex"]):
                        continue
                if axis is not None and abs(float(np.dot(axis, g["axis"]))) < 0.999:
                    continue
                matches.append(g)
            count = int(spec.get("count", 1))
            found = len(matches)
            passed = found == count
            if passed and spec.get("centers"):
                passed = _centers_match(spec["centers"], matches, pos_tol)
                if not passed:
                    found = f"{found} at other positions"
            through = spec.get("through", kind == "hole")  # a slot's end arcs opt in with ``"through": True``
            if passed and kind in ("hole", "arc") and through and shape is not None:
                eps = max(abs_tol, 1e-3 * float(extent.max() if extent.size else 0.0))
                blind = sum(_axis_blocked_or_unknown(shape, g, eps) for g in matches)
                if blind:
                    passed = False
                    found = f"{found}, {blind} of them not through (material on the axis)"
        elif kind == "level":
            axis = _axis_vector(spec["axis"])
            levels = [p["offset"] for p in feats["planes"] if abs(float(np.dot(axis, p["normal"]))) > 0.999]
            value = float(spec["value"])
            near = [lv for lv in levels if abs(lv - value) <= pos_tol]
            passed = bool(near)
            found = near[0] if near else (min(levels, key=lambda lv: abs(lv - value)) if levels else None)
        elif kind == "chamfer":
            size = float(spec["size"])
            tol = _tol(size, abs_tol, rel_tol)
            matches = [
                c
                for c in feats["cones"]
                if abs((c["r_max"] - c["r_min"]) - size) <= tol
                and (
                    "diameter" not in spec
                    or abs(c["r_max"] - spec["diameter"] / 2) <= _tol(spec["diameter"] / 2, abs_tol / 2, rel_tol)
                )
            ]
            found = len(matches)
            passed = found == int(spec.get("count", 1))
        elif kind == "circle":
            radius = spec["diameter"] / 2
            tol = _tol(radius, abs_tol / 2, rel_tol)
            matches = [c for c in feats["circles"] if abs(c["radius"] - radius) <= tol]
            found = len(matches)
            passed = found == int(spec.get("count", 1))
        else:
            found = f"unknown kind {kind!r}"
        results.append({"label": label, "kind": kind, "passed": bool(passed), "found": found})
    return results


def axis_blocked(shape: Any, group: dict[str, Any], eps: float) -> bool:
    """Whether solid material lies on a hole's axis within its length, or just beyond either of its ends.

    A through hole is empty along its whole axis and opens out at both ends; a blind hole (a dimple, a
    drilled pocket) has material past its floor, and two blind holes meeting in the middle a skin between
    them. The axis is cut where it crosses the part's faces and a point inside each piece is classified.
    """
    from OCP.BRepClass3d import BRepClass3d_SolidClassifier
    from OCP.gp import gp_Dir, gp_Lin, gp_Pnt
    from OCP.IntCurvesFace import IntCurvesFace_ShapeIntersector
    from OCP.TopAbs import TopAbs_IN, TopAbs_ON

    if not group.get("t_range"):
        return True
    t0, t1 = group["t_range"][0] - eps, group["t_range"][1] + eps
    point, axis = np.asarray(group["point"], dtype=float), np.asarray(group["axis"], dtype=float)
    line = gp_Lin(gp_Pnt(*point.tolist()), gp_Dir(*axis.tolist()))
    cuts = IntCurvesFace_ShapeIntersector()
    cuts.Load(shape.wrapped, 1e-7)
    cuts.Perform(line, t0, t1)
    ts = sorted({t0, t1, *(float(cuts.WParameter(i)) for i in range(1, cuts.NbPnt() + 1))})
    probes = [(a + b) / 2 for a, b in itertools.pairwise(ts) if b - a > 1e-9]
    for t in probes:
        x = point + axis * t
        state = BRepClass3d_SolidClassifier(shape.wrapped, gp_Pnt(*x.tolist()), 1e-7).State()
        if state in (TopAbs_IN, TopAbs_ON):
            return True
    return False


def _axis_blocked_or_unknown(shape: Any, group: dict[str, Any], eps: float) -> bool:
    try:
        return axis_blocked(shape, group, eps)
    except Exception:  # a part the kernel cannot classify does not show a through hole
        return True


def _centers_match(centers: list[list[float]], groups: list[dict[str, Any]], tol: float) -> bool:
    """Every expected centre lies on a distinct group's axis (within ``tol``)."""
    used: set[int] = set()
    for c in centers:
        c = np.asarray(c, dtype=float)
        best = None
        for i, g in enumerate(groups):
            if i in used:
                continue
            axis = np.asarray(g["axis"])
            rel = c - np.asarray(g["point"])
            dist = float(np.linalg.norm(rel - axis * float(rel @ axis)))
            if dist <= tol and (best is None or dist < best[0]):
                best = (dist, i)
        if best is None:
            return False
        used.add(best[1])
    return True


# ============================================================================================ meshes


def tessellate(shape: Any, tolerance: float | None = None, angular: float = 0.2) -> tuple[np.ndarray, ...]:
    """Triangulate a shape: vertices (N,3) float64, triangles (M,3) int64 outward-oriented, face ids (M,)."""
    from OCP.BRep import BRep_Tool
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.TopAbs import TopAbs_REVERSED
    from OCP.TopLoc import TopLoc_Location

    lo, hi = shape_bbox(shape)
    if tolerance is None:
        tolerance = max(1e-4, 1e-3 * float(np.linalg.norm(hi - lo)))
    BRepMesh_IncrementalMesh(shape.wrapped, tolerance, False, angular, False)
    verts: list[np.ndarray] = []
    tris: list[np.ndarray] = []
    fids: list[np.ndarray] = []
    offset = 0
    for face_id, face in enumerate(shape.Faces()):
        loc = TopLoc_Location()
        poly = BRep_Tool.Triangulation_s(face.wrapped, loc)
        if poly is None:
            continue
        trsf = loc.Transformation()
        n_nodes = poly.NbNodes()
        nodes = np.empty((n_nodes, 3))
        for i in range(n_nodes):
            p = poly.Node(i + 1).Transformed(trsf)
            nodes[i] = (p.X(), p.Y(), p.Z())
        n_tri = poly.NbTriangles()
        t = np.empty((n_tri, 3), dtype=np.int64)
        for i in range(n_tri):
            t[i] = poly.Triangle(i + 1).Get()
        t -= 1
        if face.wrapped.Orientation() == TopAbs_REVERSED:
            t = t[:, ::-1]
        verts.append(nodes)
        tris.append(t + offset)
        fids.append(np.full(n_tri, face_id, dtype=np.int64))
        offset += n_nodes
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(verts), np.concatenate(tris), np.concatenate(fids)


def mesh_volume(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Signed volume of a closed, outward-oriented triangle mesh."""
    if len(triangles) == 0:
        return 0.0
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points drawn uniformly (by area) on a triangle mesh, reproducibly."""
    if len(triangles) == 0:
        return np.zeros((0, 3))
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = areas.sum()
    if not total > 0:
        return np.repeat(a[:1], n, axis=0)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(areas), size=n, p=areas / total)
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    return (1 - r1)[:, None] * a[idx] + (r1 * (1 - r2))[:, None] * b[idx] + (r1 * r2)[:, None] * c[idx]


def nearest_distances(queries: np.ndarray, points: np.ndarray, tree: Any = None) -> np.ndarray:
    """Distance from each query point to its nearest neighbour in ``points`` (scipy KD-tree when present)."""
    if len(points) == 0 or len(queries) == 0:
        return np.full(len(queries), np.inf)
    if tree is None:
        tree = make_tree(points)
    if tree is not None:
        dist, _ = tree.query(queries, k=1)
        return np.asarray(dist, dtype=float)
    out = np.empty(len(queries))
    sq = (points**2).sum(1)
    for s in range(0, len(queries), 512):
        q = queries[s : s + 512]
        d2 = (q**2).sum(1)[:, None] - 2 * q @ points.T + sq[None, :]
        out[s : s + 512] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def make_tree(points: np.ndarray) -> Any:
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        return None
    return cKDTree(points)


def voxelize(
    vertices: np.ndarray, triangles: np.ndarray, origin: np.ndarray, pitch: float, shape: tuple[int, int, int]
) -> np.ndarray:
    """Occupancy grid of a closed mesh by ray parity along Z (voxel centres at origin + (i + 0.5) * pitch)."""
    nx, ny, nz = shape
    grid = np.zeros(shape, dtype=bool)
    if len(triangles) == 0:
        return grid
    tri = (vertices[triangles] - origin) / pitch - 0.5  # index space: voxel i's centre sits at i
    tx, ty, tz = tri[:, :, 0], tri[:, :, 1], tri[:, :, 2]
    i0 = np.clip(np.ceil(tx.min(1)), 0, nx).astype(np.int64)
    i1 = np.clip(np.floor(tx.max(1)), -1, nx - 1).astype(np.int64)
    j0 = np.clip(np.ceil(ty.min(1)), 0, ny).astype(np.int64)
    j1 = np.clip(np.floor(ty.max(1)), -1, ny - 1).astype(np.int64)
    ni, nj = i1 - i0 + 1, j1 - j0 + 1
    keep = (ni > 0) & (nj > 0)
    if not keep.any():
        return grid
    idx_t = np.nonzero(keep)[0]
    counts = (ni * nj)[idx_t]
    tri_of = np.repeat(idx_t, counts)
    local = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    ci = i0[tri_of] + local // nj[tri_of]
    cj = j0[tri_of] + local % nj[tri_of]
    ax, ay = tx[tri_of, 0], ty[tri_of, 0]
    bx, by = tx[tri_of, 1], ty[tri_of, 1]
    cx, cy = tx[tri_of, 2], ty[tri_of, 2]
    det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    ok = np.abs(det) > 1e-12
    det = np.where(ok, det, 1.0)
    w0 = ((by - cy) * (ci - cx) + (cx - bx) * (cj - cy)) / det
    w1 = ((cy - ay) * (ci - cx) + (ax - cx) * (cj - cy)) / det
    w2 = 1.0 - w0 - w1
    inside = ok & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    z = w0 * tz[tri_of, 0] + w1 * tz[tri_of, 1] + w2 * tz[tri_of, 2]
    col = (ci * ny + cj)[inside]
    pos = np.clip(np.floor(z[inside]).astype(np.int64) + 1, 0, nz)
    crossings = np.zeros((nx * ny, nz + 1), dtype=np.int32)
    np.add.at(crossings, (col, pos), 1)
    parity = np.cumsum(crossings, axis=1)[:, :nz] % 2 == 1
    return parity.reshape(nx, ny, nz)


def voxel_iou(
    mesh_a: tuple[np.ndarray, np.ndarray], mesh_b: tuple[np.ndarray, np.ndarray], resolution: int = 128
) -> float:
    """Volume IoU of two closed meshes on a shared voxel grid (``resolution`` cells on the longest side)."""
    va, fa = mesh_a
    vb, fb = mesh_b
    if len(fa) == 0 or len(fb) == 0:
        return 0.0
    lo = np.minimum(va.min(0), vb.min(0))
    hi = np.maximum(va.max(0), vb.max(0))
    pitch = float((hi - lo).max()) / resolution or 1.0
    # An irrational shift keeps voxel centres off the faces and edges of axis-aligned parts.
    origin = lo - pitch * np.array([0.5 + 0.01234, 0.5 + 0.02345, 0.5 + 0.03456])
    shape = tuple(int(s) for s in np.ceil((hi - origin) / pitch) + 1)
    a = voxelize(va, fa, origin, pitch, shape)
    b = voxelize(vb, fb, origin, pitch, shape)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def read_stl(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of an STL file (binary or ASCII), duplicate vertices merged."""
    tris: np.ndarray
    if len(data) >= 84:
        (count,) = struct.unpack_from("<I", data, 80)
        if 84 + count * 50 == len(data):
            rec = np.frombuffer(
                data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), count=count, offset=84
            )
            tris = rec["v"].astype(np.float64)
            return _merge_vertices(tris)
    text = data.decode("utf-8", errors="replace")
    coords = [line.split()[1:4] for line in text.splitlines() if line.strip().startswith("vertex")]
    if not coords or len(coords) % 3:
        raise ValueError("not a readable STL file (binary or ASCII)")
    tris = np.array(coords, dtype=np.float64).reshape(-1, 3, 3)
    return _merge_vertices(tris)


def _merge_vertices(tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = tris.reshape(-1, 3)
    keys = np.round(flat, 9)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1, 3).astype(np.int64)


def rotations24() -> list[np.ndarray]:
    """The 24 rotations that map the coordinate axes onto each other (the cube's rotation group)."""
    out = []
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        for signs in (
            (1, 1, 1),
            (1, 1, -1),
            (1, -1, 1),
            (1, -1, -1),
            (-1, 1, 1),
            (-1, 1, -1),
            (-1, -1, 1),
            (-1, -1, -1),
        ):
            m = np.zeros((3, 3))
            for row, (col, s) in enumerate(zip(perm, signs)):
                m[row, col] = s
            if np.linalg.det(m) > 0:
                out.append(m)
    return out


# ============================================================================================ grading


class Reference:
    """A target part held by the grader: exact shape (from a program) or a mesh (from a file)."""

    def __init__(
        self, *, shape: Any = None, mesh: tuple[np.ndarray, np.ndarray] | None = None, n_points: int = 8192
    ) -> None:
        self.shape = shape
        if shape is not None:
            self.summary = measure(shape)
            self.features = features(shape)
            v, f, fid = tessellate(shape)
            self.mesh = (v, f)
            self.face_ids = fid
            self.lo, self.hi = shape_bbox(shape)
            self.volume = self.summary["volume"]
        else:
            assert mesh is not None
            v, f = mesh
            self.mesh = (v, f)
            self.face_ids = np.zeros(len(f), dtype=np.int64)
            self.lo, self.hi = v.min(0), v.max(0)
            self.volume = abs(mesh_volume(v, f))
            self.features = {"cylinders": [], "planes": [], "circles": [], "cones": []}
            self.summary = {
                "volume": self.volume,
                "bbox_min": self.lo.tolist(),
                "bbox_max": self.hi.tolist(),
                "size": (self.hi - self.lo).tolist(),
                "solids": None,
                "faces": None,
                "edges": None,
                "valid_solid": True,
            }
        self._samples: dict[int, tuple[np.ndarray, Any]] = {}
        self.points, self.tree = self.sampled(n_points)

    def sampled(self, n: int) -> tuple[np.ndarray, Any]:
        """``n`` surface samples (seed 0) and their KD-tree, cached."""
        if n not in self._samples:
            points = sample_surface(self.mesh[0], self.mesh[1], n, seed=0)
            self._samples[n] = (points, make_tree(points))
        return self._samples[n]

    @property
    def kind(self) -> str:
        return "brep" if self.shape is not None else "mesh"


def _transform_shape(shape: Any, rotation: np.ndarray, translation: np.ndarray) -> Any:
    from OCP.BRepBuilderAPI import BRepBuilderAPI_Transform
    from OCP.gp import gp_Trsf

    cq = _cq()
    trsf = gp_Trsf()
    r, t = rotation, translation
    trsf.SetValues(r[0, 0], r[0, 1], r[0, 2], t[0], r[1, 0], r[1, 1], r[1, 2], t[1], r[2, 0], r[2, 1], r[2, 2], t[2])
    return cq.Shape.cast(BRepBuilderAPI_Transform(shape.wrapped, trsf, True).Shape())


def boolean_iou(a: Any, b: Any) -> float:
    """Exact volume IoU with the kernel's boolean ``common``: V(A∩B) / (V(A) + V(B) - V(A∩B))."""
    from OCP.BRepAlgoAPI import BRepAlgoAPI_Common
    from OCP.BRepGProp import BRepGProp
    from OCP.GProp import GProp_GProps
    from OCP.TopTools import TopTools_ListOfShape

    va, vb = float(a.Volume()), float(b.Volume())
    if va <= 0 or vb <= 0:
        raise ValueError("a part has no volume")
    op = BRepAlgoAPI_Common()
    args, tools = TopTools_ListOfShape(), TopTools_ListOfShape()
    args.Append(a.wrapped)
    tools.Append(b.wrapped)
    op.SetArguments(args)
    op.SetTools(tools)
    op.SetRunParallel(False)
    op.Build()
    if not op.IsDone():
        raise ValueError("boolean common failed")
    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(op.Shape(), props)
    vc = float(props.Mass())
    eps = 1e-6 * max(va, vb)
    if vc < -eps or vc > min(va, vb) + eps:
        raise ValueError(f"boolean common gave an impossible volume {vc:g}")
    vc = min(max(vc, 0.0), min(va, vb))
    return vc / (va + vb - vc)


def grade_part(ref: Reference, part_brep: bytes, options: dict[str, Any]) -> dict[str, Any]:
    """All geometric metrics of an agent's part (given as BREP bytes) against a reference."""
    n_points = int(options.get("chamfer_points", 8192))
    orientation_free = options.get("orientation") == "free"
    part = import_brep(part_brep)
    too_complex = grading_limits_exceeded(ref, part, options)
    if too_complex:
        return {"ok": False, "kind": "part", "error": too_complex}
    summary = measure(part)
    notes: list[str] = []
    rotation = np.eye(3)
    aligned = False
    if orientation_free and summary["volume"] > 0:
        part, rotation = _align(ref, part, n_points)
        aligned = True
        summary = measure(part)
    lo, hi = np.array(summary["bbox_min"]), np.array(summary["bbox_max"])
    v, f, _ = tessellate(part)
    points = sample_surface(v, f, n_points, seed=0)  # the reference's seed: a part identical to it scores 0
    # cadrille's normalisation (bbox centred, largest extent scaled to 1) taken from the reference for both
    # parts, so that an in-place comparison keeps position and size errors (centring cancels in distances).
    scale = float((ref.hi - ref.lo).max()) or 1.0
    if len(points) and len(ref.points):
        d_part = nearest_distances(points, ref.points, ref.tree)
        d_ref = nearest_distances(ref.points, points)
        chamfer = float(np.mean((d_part / scale) ** 2) + np.mean((d_ref / scale) ** 2))
        mm_points = int(options.get("mm_points") or 0)
        if mm_points > n_points:  # CadQueryEval's distances are in mm on denser samples
            ref_dense, ref_tree = ref.sampled(mm_points)
            dense = sample_surface(v, f, mm_points, seed=0)
            d_part = nearest_distances(dense, ref_dense, ref_tree)
            d_ref = nearest_distances(ref_dense, dense)
        chamfer_mm = float((d_part.mean() + d_ref.mean()) / 2)
        hausdorff95 = float(np.percentile(np.concatenate([d_part, d_ref]), 95))
    else:
        chamfer, chamfer_mm, hausdorff95 = 1.0, float("inf"), float("inf")
        notes.append("the part has no surface to sample")
    iou, iou_method = part_iou(ref, part, summary, (v, f), options, notes)
    ref_ext = ref.hi - ref.lo
    ext = hi - lo
    if orientation_free:
        ref_ext, ext = np.sort(ref_ext), np.sort(ext)
    denom = np.where(ref_ext > 1e-9, ref_ext, 1.0)
    bbox_error = float(np.max(np.abs(ext - ref_ext) / denom)) if summary["faces"] else 1.0
    volume_error = abs(summary["volume"] - ref.volume) / ref.volume if ref.volume > 0 else 1.0
    key_dims = options.get("key_dims") or []
    # Absolute tolerances are in mm, capped at 0.1% of the target's size so that they shrink with small
    # (e.g. unit-normalised) parts.
    abs_tol = min(float(options.get("dims_abs_tol", 0.05)), 1e-3 * float((ref.hi - ref.lo).max()))
    dims_detail = check_key_dims(
        key_dims,
        features(part),
        (lo, hi),
        summary["volume"],
        abs_tol=abs_tol,
        rel_tol=float(options.get("dims_rel_tol", 0.005)),
        pos_rel_tol=float(options.get("dims_pos_rel_tol", 0.0025)),
        shape=part,
    )
    dims = sum(d["passed"] for d in dims_detail) / len(dims_detail) if dims_detail else 1.0
    return {
        "ok": True,
        "metrics": {
            "valid_solid": float(summary["valid_solid"]),
            "iou": float(iou),
            "chamfer": chamfer,
            "chamfer_mm": chamfer_mm,
            "hausdorff95_mm": hausdorff95,
            "bbox_error": min(bbox_error, 1e6),
            "volume_error": min(float(volume_error), 1e6),
            "dims": float(dims),
            "box_iou": box_iou(lo, hi, ref.lo, ref.hi, free=orientation_free),
            "extent_diff_mm": float(np.max(np.abs(np.sort(ext) - np.sort(ref_ext)))),
        },
        "iou_method": iou_method,
        "dims_detail": dims_detail,
        "part": summary,
        "reference": ref.summary,
        "aligned": aligned,
        "rotation": rotation.tolist(),
        "notes": notes,
    }


def grading_limits_exceeded(ref: Reference, part: Any, options: dict[str, Any]) -> str | None:
    """Why a part is too complex to grade (counted before any expensive measurement), or None.

    A part may have at most ``max_solids`` solids and ``max_faces`` faces (options; by default
    ``MAX_GRADE_SOLIDS`` and ``MAX_GRADE_FACES``, or four times the reference's counts where those are more).
    """
    from OCP.TopAbs import TopAbs_FACE, TopAbs_SOLID
    from OCP.TopExp import TopExp_Explorer

    def count(kind: Any, limit: int) -> int:
        n, explorer = 0, TopExp_Explorer(part.wrapped, kind)
        while explorer.More() and n <= limit:
            n += 1
            explorer.Next()
        return n

    for what, kind, option, default in (
        ("solids", TopAbs_SOLID, "max_solids", MAX_GRADE_SOLIDS),
        ("faces", TopAbs_FACE, "max_faces", MAX_GRADE_FACES),
    ):
        limit = int(options.get(option) or max(default, 4 * int(ref.summary.get(what) or 0)))
        n = count(kind, limit)
        if n > limit:
            return (
                f"the part is too complex to grade: more than {limit} {what} (the target has "
                f"{ref.summary.get(what) or 'an unknown number of'}); model the part itself, as one solid"
            )
    return None


def part_iou(
    ref: Reference,
    part: Any,
    summary: dict[str, Any],
    mesh: tuple[np.ndarray, np.ndarray],
    options: dict[str, Any],
    notes: list[str],
) -> tuple[float, str]:
    """Volume IoU of a part with the reference: exact (boolean ``common``) when possible, else on voxels."""
    if not summary["volume"] > 0:
        return 0.0, "none"
    if ref.kind == "brep" and options.get("iou_method", "auto") in ("auto", "boolean") and summary["valid"]:
        try:
            return boolean_iou(part, ref.shape), "boolean"
        except Exception as exc:
            notes.append(f"boolean IoU failed ({exc}); voxel IoU used")
    return voxel_iou(mesh, ref.mesh, int(options.get("voxel_resolution", 128))), "voxel"


def inspect_part(part_brep: bytes) -> dict[str, Any]:
    """What a run reports, measured by trusted code from the part alone (never by the process that built it)."""
    return {"ok": True, "measurements": measure(import_brep(part_brep))}


def box_iou(lo: Any, hi: Any, ref_lo: Any, ref_hi: Any, *, free: bool = False) -> float:
    """IoU of two axis-aligned bounding boxes; with ``free`` orientation, of the boxes centred with sorted extents.

    >>> box_iou([0, 0, 0], [2, 2, 2], [1, 0, 0], [3, 2, 2])
    0.3333333333333333
    >>> box_iou([0, 0, 0], [1, 2, 3], [5, 5, 5], [8, 7, 6], free=True)
    1.0
    """
    lo, hi, ref_lo, ref_hi = (np.asarray(x, dtype=float) for x in (lo, hi, ref_lo, ref_hi))
    ext, ref_ext = np.maximum(hi - lo, 0.0), np.maximum(ref_hi - ref_lo, 0.0)
    if free:
        ext, ref_ext = np.sort(ext), np.sort(ref_ext)
        inter = float(np.prod(np.minimum(ext, ref_ext)))
    else:
        inter = float(np.prod(np.maximum(np.minimum(hi, ref_hi) - np.maximum(lo, ref_lo), 0.0)))
    union = float(np.prod(ext)) + float(np.prod(ref_ext)) - inter
    return inter / union if union > 0 and np.isfinite(union) else 0.0


def _align(ref: Reference, part: Any, n_points: int) -> tuple[Any, np.ndarray]:
    """Move the part onto the reference: bbox centres matched, best of the 24 axis rotations by chamfer."""
    lo, hi = shape_bbox(part)
    v, f, _ = tessellate(part)
    pts = sample_surface(v, f, min(n_points, 2048), seed=2) - (lo + hi) / 2
    ref_center = (ref.lo + ref.hi) / 2
    target = ref.points - ref_center
    tree = make_tree(target)
    best = None
    for rot in rotations24():
        moved = pts @ rot.T
        d1 = nearest_distances(moved, target, tree)
        score = float(np.mean(d1**2))
        if best is None or score < best[0]:
            best = (score, rot)
    assert best is not None
    rot = best[1]
    translation = ref_center - rot @ ((lo + hi) / 2)
    return _transform_shape(part, rot, translation), rot


# ============================================================================================ workers


class OpServer:
    """Answers a JSON-lines request ``{"op": NAME, ...}`` with the method ``op_NAME`` (an unknown op is an error)."""

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        fn = getattr(self, f"op_{op}", None)
        if fn is None:
            return {"ok": False, "kind": "protocol", "error": f"unknown op {op!r}"}
        return fn(request)


class Worker(OpServer):
    """One JSON-lines worker: answers ``op`` requests with ``op_<name>`` methods; jobs run in forks."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.memory_bytes = int(config.get("memory_bytes") or 0) or None
        roots = [os.path.expandvars(r) for r in config.get("scratch_roots") or []]
        scratch = Scratch(roots) if roots else None
        self.zygote = Zygote(
            {name[4:]: getattr(self, name) for name in dir(self) if name.startswith("job_")}, scratch=scratch
        )

    def idle(self) -> None:
        """Between requests: get the next fork ready."""
        self.zygote.prepare()

    def warmup(self) -> None:
        """Run trusted work of the kind jobs do once, so that forks find the kernel's pages already mapped.

        Booleans run serially here: a parallel one would start OCCT's thread pool in this process, and a
        fork of a process with threads can deadlock on the locks they held.
        """
        cq = _cq()
        parallel_op = cq.Shape._bool_op

        def serial_op(self: Any, args: Any, tools: Any, op: Any, parallel: bool = True) -> Any:
            return parallel_op(self, args, tools, op, False)

        cq.Shape._bool_op = serial_op
        try:
            part = (
                cq.Workplane("XY")
                .box(20, 16, 4, centered=(True, True, False))
                .edges("|Z")
                .fillet(2)
                .faces(">Z")
                .workplane()
                .rarray(10, 8, 2, 2)
                .hole(3)
                .faces(">Z")
                .edges("not(%LINE)")
                .chamfer(0.3)
            )
            shape = to_shape(part.union(cq.Workplane("XY").circle(3).extrude(8)))
            measure(shape)
            import_brep(export_brep(shape))
            features(shape)
            tessellate(shape)
        finally:
            cq.Shape._bool_op = parallel_op

    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        cq = _cq()
        return {
            "ok": True,
            "protocol": PROTOCOL,
            "cadquery": getattr(cq, "__version__", "?"),
            "pid": os.getpid(),
            "scipy": make_tree(np.zeros((1, 3))) is not None,
            "hardening": self.config.get("_hardening", {}),
            "scratch_roots": self.zygote.scratch.roots if self.zygote.scratch else [],
        }

    def job_tessellate(self, args: dict[str, Any]) -> dict[str, Any]:
        v, f, fid = tessellate(import_brep(_unb64(args["brep"])))
        return _mesh_reply(v, f, fid)


class AgentWorker(Worker):
    """Runs agent programs, each in a fresh fork of the process that imported CadQuery."""

    def op_run(self, request: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(request.get("code"), str):
            return {"ok": False, "kind": "protocol", "error": "'code' must be a string"}
        return self.zygote.run(
            "run",
            {"code": request["code"]},
            timeout=float(request.get("timeout", 30.0)),
            memory_bytes=request.get("memory_bytes") or self.memory_bytes,
        )

    def job_run(self, args: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            shape = exec_program(args["code"])
        except ProgramError as exc:
            return {"ok": False, "kind": exc.kind, "error": str(exc)}
        ran = time.monotonic() - started
        try:
            data = export_brep(shape)
        except MemoryError:
            raise
        except Exception as exc:
            return {"ok": False, "kind": "invalid", "error": f"the part could not be exported: {exc}"}
        if len(data) > MAX_PART_BYTES:
            return {
                "ok": False,
                "kind": "too_large",
                "error": f"the part is too large to export ({len(data):,} bytes of BREP)",
            }
        # Only the BREP leaves this process: it ran the agent's code, so the grader measures the part.
        return {"ok": True, "brep": _b64(data), "run_s": ran}


class GraderWorker(Worker):
    """Holds reference parts and grades BREP parts against them (never runs agent code)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.refs: OrderedDict[str, Reference] = OrderedDict()
        self.max_refs = int(config.get("max_references", 256))

    def op_reference(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request["key"]
        if key in self.refs:
            self.refs.move_to_end(key)
            return {"ok": True, "cached": True, "source": self.refs[key].kind, "summary": self.refs[key].summary}
        n_points = int(request.get("chamfer_points", 8192))
        mm_points = int(request.get("mm_points") or 0)
        errors = []
        ref: Reference | None = None
        if request.get("code"):
            built = self.zygote.run(
                "build",
                {"code": request["code"], "fallback_last": bool(request.get("fallback_last"))},
                timeout=float(request.get("timeout", 120.0)),
                memory_bytes=self.memory_bytes,
            )
            if built.get("ok"):
                try:
                    ref = Reference(shape=import_brep(_unb64(built["brep"])), n_points=n_points)
                    if not ref.summary["volume"] > 0:
                        errors.append("the reference program's part has no volume")
                        ref = None
                except Exception as exc:
                    errors.append(f"the reference part could not be loaded: {exc}")
            else:
                errors.append(f"the reference program failed: {built.get('error')}")
        if ref is None and request.get("mesh"):
            try:
                ref = Reference(mesh=read_stl(_unb64(request["mesh"])), n_points=n_points)
            except Exception as exc:
                errors.append(f"the reference mesh could not be read: {exc}")
        if ref is None:
            return {"ok": False, "kind": "reference", "error": "; ".join(errors) or "no reference program or mesh"}
        if mm_points > n_points:
            ref.sampled(mm_points)
        self.refs[key] = ref
        while len(self.refs) > self.max_refs:
            self.refs.popitem(last=False)
        self.zygote.invalidate()  # the next fork must hold this reference
        return {"ok": True, "cached": False, "source": ref.kind, "summary": ref.summary, "notes": errors}

    def job_build(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            shape = exec_program(args["code"], fallback_last=bool(args.get("fallback_last")))
        except ProgramError as exc:
            return {"ok": False, "kind": exc.kind, "error": str(exc)}
        return {"ok": True, "brep": _b64(export_brep(shape))}

    def op_grade(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request.get("key")
        if key not in self.refs:
            return {"ok": False, "kind": "missing_reference", "error": f"no reference {key!r}"}
        self.refs.move_to_end(key)
        options = dict(request.get("options") or {})
        args = {"key": key, "brep": request.get("brep", ""), "options": options}
        timeout = float(request.get("timeout", 60.0))
        graded = self.zygote.run("grade", args, timeout=timeout, memory_bytes=self.memory_bytes)
        if graded.get("ok") or options.get("iou_method") == "voxel" or graded.get("kind") == "part":
            return graded
        # Booleans on a pathological part can hang or crash the kernel: fall back to meshes once.
        retry = self.zygote.run(
            "grade",
            {**args, "options": {**options, "iou_method": "voxel"}},
            timeout=timeout,
            memory_bytes=self.memory_bytes,
        )
        if retry.get("ok"):
            retry.setdefault("notes", []).append(f"exact grading failed ({graded.get('error')}); voxel IoU used")
        elif retry.get("kind") in ("timeout", "memory"):
            # Out of time or memory twice: the part is too much to grade, the agent's 0 (never an infra error).
            return {
                "ok": False,
                "kind": "part",
                "error": f"the part is too complex to grade within the grader's limits ({timeout:g} s of CPU per "
                f"attempt, and its memory limit): {retry.get('error')}",
            }
        return retry

    def job_grade(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            brep = _unb64(args["brep"])
            import_brep(brep)
        except Exception as exc:
            return {"ok": False, "kind": "part", "error": f"the part's BREP data cannot be read: {exc}"}
        return grade_part(self.refs[args["key"]], brep, args["options"])

    def op_inspect(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request.get("key")
        if key not in self.refs:
            return {"ok": False, "kind": "missing_reference", "error": f"no reference {key!r}"}
        args = {"key": key, "brep": request.get("brep", ""), "options": dict(request.get("options") or {})}
        timeout = float(request.get("timeout", 60.0))
        return self.zygote.run("inspect", args, timeout=timeout, memory_bytes=self.memory_bytes)

    def job_inspect(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            brep = _unb64(args["brep"])
            import_brep(brep)
        except Exception as exc:
            return {"ok": False, "kind": "part", "error": f"the part's BREP data cannot be read: {exc}"}
        return inspect_part(brep)

    def op_tessellate(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("key"):
            ref = self.refs.get(request["key"])
            if ref is None:
                return {"ok": False, "kind": "missing_reference", "error": f"no reference {request['key']!r}"}
            return _mesh_reply(ref.mesh[0], ref.mesh[1], ref.face_ids)
        return self.zygote.run(
            "tessellate",
            {"brep": request.get("brep", "")},
            timeout=float(request.get("timeout", 60.0)),
            memory_bytes=self.memory_bytes,
        )


def _mesh_reply(v: np.ndarray, f: np.ndarray, fid: np.ndarray) -> dict[str, Any]:
    return {
        "ok": True,
        "vertices": _array_b64(v, "<f4"),
        "triangles": _array_b64(f, "<i4"),
        "face_ids": _array_b64(fid, "<i4"),
    }


_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = (
    0x00020000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x4000, 1 << 18
NO_NAMESPACES = "no private namespaces for env workers in this sandbox"


def _libc_call(name: str, *args: Any) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}{args[:2]!r}: {os.strerror(errno)}")


def _enter_private_namespaces() -> None:
    """Leave the sandbox's user, mount, PID, IPC and network namespaces for fresh ones of this process's own.

    The next child is pid 1 of the new PID namespace (which makes the private mounts, see
    :func:`_mount_private_places`).
    """
    uid, gid = os.getuid(), os.getgid()
    try:
        _libc_call("unshare", _CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWNET)
    except OSError as exc:
        raise OSError(exc.errno, f"{NO_NAMESPACES}: {exc}") from None
    # A process that is not dumpable cannot write its own /proc files (they belong to root): only for this.
    _prctl(_PR_SET_DUMPABLE, 1)
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    finally:
        _prctl(_PR_SET_DUMPABLE, 0)


def _mount_private_places(mounts: list[tuple[str, int]]) -> None:
    """Private tmpfs over every writable place and over ``/proc`` (the sandbox's other processes are not seen)."""
    _libc_call("mount", b"none", b"/", None, _MS_REC | _MS_PRIVATE, None)
    for path, size in sorted(mounts, key=lambda m: m[0].count("/")):  # /tmp before a work directory inside it
        os.makedirs(path, exist_ok=True)  # a place inside one mounted before (TMPDIR in the work directory)
        options = f"size={max(size, 1 << 20)},mode=0700".encode()
        _libc_call("mount", b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options)
    _libc_call("mount", b"tmpfs", b"/proc", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=65536,mode=0555")


def _open_fifo(path: str, flags: int, deadline: float) -> int:
    """Open one end of a FIFO without blocking forever (a writer waits, up to ``deadline``, for its reader)."""
    while True:
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != 6 or time.monotonic() > deadline:  # ENXIO: no reader yet
                raise
            time.sleep(0.002)
            continue
        os.set_blocking(fd, True)
        return fd


class ForkServer(OpServer):
    """The host's one agent zygote: imports CadQuery once and forks an isolated agent worker per env.

    It runs in one shared sandbox and answers ``spawn`` / ``kill`` / ``ping`` on its session. ``spawn`` forks
    a *keeper* that opens the env's two FIFOs (in a directory of this process's work directory; the env opens
    the other ends), removes them, enters fresh user, mount, PID, IPC and network namespaces and forks the env's
    worker: pid 1 of its own PID namespace, with private tmpfs mounts over the work directory, ``$TMPDIR``,
    ``/tmp``, ``/dev/shm`` and ``/proc``. That worker is an :class:`AgentWorker` (each program in a fresh fork
    of it, killed with everything it started after each run, scratch restored), speaking JSON lines on the
    FIFOs. So another env's programs cannot see, signal, trace or write to it (they run in sibling
    namespaces), nor reach its files, pipes or sockets; and it holds nothing of this server's (its session
    pipes are closed). The server is never reachable from agent code: the FIFOs are gone before any runs.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.keepers: dict[str, int] = {}  # token -> keeper pid (a keeper dies with its worker and vice versa)
        self.status: dict[str, int] = {}  # token -> the pipe on which a starting keeper reports its worker's pid
        self.spawned = 0
        self.warm = AgentWorker(config)  # only for its warm-up: forks find the kernel's pages mapped

    def idle(self) -> None:
        """Reap keepers whose workers ended."""
        for token, pid in list(self.keepers.items()):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                del self.keepers[token]
                shutil.rmtree(os.path.join(os.getcwd(), f"cad-env-{token}"), ignore_errors=True)  # never opened
                if token in self.status:
                    _quiet(os.close, self.status.pop(token))
        with contextlib.suppress(ChildProcessError):  # orphans re-parented here (subreaper)
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass

    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        self.idle()
        return {
            "ok": True,
            "protocol": PROTOCOL,
            "cadquery": getattr(_cq(), "__version__", "?"),
            "pid": os.getpid(),
            "workers": len(self.keepers),
            "spawned": self.spawned,
            "hardening": self.config.get("_hardening", {}),
        }

    def op_spawn(self, request: dict[str, Any]) -> dict[str, Any]:
        self.idle()
        token = request.get("token")
        if not isinstance(token, str) or not token.isalnum() or token in self.keepers:
            return {"ok": False, "kind": "protocol", "error": "'token' must be a fresh alphanumeric string"}
        directory = os.path.join(os.getcwd(), f"cad-env-{token}")
        os.mkdir(directory, 0o700)
        for name in ("request", "reply"):
            os.mkfifo(os.path.join(directory, name), 0o600)
        status_r, status_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.close(status_r)
                code = self._keeper(directory, status_w, float(request.get("timeout", 60.0)))
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    os.write(status_w, f"error {type(exc).__name__}: {exc}".encode()[:400])
            finally:
                os._exit(code)
        os.close(status_w)
        self.keepers[token] = pid
        self.status[token] = status_r
        self.spawned += 1
        return {"ok": True, "path": directory, "keeper": pid, "token": token}

    def op_started(self, request: dict[str, Any]) -> dict[str, Any]:
        """After the env opened its FIFO ends: the worker's pid (as this sandbox sees it), once it is running."""
        token = request.get("token")
        status_fd = self.status.pop(token, None) if isinstance(token, str) else None
        if status_fd is None:
            return {"ok": False, "kind": "protocol", "error": f"no starting env worker {token!r}"}
        return _await_keeper({"ok": True, "token": token}, status_fd, float(request.get("timeout", 60.0)))

    def op_kill(self, request: dict[str, Any]) -> dict[str, Any]:
        """Stop an env's worker (its keeper, and with it the worker's whole PID namespace)."""
        pid = self.keepers.get(request.get("token"))  # type: ignore[arg-type]
        if pid is not None:
            _quiet(os.kill, pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.idle()
        return {"ok": True, "killed": pid is not None}

    def _keeper(self, directory: str, status_fd: int, timeout: float) -> int:
        _die_with_parent()
        deadline = time.monotonic() + timeout
        request_path, reply_path = os.path.join(directory, "request"), os.path.join(directory, "reply")
        request_fd = os.open(request_path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(request_fd, True)
        reply_fd = _open_fifo(reply_path, os.O_WRONLY, deadline)
        shutil.rmtree(directory, ignore_errors=True)
        global _VM_SIZE_FALLBACK
        _VM_SIZE_FALLBACK = _vm_size_bytes()
        tmp = os.environ.get("TMPDIR") or "/tmp"
        places = [(os.getcwd(), int(self.config.get("disk_bytes", 128 << 20)))]
        places += [(p, int(self.config.get("tmp_bytes", 128 << 20))) for p in dict.fromkeys([tmp, "/tmp", "/dev/shm"])]
        _enter_private_namespaces()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.close(status_fd)
                code = self._env_worker(request_fd, reply_fd, places)
            except BaseException as exc:  # the env's first request reads why
                with contextlib.suppress(Exception):
                    error = f"{type(exc).__name__}: {exc}"
                    os.write(reply_fd, (json.dumps({"ok": False, "kind": "internal", "error": error}) + "\n").encode())
            finally:
                os._exit(code)
        os.close(request_fd)
        os.close(reply_fd)
        os.write(status_fd, f"pid {pid}".encode())
        os.close(status_fd)
        # This keeper only waits: its death (the server's) kills the worker, and the worker's ends it. It keeps
        # nothing of the server's either (stdin was the server's request stream).
        os.closerange(3, _max_fd())
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
            except ChildProcessError:
                return 0
            except InterruptedError:
                continue

    def _env_worker(self, request_fd: int, reply_fd: int, places: list[tuple[str, int]]) -> int:
        global _PID_NAMESPACE_INIT, _channel
        _die_with_parent()
        _mount_private_places(places)
        _PID_NAMESPACE_INIT = True
        os.chdir(places[0][0])
        # Nothing of the server's stays open here: not its session (stdin, stdout), nothing but the two FIFOs.
        low = 3
        for fd in sorted({request_fd, reply_fd}):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, _max_fd())
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(2, 1)
        os.close(devnull)
        # Per-env process budget: RLIMIT_NPROC counts the processes of this env's own user namespace.
        _set_limit(resource.RLIMIT_NPROC, int(self.config.get("max_processes", 64)))
        config = {**self.config, "scratch_roots": [p for p, _ in places], "warmup": False}
        config["_hardening"] = {**harden_worker(), "pid_namespace": True}
        worker = AgentWorker(config)
        _serve_lines(worker, os.fdopen(request_fd, "r", encoding="utf-8"), os.fdopen(reply_fd, "w", encoding="utf-8"))
        return 0


def _serve_lines(worker: Any, requests: Any, replies: Any) -> None:
    """Answer JSON-line requests from ``requests`` on ``replies`` until EOF."""
    worker.idle()
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            reply = (
                worker.handle(request)
                if isinstance(request, dict)
                else {"ok": False, "kind": "protocol", "error": "a request must be a JSON object"}
            )
        except Exception as exc:
            reply = {"ok": False, "kind": "internal", "error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
        zygote = getattr(worker, "zygote", None)
        if zygote is not None and not zygote.clean:  # a job left a process behind that would not die
            os._exit(75)
        worker.idle()


def _await_keeper(reply: dict[str, Any], status_fd: int, timeout: float) -> dict[str, Any]:
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([status_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(status_fd, 512)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(status_fd)
    text = data.decode(errors="replace")
    if text.startswith("pid "):
        return {**reply, "pid": int(text.split()[1])}
    return {"ok": False, "kind": "spawn", "error": f"the env worker did not start: {text or 'no word from it'}"}


def serve(mode: str, config: dict[str, Any]) -> None:
    """Answer JSON-lines requests on stdin until EOF."""
    global _channel
    if "" in sys.path:
        sys.path.remove("")
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p != cwd]
    _channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # anything a C library prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    _cq()  # import CadQuery (and scipy's KD-tree) once; every fork reuses them
    make_tree(np.zeros((1, 3)))
    config = {**config, "_hardening": harden_worker()}
    worker: Any
    if mode == "forkserver":
        worker = ForkServer(config)
        if config.get("warmup", True):
            with contextlib.suppress(Exception):
                worker.warm.warmup()
    else:
        worker = AgentWorker(config) if mode == "agent" else GraderWorker(config)
        if config.get("warmup", True):
            with contextlib.suppress(Exception):
                worker.warmup()
    _serve_lines(worker, sys.stdin, _channel)


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "agent", json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
