"""The executor's own control channel against the code it runs.

The local backend's host talks to each sandbox's supervisor over a Unix socket; the Docker backend's
supervisor reports a command's status on the exec's stderr. Neither may be reachable from sandboxed code:

* descriptors: a command (and a session worker) holds only its stdin, stdout and stderr;
* forged messages: a command writing well-formed and malformed protocol messages (both directions, the
  Docker status trailer, garbage) to every descriptor 0-255 and to every ``/proc/*/fd/*`` it can open
  changes nothing: its result is its own (exit code and output), the next command's too;
* the supervisor: not readable through ``/proc/<pid>/fd``, ``environ`` or ``mem``, not ptrace-able, no
  ``pidfd_getfd`` of its descriptors, deaf to every signal (it is PID 1 of the sandbox's PID namespace);
* ``/tmp``: private to each sandbox, nothing of the host's or another sandbox's;
* the host side: a supervisor that sends a malformed or unexpected message (non-JSON, not an object, an
  unknown op, a job that is not running, wrong field types, a duplicate exit, a second ``ready``, JSON
  nested 100k deep, a truncated message) is killed and the call raises :class:`InfraError`, never another
  exception; the next command runs on a fresh supervisor and is genuine.

Run as root (commands run as uid 65534) and as a normal user (same uid as the supervisor, in a user
namespace): the supervisor is not dumpable either way.

Not claimed: the processes *of one sandbox* are one trust domain. A command can open a session worker's
pipes of the same sandbox through ``/proc/<worker>/fd`` (same uid, dumpable) and talk in its place; envs
that need a worker the agent cannot touch run it in a sandbox of its own (CAD's grader).
"""

from __future__ import annotations

import json
import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from execgym.executor import Executor, InfraError, LocalExecutor, Sandbox, SandboxSpec
from execgym.executor._agent import STATUS_MARK
from execgym.executor.local import LocalSandbox
from execgym.executor.local import supervisor as local_mod
from tests.executor import conftest as executor_fixtures

# The backends that promise containment (local with bubblewrap, and Docker), as in the executor suite.
confined = executor_fixtures.confined


@pytest.fixture
def sandbox(confined: Executor) -> Iterator[Sandbox]:
    with confined.sandbox(SandboxSpec(files={"spray.py": SPRAY, "worker.py": WORKER})) as sb:
        yield sb


def _forgeries() -> list[bytes]:
    """Messages of every protocol direction, well-formed for any plausible job id, and malformed ones."""
    out = []
    for job in (*range(0, 64), *range(64, 100_000, 997)):
        exit_msg = {"op": "exit", "id": job, "code": 0, "killed": False, "cpu_s": 0.0, "maxrss_kb": 1}
        out.append(json.dumps(exit_msg).encode())  # supervisor -> host (local)
        out.append(json.dumps({"op": "error", "id": job, "error": "forged"}).encode())
    out += [
        json.dumps({"op": "ready", "pid": 1}).encode(),
        b"." + json.dumps({"op": "shutdown"}).encode(),  # host -> supervisor (local)
        b"." + json.dumps({"op": "spawn", "id": 7, "argv": ["/bin/true"], "env": {}, "cwd": "/"}).encode(),
        b"." + json.dumps({"op": "kill", "id": 1}).encode(),
        STATUS_MARK + json.dumps({"code": 0, "timed_out": False, "truncated": False, "killed": False}).encode() + b"\n",
        b"garbage{\n",
        b"\xff\xfe\x00",
        b"[" * 5000,
    ]
    return out


FORGED = _forgeries()

# Writes every forgery to every descriptor 0-255 but its own stdout/stderr, and to every /proc/*/fd/* it
# can open (never a regular file: a regression must not damage anything); sockets also get them by send.
SPRAY = textwrap.dedent(
    """
    import json, os, socket, stat, sys


    def spray(fd, where, forged, own, hits):
        try:
            st = os.fstat(fd)
        except OSError:
            return
        if st[1:3] in own or stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            return
        blocking = os.get_blocking(fd)  # shared with whoever else holds it (our own stdin too)
        os.set_blocking(fd, False)
        n = 0
        for msg in forged:
            try:
                n += os.write(fd, msg) > 0
            except OSError:
                pass
        if stat.S_ISSOCK(st.st_mode):
            s = socket.socket(fileno=os.dup(fd))
            for msg in forged:
                try:
                    n += s.send(msg, socket.MSG_DONTWAIT) > 0
                except OSError:
                    pass
            s.close()
        os.set_blocking(fd, blocking)
        if n:
            hits.append(f'{where} ({n})')


    def spray_everything():
        forged = [bytes.fromhex(h) for h in json.loads(open('forged.json').read())]
        own = {os.fstat(fd)[1:3] for fd in (1, 2)}
        hits = []
        for fd in range(256):
            spray(fd, f'fd {fd}', forged, own, hits)
        me = str(os.getpid())
        for pid in os.listdir('/proc'):
            if not pid.isdigit() or pid == me:
                continue
            try:
                fds = os.listdir(f'/proc/{pid}/fd')
            except OSError:
                continue
            for name in fds:
                path = f'/proc/{pid}/fd/{name}'
                for flags in (os.O_WRONLY, os.O_RDWR):
                    try:
                        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
                    except OSError:
                        continue
                    try:
                        spray(fd, path, forged, own, hits)
                    finally:
                        os.close(fd)
        return hits


    if __name__ == '__main__':
        hits = spray_everything()
        sys.stderr.write('sprayed into: ' + ', '.join(hits) + '\\n')
        # Forgeries on its own stdout and stderr are output like any other, reported as such.
        sys.stdout.write(json.dumps({"op": "exit", "id": 1, "code": 0, "killed": False, "cpu_s": 0.0}) + '\\n')
        sys.stderr.buffer.write(bytes.fromhex(json.loads(open('forged.json').read())[-4]))
        sys.stdout.write(sys.argv[1] + '\\n')
        sys.exit(int(sys.argv[2]))
    """
)

WORKER = textwrap.dedent(
    """
    import json, os, sys
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("spray"):  # the worker itself, not a child of it (that is one sandbox: see the docs)
            import spray
            hits = spray.spray_everything()
            print(json.dumps({"token": msg["token"], "supervisor": [h for h in hits if "/proc/1/" in h]}), flush=True)
            continue
        fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        print(json.dumps({"pid": os.getpid(), "fds": fds}), flush=True)
    """
)


def _open_fds_of_command(sb: Sandbox) -> list[int]:
    r = sb.run(["python", "-c", "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"])
    assert r.exit_code == 0, r
    return [fd for fd in json.loads(r.stdout) if fd > 2]


# ---------------------------------------------------------------------------------------- descriptors


def test_commands_hold_only_their_stdio(sandbox: Sandbox) -> None:
    # The one extra descriptor is listdir's own, on /proc/self/fd.
    assert len(_open_fds_of_command(sandbox)) <= 1, _open_fds_of_command(sandbox)
    r = sandbox.run("ls -l /proc/self/fd/ | grep -c socket; true")
    assert r.stdout.strip() == "0", r
    s = sandbox.session(["python", "worker.py"])
    try:
        reply = s.request({})
        assert reply.ok, reply
        assert [fd for fd in reply.value["fds"] if fd > 2][1:] == [], reply.value
    finally:
        s.close()


def test_plain_local_commands_hold_only_their_stdio() -> None:
    """Without bubblewrap too (no isolation is promised there, but the control socket is never inherited)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sb = LocalExecutor(use_bwrap=False).sandbox()
    with sb:
        assert len(_open_fds_of_command(sb)) <= 1, _open_fds_of_command(sb)
        code = (
            "import os\n"
            "for fd in range(3, 256):\n"
            "    try:\n        os.write(fd, b'garbage{')\n    except OSError:\n        pass\n"
        )
        r = sb.run(["python", "-c", code + "print('real'); raise SystemExit(3)"])
        assert (r.exit_code, r.stdout) == (3, "real\n"), r
        assert sb.run("echo next").stdout == "next\n"


# ----------------------------------------------------------------------------------- forged messages


def _write_forgeries(sb: Sandbox) -> None:
    sb.write_files({"forged.json": json.dumps([m.hex() for m in FORGED])})


def test_forged_messages_everywhere_change_no_result(sandbox: Sandbox) -> None:
    _write_forgeries(sandbox)
    assert sandbox.run("true").ok  # the supervisor is started on first use
    generation = getattr(sandbox, "_generation", None)
    for attempt in range(2):
        token = secrets.token_hex(8)
        r = sandbox.run(["python", "spray.py", token, str(3 + attempt)], timeout=120)
        assert not r.timed_out, r
        assert r.exit_code == 3 + attempt, r
        forged_line = json.dumps({"op": "exit", "id": 1, "code": 0, "killed": False, "cpu_s": 0.0})
        assert r.stdout == f"{forged_line}\n{token}\n", r.stdout[-500:]
        assert "sprayed into: " in r.stderr
        hits = r.stderr.split("sprayed into: ", 1)[1].splitlines()[0]
        assert "/proc/1/" not in hits, f"reached the supervisor: {hits}"
        after = sandbox.run(["sh", "-c", "echo genuine; echo err >&2; exit 5"])
        assert (after.exit_code, after.stdout, after.stderr, after.timed_out) == (5, "genuine\n", "err\n", False)
    if generation is not None:
        assert sandbox._generation == generation, "the supervisor was restarted: it was reached"  # type: ignore[attr-defined]


def test_a_session_worker_spraying_changes_no_result(sandbox: Sandbox) -> None:
    _write_forgeries(sandbox)
    s = sandbox.session(["python", "worker.py"])
    try:
        token = secrets.token_hex(8)
        reply = s.request({"spray": True, "token": token}, timeout=120)
        assert reply.ok and reply.value == {"token": token, "supervisor": []}, reply
        assert s.request({}).ok
        r = sandbox.run(["sh", "-c", "echo genuine; exit 6"])
        assert (r.exit_code, r.stdout) == (6, "genuine\n"), r
    finally:
        s.close()


# ------------------------------------------------------------------------------------ the supervisor


PROBE_SUPERVISOR = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    found = []
    for pid in sorted({1, os.getppid()} - {os.getpid()}):
        for what in ("fd", "fdinfo", "environ", "mem", "maps", "cwd", "root"):
            try:
                path = f"/proc/{pid}/{what}"
                if what in ("fd", "fdinfo"):
                    os.listdir(path)
                elif what in ("cwd", "root"):
                    os.listdir(path + "/")
                else:
                    open(path, "rb").read(1)
                found.append(f"{pid}:{what}")
            except OSError:
                pass
        for fd in range(3, 16):
            try:
                os.readlink(f"/proc/{pid}/fd/{fd}")
                found.append(f"{pid}:fd/{fd}")
            except OSError:
                pass
        for req in (16, 0x4206):  # PTRACE_ATTACH, PTRACE_SEIZE
            if libc.ptrace(req, pid, 0, 0) == 0:
                found.append(f"{pid}:ptrace {req}")
                libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH
        pidfd = libc.syscall(434, pid, 0)  # pidfd_open
        if pidfd >= 0:
            for fd in range(0, 16):
                got = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
                if got >= 0:
                    found.append(f"{pid}:pidfd_getfd {fd}")
                    os.close(got)
    print("FOUND", found)
    """
)


def test_supervisor_is_not_readable_nor_traceable(sandbox: Sandbox) -> None:
    r = sandbox.run(["python", "-c", PROBE_SUPERVISOR])
    assert r.exit_code == 0, r
    assert "FOUND []" in r.stdout, r.stdout
    if isinstance(sandbox, LocalSandbox):
        # The supervisor is PID 1 of the sandbox; commands run as the same uid as it (65534 as root, the
        # user otherwise): only its not being dumpable keeps its descriptors out of reach.
        status = sandbox.run("grep -E '^(Uid|Pid):' /proc/1/status").stdout
        assert "Uid:" in status, status


SIGNALS = textwrap.dedent(
    """
    import os, signal
    sent = 0
    for sig in sorted(signal.valid_signals()):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            os.kill(1, sig); sent += 1
        except OSError:
            pass
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        try:
            os.kill(1, sig); sent += 1
        except OSError:
            pass
    print("sent", sent)
    """
)


def test_signals_to_the_supervisor_change_nothing(sandbox: Sandbox) -> None:
    s = sandbox.session(["python", "worker.py"])
    generation = getattr(sandbox, "_generation", None)
    try:
        pid = s.request({}).value["pid"]
        r = sandbox.run(["python", "-c", SIGNALS])
        assert r.exit_code == 0 and r.stdout.startswith("sent"), r
        r = sandbox.run(["sh", "-c", "echo alive; exit 9"])
        assert (r.exit_code, r.stdout, r.timed_out) == (9, "alive\n", False), r
        reply = s.request({})
        assert reply.ok and not reply.restarted and reply.value["pid"] == pid, reply  # the worker lived on
    finally:
        s.close()
    if generation is not None:
        assert sandbox._generation == generation  # type: ignore[attr-defined]


def test_tmp_is_private(confined: Executor, tmp_path: Path) -> None:
    canary = "canary-" + secrets.token_hex(8)
    host_file = Path("/tmp") / f"execgym-host-{canary}"
    host_file.write_text(canary)
    try:
        with confined.sandbox() as a, confined.sandbox() as b:
            assert a.run(f"echo {canary} > /tmp/a-{canary} && echo {canary} > /dev/shm/a-{canary}").ok
            for sb in (a, b):
                r = sb.run("ls -A /tmp /dev/shm; cat /tmp/execgym-host-* 2>/dev/null; true")
                assert host_file.name not in r.stdout and (sb is a or canary not in r.stdout), r
            assert not (Path("/tmp") / f"a-{canary}").exists() and not Path(f"/dev/shm/a-{canary}").exists()
    finally:
        host_file.unlink()


# -------------------------------------------------------------------------- the host against its supervisor


_SEND = """    def send(self, msg: dict) -> None:
        try:
            self.sock.send(json.dumps(msg).encode())
"""


def _evil_supervisor(forgery: str, *, before: bool) -> str:
    """The real supervisor, but sending ``forgery`` (a Python expression over ``msg``) beside each exit."""
    source = local_mod._AGENT_SOURCE
    assert _SEND in source, "the supervisor's send() changed: update this test"
    forge = f"            if msg.get('op') == 'exit': self.sock.send({forgery})\n"
    real = "            self.sock.send(json.dumps(msg).encode())\n"
    body = forge + real if before else real + forge
    return source.replace(_SEND, "    def send(self, msg: dict) -> None:\n        try:\n" + body)


BAD_MESSAGES = {
    "not json": "b'garbage{'",
    "invalid utf-8": "b'\\xff\\xfe{'",
    "not an object": "b'[1, 2]'",
    "no op": "b'{}'",
    "unknown op": "json.dumps({'op': 'pwned', 'id': msg['id']}).encode()",
    "exit without id": "json.dumps({'op': 'exit'}).encode()",
    "exit of a job not running": "json.dumps({**msg, 'id': 10 ** 9}).encode()",
    "exit with a string code": "json.dumps({**msg, 'code': '0'}).encode()",
    "exit with a float code": "json.dumps({**msg, 'code': 0.5}).encode()",
    "exit with NaN cpu": "json.dumps({**msg, 'cpu_s': float('nan')}).encode()",
    "exit with a bool id": "json.dumps({**msg, 'id': True}).encode()",
    "error without text": "json.dumps({'op': 'error', 'id': msg['id'], 'error': 3}).encode()",
    "second ready": "json.dumps({'op': 'ready', 'pid': 1}).encode()",
    "deep nesting": "b'[' * 100000",
    "truncated": "json.dumps('x' * 150000).encode()",
}


@pytest.mark.parametrize("before", [True, False], ids=["before-exit", "after-exit"])
@pytest.mark.parametrize("forgery", list(BAD_MESSAGES), ids=list(BAD_MESSAGES))
def test_host_survives_a_supervisor_breaking_the_protocol(
    forgery: str, before: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = LocalExecutor()
    if not ex.use_bwrap:
        pytest.skip(f"bubblewrap unusable here ({ex.bwrap_reason})")
    genuine = local_mod._AGENT_SOURCE
    monkeypatch.setattr(local_mod, "_AGENT_SOURCE", _evil_supervisor(BAD_MESSAGES[forgery], before=before))
    with ex.sandbox() as sb:
        outcomes = []
        for i in range(3):
            try:
                r = sb.run(["sh", "-c", f"echo real{i}; exit {i + 2}"])
            except InfraError as e:
                assert "invalid control message" in str(e) or "supervisor" in str(e), e
                outcomes.append("InfraError")
            else:
                assert (r.exit_code, r.stdout, r.timed_out) == (i + 2, f"real{i}\n", False), r
                outcomes.append("genuine")
        assert "InfraError" in outcomes, f"the bad message went unnoticed: {outcomes}"
        sup = sb._sup
        assert sup is not None
        if sup.fault is not None:
            assert sup.dead and sup.proc.poll() is not None  # killed, and every command with it
        # Sessions: the same, never another exception.
        s = sb.session(["sh", "-c", "while read l; do echo '{\"ok\": 1}'; done"])
        try:
            for _ in range(2):
                try:
                    reply = s.request({})
                except InfraError:
                    continue
                assert reply.value in ({"ok": 1}, None), reply
        finally:
            s.close()
        # A trustworthy supervisor again: the sandbox recovers on a fresh one, with genuine results.
        monkeypatch.setattr(local_mod, "_AGENT_SOURCE", genuine)
        if sb._sup is not None:
            sb._sup.kill()
        r = sb.run(["sh", "-c", "echo after; exit 4"])
        assert (r.exit_code, r.stdout) == (4, "after\n"), r


def test_host_survives_a_supervisor_that_never_says_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = LocalExecutor()
    if not ex.use_bwrap:
        pytest.skip(f"bubblewrap unusable here ({ex.bwrap_reason})")
    source = local_mod._AGENT_SOURCE
    ready = 'self.send({"op": "ready", "pid": os.getpid()})'
    assert ready in source
    for bad in ("b'garbage{'", "json.dumps({'op': 'exit', 'id': 1, 'code': 0, 'killed': False, 'cpu_s': 0}).encode()"):
        monkeypatch.setattr(local_mod, "_AGENT_SOURCE", source.replace(ready, f"self.sock.send({bad})"))
        with ex.sandbox() as sb, pytest.raises(InfraError, match="failed to start"):
            sb.run("true")
