"""The Docker warm pool: used containers never come back, removal runs in the background, nothing leaks.

Real dockerd (``@pytest.mark.docker``). Containers are counted by the ``execgym.executor`` label of the
executor under test, so other runs sharing the daemon do not disturb the counts. No wall-clock checks:
the reset time is measured by ``benchmarks/swe.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from execgym.executor import InfraError, Limits, MiB, SandboxSpec
from execgym.executor.docker import EXECUTOR_ID, DockerExecutor, _Slot
from tests.executor.conftest import require_docker

pytestmark = pytest.mark.docker

LIMITS = Limits(memory_bytes=256 * MiB)
WITH_FILES = SandboxSpec(files={"pkg/a.py": "A = 1\n", "b.txt": "b"}, limits=LIMITS)
EMPTY = SandboxSpec(limits=LIMITS)
MARK = "echo used > /work/.episode-marker && echo used > /tmp/.episode-marker"
UNUSED = "test ! -e /work/.episode-marker && test ! -e /tmp/.episode-marker && echo fresh"


@pytest.fixture
def ex() -> Iterator[DockerExecutor]:
    require_docker()
    executor = DockerExecutor(pool_size=2)
    yield executor
    executor.close()
    assert _mine(executor) == ([], [])


def _mine(ex: DockerExecutor) -> tuple[list[str], list[str]]:
    """This executor's containers and volumes, as the daemon sees them."""
    mine = {"label": f"{EXECUTOR_ID}={ex.id}"}
    containers = [c["Id"] for c in ex.client.api.containers(all=True, filters=mine)]  # no inspect: no race
    volumes = [v.name for v in ex.client.volumes.list(filters=mine)]
    return containers, volumes


def test_a_used_container_is_never_handed_out_again(ex: DockerExecutor) -> None:
    seen: list[str] = []
    for i in range(6):
        spec = WITH_FILES if i % 2 == 0 else EMPTY  # both the pre-started loader and the empty path
        with ex.sandbox(spec) as sb:
            assert sb.run(UNUSED).stdout == "fresh\n", f"episode {i} got a used container"
            if spec is WITH_FILES:
                assert sb.read_file("pkg/a.py") == b"A = 1\n"
            assert sb.run(MARK).ok
            seen.append(sb.container.id)  # type: ignore[attr-defined]
    assert len(set(seen)) == len(seen)
    assert ex.wait_removed(timeout=60)
    containers, _ = _mine(ex)
    assert not set(seen) & set(containers)  # every used one is gone; only the pool's fresh ones remain
    assert ex.removal_errors == []


def test_envs_sharing_an_executor_leak_nothing() -> None:
    from execgym.envs.swe.env import SWERepairEnv

    require_docker()
    ex = DockerExecutor(pool_size=2)
    envs = [SWERepairEnv(executor=ex) for _ in range(3)]
    ids: list[str] = []
    lock = threading.Lock()
    try:
        task_ids = [t.id for t in envs[0].tasks][:3]

        def episodes(env: SWERepairEnv) -> None:
            for task_id in task_ids:
                env.reset(options={"task_id": task_id})
                obs, *_ = env.step({"name": "bash", "arguments": {"command": UNUSED + " && " + MARK}})
                assert "fresh" in obs, obs
                with lock:
                    ids.append(env.sandbox.container.id)  # type: ignore[union-attr]

        with ThreadPoolExecutor(len(envs)) as threads:  # as a vector env or an async rollout would
            for future in [threads.submit(episodes, env) for env in envs]:
                future.result()
        assert len(ids) == len(set(ids)) == 3 * len(task_ids)
    finally:
        for env in envs:
            env.close()
        ex.close()
    assert _mine(ex) == ([], [])  # the pool's, the episodes' and the grading containers: all removed
    assert ex.removal_errors == []


def test_a_failed_background_removal_does_not_crash(ex: DockerExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    real = _Slot.destroy
    failed: dict[str, _Slot] = {}

    def flaky(slot: _Slot) -> None:
        if threading.current_thread().name == "execgym-docker-reaper":
            failed[slot.container.id] = slot
            raise docker.errors.APIError("simulated daemon failure")
        real(slot)

    monkeypatch.setattr(_Slot, "destroy", flaky)
    sb = ex.sandbox(WITH_FILES)
    cid = sb.container.id  # type: ignore[attr-defined]
    sb.close()  # returns: the removal runs (and fails) in the background
    assert ex.wait_removed(timeout=60)
    assert cid in failed and any("simulated daemon failure" in e for e in ex.removal_errors)
    with ex.sandbox(WITH_FILES) as sb2:  # the executor goes on
        assert sb2.run(UNUSED).stdout == "fresh\n"
    assert ex.wait_removed(timeout=60)
    monkeypatch.setattr(_Slot, "destroy", real)
    # A container whose removal failed keeps its labels, so gc (here: by hand) finds it.
    left, _ = _mine(ex)
    assert cid in left
    for slot in failed.values():
        real(slot)


def test_a_killed_pool_container_is_replaced(ex: DockerExecutor) -> None:
    for spec in (WITH_FILES, EMPTY):
        assert ex.warm(spec, timeout=120)
        pool = next(p for p in ex._pools.values() if p.limits == spec.limits)
        victims = [slot.container.id for slot in pool.ready]
        for cid in victims:  # what a daemon restart or the OOM killer does to a waiting container
            ex.client.containers.get(cid).kill()
        deadline = time.monotonic() + 30
        while any(ex.client.containers.get(c).status == "running" for c in victims):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with ex.sandbox(spec) as sb:
            assert sb.container.id not in victims  # type: ignore[attr-defined]
            assert sb.run(UNUSED).stdout == "fresh\n"
        assert ex.warm(spec, timeout=120)  # refilled with live ones
        assert not {slot.container.id for slot in pool.ready} & set(victims)
    assert ex.wait_removed(timeout=60)
    left, _ = _mine(ex)
    assert not set(victims) & set(left)


def test_a_failed_background_creation_is_an_infra_error_at_the_next_acquire() -> None:
    require_docker()
    ex = DockerExecutor(pool_size=1)
    real = ex._start_loader

    def broken(slot: _Slot) -> object:  # the container starts, its loader does not: never handed out
        raise InfraError("simulated: the loader did not start")

    ex._start_loader = broken  # type: ignore[method-assign]
    try:
        assert not ex.warm(EMPTY, timeout=3)
        pool = next(iter(ex._pools.values()))
        deadline = time.monotonic() + 60
        while pool.error is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(InfraError, match="warm pool could not start.*loader did not start"):
            ex.sandbox(EMPTY)
        ex._start_loader = real  # type: ignore[method-assign]
        assert ex.warm(EMPTY, timeout=120)
        with ex.sandbox(EMPTY) as sb:
            assert sb.run("echo ok").stdout == "ok\n"
    finally:
        ex._start_loader = real  # type: ignore[method-assign]
        ex.close()
    assert _mine(ex) == ([], [])  # the containers whose loader failed were removed too


def test_closing_the_executor_removes_everything_at_once() -> None:
    require_docker()
    ex = DockerExecutor(pool_size=2)
    sandboxes = [ex.sandbox(WITH_FILES) for _ in range(3)]
    for sb in sandboxes:
        sb.close()  # queued for removal
    ex.close()  # waits for the queue and for a container still being created
    assert _mine(ex) == ([], [])
    # After close, a sandbox made without a pool still works and its close removes it at once.
    late = DockerExecutor(pool_size=0)
    sb = late.sandbox(EMPTY)
    late.close()
    assert sb.run("echo still").stdout == "still\n"
    sb.close()
    assert _mine(late) == ([], [])
