"""What a SWE-bench dataset row may name, and how a malformed row is reported (issue 22 items 1-2)."""

from __future__ import annotations

import json
import os

import pytest

from execgym.envs.swe.env import SWERepairEnv
from execgym.envs.swe.patches import make_patch
from execgym.envs.swe.tasks import load_swebench

from .swebench_fixtures import BUGGY, TESTS, make_instance, write_dataset, write_repo


def plain(tmp_path, name="plain"):
    folder = tmp_path / name
    write_repo(folder, BUGGY, TESTS)
    return folder


_BASE: dict[str, dict] = {}


def row(tmp_path, **changes):
    if str(tmp_path) not in _BASE:
        _BASE[str(tmp_path)] = make_instance(tmp_path / "src", base_commit="")
    inst = dict(_BASE[str(tmp_path)])
    inst["repo_path"] = "plain"
    inst.update(changes)
    return {k: v for k, v in inst.items() if v is not ...}


# ------------------------------------------------------------------------------- paths (22.1)


def test_repo_path_outside_the_dataset_folder_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    outside = plain(tmp_path, "elsewhere")
    for value in (str(outside), "../elsewhere", "/etc"):
        path = write_dataset(data, [row(tmp_path, repo_path=value)])
        with pytest.raises(ValueError, match=r"instances.jsonl: instance #1 \(mini__mini-1\): repo_path .* outside"):
            load_swebench(path, None)


def test_a_symlink_out_of_the_dataset_folder_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    outside = plain(tmp_path, "elsewhere")
    os.symlink(outside, data / "plain")
    path = write_dataset(data, [row(tmp_path)])
    with pytest.raises(ValueError, match="outside the dataset's folder"):
        load_swebench(path, None)
    # a link inside the repository that leads out of the dataset
    os.unlink(data / "plain")
    repo = plain(data)
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret\n")
    os.symlink(secret, repo / "mini" / "leak.txt")
    with pytest.raises(ValueError, match=r"holds a link outside the dataset: mini/leak.txt"):
        load_swebench(path, None)


def test_paths_inside_the_dataset_load_and_run(tmp_path):
    data = tmp_path / "data"
    plain(data)
    path = write_dataset(data, [row(tmp_path)])
    env = SWERepairEnv(executor="local", dataset=f"swebench:{path}")
    try:
        env.reset(seed=0)
        for action in env.task.oracle:
            out = env.step(action)
        assert out[1] == 1.0 and out[4]["hack_flags"] == []
    finally:
        env.close()


def test_outside_paths_need_an_explicit_option(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    outside = plain(tmp_path, "elsewhere")
    path = write_dataset(data, [row(tmp_path, repo_path=str(outside))])
    with pytest.raises(ValueError, match="allow_paths_outside_dataset=True"):
        SWERepairEnv(executor="local", dataset=f"swebench:{path}")
    for allow in (True, [str(tmp_path)]):
        env = SWERepairEnv(executor="local", dataset=f"swebench:{path}", allow_paths_outside_dataset=allow)
        assert env.tasks.ids() == ["mini__mini-1"]
        env.close()
    with pytest.raises(ValueError, match="outside"):
        SWERepairEnv(executor="local", dataset=f"swebench:{path}", allow_paths_outside_dataset=[str(data)])


# ------------------------------------------------------------------------------ malformed rows (22.2)

ESCAPE = make_patch({"../outside.py": "a = 1\n"}, {"../outside.py": "a = 2\n"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instance_id": ...}, r"instance #1: missing instance_id"),
        ({"instance_id": ["x"]}, r"instance #1: instance_id must be a non-empty string"),
        ({"problem_statement": 3}, r"\(mini__mini-1\): problem_statement must be text"),
        ({"test_patch": ESCAPE}, r"\(mini__mini-1\): test_patch (touches a path outside|does not parse: bad path)"),
        ({"patch": ESCAPE}, r"\(mini__mini-1\): patch (touches a path outside|does not parse: bad path)"),
        ({"test_patch": ESCAPE.replace("a/../", "/").replace("b/../", "/")}, r"test_patch (touches|does not parse)"),
        ({"test_patch": "not a diff"}, r"\(mini__mini-1\): test_patch does not parse"),
        ({"patch": ""}, r"\(mini__mini-1\): patch is empty"),
        ({"FAIL_TO_PASS": "[]"}, r"\(mini__mini-1\): FAIL_TO_PASS is empty"),
        ({"FAIL_TO_PASS": ["../t.py::test_a"]}, r"FAIL_TO_PASS: test '../t.py::test_a'"),
        ({"PASS_TO_PASS": [1, 2]}, r"PASS_TO_PASS: expected a list of pytest node ids"),
        ({"PASS_TO_PASS": "{"}, r"PASS_TO_PASS is not a JSON list"),
        ({"env": ["A=1"]}, r"env must be an object of string values"),
        ({"env": {"A": 1}}, r"env must be an object of string values"),
        ({"test_cmd": 5}, r"test_cmd must be a shell string or a list of strings"),
        ({"repo_dir": "testbed", "image": "x"}, r"repo_dir must be an absolute path"),
        ({"repo_path": 7}, r"repo_path must be a string"),
        ({"base_commit": 12}, r"base_commit must be a string"),
    ],
)
def test_malformed_rows_are_named_at_load_time(tmp_path, changes, message):
    plain(tmp_path)
    good = row(tmp_path, instance_id="good-1")
    path = write_dataset(tmp_path, [good, row(tmp_path, **changes)])
    with pytest.raises(ValueError, match=message.replace("instance #1", "instance #2")) as caught:
        load_swebench(path, None)
    text = str(caught.value)
    assert str(path) in text and "\n" not in text


def test_not_an_object_and_duplicates(tmp_path):
    plain(tmp_path)
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps([1, 2]) + "\n")
    with pytest.raises(ValueError, match=r"rows.jsonl: instance #1: expected an object, got list"):
        load_swebench(path, None)
    dup = write_dataset(tmp_path, [row(tmp_path), row(tmp_path)])
    with pytest.raises(ValueError, match=r"instance #2 \(mini__mini-1\): instance_id 'mini__mini-1' appears twice"):
        load_swebench(dup, None)


def test_malformed_rows_can_be_skipped_with_a_count(tmp_path):
    plain(tmp_path)
    rows = [row(tmp_path, instance_id="ok"), row(tmp_path, instance_id="bad", test_patch=ESCAPE), 5]
    path = write_dataset(tmp_path, rows)
    with pytest.warns(UserWarning, match=r"skipped 2 malformed instance\(s\); first: .*bad"):
        env = SWERepairEnv(executor="local", dataset=f"swebench:{path}", skip_invalid_rows=True)
    assert env.tasks.ids() == ["ok"]
    env.close()
