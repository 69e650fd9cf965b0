"""`execgym swe build-tasks` on projects made here: flaky tests dropped, a fixed TZ and PYTHONHASHSEED, git
checkouts exported without history, one clear error per failed step, the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from execgym.cli import main
from execgym.envs.swe.env import SWERepairEnv
from execgym.envs.swe.mining import BuildError, ProjectTests, build_tasks, library_files, stable_statuses
from execgym.envs.swe.sources import SourceError, fetch_source, parse_source

LIBRARY = """\
def clamp(x, low, high):
    if x < low:
        return low
    if x > high:
        return high
    return x


def mean(values):
    total = 0
    for v in values:
        total += v
    return total / len(values)


def span(values):
    return max(values) - min(values)
"""

TESTS = """\
import time

import pytest

from mini.core import clamp, mean, span


def test_clamp_low():
    assert clamp(-1, 0, 10) == 0


def test_clamp_high():
    assert clamp(11, 0, 10) == 10


def test_clamp_inside():
    assert clamp(5, 0, 10) == 5


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_span():
    assert span([3, 9, 4]) == 6


def test_fixed_timezone_and_hash_seed():
    # Grading fixes TZ and PYTHONHASHSEED (SWE-bench #602): both hold in every run.
    assert time.tzname[0] == "UTC"
    assert hash("execgym") == EXPECTED_HASH



def test_broken_on_clean():
    assert clamp(0, 0, 1) == 1
"""


def _expected_hash() -> int:
    code = "print(hash('execgym'))"
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": "0"}, capture_output=True, text=True)
    return int(out.stdout)


def make_project(root: Path, *, dependencies: str = "[]") -> Path:
    (root / "mini").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "mini" / "__init__.py").write_text("")
    (root / "mini" / "core.py").write_text(LIBRARY)
    (root / "tests" / "test_core.py").write_text(TESTS.replace("EXPECTED_HASH", str(_expected_hash())))
    (root / "pyproject.toml").write_text(f'[project]\nname = "mini"\nversion = "1.0"\ndependencies = {dependencies}\n')
    return root


@pytest.fixture(scope="module")
def mini_build(tmp_path_factory: pytest.TempPathFactory):
    project = make_project(tmp_path_factory.mktemp("src") / "mini")
    out = tmp_path_factory.mktemp("out") / "tasks.jsonl"
    report = build_tasks(str(project), out, executor="local", limit=4, seed=1, workers=2, cache=False)
    return project, out, report


FLAKY = """\
import random

import pytest


@pytest.mark.parametrize("n", range(24))
def test_flaky(n):
    assert random.SystemRandom().random() < 0.5
"""


def test_flaky_tests_are_found_by_running_twice(tmp_path: Path, local_executor) -> None:
    # 24 coin flips: two runs disagree on at least one of them but once in 2**24.
    project = make_project(tmp_path / "mini")
    (project / "tests" / "test_flaky.py").write_text(FLAKY)
    from execgym.envs.swe.environments import prepare_environment, read_requirements

    environment = prepare_environment(read_requirements(project, "mini"), "local")
    tests = ProjectTests(project, local_executor, environment, {}, 120)
    runs = [tests.run() for _ in range(2)]
    assert all(run.report is not None for run in runs)
    stable, flaky = stable_statuses([{t: run.report.status(t) for t in run.report.nodeids()} for run in runs])
    assert flaky and all(t.startswith("tests/test_flaky.py::test_flaky[") for t in flaky)
    assert stable["tests/test_core.py::test_fixed_timezone_and_hash_seed"] == "PASSED"
    assert stable["tests/test_core.py::test_broken_on_clean"] == "FAILED"


def test_broken_tests_never_reach_a_task(mini_build) -> None:
    _, out, report = mini_build
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == report.total_tasks() >= 3
    assert report.failing_on_clean >= 1
    for row in rows:
        listed = set(row["FAIL_TO_PASS"]) | set(row["PASS_TO_PASS"])
        assert not any("test_broken_on_clean" in t for t in listed)
        assert "tests/test_core.py::test_fixed_timezone_and_hash_seed" in listed
        assert row["FAIL_TO_PASS"] and row["problem_statement"].count("tests/test_core.py::") >= 1
        assert row["created_from"]["kind"] == "mutation"
    assert report.seconds["total"] > 0 and report.test_runs >= 2 + report.validated


def test_mined_tasks_play(mini_build, local_executor) -> None:
    _, out, _ = mini_build
    env = SWERepairEnv(executor=local_executor, dataset=f"swebench:{out}", test_timeout_s=60)
    try:
        for task in env.tasks:
            env.reset(options={"task_id": task.id})
            for action in task.oracle:
                *_, info = env.step(action)
            assert info["outcome"] == 1.0 and info["infra_error"] is None, (task.id, info["hack_flags"])
            env.reset(options={"task_id": task.id})
            *_, info = env.step({"name": "submit", "arguments": {}})
            assert info["outcome"] == 0.0 and info["infra_error"] is None
    finally:
        env.close()


def test_a_second_build_reuses_the_cached_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECGYM_CACHE_DIR", str(tmp_path / "cache"))
    project = make_project(tmp_path / "p" / "mini")
    first = build_tasks(str(project), tmp_path / "a.jsonl", limit=2, workers=1)
    second = build_tasks(str(project), tmp_path / "b.jsonl", limit=2, workers=1)
    assert first.test_runs > 0 and second.test_runs == 0 and second.cached_runs > 0
    assert (tmp_path / "a.jsonl").read_text().replace("a.repos", "b.repos") == (tmp_path / "b.jsonl").read_text()


def test_git_checkout_is_exported_without_history(tmp_path: Path) -> None:
    repo = make_project(tmp_path / "repo")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (repo / "mini" / "core.py").write_text(LIBRARY.replace("return x", "return x  # fixed later"))
    (repo / "untracked.txt").write_text("not exported")
    src = fetch_source(str(repo), tmp_path / "snap")
    assert src.kind == "git" and src.name == "mini" and src.origin.startswith("git:repo@")
    assert not (src.root / ".git").exists() and not (src.root / "untracked.txt").exists()
    assert "fixed later" not in (src.root / "mini" / "core.py").read_text()  # HEAD, not the working tree
    assert sorted(library_files(src.root)) == ["mini/__init__.py", "mini/core.py"]


def test_snapshot_leaves_out_caches_packaged_copies_and_links(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    for extra in (
        "mini/__pycache__/core.cpython-311.pyc",
        "dist/mini-1.1.tar.gz",
        "mini.egg-info/PKG-INFO",
        ".venv/bin/python",
        "build/lib/mini/core.py",
    ):
        (project / extra).parent.mkdir(parents=True, exist_ok=True)
        (project / extra).write_text("x")
    (project / "link.py").symlink_to("/etc/hostname")
    src = fetch_source(str(project), tmp_path / "snap")
    files = sorted(str(p.relative_to(src.root)) for p in src.root.rglob("*") if p.is_file())
    assert files == ["mini/__init__.py", "mini/core.py", "pyproject.toml", "tests/test_core.py"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("pypi:cachetools", "expected pypi:NAME==VERSION"),
        ("pypi:cachetools==5.5.0..5.4.0", "older than the second"),
        ("pypi:cachetools==five", "not a version"),
        ("/no/such/folder", "is not a folder"),
    ],
)
def test_bad_sources_are_one_line_errors(source: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_source(source)


def test_each_failed_step_is_named(tmp_path: Path) -> None:
    unresolvable = make_project(tmp_path / "a" / "mini", dependencies='["execgym-no-such-package-x7q==1.0"]')
    with pytest.raises(BuildError, match=r"^resolve dependencies failed: ") as err:
        build_tasks(str(unresolvable), tmp_path / "a.jsonl")
    assert err.value.step == "resolve dependencies" and "\n" not in str(err.value)
    broken = make_project(tmp_path / "b" / "mini")
    (broken / "tests" / "test_core.py").write_text("import mini.missing_module\n\ndef test_x():\n    pass\n")
    with pytest.raises(BuildError, match=r"^(collect tests|run clean tests) failed: "):
        build_tasks(str(broken), tmp_path / "b.jsonl")
    with pytest.raises(BuildError, match=r"^fetch source failed: .*no such project"):
        build_tasks("pypi:execgym-no-such-package-x7q==1.0", tmp_path / "c.jsonl")
    assert not (tmp_path / "a.jsonl").exists() and not (tmp_path / "b.jsonl").exists()


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "p" / "mini")
    out = tmp_path / "cli.jsonl"
    assert main(["swe", "build-tasks", str(project), "--out", str(out), "--limit", "2", "--no-cache"]) == 0
    printed = capsys.readouterr()
    assert f"{out}: " in printed.out and "validated tasks" in printed.out and "swebench:" in printed.out
    assert len(out.read_text().splitlines()) >= 1
    assert main(["swe", "build-tasks", "pypi:nope", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("execgym swe build-tasks: fetch source failed:") and "\n" not in err


def test_a_mirror_with_relative_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file:// index laid out as bandersnatch lays one out: the project's page links ../../packages/...
    import hashlib
    import tarfile

    project = make_project(tmp_path / "mini-1.0")
    archive = tmp_path / "index" / "packages" / "mini-1.0.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(project, arcname="mini-1.0")
    page = tmp_path / "index" / "simple" / "mini"
    page.mkdir(parents=True)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    files = [{"filename": "mini-1.0.tar.gz", "url": "../../packages/mini-1.0.tar.gz", "hashes": {"sha256": digest}}]
    (page / "index.html").write_text(json.dumps({"files": files}))
    monkeypatch.setenv("EXECGYM_INDEX_URL", (tmp_path / "index" / "simple").as_uri())
    src = fetch_source("pypi:mini==1.0", tmp_path / "snap")
    assert src.version == "1.0" and (src.root / "mini" / "core.py").read_text() == LIBRARY
    (page / "index.html").write_text(json.dumps({"files": [{**files[0], "hashes": {"sha256": "0" * 64}}]}))
    with pytest.raises(SourceError, match="sha256 does not match"):
        fetch_source("pypi:mini==1.0", tmp_path / "snap2")
    # The same mirror serving the HTML simple API (PEP 503), as file mirrors and older indexes do.
    (page / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../packages/mini-1.0.tar.gz#sha256={digest}">mini-1.0.tar.gz</a>'
        "</body></html>"
    )
    assert fetch_source("pypi:mini==1.0", tmp_path / "snap3").root.joinpath("mini", "core.py").is_file()
    with pytest.raises(SourceError, match="no such project"):
        fetch_source("pypi:other==1.0", tmp_path / "snap4")


def test_an_archive_bomb_is_refused_before_it_unpacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import tarfile

    from execgym.envs.swe import sources

    archive = tmp_path / "big-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"\0" * (2 * 1024 * 1024)
        info = tarfile.TarInfo("big-1.0/blob.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(sources, "MAX_UNPACKED_BYTES", 1024 * 1024)
    with pytest.raises(SourceError, match="unpacks to over"):
        sources._extract(archive, tmp_path / "out")
    assert not any((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True
