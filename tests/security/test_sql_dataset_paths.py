"""Datasets are untrusted input: every database a Text-to-SQL dataset names must resolve inside its own folder.

A ``jsonl:`` row's ``db_path`` that is absolute, starts with ``~``, climbs out with ``..``, or goes through a
symlink (to a file or a folder) that leaves the dataset folder is an error at load time that names the file and
the row; so is a symlinked database file or db folder in ``spider:`` and ``bird:`` layouts.
``allow_paths_outside_dataset`` is the one explicit way to allow more. A symlink swapped in after loading is
refused when the file is opened. Nothing of an outside database reaches an observation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from execgym.core.errors import InfraError
from execgym.envs.sql.env import TextToSQLEnv
from tests.envs.sql.conftest import make_db

SECRET = "top-secret-row"


def call(tool: str, /, **arguments: object) -> str:
    return f"<tool_call>{json.dumps({'name': tool, 'arguments': arguments})}</tool_call>"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A database outside the dataset folder whose rows must never be shown."""
    path = make_db(tmp_path / "private" / "secret.sqlite",
                   [(1, SECRET, "office", 1.0, None), (2, "other", "office", 2.0, None)])
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dataset"
    make_db(folder / "dbs" / "shop.sqlite")
    return folder


def _jsonl(folder: Path, db_path: str, name: str = "tasks.jsonl") -> Path:
    file = folder / name
    rows = [
        {"id": "ok", "db_path": "dbs/shop.sqlite", "question": "How many?", "query": "SELECT COUNT(*) FROM items"},
        {"id": "bad", "db_path": db_path, "question": "Names?", "query": "SELECT name FROM items"},
    ]
    file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return file


def _hostile_db_paths(data_dir: Path, outside: Path) -> dict[str, str]:
    (data_dir / "link.sqlite").symlink_to(outside)
    (data_dir / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    (data_dir / "dbs" / "nested").mkdir()
    (data_dir / "dbs" / "nested" / "up.sqlite").symlink_to(Path("..") / ".." / ".." / "private" / "secret.sqlite")
    home_relative = Path("~") / Path(*Path("..").parts)  # "~/.." then the absolute path below it
    return {
        "absolute": str(outside),
        "dotdot": str(Path("..") / "private" / "secret.sqlite"),
        "dotdot_inside_then_out": "dbs/../../private/secret.sqlite",
        "symlink_file": "link.sqlite",
        "symlink_dir": "linkdir",
        "symlink_dir_file": "linkdir/secret.sqlite",
        "relative_symlink": "dbs/nested/up.sqlite",
        "home": str(home_relative) + str(outside),
    }


@pytest.mark.parametrize("case", ["absolute", "dotdot", "dotdot_inside_then_out", "symlink_file", "symlink_dir",
                                  "symlink_dir_file", "relative_symlink", "home"])
def test_jsonl_db_path_outside_the_dataset_is_refused_at_load(data_dir, outside, case):
    db_path = _hostile_db_paths(data_dir, outside)[case]
    file = _jsonl(data_dir, db_path)
    with pytest.raises(ValueError, match=r"tasks\.jsonl: line 2: .*resolves outside the dataset folder") as err:
        TextToSQLEnv(dataset=f"jsonl:{file}")
    assert "\n" not in str(err.value) and "allow_paths_outside_dataset" in str(err.value)


def test_skipping_hostile_rows_keeps_the_good_ones(data_dir, outside):
    file = _jsonl(data_dir, str(outside))
    with pytest.warns(UserWarning, match="skipped 1 of 2 rows"):
        env = TextToSQLEnv(dataset=f"jsonl:{file}", skip_invalid_rows=True)
    assert env.tasks.ids() == ["ok"] and len(env.skipped_rows) == 1 and "line 2" in env.skipped_rows[0]
    env.close()


def test_allow_paths_outside_dataset_is_the_explicit_way_to_allow_more(data_dir, outside):
    (data_dir / "link.sqlite").symlink_to(outside)
    file = _jsonl(data_dir, "link.sqlite")
    env = TextToSQLEnv(dataset=f"jsonl:{file}", allow_paths_outside_dataset=[str(outside.parent)])
    env.reset(options={"task_id": "bad"})
    obs, *_ = env.step(call("execute_sql", query="SELECT name FROM items"))
    assert SECRET in obs  # allowed on purpose
    env.close()
    # Allowing one folder allows that folder only.
    other = make_db(outside.parent.parent / "elsewhere" / "x.sqlite")
    file = _jsonl(data_dir, str(other), name="other.jsonl")
    with pytest.raises(ValueError, match="resolves outside"):
        TextToSQLEnv(dataset=f"jsonl:{file}", allow_paths_outside_dataset=[str(outside.parent)])
    env = TextToSQLEnv(dataset=f"jsonl:{file}", allow_paths_outside_dataset=True)
    assert env.tasks.ids() == ["ok", "bad"]
    env.close()
    with pytest.raises(TypeError, match="True/False or a list"):
        TextToSQLEnv(dataset=f"jsonl:{file}", allow_paths_outside_dataset=str(outside.parent))


def _spider(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    root.joinpath("dev.json").write_text(json.dumps([
        {"db_id": "shop", "question": "Names?", "query": "SELECT name FROM items"}]))
    return root


def test_spider_symlinked_database_file_or_folder_is_refused(tmp_path, outside):
    root = _spider(tmp_path / "spider")
    (root / "database").mkdir()
    (root / "database" / "shop").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(ValueError, match=r"dev\.json: entry 0: database .*resolves outside"):
        TextToSQLEnv(dataset=f"spider:{root}")
    (root / "database" / "shop").unlink()
    (root / "database" / "shop").mkdir()
    (root / "database" / "shop" / "shop.sqlite").symlink_to(outside)
    with pytest.raises(ValueError, match="resolves outside"):
        TextToSQLEnv(dataset=f"spider:{root}")
    # A symlink that stays inside the dataset folder is fine.
    (root / "database" / "shop" / "shop.sqlite").unlink()
    real = make_db(root / "store" / "shop_real.sqlite")
    (root / "database" / "shop" / "shop.sqlite").symlink_to(real)
    env = TextToSQLEnv(dataset=f"spider:{root}")
    env.reset(seed=0)
    assert env.step(env.task.oracle[0])[1] == 1.0
    env.close()


def test_spider_variant_symlink_among_real_files_is_refused(tmp_path, outside):
    root = _spider(tmp_path / "spider")
    make_db(root / "database" / "shop" / "shop.sqlite")
    (root / "database" / "shop" / "shop_v2.sqlite").symlink_to(outside)
    with pytest.raises(ValueError, match="resolves outside"):
        TextToSQLEnv(dataset=f"spider:{root}")


def test_bird_symlinked_database_is_refused(tmp_path, outside):
    root = tmp_path / "bird"
    (root / "dev_databases" / "shop").mkdir(parents=True)
    (root / "dev_databases" / "shop" / "shop.sqlite").symlink_to(outside)
    root.joinpath("dev.json").write_text(json.dumps([
        {"question_id": 1, "db_id": "shop", "question": "Names?", "SQL": "SELECT name FROM items"}]))
    with pytest.raises(ValueError, match=r"dev\.json: entry 0: database .*resolves outside"):
        TextToSQLEnv(dataset=f"bird:{root}")
    env = TextToSQLEnv(dataset=f"bird:{root}", allow_paths_outside_dataset=[outside.parent])
    assert len(env.tasks) == 1
    env.close()


@pytest.mark.parametrize("split", ["../private/x", "/etc/passwd", "..", "a/b"])
def test_split_must_be_a_plain_name(tmp_path, split):
    root = _spider(tmp_path / "spider")
    with pytest.raises(ValueError, match="not a plain name"):
        TextToSQLEnv(dataset=f"spider:{root}", split=split)


def test_a_symlink_swapped_in_after_loading_is_refused_when_opened(data_dir, outside):
    file = _jsonl(data_dir, "dbs/shop.sqlite")
    env = TextToSQLEnv(dataset=f"jsonl:{file}")
    db = data_dir / "dbs" / "shop.sqlite"
    db.unlink()
    db.symlink_to(outside)
    with pytest.raises(InfraError, match="resolves elsewhere"):
        env.reset(options={"task_id": "bad"})
    env.close()


def test_a_symlinked_dataset_folder_is_the_users_choice(tmp_path, data_dir):
    """The path the user passes may itself be a symlink: its target is the dataset folder."""
    _jsonl(data_dir, "dbs/shop.sqlite")
    link = tmp_path / "alias"
    link.symlink_to(data_dir, target_is_directory=True)
    env = TextToSQLEnv(dataset=f"jsonl:{link / 'tasks.jsonl'}")
    env.reset(options={"task_id": "bad"})
    assert env.step(env.task.oracle[0])[1] == 1.0
    env.close()


def test_a_hard_link_to_a_database_outside_is_refused_at_load(data_dir, outside):
    """No path check can see where a hard link leads: a database file with more than one link is refused."""
    os.link(outside, data_dir / "dbs" / "hard.sqlite")
    file = _jsonl(data_dir, "dbs/hard.sqlite")
    with pytest.raises(ValueError, match=r"tasks\.jsonl: line 2: .*hard links") as err:
        TextToSQLEnv(dataset=f"jsonl:{file}")
    assert "\n" not in str(err.value) and "allow_paths_outside_dataset=True" in str(err.value)
    root = data_dir.parent / "spider"
    make_db(root / "database" / "shop" / "shop.sqlite")
    (root / "database" / "other").mkdir()
    os.link(outside, root / "database" / "other" / "other.sqlite")
    (root / "dev.json").write_text(json.dumps([{"db_id": "other", "question": "q", "query": "SELECT 1 FROM items"}]))
    with pytest.raises(ValueError, match="hard links"):
        TextToSQLEnv(dataset=f"spider:{root}")
    env = TextToSQLEnv(dataset=f"jsonl:{file}", allow_paths_outside_dataset=True)
    env.reset(options={"task_id": "bad"})
    obs, *_ = env.step(call("execute_sql", query="SELECT name FROM items WHERE id = 1"))
    assert SECRET in obs  # the explicit opt-in
    env.close()
