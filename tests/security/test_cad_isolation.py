"""CAD: two envs whose agent workers are forks of one shared fork server cannot reach each other.

Each env's programs run in namespaces of their own (user, mount, PID, IPC, network) with private work
directory, temporary directories and ``/proc``. Both programs below run at the same time, in two real envs of
one process on the local sandbox: one holds files, a socket and a detached process; the other looks for them,
writes where they would be and signals every process it can.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import threading
import time
from collections.abc import Callable

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cadquery") is None, reason="CadQuery is not installed")

TASK = "flange-medium-1001"
BOX = "import cadquery as cq\nresult = cq.Workplane().box(1, 1, 1)\n"

# The victim: secrets in every writable place, an abstract unix socket, a detached child; then it takes the name
# READY (its ready marker, which the test watches for in /proc: nothing of the holder's own places is visible
# outside its namespaces), waits, and checks that all of it is untouched and that nothing was planted next to it.
HOLDER = '''
import ctypes, os, socket, time
places = [".", os.environ.get("TMPDIR") or "/tmp", "/tmp", "/dev/shm"]
for d in places:
    with open(os.path.join(d, "holder-secret"), "w") as f:
        f.write("SECRET")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\\0execgym-holder")
s.listen(1)
if os.fork() == 0:
    os.setsid()
    time.sleep(60)
    os._exit(0)
ctypes.CDLL(None).prctl(15, b"READY", 0, 0, 0)  # PR_SET_NAME
time.sleep(6.0)
intact = all(open(os.path.join(d, "holder-secret")).read() == "SECRET" for d in places)
planted = sorted(n for d in places for n in os.listdir(d) if n.startswith("intruder"))
print("HOLDER intact", intact, "planted", planted)
import cadquery as cq
result = cq.Workplane().box(1, 1, 1)
'''

# The attacker: looks for the holder's files, processes and socket, writes into its places, signals everything.
INTRUDER = '''
import os, signal, socket
places = [".", os.environ.get("TMPDIR") or "/tmp", "/tmp", "/dev/shm"]
found = sorted(os.path.join(d, n) for d in places for n in os.listdir(d) if "holder" in n)
for d in places:
    for name in ("holder-secret", "intruder"):
        try:
            with open(os.path.join(d, name), "w") as f:
                f.write("OWNED")
        except OSError:
            pass
procs = [p for p in os.listdir("/proc") if p.isdigit()]
visible = []
for pid in range(2, 4096):
    if pid == os.getpid():
        continue
    try:
        os.kill(pid, 0)
        visible.append(pid)
    except OSError:
        pass
try:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect("\\0execgym-holder")
    reached = True
except OSError:
    reached = False
print("INTRUDER found", found, "procs", procs, "visible", len(visible), "socket", reached, flush=True)
os.kill(-1, signal.SIGKILL)
'''


def run(env, code: str):
    return env.step({"name": "run_cadquery", "arguments": {"code": code}})


def wait_for_process_named(name: str, running: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait until some process of this machine has taken ``name`` (``/proc/<pid>/comm``), while ``running()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running():
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == name:
                        return
            except OSError:
                continue
        time.sleep(0.01)
    raise AssertionError(f"no process took the name {name!r} (the program ended, or {timeout:g} s passed)")


def test_two_envs_agent_programs_cannot_reach_each_other() -> None:
    from execgym.envs.cad.env import CADModelEnv
    from execgym.executor import LocalExecutor

    executor = LocalExecutor()
    holder_env = CADModelEnv(dataset="bundled", executor=executor, run_timeout_s=20.0, memory_mb=768,
                            fork_agent_workers=True)
    intruder_env = CADModelEnv(dataset="bundled", executor=executor, run_timeout_s=20.0, memory_mb=768,
                            fork_agent_workers=True)
    try:
        holder_env.reset(options={"task_id": TASK})
        intruder_env.reset(options={"task_id": TASK})
        assert holder_env.session.server is intruder_env.session.server  # one fork server for both
        holder_pid = holder_env.session.pid
        results: dict[str, str] = {}
        times: dict[str, float] = {}
        ready = f"cadhold{secrets.token_hex(4)}"  # a process name (at most 15 characters) no other process has

        def hold() -> None:
            times["holder_start"] = time.monotonic()
            results["holder"] = run(holder_env, HOLDER.replace("READY", ready))[0]
            times["holder_end"] = time.monotonic()

        thread = threading.Thread(target=hold)
        thread.start()
        # Then the holder's files, socket and child exist, and it waits 6 s before it checks them.
        wait_for_process_named(ready, thread.is_alive)
        results["intruder"] = run(intruder_env, INTRUDER)[0]
        times["intruder_end"] = time.monotonic()
        thread.join(120)
        holder, intruder = results["holder"], results["intruder"]
        assert times["intruder_end"] < times["holder_end"]  # the intruder ran while the holder's program lived
        assert "INTRUDER found [] procs [] visible 0 socket False" in intruder, intruder
        assert holder.startswith("OK") and "HOLDER intact True planted []" in holder, holder
        assert holder_env.session.pid == holder_pid and holder_env.session.starts == 1  # its worker was not hit
        obs, _, _, _, _ = run(intruder_env, BOX)  # kill(-1) hit only the intruder's own namespace
        assert obs.startswith("OK"), obs
        look = (
            "import os\n"
            "print('LEFT', [n for n in os.listdir('/tmp') if n[:4] in ('hold', 'intr')], os.listdir('/dev/shm'))\n"
        )
        obs, _, _, _, _ = run(holder_env, look + BOX)
        assert "LEFT [] []" in obs, obs  # and the holder's own next run starts clean
    finally:
        holder_env.close()
        intruder_env.close()
        executor.close()
