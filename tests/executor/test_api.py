"""get_executor resolution, spec/limits validation, the CLI verbs and image-build helpers."""

from __future__ import annotations

import argparse

import pytest

from execgym.executor import (
    ENV_VAR,
    ExecResult,
    Limits,
    LocalExecutor,
    MiB,
    SandboxSpec,
    get_executor,
)
from execgym.executor.base import looks_out_of_memory, normalize_cmd
from execgym.executor.cli import register
from execgym.executor.docker import resolve_image
from execgym.executor.images import ASSETS, IMAGES, _pip_platforms, build_images, context_files, context_hash


def test_get_executor_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert isinstance(get_executor(), LocalExecutor)
    monkeypatch.setenv(ENV_VAR, "")
    assert get_executor().name == "local"
    monkeypatch.setenv(ENV_VAR, "LOCAL")
    assert get_executor().name == "local"
    ex = LocalExecutor(use_bwrap=False)
    assert get_executor(ex) is ex
    assert get_executor("local", use_bwrap=False).use_bwrap is False  # type: ignore[attr-defined]
    monkeypatch.setenv(ENV_VAR, "nope")
    with pytest.raises(ValueError, match="unknown executor 'nope'.*EXECGYM_EXECUTOR"):
        get_executor()
    with pytest.raises(ValueError, match="'local', 'docker'"):
        get_executor("kubernetes")
    with pytest.raises(TypeError):
        get_executor(ex, use_bwrap=False)


@pytest.mark.docker
def test_get_executor_docker_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.executor.conftest import require_docker

    require_docker()
    monkeypatch.setenv(ENV_VAR, "docker")
    ex = get_executor(pool_size=0)
    assert ex.name == "docker"
    ex.close()


def test_limits_validation() -> None:
    assert Limits().network is False
    for bad in (
        {"wall_time_s": 0},
        {"memory_bytes": 1},
        {"max_processes": 1},
        {"output_bytes": 0},
        {"cpu_time_s": -1},
        {"disk_bytes": 10},
    ):
        with pytest.raises(ValueError):
            Limits(**bad)  # type: ignore[arg-type]


def test_spec_is_frozen_and_hashable() -> None:
    spec = SandboxSpec(files={"a": "b"}, env={"X": "1"}, limits=Limits(memory_bytes=64 * MiB))
    with pytest.raises(AttributeError):
        spec.image = "cad"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.files["c"] = "d"  # type: ignore[index]
    assert hash(spec) == hash(SandboxSpec(files={"a": "other"}, limits=Limits(memory_bytes=64 * MiB), env={"X": "1"}))
    assert {Limits(): 1}[Limits()] == 1
    with pytest.raises(ValueError):
        SandboxSpec(env={"A=B": "x"})


def test_helpers() -> None:
    assert normalize_cmd("ls") == ["/bin/sh", "-c", "ls"]
    with pytest.raises(ValueError):
        normalize_cmd([])
    assert looks_out_of_memory(b"std::bad_alloc", -6, killed_by_us=False, memory_limited=True)
    assert not looks_out_of_memory(b"MemoryError", 1, killed_by_us=False, memory_limited=False)
    assert not looks_out_of_memory(b"", -11, killed_by_us=False, memory_limited=True)
    assert ExecResult(0, "", "", 0.0, True, False, False).ok is False
    assert resolve_image("cad") == "execgym/cad:0.1"
    with pytest.raises(ValueError):
        resolve_image("nonsense")


def test_cli_register() -> None:
    parser = argparse.ArgumentParser(prog="execgym")
    register(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args(["images", "build"])
    assert a.names == [] and a.offline is None and a.force is False
    a = parser.parse_args(["images", "build", "python", "cad", "--online", "--force"])
    assert a.names == ["python", "cad"] and a.offline is False and a.force
    assert parser.parse_args(["sandbox", "gc"]).all is False
    with pytest.raises(SystemExit):
        parser.parse_args(["images", "build", "--offline", "--online"])


def test_image_assets() -> None:
    for name in IMAGES:
        files = context_files(name)
        assert {"Dockerfile", "requirements.txt", "apt-packages.txt"} <= set(files)
        assert all(path.is_relative_to(ASSETS) for path in files.values())
        assert "ARG BASE" in files["Dockerfile"].read_text()
        assert context_hash(name) == context_hash(name)
    assert context_hash("python") != context_hash("cad")
    assert all(p.endswith(("_x86_64", "_aarch64")) or "linux_" in p for p in _pip_platforms())
    with pytest.raises(ValueError, match="unknown image"):
        build_images(["nope"])
