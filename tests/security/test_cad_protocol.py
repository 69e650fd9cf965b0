"""CAD: an agent's program cannot forge its worker's reply, outlive its step, or leave anything for the next episode.

Real CadQuery workers, on the local sandbox and (``@pytest.mark.docker``) in the ``execgym/cad:0.1`` image.
Each program below is an attack a policy can write: it runs as the agent's code inside its worker's fork.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator

import pytest

from tests.executor.conftest import require_docker

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cadquery") is None, reason="CadQuery is not installed")

TASK = "flange-medium-1001"
BOX = "import cadquery as cq\nresult = cq.Workplane().box(1, 1, 1)\n"

# Write a framed reply (8-byte length + JSON, the fork's result protocol) into every fd the program holds, then
# exit before the trusted code can write the real one.
FORGE = '''
import os, json, struct
msg = json.dumps({reply}).encode()
for fd in range(3, 256):
    try:
        os.write(fd, struct.pack("<Q", len(msg)) + msg)
    except OSError:
        pass
os._exit(0)
'''

# Open the worker's own request / reply pipes through /proc and write a JSON line into each.
PROC_FD = '''
import os
hits = []
for fd in range(64):  # by number: listing /proc/<worker>/fd may itself be refused
    try:
        f = os.open(f"/proc/{os.getppid()}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
        os.write(f, b'{"ok": true, "brep": "AAAA"}\\n')
        os.close(f)
        hits.append(fd)
    except OSError:
        pass
print("HITS", hits)
'''

# Detach a process (fork + setsid + fork) that keeps trying to write forged replies into the worker's pipes.
SURVIVOR = '''
import os, time
r, w = os.pipe()
worker = os.getppid()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        open("/tmp/survivor-was-here", "w").close()
        while True:
            try:
                for fd in os.listdir(f"/proc/{worker}/fd"):
                    try:
                        f = os.open(f"/proc/{worker}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
                        os.write(f, b'{"ok": true, "brep": "AAAA", "run_s": 0}\\n')
                        os.close(f)
                    except OSError:
                        pass
            except OSError:
                pass
            time.sleep(0.02)
    os._exit(0)
os.close(w)
print("SURVIVOR", os.read(r, 32).decode())
import cadquery as cq
result = cq.Workplane().box(1, 1, 1)
'''

PLANT = '''
import os
for d in (".", os.environ.get("TMPDIR") or "/tmp", "/tmp", "/dev/shm"):
    try:
        os.makedirs(os.path.join(d, "planted", "deep"), exist_ok=True)
        open(os.path.join(d, "planted", "deep", "x.py"), "w").write("x = 1")
        os.chmod(os.path.join(d, "planted"), 0)
    except OSError:
        pass
os.makedirs(".local/lib/python3.11/site-packages", exist_ok=True)
open(".local/lib/python3.11/site-packages/usercustomize.py", "w").write("import os; os._exit(3)")
import cadquery as cq
result = cq.Workplane().box(1, 1, 1)
'''

LOOK = '''
import os
found = [d for d in (".", os.environ.get("TMPDIR") or "/tmp", "/tmp", "/dev/shm")
         if os.path.lexists(os.path.join(d, "planted"))]
found += [p for p in (".local", "/tmp/survivor-was-here") if os.path.lexists(p)]
print("FOUND", found)
import cadquery as cq
result = cq.Workplane().box(1, 1, 1)
'''


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def env(request) -> Iterator:
    from execgym.envs.cad.env import CADModelEnv

    if request.param == "docker":
        require_docker("cad")
    e = CADModelEnv(dataset="bundled", executor=request.param, run_timeout_s=8.0, memory_mb=768, max_turns=3)
    yield e
    e.close()


def run(env, code: str):
    return env.step({"name": "run_cadquery", "arguments": {"code": code}})


@pytest.mark.parametrize(
    "reply",
    [
        '{"ok": True, "measurements": {"valid_solid": 1e12, "volume": 1e12}, "brep": "!!!!not base64"}',
        '{"ok": True, "brep": "QUJD"}',  # valid base64, not a BREP
        '{"ok": True, "brep": 12345}',
        '{"ok": False, "kind": "worker", "error": "please restart me"}',
        '{"ok": True, "brep": "QUJD", "measurements": {"valid_solid": 1.0}}',
        '[1, 2, 3]',  # not an object: the worker reads it as a process that died without a result
    ],
)
def test_a_forged_reply_earns_nothing_and_is_flagged(env, reply: str) -> None:
    env.reset(options={"task_id": TASK})
    obs, _, _, _, info = run(env, FORGE.format(reply=reply))
    assert obs.startswith("ERROR"), obs
    components = info["reward_components"]
    assert components["executed"] == 0.0 and components["valid_solid"] == 0.0
    assert all(0.0 <= v <= 1.0 for v in components.values())
    assert not info.get("infra_error")
    run(env, "x = 1\n")  # no part
    # The episode is truncated here (max_turns=3) and graded on the last part: none was built.
    obs, reward, terminated, truncated, info = run(env, FORGE.format(reply=reply))
    assert truncated and not terminated and reward == 0.0 and not info.get("infra_error")
    flagged = any("forged" in flag for flag in info["hack_flags"])
    assert flagged == reply.startswith("{"), info["hack_flags"]


def test_a_forged_reply_after_a_real_part_does_not_replace_it(env) -> None:
    env.reset(options={"task_id": TASK})
    code = env.task.data["code"]
    obs, _, _, _, info = run(env, code)
    assert obs.startswith("OK") and info["reward_components"]["valid_solid"] == 1.0
    run(env, FORGE.format(reply='{"ok": True, "brep": "!!!"}'))
    # Truncation grades the last part that was really built (the reference), not the forged one; no exception.
    obs, reward, terminated, truncated, info = run(env, FORGE.format(reply='{"ok": True, "brep": "QUJD"}'))
    assert truncated and reward == 1.0 and info["reward_components"]["iou"] == pytest.approx(1.0)
    assert any("forged" in flag for flag in info["hack_flags"])


def test_reported_numbers_come_from_the_part_not_the_program(env) -> None:
    env.reset(options={"task_id": TASK})
    # A program that patches the measuring code it shares its process with: the numbers do not move.
    patched = BOX + "cq.Shape.Volume = lambda self: 1e12\ncq.Shape.isValid = lambda self: True\n"
    obs, _, _, _, info = run(env, patched)
    assert "volume: 1 mm^3" in obs, obs
    assert info["reward_components"]["valid_solid"] == 0.0  # a unit cube is not this flange


def test_the_worker_pipes_cannot_be_opened_through_proc(env) -> None:
    env.reset(options={"task_id": TASK})
    obs, _, _, _, info = run(env, PROC_FD + BOX)
    assert "HITS []" in obs, obs
    assert obs.startswith("OK") and "volume: 1 mm^3" in obs
    obs, _, _, _, _ = run(env, BOX)  # the next reply is the next run's, not something written earlier
    assert obs.startswith("OK") and "volume: 1 mm^3" in obs


def test_no_process_outlives_its_step_and_episodes_share_nothing(env) -> None:
    env.reset(options={"task_id": TASK})
    obs, _, _, _, _ = run(env, SURVIVOR)
    match = re.search(r"SURVIVOR (\d+)", obs)
    assert match, obs
    pid = int(match.group(1))
    obs, _, _, _, _ = run(env, PLANT)
    assert obs.startswith("OK"), obs
    env.reset(options={"task_id": TASK})  # the next episode, same worker
    check = (
        f"import os\ntry:\n    os.kill({pid}, 0)\n    print('ALIVE')\n"
        "except ProcessLookupError:\n    print('GONE')\n"
    )
    obs, _, _, _, _ = run(env, check + LOOK)
    assert "GONE" in obs and "FOUND []" in obs, obs
    code = env.task.data["code"]
    _, reward, terminated, _, info = env.step({"name": "submit", "arguments": {"code": code}})
    assert terminated and reward == 1.0 and not info.get("infra_error")
