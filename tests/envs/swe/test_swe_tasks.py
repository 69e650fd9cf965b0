import json

import pytest

from execgym.envs.swe.env import SWERepairEnv
from execgym.envs.swe.mutations import KINDS, Mutation
from execgym.envs.swe.patches import apply_patch
from execgym.envs.swe.tasks import (
    BugValidator,
    bundled_repo,
    bundled_repo_names,
    bundled_tasks,
    difficulty_of,
    generate_task,
    load_catalogue,
    load_swebench,
    workspace,
)

from .helpers import call
from .swebench_fixtures import BUGGY, TESTS, make_instance, write_dataset

# ---------------------------------------------------------------------------------------- bundled


@pytest.mark.parametrize("name", ["spans", "calcy", "texttab"])
def test_bundled_repositories(name):
    repo = bundled_repo(name)
    lines = sum(len(text.splitlines()) for text in repo.library_files().values())
    entry = load_catalogue()["repos"][name]
    assert lines >= 300
    assert len(entry["tests"]) >= 40
    assert entry["hash"] == repo.content_hash(), "stale catalogue: run python -m execgym.envs.swe.build"
    bugs = load_catalogue()["bugs"][name]
    assert len(bugs) >= 60
    assert {Mutation.from_id(i).kind for i in bugs} == set(KINDS)
    assert all(1 <= len(failing) <= len(entry["tests"]) / 3 for failing in bugs.values())


def test_bundled_tasks():
    tasks = bundled_tasks()
    assert len(tasks) >= 45 and len({t.id for t in tasks}) == len(tasks)
    assert {t.difficulty for t in tasks} == {"easy", "medium", "hard"}
    assert {t.split for t in tasks} == {"train", "test"}
    catalogue = load_catalogue()
    for t in tasks:
        tests = catalogue["repos"][t.data["repo"]]["tests"]
        assert sorted(t.data["FAIL_TO_PASS"] + t.data["PASS_TO_PASS"]) == sorted(tests)
        assert t.difficulty == difficulty_of(len(t.data["mutations"]), len(t.data["FAIL_TO_PASS"]))
        assert all(m in catalogue["bugs"][t.data["repo"]] for m in t.data["mutations"])


def test_workspace_holds_the_bug_and_the_gold_patch_reverses_it():
    for task in bundled_tasks()[::7]:
        ws = workspace(task)
        repo = bundled_repo(task.data["repo"])
        fixed = apply_patch(task.data["gold_patch"], ws.start_files.get)
        for path, text in fixed.items():
            assert text == (repo.root / path).read_text() != ws.start_files[path]


def test_bundled_repos_have_no_stray_files():
    for name in bundled_repo_names():
        root = bundled_repo(name).root
        assert not list(root.rglob("__pycache__")) and not list(root.rglob("*.pyc"))


# -------------------------------------------------------------------------------------- generator


@pytest.fixture
def validator(local_executor, tmp_path):
    return BugValidator(local_executor, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("difficulty,seed", [("easy", 11), ("medium", 12), ("hard", 13)])
def test_generator_difficulty(validator, difficulty, seed):
    task = generate_task(seed, difficulty, validator)
    n, failing = len(task.data["mutations"]), len(task.data["FAIL_TO_PASS"])
    assert task.difficulty == difficulty == difficulty_of(n, failing)
    assert task.id == f"gen-{difficulty}-{seed}" and task.source == "generated"


def test_generator_is_deterministic_and_cached(validator, local_executor, tmp_path):
    first = generate_task(5, "medium", validator)
    fresh = BugValidator(local_executor, cache_dir=tmp_path / "cache")  # same disk cache, empty memory
    fresh._run = None  # any test run would now fail: the result must come from the cache
    again = generate_task(5, "medium", fresh)
    assert (again.data["mutations"], again.data["gold_patch"], again.prompt) == (
        first.data["mutations"],
        first.data["gold_patch"],
        first.prompt,
    )
    assert generate_task(6, "medium", validator).data["mutations"] != first.data["mutations"]


def test_generated_task_oracle(local_executor, tmp_path, monkeypatch):
    monkeypatch.setenv("EXECGYM_CACHE_DIR", str(tmp_path))
    env = SWERepairEnv(executor=local_executor, dataset="generated:medium")
    obs, info = env.reset(seed=3)
    assert info["task_id"].startswith("gen-medium-") and info["difficulty"] == "medium"
    for action in env.task.oracle:
        _, reward, terminated, _, info = env.step(action)
    env.close()
    assert reward == 1.0 and info["hack_flags"] == []


# -------------------------------------------------------------------------------------- SWE-bench


def test_swebench_loader_formats(tmp_path):
    strings = make_instance(tmp_path / "a")
    lists = make_instance(tmp_path / "b", as_json_strings=False, instance_id="mini__mini-2")
    (tmp_path / "both").mkdir()
    for name, inst in (("a", strings), ("b", lists)):
        inst["repo_path"] = str(tmp_path / name / "repo")
    path = write_dataset(tmp_path / "both", [strings, lists])
    with pytest.raises(ValueError, match="resolves outside the dataset's folder"):
        load_swebench(path, None)
    tasks = load_swebench(path, None, allowed_roots=None)
    assert [t.id for t in tasks] == ["mini__mini-1", "mini__mini-2"]
    assert tasks[0].data["FAIL_TO_PASS"] == tasks[1].data["FAIL_TO_PASS"] == ["tests/test_stats.py::test_mean"]
    assert tasks[0].oracle[0]["arguments"]["patch"] == strings["patch"]
    assert tasks[0].prompt.startswith("Repository: mini/mini")


def test_swebench_loader_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {"instance_id": "x", "problem_statement": "p", "patch": "", "FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]"}
        )
        + "\n"
    )
    with pytest.raises(ValueError, match="needs 'repo_path'"):
        load_swebench(bad, None)
    bad.write_text(json.dumps({"instance_id": "x"}) + "\n")
    with pytest.raises(ValueError, match="missing problem_statement"):
        load_swebench(bad, None)
    with pytest.raises(FileNotFoundError):
        load_swebench(tmp_path, "dev")


def test_swebench_episode(local_executor, tmp_path, monkeypatch):
    monkeypatch.setenv("EXECGYM_CACHE_DIR", str(tmp_path / "cache"))
    path = write_dataset(tmp_path, [make_instance(tmp_path)])
    env = SWERepairEnv(executor=local_executor, dataset=f"swebench:{path}")
    assert env.tasks.ids() == ["mini__mini-1"]
    env.reset(options={"task_id": "mini__mini-1"})
    # the copy is at base_commit (not HEAD) and the test patch is not applied
    assert env.step(call("bash", command="cat mini/stats.py"))[0] == BUGGY + "[exit code 0]"
    assert env.step(call("bash", command="cat tests/test_stats.py"))[0] == TESTS + "[exit code 0]"
    assert "extra.py" not in env.step(call("bash", command="ls mini"))[0]
    assert env.step(call("run_tests"))[0].startswith("1 passed")
    _, reward, _, _, info = env.step(call("submit"))
    assert reward == 0.0 and [u["extra"]["status"] for u in info["units"]] == ["FAILED", "PASSED"]
    env.reset(options={"task_id": "mini__mini-1"})
    for action in env.task.oracle:
        _, reward, _, _, info = env.step(action)
    env.close()
    assert reward == 1.0 and info["hack_flags"] == []
    assert [(u["id"], u["extra"]["list"]) for u in info["units"]] == [
        ("tests/test_stats.py::test_mean", "FAIL_TO_PASS"),
        ("tests/test_stats.py::test_total", "PASS_TO_PASS"),
    ]


def test_swebench_plain_folder(local_executor, tmp_path):
    instance = make_instance(tmp_path, base_commit="")
    folder = tmp_path / "plain"
    from .swebench_fixtures import write_repo

    write_repo(folder, BUGGY, TESTS)
    instance["repo_path"] = str(folder)
    env = SWERepairEnv(executor=local_executor, dataset=f"swebench:{write_dataset(tmp_path, [instance])}")
    env.reset(seed=0)
    for action in env.task.oracle:
        _, reward, _, _, info = env.step(action)
    env.close()
    assert reward == 1.0


def test_swebench_bad_base_commit(local_executor, tmp_path, monkeypatch):
    monkeypatch.setenv("EXECGYM_CACHE_DIR", str(tmp_path / "cache"))
    instance = make_instance(tmp_path, base_commit="0" * 40)
    env = SWERepairEnv(executor=local_executor, dataset=f"swebench:{write_dataset(tmp_path, [instance])}")
    with pytest.raises(ValueError, match="is not a commit"):
        env.reset(seed=0)
    env.close()


def test_image_tasks_need_docker(local_executor, tmp_path):
    instance = make_instance(tmp_path, image="example/swe-mini:1")
    del instance["repo_path"]
    env = SWERepairEnv(executor=local_executor, dataset=f"swebench:{write_dataset(tmp_path, [instance])}")
    with pytest.raises(ValueError, match="executor='docker'"):
        env.reset(seed=0)
    env.close()
