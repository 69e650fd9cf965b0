"""Real PyPI projects as SWE tasks (issue 19): `execgym swe build-tasks` on three projects downloaded from PyPI
at test time, on the local executor and on Docker. Every task: the oracle resolves it, a no-op submission does
not, deleting its failing tests scores 0 and is flagged; the working copies carry no answer."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from execgym.envs.swe.env import SWERepairEnv
from execgym.envs.swe.grading import nodeid_file
from execgym.envs.swe.mining import BuildReport, build_tasks
from execgym.envs.swe.patches import apply_patch
from tests.envs.swe.helpers import call

# Three small projects with their own pytest suites and three layouts: src/ (cachetools), a flat package with
# tests/ beside it (pathspec), tests inside the package (toolz). Each range spans releases whose changes edit
# library code and tests, so both task sources are exercised.
PROJECTS = {
    "cachetools": "pypi:cachetools==5.3.3..5.5.0",
    "pathspec": "pypi:pathspec==0.12.0..0.12.1",
    "toolz": "pypi:toolz==0.11.2..1.0.0",
}
MIN_TASKS = 10
EXECUTORS = ["local", pytest.param("docker", marks=pytest.mark.docker)]

_built: dict[tuple[str, str], tuple[Path, BuildReport]] = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """Build (once per module) a project's tasks on an executor; returns the tasks file and the build's report."""

    def build(project: str, executor: str) -> tuple[Path, BuildReport]:
        key = (project, executor)
        if key not in _built:
            if executor == "docker":
                request.getfixturevalue("docker_executor")  # the skip/require logic, and the python image
            out = tmp_path_factory.mktemp(f"{project}-{executor}") / "tasks.jsonl"
            # verify=False: the test plays every oracle itself (and more), on the rows as written
            report = build_tasks(
                PROJECTS[project], out, executor=executor, limit=MIN_TASKS, seed=0, workers=2, verify=False
            )
            _built[key] = (out, report)
        return _built[key]

    yield build
    _built.clear()


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _env(executor: str, out: Path, request: pytest.FixtureRequest) -> SWERepairEnv:
    ex = request.getfixturevalue("docker_executor" if executor == "docker" else "local_executor")
    return SWERepairEnv(executor=ex, dataset=f"swebench:{out}", test_timeout_s=120, bash_timeout_s=60)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_real_project_tasks(project: str, executor: str, built, request: pytest.FixtureRequest) -> None:
    out, report = built(project, executor)
    rows = _rows(out)
    assert len(rows) >= MIN_TASKS, (len(rows), report.rejected)
    assert report.tasks.get("mutation", 0) >= 1 and report.tasks.get("version", 0) >= 1, report.tasks
    assert json.loads((out.parent / "tasks.build.json").read_text())["tasks"] == report.tasks
    env = _env(executor, out, request)
    problems: list[str] = []
    try:
        for task in env.tasks:
            # Test files of the base state that hold failing tests (a version task's may come with its test patch).
            failing_files = sorted(
                f
                for f in {nodeid_file(t) for t in task.data["FAIL_TO_PASS"]}
                if (Path(task.data["repo_path"]) / f).is_file()
            )
            # The oracle: the gold patch, then submit.
            env.reset(options={"task_id": task.id})
            info: dict[str, Any] = {}
            for action in task.oracle:
                _, _, terminated, _, info = env.step(action)
            if info.get("infra_error") or info.get("outcome") != 1.0:
                problems.append(
                    f"{task.id}: oracle {info.get('outcome')} {info.get('infra_error')} {info.get('hack_flags')}"
                )
            # A no-op submission.
            env.reset(options={"task_id": task.id})
            _, reward, _, _, info = env.step(call("submit"))
            if info.get("infra_error") or info.get("outcome") != 0.0:
                problems.append(f"{task.id}: no-op {info.get('outcome')} {info.get('infra_error')}")
            # Deleting the failing tests.
            if not failing_files:
                continue
            env.reset(options={"task_id": task.id})
            env.step(call("bash", command="rm -f -- " + " ".join(failing_files)))
            _, reward, _, _, info = env.step(call("submit"))
            deleted = {
                f.split(": ", 1)[-1].split(" ")[0] for f in info.get("hack_flags", ()) if f.startswith("deleted_test")
            }
            if info.get("outcome") != 0.0 or not set(failing_files) <= deleted:
                problems.append(
                    f"{task.id}: deleting {failing_files} scored {info.get('outcome')} flags {info.get('hack_flags')}"
                )
    finally:
        env.close()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_working_copies_carry_no_answer(project: str, built) -> None:
    out, _ = built(project, "local")
    for row in _rows(out):
        repo = out.parent / row["repo_path"]
        names = {p.name for p in repo.rglob("*")}
        assert not names & {".git", ".hg", "__pycache__", "dist", "build"}, names & {".git", "__pycache__"}
        assert not any(n.endswith((".egg-info", ".dist-info", ".tar.gz", ".whl", ".pyc", ".orig")) for n in names)
        # The fixed version of every file the gold patch touches is nowhere in the working copy.
        contents = {hashlib.sha256(p.read_bytes()).hexdigest() for p in repo.rglob("*") if p.is_file()}
        fixed = apply_patch(
            row["patch"],
            lambda rel, repo=repo: (repo / rel).read_text(encoding="utf-8") if (repo / rel).is_file() else None,
        )
        assert fixed, row["instance_id"]
        for path, text in fixed.items():
            assert text is None or hashlib.sha256(text.encode()).hexdigest() not in contents, (row["instance_id"], path)
        # The project itself is not installed in its environment: site-packages cannot hand over the fix.
        venv = Path(row["venv"])
        site = next(venv.glob("lib/python*/site-packages"))
        dists = {p.name.split("-")[0].lower().replace("_", "-") for p in site.glob("*.dist-info")}
        assert project not in dists, dists
        assert not (site / project).exists()
        assert row["problem_statement"] and row["patch"] not in row["problem_statement"]
        assert os.path.isabs(row["venv"]) and not os.path.isabs(row["repo_path"])
