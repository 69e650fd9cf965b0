"""The env module imports without CadQuery; constructing the env without it says how to install it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gymnasium.error import DependencyNotInstalled


def test_env_module_does_not_import_cadquery() -> None:
    code = (
        "import sys, execgym.envs.cad, execgym.envs.cad.env\n"
        "assert 'cadquery' not in sys.modules and 'OCP' not in sys.modules, 'imported CadQuery'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_construction_without_cadquery_says_how_to_install(monkeypatch) -> None:
    from execgym.envs.cad import grading
    from execgym.envs.cad.env import CADModelEnv

    monkeypatch.setattr(grading.importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.delenv("EXECGYM_EXECUTOR", raising=False)
    with pytest.raises(DependencyNotInstalled, match=r'pip install "execgym\[cad\]"'):
        CADModelEnv()
    with pytest.raises(DependencyNotInstalled, match=r'pip install "execgym\[cad\]"'):
        CADModelEnv(executor="docker", grader_executor="local")  # the grader would run here
    # Everything in Docker: nothing runs here, so CadQuery is not needed here (construction starts nothing).
    CADModelEnv(executor="docker").close()


def test_registered_with_gymnasium() -> None:
    import gymnasium as gym

    import execgym  # noqa: F401  (registers the ids)

    assert gym.spec("execgym/CADModel-v0").entry_point == "execgym.envs.cad.env:CADModelEnv"


def test_kernel_fits_in_one_command_line_argument() -> None:
    from execgym.envs.cad.grading import kernel_source

    assert len(kernel_source().encode()) < 120_000  # Linux caps one argv string at 128 KiB (python -c SOURCE)


def test_the_joined_kernel_runs_standalone(tmp_path) -> None:
    """The script sent into sandboxes needs nothing of execgym: it answers a run from a bare directory."""
    pytest.importorskip("cadquery")
    import json

    from execgym.envs.cad.kernel import MODULES, kernel_source

    source = kernel_source()
    assert "from execgym" not in source and "import execgym" not in source
    assert all(f"def {name}" not in source for name in ("kernel_source", "_defined_names")), "the joiner is not sent"
    assert len(MODULES) > 5
    requests = [{"op": "ping"}, {"op": "run", "code": "import cadquery as cq\nresult = cq.Workplane().box(1, 2, 3)"}]
    done = subprocess.run(
        [sys.executable, "-I", "-c", source, "agent", json.dumps({"warmup": False})],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    ping, ran = (json.loads(line) for line in done.stdout.splitlines())
    assert ping["ok"] and ping["protocol"] == 1, done.stderr
    assert ran["ok"] and ran["brep"], ran
