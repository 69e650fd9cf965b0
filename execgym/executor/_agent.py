"""The in-sandbox supervisor: a stdlib-only script that both backends run *inside* the sandbox.

It is sent as ``python3 -I -S -c <this file's text> MODE CONFIG`` so that any image with a Python 3.8+
interpreter works without installing anything. Modes:

``serve``   (local backend) one per sandbox: receives spawn requests and the child's stdio fds over a
            Unix socket (SCM_RIGHTS), spawns with ``posix_spawn`` (no fork of the big host process, no
            ``preexec_fn``), reports exits, kills on request. Resource limits are set on the supervisor
            itself so that children inherit them without a race; only RLIMIT_CPU is applied per child
            with ``prlimit`` right after the spawn (a few microseconds of unlimited CPU are harmless).
``run``     (Docker backend) one per ``docker exec``: spawns one command, relays and caps its output,
            enforces the timeout, then writes a status trailer on stderr.
``session`` (Docker backend) spawns a JSON-lines worker with the exec's stdio and records its process
            group in a pid file so a second exec (``kill``) can stop it.
``idle``    (Docker backend) PID 1 of the container: reaps orphans, ignores signals.
``kill``    kill the process group recorded in a pid file; ``killall`` kills every process of the uid.
``probe``   (local backend) enter the sandbox as configured, dropping privileges if asked, and exit.

The supervisor is a child subreaper (or PID 1), so every orphan of a command comes back to it; after a
command ends (or times out) its process group and every untracked child are killed until none is left.

Nothing of the control channel reaches a command: every descriptor of the supervisor is close-on-exec
(and the local control socket is closed again in each ``posix_spawn``), received descriptors arrive
close-on-exec, and the supervisor is not dumpable, so a command of the same uid can neither ptrace it
nor open its descriptors through ``/proc/<pid>/fd``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator

STATUS_MARK = b"\x00\x00execgym-status:"
MAX_FDS = 3
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_CHUNK = 1 << 16

# Signals reset to their default action in children (the supervisor ignores or handles several).
_DEFAULT_SIGNALS = sorted(s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))


def set_subreaper() -> bool:
    """Make orphans of our descendants re-parent to us instead of init."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:
        return False


def make_undumpable() -> bool:
    """``PR_SET_DUMPABLE = 0``: commands, though of the same uid, cannot ptrace this process nor open its
    ``/proc/<pid>/fd``, ``mem``, ``environ``; those entries become root's. Kept until this process execs
    (it never does) or changes credentials (call it after ``drop_privileges``).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except Exception:
        return False


def close_on_exec_all(keep: tuple[int, ...] = (0, 1, 2)) -> None:
    """Mark every open descriptor but ``keep`` close-on-exec, so that no command inherits any of them."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        names = [str(fd) for fd in range(3, 1024)]
    for name in names:
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good: no supplementary groups, no capabilities, no way back.

    Used when the host user is root: bubblewrap builds the sandbox as root (so it can bind an interpreter
    under a private home) and leaves this process only CAP_SETUID, CAP_SETGID and CAP_SETPCAP, which are
    spent here. The bounding set is emptied and ``no_new_privs`` set, so neither a setuid binary nor a
    file capability can give anything back. Raises if any step does not hold.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
    except OSError:
        last_cap = 63
    for cap in range(last_cap + 1):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            err = ctypes.get_errno()
            if err != errno.EINVAL:  # EINVAL: a capability this kernel does not know
                raise OSError(err, f"cannot drop capability {cap} from the bounding set")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "cannot set no_new_privs")
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise PermissionError("dropping privileges did not take")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PermissionError("privileges could be regained after dropping them")


def apply_rlimits(limits: dict) -> None:
    """Set inheritable limits on this process (children get them from their first instruction)."""
    names = {
        "as": resource.RLIMIT_AS,
        "nproc": resource.RLIMIT_NPROC,
        "fsize": resource.RLIMIT_FSIZE,
        "nofile": resource.RLIMIT_NOFILE,
        "core": resource.RLIMIT_CORE,
    }
    for key, value in limits.items():
        if value is None or key not in names:
            continue
        res = names[key]
        _soft, hard = resource.getrlimit(res)
        value = int(value)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(res, (value, value))


def limit_cpu(pid: int, seconds: float | None) -> None:
    """RLIMIT_CPU for one child: SIGXCPU at the limit, SIGKILL one second later."""
    if not seconds:
        return
    soft = max(1, int(-(-seconds // 1)))
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        resource.prlimit(pid, resource.RLIMIT_CPU, (soft, soft + 1))


def children_of_self() -> list[int]:
    """Direct children of this process (orphans re-parented to us included)."""
    me = os.getpid()
    try:
        fd = os.open(f"/proc/self/task/{me}/children", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return [int(x) for x in os.read(fd, 1 << 20).split()]
        finally:
            os.close(fd)
    except OSError:
        pass
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me:
            out.append(int(name))
    return out


def _kill(pid: int, group: bool = False) -> bool:
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def sweep(groups: list[int], keep: set[int], reap=None) -> None:
    """Kill the given process groups and every child of ours not in ``keep`` until none is left.

    ``reap`` is called between rounds so that zombies disappear from the children list.
    """
    for _ in range(1000):
        alive = False
        for pg in groups:
            alive |= _kill(pg, group=True)
        for pid in children_of_self():
            if pid not in keep:
                alive |= _kill(pid)
        if reap is not None:
            reap()
        if not alive:
            return
        time.sleep(0.001)


def exit_code_of(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return -1


def resolve(argv0: str, env: dict, cwd: str) -> str:
    """Find the executable like execvp would, using the *child's* PATH."""
    if "/" in argv0:
        return argv0 if os.path.isabs(argv0) else os.path.join(cwd, argv0)
    for d in env.get("PATH", os.defpath).split(os.pathsep):
        cand = os.path.join(d or cwd, argv0)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError(errno.ENOENT, "command not found", argv0)


def spawn(argv: list, env: dict, cwd: str, fds: tuple[int, int, int], close: tuple[int, ...] = ()) -> int:
    """posix_spawn ``argv`` in a new session with ``fds`` as its stdin/stdout/stderr.

    ``close``: descriptors the child must not have even if they were inheritable (the control channel).
    """
    path = resolve(argv[0], env, cwd)
    os.chdir(cwd)
    actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in close if fd > 2 and fd not in fds]
    return os.posix_spawn(path, argv, env, file_actions=actions, setsid=True, setsigdef=_DEFAULT_SIGNALS, setsigmask=())


class Capture:
    """Keeps the first ``cap`` bytes of a stream, counts the rest, and keeps a short tail."""

    def __init__(self, cap: int, tail: int = 8192) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0
        self.total = 0
        self.tail_cap = tail
        self.tail = b""

    def feed(self, data: bytes) -> bytes:
        """Store ``data``; returns the part that fit under the cap."""
        self.total += len(data)
        if self.tail_cap:
            self.tail = (self.tail + data[-self.tail_cap :])[-self.tail_cap :]
        room = self.cap - self.size
        kept = data[:room] if room > 0 else b""
        if kept:
            self.parts.append(kept)
            self.size += len(kept)
        return kept

    @property
    def truncated(self) -> bool:
        return self.total > self.size

    def value(self) -> bytes:
        return b"".join(self.parts)


# ----------------------------------------------------------------------------------------- serve mode


class Server:
    """The local backend's per-sandbox supervisor (see module docstring)."""

    def __init__(self, sock: socket.socket, config: dict) -> None:
        self.sock = sock
        self.control: tuple[int, ...] = (sock.fileno(),)  # never reachable from a command
        self.cpu_s = config.get("cpu_s")
        self.jobs: dict[int, dict] = {}  # pid -> {"id", "kind", "killed"}
        self.by_id: dict[int, int] = {}
        self.pending = b""

    def send(self, msg: dict) -> None:
        try:
            self.sock.send(json.dumps(msg).encode())
        except OSError:
            self.shutdown()

    def reap(self) -> None:
        for pid, status, ru in _exited_children():
            job = self.jobs.pop(pid, None)
            if job is None:
                continue  # an orphan: nothing to report
            self.by_id.pop(job["id"], None)
            self.send(
                {
                    "op": "exit",
                    "id": job["id"],
                    "code": exit_code_of(status),
                    "killed": job["killed"],
                    "cpu_s": ru.ru_utime + ru.ru_stime,
                    "maxrss_kb": ru.ru_maxrss,
                }
            )
            if job["kind"] == "run":
                # After the report, so the host is not kept waiting; this server handles nothing else
                # until the sweep is over, so no straggler survives into the next command.
                sweep([pid], set(self.jobs), self.reap)

    def handle(self, msg: dict, fds: list[int]) -> None:
        op = msg.get("op")
        if op == "spawn":
            try:
                if len(fds) != 3:
                    raise ValueError(f"expected 3 fds, got {len(fds)}")
                for fd in fds:
                    os.set_inheritable(fd, False)
                pid = spawn(msg["argv"], msg["env"], msg["cwd"], (fds[0], fds[1], fds[2]), self.control)
            except Exception as e:  # reported to the host, never fatal for the server
                self.send({"op": "error", "id": msg.get("id"), "error": f"{type(e).__name__}: {e}"})
            else:
                if msg.get("kind") == "run":
                    limit_cpu(pid, self.cpu_s)
                self.jobs[pid] = {"id": msg["id"], "kind": msg.get("kind", "run"), "killed": False}
                self.by_id[msg["id"]] = pid
            finally:
                for fd in fds:
                    os.close(fd)
        elif op == "kill":
            pid = self.by_id.get(msg.get("id"))
            if pid is not None:
                self.jobs[pid]["killed"] = True
                sweep([pid], set(self.jobs) - {pid}, self.reap)
        elif op == "ping":
            self.send({"op": "pong", "id": msg.get("id")})
        elif op == "shutdown":
            self.shutdown()
        for fd in fds if op != "spawn" else ():
            os.close(fd)

    def shutdown(self) -> None:
        sweep(list(self.jobs), set(), _reap_all)
        os._exit(0)

    def recv(self) -> tuple[dict, list[int]] | None:
        fds: list[int] = []
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(
                    1 << 17, socket.CMSG_SPACE(MAX_FDS * 4), getattr(socket, "MSG_CMSG_CLOEXEC", 0)
                )
            except InterruptedError:
                continue
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    n = len(payload) - len(payload) % 4
                    fds.extend(int.from_bytes(payload[i : i + 4], sys.byteorder) for i in range(0, n, 4))
            if not data:
                return None
            self.pending += data[1:]
            if data[:1] == b".":
                text, self.pending = self.pending, b""
                return json.loads(text), fds

    def loop(self) -> None:
        rd, wr = os.pipe()  # close-on-exec, as every descriptor of this process
        os.set_blocking(wr, False)
        os.set_blocking(rd, False)
        self.control += (rd, wr)
        signal.set_wakeup_fd(wr)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.send({"op": "ready", "pid": os.getpid()})
        while True:
            ready, _, _ = select.select([self.sock, rd], [], [])
            if rd in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(rd, 4096)
                self.reap()
            if self.sock in ready:
                got = self.recv()
                if got is None:
                    self.shutdown()
                    return
                self.handle(*got)
                self.reap()


def serve(config: dict) -> None:
    # The control socket and everything else this process holds stay out of every command: inherited
    # by none (close-on-exec, and closed again in each spawn), unreadable through /proc/1/fd and not
    # ptrace-able (not dumpable, though commands run as the same uid).
    fd = int(config["fd"])
    close_on_exec_all()
    if config.get("drop"):
        uid, gid = config["drop"]
        drop_privileges(int(uid), int(gid))
    if not make_undumpable():
        raise OSError("cannot make the supervisor undumpable (PR_SET_DUMPABLE)")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    if os.getpid() != 1:
        set_subreaper()
    apply_rlimits(config.get("rlimits", {}))
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    Server(sock, config).loop()


# ------------------------------------------------------------------------------------ docker modes


def run(config: dict) -> int:
    """Spawn one command, relay its output capped, enforce the timeout, write the status trailer."""
    make_undumpable()  # the command (same uid) cannot write to our stdout/stderr through /proc/<pid>/fd
    set_subreaper()
    apply_rlimits(config.get("rlimits", {}))
    cap = int(config["output_bytes"])
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    env = dict(os.environ)
    start = time.monotonic()
    try:
        pid = spawn(config["argv"], env, config.get("cwd") or os.getcwd(), (0, out_w, err_w))
    except Exception as e:
        msg = f"execgym: cannot run {config['argv'][0]!r}: {e}\n".encode()
        os.write(2, msg)
        _trailer({"code": 127, "timed_out": False, "truncated": False, "killed": False, "cpu_s": 0.0})
        return 0
    limit_cpu(pid, config.get("cpu_s"))
    os.close(out_w)
    os.close(err_w)
    deadline = start + float(config["timeout"])
    captures = {out_r: (Capture(cap, 0), 1), err_r: (Capture(cap, 0), 2)}
    open_fds = [out_r, err_r]
    main = _Main(pid)
    timed_out = False
    oom_before = _oom_kills()
    while open_fds or main.status is None:
        if main.status is None:
            main.reap()
            if main.status is not None:
                sweep([pid], set(), main.reap)
        left = deadline - time.monotonic()
        if left <= 0 and not timed_out and (main.status is None or open_fds):
            timed_out = True
            sweep([pid], set(), main.reap)
            deadline = time.monotonic() + 5.0
        if not open_fds:
            time.sleep(0.002 if left > 0.002 else max(left, 0.0005))
            continue
        ready, _, _ = select.select(open_fds, [], [], max(0.0, min(left, 0.05)) if left > 0 else 0.05)
        for fd in ready:
            data = os.read(fd, _CHUNK)
            if not data:
                open_fds.remove(fd)
                continue
            capture, dest = captures[fd]
            kept = capture.feed(data)
            if kept:
                _write_all(dest, kept)
    oom_after = _oom_kills()
    truncated = any(c.truncated for c, _ in captures.values())
    ru = main.rusage
    _trailer(
        {
            "code": exit_code_of(main.status),
            "timed_out": timed_out,
            "truncated": truncated,
            "killed": timed_out,
            "cpu_s": (ru.ru_utime + ru.ru_stime) if ru else 0.0,
            "oom_kill": oom_before is not None and oom_after is not None and oom_after > oom_before,
        }
    )
    return 0


class _Main:
    """Reaps every child, remembering the status of the one that matters."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None
        self.rusage = None

    def reap(self) -> None:
        for pid, status, ru in _exited_children():
            if pid == self.pid:
                self.status, self.rusage = status, ru


def _reap_all() -> None:
    for _ in _exited_children():
        pass


def _exited_children() -> Iterator[tuple[int, int, resource.struct_rusage]]:
    """Reap every child that has exited, without waiting: ``(pid, status, rusage)`` each."""
    while True:
        try:
            pid, status, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status, ru


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]


def _trailer(status: dict) -> None:
    _write_all(2, STATUS_MARK + json.dumps(status).encode() + b"\n")


def _oom_kills() -> int | None:
    """The container cgroup's OOM-kill counter (cgroup v2 memory.events or v1 memory.oom_control)."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            continue
    return None


def session(config: dict) -> int:
    """Run a JSON-lines worker on this exec's stdio; its process group goes into ``config['pidfile']``."""
    make_undumpable()
    set_subreaper()
    apply_rlimits(config.get("rlimits", {}))
    env = dict(os.environ)
    try:
        pid = spawn(config["argv"], env, config.get("cwd") or os.getcwd(), (0, 1, 2))
    except Exception as e:
        os.write(2, f"execgym: cannot run {config['argv'][0]!r}: {e}\n".encode())
        return 127
    pidfile = config["pidfile"]
    os.makedirs(os.path.dirname(pidfile), exist_ok=True)
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(pid))
    os.replace(pidfile + ".tmp", pidfile)
    for fd in (0, 1):
        os.close(fd)  # the worker holds them: EOF reaches the host when it dies
    _, status = os.waitpid(pid, 0)
    sweep([pid], set(), _reap_all)
    return min(abs(exit_code_of(status)), 255)


def kill(config: dict) -> int:
    try:
        with open(config["pidfile"]) as f:
            pgid = int(f.read().strip())
    except (OSError, ValueError):
        return 1
    _kill(pgid, group=True)
    return 0


def killall(config: dict) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)
    return 0


def probe(config: dict) -> int:
    """Check the sandbox can be entered as configured (dropping privileges when asked); exit 0 if so."""
    if config.get("drop"):
        drop_privileges(*map(int, config["drop"]))
    if not make_undumpable():
        raise OSError("cannot make the supervisor undumpable (PR_SET_DUMPABLE)")
    return 0


def idle(config: dict) -> int:
    make_undumpable()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
    while True:
        signal.sigtimedwait([signal.SIGCHLD], 5.0)
        _reap_all()


MODES = {"serve": serve, "run": run, "session": session, "kill": kill, "killall": killall, "idle": idle, "probe": probe}


def main(argv: list[str]) -> int:
    mode, config = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    return MODES[mode](config) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
