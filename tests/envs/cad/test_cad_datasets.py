"""CAD datasets: paths stay inside the dataset's folder, malformed rows are found at load time and named,
and reference programs run under the executor the user chose."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from execgym.envs.cad.tasks import DatasetError, load_cadprompt, load_jsonl
from tests.executor.conftest import require_docker

BOX = "import cadquery as cq\nresult = cq.Workplane().box(3, 2, 1)\n"
FILES = {
    "code": "Python_Code.py",
    "abstract": "Natural_Language_Descriptions_Prompt.txt",
    "detailed": "Natural_Language_Descriptions_Prompt_with_specific_measurements.txt",
}


def sample(root: Path, name: str, **texts: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for key, text in {"code": BOX, "abstract": "A small block.", **texts}.items():
        (folder / FILES[key]).write_text(text)
    return folder


def test_a_symlinked_prompt_outside_the_dataset_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    root = tmp_path / "cadprompt"
    sample(root, "0001")
    folder = sample(root, "0002")
    (folder / FILES["abstract"]).unlink()
    (folder / FILES["abstract"]).symlink_to(secret)
    with pytest.raises(DatasetError, match=r"sample '0002'.*resolves to .*secret.txt.*outside the dataset") as err:
        load_cadprompt(root, None)
    assert "\n" not in str(err.value)
    # Explicitly allowed: followed.
    tasks = {t.id: t for t in load_cadprompt(root, None, allow_outside=True)}
    assert tasks["0002"].data["prompt_abstract"] == "the host's secret"


@pytest.mark.parametrize("target", ["code", "detailed", "folder", "dangling"])
def test_other_escapes_are_refused(tmp_path: Path, target: str) -> None:
    outside = tmp_path / "outside"
    sample(outside, "s")
    root = tmp_path / "cadprompt"
    folder = sample(root, "0001")
    if target == "folder":
        (root / "0002").symlink_to(outside / "s")
    elif target == "dangling":
        (folder / FILES["detailed"]).symlink_to(tmp_path / "nowhere.txt")
    else:
        (folder / FILES[target]).unlink(missing_ok=True)
        (folder / FILES[target]).symlink_to(outside / "s" / FILES["code" if target == "code" else "abstract"])
    with pytest.raises(DatasetError, match=r"cadprompt:.*sample '000[12]'"):
        load_cadprompt(root, None)


def test_a_symlink_inside_the_dataset_is_fine(tmp_path: Path) -> None:
    root = tmp_path / "cadprompt"
    folder = sample(root, "0001")
    (folder / FILES["detailed"]).symlink_to(folder / FILES["abstract"])
    (task,) = load_cadprompt(root, None)
    assert task.data["prompt_detailed"] == "A small block."


def test_jsonl_mesh_outside_the_file_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "m.stl").write_bytes(b"solid x\nendsolid x\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "link.stl").symlink_to(tmp_path / "elsewhere" / "m.stl")
    for mesh in ("../elsewhere/m.stl", "link.stl", str(tmp_path / "elsewhere" / "m.stl")):
        file = data / "t.jsonl"
        file.write_text(json.dumps({"id": "a", "prompt": "p", "mesh": mesh}) + "\n")
        with pytest.raises(DatasetError, match=r"t.jsonl:1: mesh .* outside the dataset's folder"):
            load_jsonl(file, None)
        assert load_jsonl(file, None, allow_outside=True)[0].data["mesh_path"].endswith("m.stl")


BAD_ROWS = [
    ({"id": "b", "prompt": "p", "code": BOX, "key_dims": [{"kind": "hole"}]}, r"key_dims\[0\] \(hole\) needs"),
    ({"id": "b", "prompt": "p", "code": BOX, "key_dims": [{"kind": "spline", "value": 1}]}, r"unknown kind 'spline'"),
    ({"id": "b", "prompt": "p", "code": BOX, "key_dims": [{"kind": "extent", "value": 1}]}, r"needs 'axis'"),
    ({"id": "b", "prompt": "p", "code": BOX, "key_dims": {"kind": "extent"}}, r"'key_dims' must be a list"),
    ({"id": "b", "prompt": "p", "code": BOX, "key_dims": [{"kind": "hole", "diameter": 2, "count": "4"}]}, "count"),
    (
        {"id": "b", "prompt": "p", "code": BOX, "key_dims": [{"kind": "hole", "diameter": 2, "centers": [[1]]}]},
        "centers",
    ),
    ({"id": "b", "prompt": ["p"], "code": BOX}, r"'prompt' must be text"),
    ({"id": "b", "prompt": "p", "code": {"src": BOX}}, r"'code' must be text"),
    ({"id": "b", "prompt": "p", "code": BOX, "orientation": "any"}, r"'orientation' must be"),
    (["not", "an", "object"], r"expected a JSON object"),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_a_malformed_row_is_named_at_load_time(tmp_path: Path, row, message: str) -> None:
    file = tmp_path / "bad.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in [{"id": "a", "prompt": "p", "code": BOX}, row]) + "\n")
    with pytest.raises(DatasetError, match=message) as err:
        load_jsonl(file, None)
    assert str(err.value).startswith(f"{file}:2: ") and "\n" not in str(err.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks = load_jsonl(file, None, skip_bad=True)
    assert [t.id for t in tasks] == ["a"]
    assert any("skipped 1 malformed row" in str(w.message) for w in caught)


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=r"deep.jsonl") as err:
        load_jsonl(deep, None)
    assert "\n" not in str(err.value) and not isinstance(err.value, RecursionError)
    dup = tmp_path / "dup.jsonl"
    dup.write_text("\n".join(json.dumps({"id": "a", "prompt": "p", "code": BOX}) for _ in range(2)) + "\n")
    with pytest.raises(DatasetError, match=r"dup.jsonl: task id\(s\) \['a'\] appear more than once"):
        load_jsonl(dup, None)


def test_cadprompt_samples_with_nothing_to_grade_are_named(tmp_path: Path) -> None:
    root = tmp_path / "cadprompt"
    sample(root, "0001")
    sample(root, "0002", code="   \n")
    with pytest.raises(DatasetError, match=r"sample '0002': nothing to grade against"):
        load_cadprompt(root, None)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert [t.id for t in load_cadprompt(root, None, skip_bad=True)] == ["0001"]


def test_env_options_reach_the_loaders(tmp_path: Path) -> None:
    pytest.importorskip("cadquery")
    from execgym.envs.cad.env import CADModelEnv

    file = tmp_path / "bad.jsonl"
    file.write_text(
        json.dumps({"id": "a", "prompt": "p", "code": BOX})
        + "\n"
        + json.dumps({"id": "b", "prompt": "p", "code": BOX, "key_dims": [{"kind": "hole"}]})
        + "\n"
    )
    with pytest.raises(DatasetError, match=r"bad.jsonl:2"):
        CADModelEnv(dataset=f"jsonl:{file}")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        env = CADModelEnv(dataset=f"jsonl:{file}", skip_invalid_rows=True)
    assert env.tasks.ids() == ["a"]
    env.close()


# A reference program that tells where it ran: 10 mm wide in a container, 20 mm elsewhere.
WHERE = (
    "import os\nimport cadquery as cq\nresult = cq.Workplane().box(10 if os.path.exists('/.dockerenv') else 20, 5, 5)\n"
)


@pytest.mark.docker
def test_reference_programs_run_under_the_chosen_executor(tmp_path: Path) -> None:
    pytest.importorskip("cadquery")
    from execgym.envs.cad.env import CADModelEnv

    require_docker("cad")
    file = tmp_path / "where.jsonl"
    file.write_text(json.dumps({"id": "where", "prompt": "a block", "code": WHERE}) + "\n")
    env = CADModelEnv(dataset=f"jsonl:{file}", executor="docker", run_timeout_s=8.0, memory_mb=768)
    try:
        env.reset(options={"task_id": "where"})
        assert env.grader.summary(env._ref_key)["size"][0] == pytest.approx(10.0)
        assert env.grader.process.executor.name == "docker"
    finally:
        env.close()
