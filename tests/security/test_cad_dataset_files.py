"""Every file a CAD dataset names is a regular file of bounded size, checked at load without opening it:
a FIFO (which would block a reader forever), a device or an oversized file is a one-line error naming
the file and the row or sample."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from execgym.envs.cad import tasks as cad_tasks
from execgym.envs.cad.tasks import DatasetError, load_cadprompt, load_jsonl, read_regular_file

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")

BOX = "import cadquery as cq\nresult = cq.Workplane().box(3, 2, 1)\n"


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A regression (a blocking open of a FIFO) fails the test instead of hanging the run."""

    def boom(*_: object) -> None:
        raise TimeoutError("the loader blocked on a non-regular file")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _sample(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "Python_Code.py").write_text(BOX)
    (folder / "Natural_Language_Descriptions_Prompt.txt").write_text("A small block.")
    return folder


@pytest.mark.parametrize("name", ["Python_Code.py", "Natural_Language_Descriptions_Prompt.txt", "Ground_Truth.stl"])
def test_a_fifo_in_a_cadprompt_sample_is_refused_at_load(tmp_path: Path, name: str) -> None:
    root = tmp_path / "cp"
    _sample(root, "s0")
    folder = _sample(root, "s1")
    (folder / name).unlink(missing_ok=True)
    os.mkfifo(folder / name)
    with pytest.raises(DatasetError, match=rf"sample 's1'.*{name.replace('.', '[.]')}.*not a regular file") as err:
        load_cadprompt(root, None)
    assert "\n" not in str(err.value)
    # skip_bad skips just that sample
    with pytest.warns(UserWarning, match="skipped 1"):
        assert [t.id for t in load_cadprompt(root, None, skip_bad=True)] == ["s0"]


def test_a_fifo_or_oversized_jsonl_mesh_is_refused_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(tmp_path / "pipe.stl")
    (tmp_path / "big.stl").write_bytes(b"\0" * 2048)
    (tmp_path / "data.jsonl").write_text(json.dumps({"id": "a", "prompt": "p", "mesh": "pipe.stl"}) + "\n")
    with pytest.raises(DatasetError, match=r"data.jsonl:1: mesh .*pipe.stl.* is not a regular file"):
        load_jsonl(tmp_path / "data.jsonl", None)
    monkeypatch.setattr(cad_tasks, "MAX_MESH_BYTES", 1024)
    (tmp_path / "data.jsonl").write_text(json.dumps({"id": "b", "prompt": "p", "mesh": "big.stl"}) + "\n")
    with pytest.raises(DatasetError, match=r"data.jsonl:1: mesh .*big.stl.* 2048 bytes, over the 1024-byte limit"):
        load_jsonl(tmp_path / "data.jsonl", None)


def test_a_fifo_as_the_dataset_file_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "test.jsonl")
    with pytest.raises(DatasetError, match="not a regular file"):
        load_jsonl(tmp_path, None)


def test_a_mesh_swapped_for_a_fifo_after_loading_cannot_hang_the_reader(tmp_path: Path) -> None:
    mesh = tmp_path / "m.stl"
    mesh.write_bytes(b"solid")
    assert read_regular_file(mesh, "row 1", "mesh", 100) == b"solid"
    with pytest.raises(DatasetError, match="over the 3-byte limit"):
        read_regular_file(mesh, "row 1", "mesh", 3)
    mesh.unlink()
    os.mkfifo(mesh)
    with pytest.raises(DatasetError, match=r"row 1: mesh .*m.stl.* not a regular file"):
        read_regular_file(mesh, "row 1", "mesh", 100)
