"""Docker-only behaviour: container hardening, labels, warm pool, orphan collection."""

from __future__ import annotations

import pytest

from execgym.executor import Executor, Limits, MiB, SandboxSpec
from execgym.executor.docker import LABEL, OWNER_HOST, OWNER_PID, DockerExecutor, gc_sandboxes
from tests.executor.conftest import require_docker

pytestmark = pytest.mark.docker


def test_container_is_locked_down(docker_executor: Executor) -> None:
    spec = SandboxSpec(limits=Limits(memory_bytes=300 * MiB, max_processes=40, disk_bytes=32 * MiB))
    with docker_executor.sandbox(spec) as sb:
        attrs = sb.container.attrs  # type: ignore[attr-defined]
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == 300 * MiB and host["MemorySwap"] == 300 * MiB
        assert host["PidsLimit"] >= 40 and host["NanoCpus"] > 0
        assert attrs["Config"]["User"] == "1000:1000"
        labels = attrs["Config"]["Labels"]
        assert labels[LABEL] == "1" and labels[OWNER_PID].isdigit() and labels[OWNER_HOST]
        assert sb.run("id -u").stdout.strip() == "1000"
        r = sb.run("head -c 40000000 /dev/zero > big.bin", timeout=30)
        assert r.exit_code != 0  # the 32 MiB work volume is full
        assert sb.run("touch /opt/x").exit_code != 0


def test_warm_pool_hands_out_waiting_containers() -> None:
    # What makes an acquire cheap is that it takes a container already started; the time it saves is
    # measured by benchmarks/executor.py, not asserted here.
    require_docker()
    ex = DockerExecutor(pool_size=1)
    try:
        spec = SandboxSpec(limits=Limits(memory_bytes=200 * MiB))
        assert ex.warm(spec, timeout=60)
        waiting = {slot.container.id for pool in ex._pools.values() for slot in pool.ready}
        assert len(waiting) == 1
        sb = ex.sandbox(spec)
        assert sb.container.id in waiting  # taken from the pool, not started on demand
        assert sb.run("echo warm").stdout == "warm\n"
        sb.close()
        assert ex.warm(spec, timeout=60)
        refilled = {slot.container.id for pool in ex._pools.values() for slot in pool.ready}
        assert refilled and not refilled & waiting  # the pool refilled with a new container
    finally:
        ex.close()
    left = {c.id for c in ex.client.containers.list(all=True, filters={"label": f"{LABEL}=1"})}
    assert not (waiting | refilled) & left  # closing the executor removes its warm containers


def test_gc_removes_orphans_only(docker_executor: Executor) -> None:
    client = docker_executor.client  # type: ignore[attr-defined]
    ex = docker_executor
    with ex.sandbox() as live:
        dead = ex._create_slot("execgym/python:0.1", Limits())  # type: ignore[attr-defined]
        # Re-label the second container as if its owner had crashed: Docker labels are immutable, so
        # make a copy of it with a dead owner pid.
        orphan = client.containers.create(
            "execgym/python:0.1",
            ["sleep", "1000"],
            labels={LABEL: "1", OWNER_PID: "999999999", OWNER_HOST: dead.container.labels[OWNER_HOST]},
            network_mode="none",
        )
        dead.destroy()
        removed = gc_sandboxes(client=client)
        assert removed >= 1
        ids = {c.id for c in client.containers.list(all=True, filters={"label": f"{LABEL}=1"})}
        assert orphan.id not in ids
        assert live.container.id in ids  # type: ignore[attr-defined]
        assert live.run("echo alive").ok


def test_vanished_container_is_an_infra_error(docker_executor: Executor) -> None:
    from execgym.executor import InfraError

    sb = docker_executor.sandbox()
    sb.container.remove(force=True)  # type: ignore[attr-defined]
    with pytest.raises(InfraError):
        sb.run("echo hi")
    with pytest.raises(InfraError):
        sb.write_files({"a.txt": "x"})
    sb.close()


def test_cad_image_imports_cadquery() -> None:
    require_docker("cad", optional_image=True)
    ex = DockerExecutor(pool_size=0)
    try:
        with ex.sandbox(SandboxSpec(image="cad")) as sb:
            r = sb.run(
                ["python", "-c", "import cadquery as cq; print(cq.Workplane().box(1, 2, 3).val().Volume())"],
                timeout=120,
            )
    finally:
        ex.close()
    assert r.exit_code == 0, r.stderr[-2000:]
    assert abs(float(r.stdout) - 6.0) < 1e-6
