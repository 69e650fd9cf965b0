"""Faults injected into running episodes: the sandbox or worker killed from outside, mid-episode.

Per env, what happens is asserted precisely:

* SWE, local backend: the agent's processes SIGKILLed from outside change nothing the env sees (the work
  directory lives on the host; the edits survive). The sandbox supervisor (its bubblewrap / PID-1 process)
  SIGKILLed between steps: if the sandbox has already noticed the death (a race with its reader), the next
  command starts a new supervisor on the same host work dir and the episode goes on unharmed; otherwise that
  command reports ``info["infra_error"]`` ("supervisor is gone") and truncates the episode with reward 0.
  Both are asserted in full; the next ``reset`` works either way.
* SWE, docker backend: ``docker kill`` of the sandbox container (what a daemon restart does to it) cannot be
  recovered within the episode: the step returns an observation, ``info["infra_error"]`` is set and the
  episode is truncated (reward 0, so a trainer drops the sample). The next ``reset`` gets a fresh container.
* CAD: the CadQuery worker SIGKILLed between steps is restarted transparently (the next ``run_cadquery``
  succeeds). Its whole sandbox supervisor SIGKILLed: the next ``run_cadquery`` answers "the CAD worker
  process died ... and was restarted" as an ordinary tool error (the env cannot tell an outside kill from a
  program that kills its worker, which ``tests/envs/cad`` covers), no ``infra_error``, no truncation; the
  call after it succeeds.

After ``close()`` no process (local: no descendant of this test process) and no container (docker: none
labelled ``execgym.sandbox`` beyond those there before) is left behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import time
from typing import Any

import gymnasium as gym
import pytest

import execgym  # noqa: F401 - registers the env ids

HAVE_CADQUERY = importlib.util.find_spec("cadquery") is not None


def call(tool: str, /, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': tool, 'arguments': arguments})}</tool_call>"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a live process, from /proc (no psutil in the dev extras)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def descendants(root: int | None = None) -> set[int]:
    """Every process below ``root`` (default: this one), found by parent pid (``/proc/<pid>/stat`` is readable
    even for the undumpable processes whose ``environ`` is not)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _proc_stat(int(name))) is not None:
            children.setdefault(stat[1], []).append(int(name))
    found, todo = set(), [os.getpid() if root is None else root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """The pids still alive (zombies count as gone) after waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if (stat := _proc_stat(p)) is not None and stat[0] not in "ZX"}
        if alive:
            time.sleep(0.05)
    return alive


def sandbox_pids(sandbox: Any) -> set[int]:
    """Host pids of a local sandbox: its supervisor and every process marked with its id."""
    marker = f"EXECGYM_SANDBOX={sandbox.id}".encode()
    pids = set()
    if sandbox._sup is not None and sandbox._sup.proc.poll() is None:
        pids.add(sandbox._sup.proc.pid)
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    pids.add(int(name))
        except OSError:
            continue
    return pids


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert wait_gone(pids) == set()


@pytest.mark.parametrize("target", ["commands", "supervisor"])
def test_swe_local_sandbox_killed_mid_episode(target: str) -> None:
    before = descendants()
    env = gym.make("execgym/SWERepair-v0", executor="local", max_turns=6, bash_timeout_s=10).unwrapped
    try:
        env.reset(seed=0)
        obs, *_ = env.step(call("bash", command="echo kept > marker.txt; sleep 1000 & echo started"))
        assert "started" in obs
        supervisor = env.sandbox._sup.proc.pid
        kill_all({supervisor} if target == "supervisor" else sandbox_pids(env.sandbox) - {supervisor})
        obs, reward, terminated, truncated, info = env.step(call("bash", command="cat marker.txt"))
        assert env.observation_space.contains(obs)
        if target == "commands":  # the agent's own processes died: nothing for the env to notice
            assert "kept" in obs and not truncated and "infra_error" not in info
            obs, *_ = env.step(call("run_tests", selector=""))
            assert "passed" in obs or "failed" in obs
        elif info.get("infra_error"):  # the death was not yet noticed: reported, truncated, reward 0
            assert truncated and not terminated and reward == 0.0
            assert "supervisor is gone" in info["infra_error"] and "Infrastructure error" in obs
        else:  # noticed first: a new supervisor, same host work dir, nothing lost
            if "sandbox supervisor died" in obs:  # noticed while this command ran: reported, then recovered
                assert not truncated
                obs, *_ = env.step(call("bash", command="cat marker.txt"))
            assert "kept" in obs and not truncated
        env.reset(seed=1)
        obs, *_ = env.step(call("bash", command="echo fresh"))
        assert "fresh" in obs
    finally:
        env.close()
    assert wait_gone(descendants() - before) == set()


@pytest.mark.docker
def test_swe_docker_container_killed_is_an_infra_error() -> None:
    from tests.executor.conftest import require_docker

    require_docker()
    from execgym.executor.docker import LABEL, OWNER_PID, DockerExecutor

    executor = DockerExecutor(pool_size=1)
    client = executor.client
    mine = {"label": [f"{LABEL}=1", f"{OWNER_PID}={os.getpid()}"]}
    others = {c["Id"] for c in client.api.containers(all=True, filters=mine)}  # other tests' warm pools
    try:
        env = gym.make("execgym/SWERepair-v0", executor=executor, max_turns=6, bash_timeout_s=10).unwrapped
        try:
            env.reset(seed=0)
            obs, *_ = env.step(call("bash", command="echo alive"))
            assert "alive" in obs
            used = [env.sandbox.container.id]
            env.sandbox.container.kill()  # what a daemon restart (or an OOM of the container) does to it
            obs, reward, terminated, truncated, info = env.step(call("bash", command="echo again"))
            assert truncated and not terminated and reward == 0.0
            assert info["infra_error"], info
            assert env.observation_space.contains(obs) and "Infrastructure error" in obs
            env.reset(seed=0)  # a fresh container
            obs, *_ = env.step(call("bash", command="echo back"))
            assert "back" in obs
            used.append(env.sandbox.container.id)
            # A stopped (not removed) container: the same contract.
            env.sandbox.container.stop(timeout=0)
            obs, reward, terminated, truncated, info = env.step(call("run_tests", selector=""))
            assert truncated and info["infra_error"] and reward == 0.0
            env.reset(seed=1)
            obs, *_ = env.step(call("bash", command="echo back again"))
            assert "back again" in obs
            used.append(env.sandbox.container.id)
        finally:
            env.close()
        # The killed, the stopped and the healthy episode containers are all removed (in the background).
        assert executor.wait_removed(timeout=60)
        for cid in used:
            assert client.containers.list(all=True, filters={"id": cid}) == [], cid
    finally:
        executor.close()
    # A warm container still being created at close() is destroyed by the pool thread when it is ready.
    deadline = time.monotonic() + 30
    while (left := {c["Id"] for c in client.api.containers(all=True, filters=mine)} - others) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert left == set(), "containers left behind"


@pytest.mark.skipif(not HAVE_CADQUERY, reason="CadQuery is not installed (pip install execgym[cad])")
def test_cad_worker_killed_mid_episode_recovers() -> None:
    """One env (its start-up costs seconds): the worker killed, then the whole sandbox supervisor."""
    before = descendants()
    env = gym.make("execgym/CADModel-v0", max_turns=6, fork_agent_workers=False).unwrapped  # a sandbox of its own
    box = "result = cq.Workplane('XY').box(10, 10, 10)"
    try:
        for episode, target in enumerate(["worker", "supervisor"]):
            env.reset(seed=episode)
            obs, *_ = env.step(call("run_cadquery", code=box))
            assert obs.startswith("OK"), obs
            sandbox = env.session.sandbox
            supervisor = sandbox._sup.proc.pid
            # the CAD worker is undumpable (its environ is unreadable as a normal user): find it below the
            # sandbox's supervisor instead
            below = sandbox_pids(sandbox) | descendants(supervisor)
            pids = {supervisor} if target == "supervisor" else below - {supervisor}
            assert pids
            kill_all(pids)
            obs, reward, terminated, truncated, info = env.step(call("run_cadquery", code=box))
            assert not truncated and "infra_error" not in info
            if target == "supervisor" and not obs.startswith("OK"):
                assert "died or hung" in obs and "restarted" in obs, obs
                obs, *_ = env.step(call("run_cadquery", code=box))
            assert obs.startswith("OK"), (target, obs)
        env.reset(seed=5)
        obs, *_ = env.step(call("run_cadquery", code=box))
        assert obs.startswith("OK"), obs
    finally:
        env.close()
    assert wait_gone(descendants() - before) == set()
