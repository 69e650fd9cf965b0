"""SWE-bench rows whose tests need a third-party package: a venv on the local executor, an image on Docker.

The project's tests import ``pyjokes``, which the host does not have: it is installed into a venv made here
(``python -m venv``, then pip from the host's index), and into an image built FROM the python sandbox image
offline (the wheel downloaded on the host). The same row without its environment cannot import it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from execgym.envs.swe.env import GRADING_ENV, SWERepairEnv
from execgym.envs.swe.patches import make_patch
from execgym.envs.swe.runner import STABLE_TEST_ENV, TestCommand, run_pytest
from execgym.envs.swe.swebench import load_swebench
from execgym.executor import Executor, LocalExecutor, SandboxSpec

from .helpers import call

PACKAGE = "pyjokes"  # small, pure Python, not installed on the host (checked below)
ENV_IMAGE = "execgym-test/quips-env:1"
PYPROJECT = '[project]\nname = "quips"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'
BUGGY = (
    "import pyjokes\n\n\ndef joke_count(category: str = 'neutral') -> int:\n"
    "    return len(pyjokes.get_jokes(category=category)) - 1\n"
)
FIXED = BUGGY.replace(" - 1\n", "\n")
TESTS = """import os

import pyjokes

from quips.count import joke_count


def test_count_matches_pyjokes():
    assert joke_count("neutral") == len(pyjokes.get_jokes(category="neutral"))


def test_some_jokes():
    assert joke_count("chuck") > 0


def test_stable_environment():
    assert (os.environ.get("TZ"), os.environ.get("PYTHONHASHSEED")) == ("UTC", "0")
"""
F2P = ["tests/test_count.py::test_count_matches_pyjokes"]
P2P = ["tests/test_count.py::test_some_jokes", "tests/test_count.py::test_stable_environment"]


def row(instance_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "problem_statement": "joke_count() is one short of the number of jokes.",
        "patch": make_patch({"quips/count.py": BUGGY}, {"quips/count.py": FIXED}),
        "FAIL_TO_PASS": F2P,
        "PASS_TO_PASS": P2P,
        "repo_path": "project",
        **extra,
    }


ROWS = [
    row("quips-venv", venv="venv"),
    row("quips-venv-image", venv="venv", image=ENV_IMAGE),
    row("quips-image", image=ENV_IMAGE),
    row("quips-bare"),
]


def write_project(root: Path) -> None:
    for rel, text in {
        "pyproject.toml": PYPROJECT,
        "quips/__init__.py": "",
        "quips/count.py": BUGGY,
        "tests/test_count.py": TESTS,
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the project, its venv (pytest and the package, from the host's index) and the rows."""
    assert importlib.util.find_spec(PACKAGE) is None, f"the host has {PACKAGE}: pick a package it lacks"
    root = tmp_path_factory.mktemp("quips")
    write_project(root / "project")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, capture_output=True)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, PACKAGE, "pytest"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    path = root / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def play(env: SWERepairEnv, task_id: str, *, oracle: bool) -> tuple[float, dict[str, Any]]:
    env.reset(options={"task_id": task_id})
    actions = env.task.oracle if oracle else (call("submit"),)
    for action in actions:
        _, reward, _, _, info = env.step(action)
    assert info["infra_error"] is None, info["infra_error"]
    return float(reward), info


def statuses(info: dict[str, Any]) -> dict[str, str]:
    return {u["id"]: u["extra"]["status"] for u in info["units"]}


@pytest.fixture(scope="module")
def local_env(dataset: Path):
    env = SWERepairEnv(executor=LocalExecutor(), dataset=f"swebench:{dataset}", test_timeout_s=120)
    yield env
    env.close()


@pytest.mark.parametrize("task_id", ["quips-venv", "quips-venv-image"])
def test_venv_task_resolves_locally(local_env: SWERepairEnv, task_id: str) -> None:
    local_env.reset(options={"task_id": task_id})
    shown = local_env.step(call("run_tests"))[0]
    assert shown.startswith("2 passed, 1 failed"), shown
    reward, info = play(local_env, task_id, oracle=True)
    assert reward == 1.0 and info["hack_flags"] == [], info
    assert set(statuses(info).values()) == {"PASSED"}


def test_venv_task_noop_scores_zero(local_env: SWERepairEnv) -> None:
    reward, info = play(local_env, "quips-venv", oracle=False)
    assert reward == 0.0
    assert statuses(info) == {F2P[0]: "FAILED", **dict.fromkeys(P2P, "PASSED")}


def test_without_the_venv_the_package_is_missing(local_env: SWERepairEnv) -> None:
    local_env.reset(options={"task_id": "quips-bare"})
    shown = local_env.step(call("run_tests"))[0]
    assert f"No module named '{PACKAGE}'" in shown, shown
    reward, _ = play(local_env, "quips-bare", oracle=True)
    assert reward == 0.0


def test_image_row_needs_a_venv_on_the_local_executor(local_env: SWERepairEnv) -> None:
    with pytest.raises(ValueError, match=r"^task quips-image's environment is the Docker image .*--executor local"):
        local_env.reset(options={"task_id": "quips-image"})


def test_stable_env_is_under_the_tasks_own() -> None:
    assert GRADING_ENV["TZ"] == STABLE_TEST_ENV["TZ"] == "UTC" and GRADING_ENV["PYTHONHASHSEED"] == "0"
    test = (
        "import os\n\ndef test_env():\n"
        "    assert (os.environ['TZ'], os.environ['PYTHONHASHSEED']) == (os.environ['WANT_TZ'], '0')\n"
    )
    with LocalExecutor().sandbox(SandboxSpec(files={"tests/test_e.py": test})) as sb:
        for own, want in (({}, "UTC"), ({"TZ": "Asia/Tokyo"}, "Asia/Tokyo")):
            command = TestCommand(env={**own, "WANT_TZ": want})
            run = run_pytest(sb, command, ["tests"], timeout=60, env=STABLE_TEST_ENV)
            assert run.report is not None and list(run.report.statuses.values()) == ["PASSED"], run.console_tail()


# -- the loader -------------------------------------------------------------------------------------------


def write_rows(folder: Path, *rows: dict[str, Any]) -> Path:
    write_project(folder / "project")
    path = folder / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fake_venv(root: Path) -> Path:
    """A folder shaped like a venv (``bin/python``): all the loader checks."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").symlink_to(sys.executable)
    return root


def test_loader_keeps_the_resolved_venv(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "data" / "envs" / "quips")
    (tmp_path / "data" / "venv-link").symlink_to(venv)
    path = write_rows(tmp_path / "data", row("a", venv="envs/quips"), row("b", venv="venv-link"), row("c"))
    tasks = {t.id: t for t in load_swebench(path, None)}
    assert tasks["a"].data["venv"] == tasks["b"].data["venv"] == os.path.realpath(venv)
    assert tasks["c"].data["venv"] is None


def test_loader_refuses_a_venv_outside_the_roots(tmp_path: Path) -> None:
    outside = fake_venv(tmp_path / "elsewhere" / "venv")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link").symlink_to(outside)
    for value in (str(outside), "link", "../elsewhere/venv"):
        path = write_rows(tmp_path / "data", row("a", venv=value))
        with pytest.raises(ValueError, match=r"instance #1 \(a\): venv .* resolves outside the dataset's folder"):
            load_swebench(path, None)
    assert load_swebench(path, None, allowed_roots=[str(tmp_path / "elsewhere")])[0].data["venv"] == str(outside)
    assert load_swebench(path, None, allowed_roots=None)[0].data["venv"] == str(outside)


def test_loader_allows_execgyms_environment_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECGYM_CACHE_DIR", str(tmp_path / "cache"))
    cached = fake_venv(tmp_path / "cache" / "swe" / "envs" / "quips-0123")
    path = write_rows(tmp_path / "data", row("a", venv=str(cached)))
    assert load_swebench(path, None)[0].data["venv"] == str(cached)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "venv").mkdir(), r"venv 'venv' holds no bin/python: not a virtual environment"),
        (lambda d: None, r"venv 'venv' is not a folder"),
        (lambda d: (d / "venv").write_text(""), r"venv 'venv' is not a folder"),
    ],
)
def test_loader_refuses_what_is_not_a_venv(tmp_path: Path, make: Any, message: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make(data)
    path = write_rows(data, row("a", venv="venv"))
    with pytest.raises(ValueError, match=message) as info:
        load_swebench(path, None)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="venv must be a string"):
        load_swebench(write_rows(data, row("a", venv=["venv"])), None)


# -- Docker ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env_image(docker_executor: Executor, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tests' environment as an image: FROM the python sandbox image, the package installed offline."""
    wheels = tmp_path_factory.mktemp("wheels")
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            PACKAGE,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert got.returncode == 0, got.stderr[-2000:]
    dockerfile = (
        "FROM execgym/python:0.1\nUSER root\nCOPY wheels /tmp/wheels\n"
        "RUN python -m pip install --no-index --no-deps --disable-pip-version-check /tmp/wheels/*.whl "
        "&& rm -rf /tmp/wheels\nUSER 1000:1000\n"
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(wheels, arcname="wheels")
    buf.seek(0)
    client = docker_executor.client  # type: ignore[attr-defined]
    client.images.build(fileobj=buf, custom_context=True, tag=ENV_IMAGE, rm=True, network_mode="none")
    yield ENV_IMAGE
    client.images.remove(ENV_IMAGE, force=True)


@pytest.fixture(scope="module")
def docker_env(docker_executor: Executor, env_image: str, dataset: Path):
    env = SWERepairEnv(executor=docker_executor, dataset=f"swebench:{dataset}", test_timeout_s=120)
    yield env
    env.close()


@pytest.mark.docker
@pytest.mark.parametrize("task_id", ["quips-image", "quips-venv-image"])
def test_image_task_resolves_on_docker(docker_env: SWERepairEnv, task_id: str) -> None:
    docker_env.reset(options={"task_id": task_id})
    assert docker_env.step(call("bash", command="cat quips/count.py"))[0] == BUGGY + "[exit code 0]"
    reward, info = play(docker_env, task_id, oracle=True)
    assert reward == 1.0 and info["hack_flags"] == [], info


@pytest.mark.docker
def test_image_task_noop_scores_zero_on_docker(docker_env: SWERepairEnv) -> None:
    reward, info = play(docker_env, "quips-image", oracle=False)
    assert reward == 0.0
    assert statuses(info) == {F2P[0]: "FAILED", **dict.fromkeys(P2P, "PASSED")}


@pytest.mark.docker
def test_without_the_image_the_package_is_missing_on_docker(docker_env: SWERepairEnv) -> None:
    docker_env.reset(options={"task_id": "quips-bare"})
    assert f"No module named '{PACKAGE}'" in docker_env.step(call("run_tests"))[0]


@pytest.mark.docker
def test_venv_row_needs_an_image_on_docker(docker_env: SWERepairEnv) -> None:
    with pytest.raises(ValueError, match=r"^task quips-venv's environment is a local venv: .*--executor docker"):
        docker_env.reset(options={"task_id": "quips-venv"})
