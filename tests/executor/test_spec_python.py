"""``SandboxSpec.python``: a sandbox whose ``python`` is a virtual environment's, on the local backend."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from execgym.executor import Executor, InfraError, LocalExecutor, SandboxSpec
from execgym.executor.local import bwrap as bwrap_mod
from tests.executor.conftest import bwrap_local

HOST_ONLY = "cachetools"  # a dependency of execgym: installed on the host, never in the test venv
SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
REPORT = (
    "import importlib.util, json, sys; print(json.dumps({'prefix': sys.prefix, 'exe': sys.executable, "
    f"'own': importlib.util.find_spec('venvmod') is not None, 'host': importlib.util.find_spec({HOST_ONLY!r}) "
    "is not None}))"
)


def make_venv(root: Path, *, system_site: bool = False) -> Path:
    """A venv without pip holding one module, ``venvmod``; returns its ``bin/python``."""
    args = [sys.executable, "-m", "venv", "--without-pip", *(["--system-site-packages"] if system_site else [])]
    subprocess.run([*args, str(root)], check=True, capture_output=True)
    (root / SITE / "venvmod.py").write_text("ANSWER = 42\n")
    return root / "bin" / "python"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert importlib.util.find_spec(HOST_ONLY) is not None, f"the host needs {HOST_ONLY} for this test"
    return make_venv(tmp_path_factory.mktemp("spec-python") / "venv")


def report(ex: Executor, python: Path) -> dict:
    with ex.sandbox(SandboxSpec(python=str(python))) as sb:
        r = sb.run(["python", "-c", REPORT], timeout=60)
        assert r.ok, r.stderr
        return json.loads(r.stdout)


def test_venv_interpreter_runs_with_its_own_packages_only(venv: Path) -> None:
    out = report(bwrap_local(), venv)
    assert out["prefix"] == str(venv.parent.parent)
    assert out["exe"] == str(venv)
    assert out["own"] is True
    assert out["host"] is False, f"{HOST_ONLY} (host only) imports inside the venv's sandbox"


def test_venv_sandbox_path_and_hidden_host_site_packages(venv: Path) -> None:
    host_site = [p for p in bwrap_mod._interpreter_info(sys.executable)["site"] if os.path.isdir(p)]
    assert host_site and any(os.listdir(p) for p in host_site)
    with bwrap_local().sandbox(SandboxSpec(python=str(venv))) as sb:
        assert sb.run("echo $PATH").stdout.split(":")[0] == str(venv.parent)
        assert sb.run("command -v python").stdout.strip() == str(venv)
        for folder in host_site:
            listed = sb.run(["ls", "-A", folder])
            assert listed.ok and listed.stdout == "", f"the host's {folder} is visible: {listed.stdout[:200]}"


def test_venv_is_read_only_under_bwrap(venv: Path) -> None:
    target = venv.parent.parent / SITE / "planted.py"
    with bwrap_local().sandbox(SandboxSpec(python=str(venv))) as sb:
        r = sb.run(["sh", "-c", f"echo x > {target}"], timeout=30)
        assert r.exit_code != 0 and "Read-only file system" in r.stderr, r
        assert sb.run(["python", "-c", "import venvmod; print(venvmod.ANSWER)"]).stdout.strip() == "42"
    assert not target.exists()


def test_system_site_packages_venv_keeps_host_packages(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", system_site=True)
    out = report(bwrap_local(), python)
    assert out["own"] is True and out["host"] is True


def test_the_venv_is_never_run_on_the_host(tmp_path: Path) -> None:
    # A dataset names the venv: its interpreter (or a .pth file in it) must not run outside the sandbox.
    python = make_venv(tmp_path / "venv")
    ex = bwrap_local()
    before = bwrap_mod._probe.cache_info()
    marker = tmp_path / "ran-on-the-host"
    (python.parent.parent / SITE / "evil.pth").write_text(f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n")
    report(ex, python)
    report(ex, python)
    assert bwrap_mod._probe.cache_info().misses == before.misses  # read from pyvenv.cfg, not probed
    assert not marker.exists()
    # A venv of another Python (its pyvenv.cfg's home) is refused in one line.
    cfg = python.parent.parent / "pyvenv.cfg"
    other = make_venv(tmp_path / "other")
    (other.parent.parent / "pyvenv.cfg").write_text(cfg.read_text().replace("home = ", "home = /opt/elsewhere"))
    with pytest.raises(InfraError, match="not a venv of this machine's Python"):
        report(ex, other)


def test_unconfined_sandbox_uses_the_venv_too(venv: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "network cannot be disabled": expected
        out = report(LocalExecutor(use_bwrap=False), venv)
    assert out["prefix"] == str(venv.parent.parent) and out["own"] is True and out["host"] is False


def test_missing_interpreter_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "bin" / "python"
    with pytest.raises(InfraError, match=r"^the sandbox interpreter '.*gone/bin/python' does not exist") as info:
        LocalExecutor(use_bwrap=False).sandbox(SandboxSpec(python=str(missing)))
    assert "\n" not in str(info.value)


def test_spec_python_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert SandboxSpec(python="venv/bin/python").python == str(tmp_path / "venv" / "bin" / "python")
    assert SandboxSpec(python=tmp_path / "x").python == str(tmp_path / "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="python must be a path"):
        SandboxSpec(python="")


@pytest.mark.docker
def test_docker_ignores_spec_python(docker_executor: Executor, tmp_path: Path) -> None:
    spec = SandboxSpec(python=str(tmp_path / "no-such-venv" / "bin" / "python"))
    with docker_executor.sandbox(spec) as sb:
        r = sb.run(["python", "-c", "import sys; print(sys.prefix)"], timeout=60)
    assert r.ok and "no-such-venv" not in r.stdout, r


def test_only_the_supervisor_s_standard_library_comes_along(venv: Path, tmp_path: Path, monkeypatch) -> None:
    # A folder on the host interpreter's sys.path outside its prefixes (a user site, a .pth file's folder, an
    # editable install's source) is bound into ordinary sandboxes, never into a venv's.
    extra = Path.home() / f".execgym-test-syspath-{os.getpid()}"
    extra.mkdir()
    try:
        (extra / "hostonlymod.py").write_text("X = 1\n")
        monkeypatch.setattr(sys, "path", [*sys.path, str(extra)])
        bwrap_mod._interpreter_dirs.cache_clear()
        ex = bwrap_local()
        with ex.sandbox(SandboxSpec()) as sb:
            assert sb.run(["ls", str(extra)], timeout=30).ok
        with ex.sandbox(SandboxSpec(python=str(venv))) as sb:
            listing = sb.run(["ls", str(extra)], timeout=30)
            assert not listing.ok and "No such file" in listing.stderr
    finally:
        bwrap_mod._interpreter_dirs.cache_clear()
        for f in extra.iterdir():
            f.unlink()
        extra.rmdir()
