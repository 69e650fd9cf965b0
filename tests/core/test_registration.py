"""Env registration: an env whose extra is missing is listed with its install command and fails at ``gym.make``.

The last test builds a real virtual environment without CadQuery (no system site packages) and installs execgym
into it, as a ``pip install -e .`` user without the ``cad`` extra would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import gymnasium as gym
import pytest

import execgym

ROOT = Path(__file__).resolve().parents[2]
CAD = "execgym/CADModel-v0"


def test_every_env_is_registered_and_only_available_ones_are_listed_by_default(monkeypatch) -> None:
    assert set(execgym.ENVS) <= set(gym.registry)
    assert set(execgym.registered_envs()) <= set(execgym.registered_envs(include_unavailable=True))
    real = execgym._module_exists
    monkeypatch.setattr(execgym, "_module_exists", lambda name: False if name == "cadquery" else real(name))
    assert CAD not in execgym.registered_envs()
    assert CAD in execgym.registered_envs(include_unavailable=True)
    assert execgym.unavailable_envs() == {CAD: 'pip install "execgym[cad]"'}
    assert execgym.missing_extra(CAD) == "cad" and execgym.missing_extra("execgym/TextToSQL-v0") is None


def test_the_install_hint_is_the_same_everywhere() -> None:
    from execgym.envs.cad.grading import CAD_EXTRA_HINT

    assert execgym.install_command("cad") == CAD_EXTRA_HINT


CHECK = f"""
import sys
import gymnasium as gym
import execgym
from gymnasium.utils.env_checker import check_env
assert "cadquery" not in sys.modules
try:
    import cadquery
except ImportError:
    pass
else:
    raise SystemExit("cadquery is importable in the test venv")
assert {CAD!r} not in execgym.registered_envs(), execgym.registered_envs()
assert {CAD!r} in execgym.registered_envs(include_unavailable=True)
assert execgym.unavailable_envs() == {{{CAD!r}: 'pip install "execgym[cad]"'}}, execgym.unavailable_envs()
try:
    gym.make({CAD!r})
except gym.error.DependencyNotInstalled as exc:
    assert 'pip install "execgym[cad]"' in str(exc), exc
else:
    raise SystemExit("gym.make succeeded without CadQuery")
for env_id in execgym.registered_envs():  # what tests/core's check does on a .[dev]-only install
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()
print("VENV-OK")
"""


@pytest.mark.slow
def test_a_venv_without_cadquery(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
        env=environ,
    )
    if install.returncode != 0:
        tail = (install.stderr or install.stdout).strip().splitlines()[-3:]
        pytest.skip(f"cannot install execgym into a fresh venv here (no package index?): {' | '.join(tail)}")
    probe = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, timeout=600, env=environ,
                           cwd=tmp_path)
    assert probe.returncode == 0 and "VENV-OK" in probe.stdout, probe.stderr[-3000:]
    listing = subprocess.run([str(env_dir / "bin" / "execgym"), "list"], capture_output=True, text=True,
                             timeout=600, env=environ, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr[-3000:]
    line = next((x for x in listing.stdout.splitlines() if CAD in x), "")
    assert 'pip install "execgym[cad]"' in line, listing.stdout
    assert sys.executable != str(python)
