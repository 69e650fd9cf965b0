"""The SWE-bench loader: instances from a JSON/JSONL file, each row checked when it loads.

Use it as ``dataset="swebench:FILE.jsonl"`` (see :func:`load_swebench`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from execgym.core.tasks import Task, read_json_or_jsonl
from execgym.envs.swe.grading import nodeid_file
from execgym.envs.swe.patches import PatchError, touched_paths
from execgym.envs.swe.repos import cache_root
from execgym.envs.swe.workspace import oracle_actions, parse_test_cmd
from execgym.executor import PathError, validate_relpath

__all__ = ["load_swebench"]

_REQUIRED = ("instance_id", "problem_statement", "patch", "FAIL_TO_PASS", "PASS_TO_PASS")


def _test_list(value: Any, field_name: str, *, nonempty: bool = False) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise ValueError(f"{field_name} is not a JSON list: {value[:80]!r}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{field_name}: expected a list of pytest node ids")
    if nonempty and not value:
        raise ValueError(f"{field_name} is empty: a task needs at least one failing test to fix")
    for nodeid in value:
        try:
            validate_relpath(nodeid_file(nodeid))
        except PathError as exc:
            raise ValueError(f"{field_name}: test {nodeid!r}: {exc}") from None
    return value


def _patch_paths(value: Any, field_name: str, *, required: bool) -> str:
    """A patch field checked at load time: text that parses, touching only paths inside the repository."""
    if value is None or value == "":
        if required:
            raise ValueError(f"{field_name} is empty")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field_name}: expected a unified diff (text), got {type(value).__name__}")
    try:
        paths = touched_paths(value)
    except PatchError as exc:
        raise ValueError(f"{field_name} does not parse: {exc}") from None
    except RecursionError:
        raise ValueError(f"{field_name} does not parse: nested too deeply") from None
    for rel in paths:
        try:
            validate_relpath(rel)
        except PathError as exc:
            raise ValueError(f"{field_name} touches a path outside the repository: {exc}") from None
    return value


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


def _escaping_link(folder: Path, roots: Sequence[Path], limit: int = 200_000) -> str | None:
    """The first symlink under ``folder`` whose target lies outside ``roots`` (None: there is none)."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [*dirnames, *filenames]:
            seen += 1
            if seen > limit:
                return f"{folder} (over {limit:,} entries: too large to check)"
            full = Path(dirpath) / name
            if full.is_symlink() and not _inside(full, roots):
                return str(full.relative_to(folder))
    return None


def _venv(value: Any, path: Path, roots: Sequence[Path] | None) -> str | None:
    """A row's ``venv`` checked: a folder holding ``bin/python``, inside the allowed roots or execgym's
    environment cache (``cache_root() / "envs"``); returned resolved (symlinks followed), or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"venv must be a string, got {type(value).__name__}")
    full = Path(value) if os.path.isabs(value) else path.parent / value
    if roots is not None and not _inside(full, [*roots, cache_root() / "envs"]):
        raise ValueError(
            f"venv {value!r} resolves outside the dataset's folder {str(path.parent)!r} and execgym's environment "
            f"cache {str(cache_root() / 'envs')!r} (pass allow_paths_outside_dataset=True to allow it)"
        )
    if not full.is_dir():
        raise ValueError(f"venv {value!r} is not a folder")
    python = Path(os.path.realpath(full)) / "bin" / "python"
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise ValueError(f"venv {value!r} holds no bin/python: not a virtual environment")
    return os.path.realpath(full)


def _row(
    row: Any, n: int, path: Path, *, roots: Sequence[Path] | None, checked: dict[str, str | None]
) -> dict[str, Any]:
    """One instance's task data, or ``ValueError`` saying what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError(f"expected an object, got {type(row).__name__}")
    missing = [k for k in _REQUIRED if k not in row]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if not isinstance(row["instance_id"], (str, int)) or not str(row["instance_id"]).strip():
        raise ValueError("instance_id must be a non-empty string")
    if not isinstance(row["problem_statement"], str):
        raise ValueError("problem_statement must be text")
    for key in ("repo", "base_commit", "image", "repo_dir", "split", "difficulty"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise ValueError(f"{key} must be a string, got {type(row[key]).__name__}")
    env = row.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ValueError("env must be an object of string values")
    repo_path = row.get("repo_path")
    if repo_path:
        if not isinstance(repo_path, str):
            raise ValueError("repo_path must be a string")
        full = Path(repo_path) if os.path.isabs(repo_path) else path.parent / repo_path
        if roots is not None and not _inside(full, roots):
            raise ValueError(
                f"repo_path {repo_path!r} resolves outside the dataset's folder {str(path.parent)!r} "
                "(pass allow_paths_outside_dataset=True to allow it)"
            )
        if not full.is_dir():
            raise ValueError(f"repo_path {repo_path!r} is not a folder")
        repo_path = os.path.realpath(full)
        if roots is not None and not row.get("base_commit"):
            if repo_path not in checked:
                checked[repo_path] = _escaping_link(Path(repo_path), roots)
            if checked[repo_path]:
                link = checked[repo_path]
                raise ValueError(f"repo_path {row['repo_path']!r} holds a link outside the dataset: {link}")
    elif not row.get("image"):
        raise ValueError("needs 'repo_path' (a local checkout) or 'image' (a Docker image)")
    venv = _venv(row.get("venv"), path, roots)
    repo_dir = row.get("repo_dir") or "/testbed"
    if not repo_dir.startswith("/"):
        raise ValueError(f"repo_dir must be an absolute path in the image, got {repo_dir!r}")
    data = {
        "kind": "swebench",
        "repo": row.get("repo") or "",
        "base_commit": row.get("base_commit") or "",
        "repo_path": repo_path,
        "image": row.get("image"),
        "venv": venv,
        "repo_dir": repo_dir,
        "gold_patch": _patch_paths(row["patch"], "patch", required=True),
        "test_patch": _patch_paths(row.get("test_patch"), "test_patch", required=False),
        "FAIL_TO_PASS": _test_list(row["FAIL_TO_PASS"], "FAIL_TO_PASS", nonempty=True),
        "PASS_TO_PASS": _test_list(row["PASS_TO_PASS"], "PASS_TO_PASS"),
        "test_cmd": row.get("test_cmd"),
        "env": dict(env),
    }
    parse_test_cmd(data["test_cmd"])
    return data


def load_swebench(
    path: Path, split: str | None, *, allowed_roots: Sequence[Path | str] | None = (), skip_invalid: bool = False
) -> list[Task]:
    """Load SWE-bench-format instances from a JSON/JSONL file (or ``<folder>/<split or test>.jsonl``).

    Each instance has ``instance_id``, ``repo``, ``base_commit``, ``patch`` (the gold fix), ``test_patch``,
    ``problem_statement``, ``FAIL_TO_PASS`` (at least one) and ``PASS_TO_PASS`` (lists, or JSON-encoded
    lists of pytest node ids), and either ``repo_path`` (a local git checkout containing ``base_commit``,
    or a plain folder at the base state; relative paths are relative to the file) or ``image`` (a Docker
    image holding the repo at ``repo_dir``, default ``/testbed``; needs ``executor="docker"``). With both,
    ``image`` is only the tests' environment on Docker (the repository comes from ``repo_path``). Optional:
    ``venv`` (a virtual environment, relative to the file or absolute, whose ``bin/python`` runs the tests
    on the local executor), ``test_cmd`` (a list, or a shell string; default ``python -m pytest``), ``env``
    (variables for the tests), ``split``, ``difficulty``.

    Every row is checked here, not later: an error names the file and the row in one line (with
    ``skip_invalid``, bad rows are left out and counted in a warning). ``repo_path`` must resolve (symlinks
    followed) inside the dataset file's folder or one of ``allowed_roots``, and a plain folder may hold no
    link that leads out of them; ``venv`` likewise, or inside execgym's environment cache
    (``$EXECGYM_CACHE_DIR/swe/envs``), and must hold ``bin/python``; ``allowed_roots=None`` allows any folder.
    """
    path = Path(path)
    if path.is_dir():
        name = split or "test"
        candidates = [path / f"{name}.jsonl", path / f"{name}.json"]
        path = next((c for c in candidates if c.is_file()), candidates[0])
        if not path.is_file():
            raise FileNotFoundError(f"no {name}.jsonl or {name}.json in {path.parent}")
    roots = None if allowed_roots is None else [path.parent, *(Path(r) for r in allowed_roots)]
    tasks: list[Task] = []
    seen: set[str] = set()
    checked: dict[str, str | None] = {}
    skipped: list[str] = []
    for n, row in enumerate(read_json_or_jsonl(path), 1):
        ident = row.get("instance_id") if isinstance(row, dict) else None
        where = f"{path}: instance #{n}" + (f" ({ident})" if isinstance(ident, (str, int)) else "")
        try:
            data = _row(row, n, path, roots=roots, checked=checked)
            if str(row["instance_id"]) in seen:
                raise ValueError(f"instance_id {row['instance_id']!r} appears twice")
        except (ValueError, TypeError, RecursionError) as exc:
            message = f"{where}: {exc}".splitlines()[0]
            if skip_invalid:
                skipped.append(message)
                continue
            raise ValueError(message) from None
        seen.add(str(row["instance_id"]))
        if split is not None and row.get("split") not in (None, split):
            continue
        header = f"Repository: {row['repo']}\n\n" if row.get("repo") else ""
        tasks.append(
            Task(
                id=str(row["instance_id"]),
                prompt=header + row["problem_statement"].strip() + "\n\nFix the issue in the repository "
                "(tests may be added to check it). Call submit() when you are done.",
                data=data,
                oracle=oracle_actions(row["patch"]),
                difficulty=str(row.get("difficulty") or "medium"),
                split=str(row.get("split") or split or "test"),
                source=f"swebench:{path}",
            )
        )
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} malformed instance(s); first: {skipped[0]}", stacklevel=2)
    return tasks
