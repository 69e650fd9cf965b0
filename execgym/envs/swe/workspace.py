"""A task's working copy: where its repository comes from, how its tests run, and the oracle that repairs it.

:func:`workspace` turns a task (bundled, generated or SWE-bench) into a :class:`Workspace`, cached per task in
a bounded LRU; a SWE-bench task with a ``base_commit`` is checked out once with ``git archive`` into the cache
folder (``$EXECGYM_CACHE_DIR/swe/checkouts``).

Example:
    >>> from execgym.envs.swe.tasks import bundled_tasks
    >>> ws = workspace(bundled_tasks()[0])
    >>> ws.image, ws.image_repo_dir, len(ws.start_files) >= 1
    ('python', None, True)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from execgym.core.errors import InfraError
from execgym.core.tasks import Task
from execgym.envs.swe.grading import nodeid_file
from execgym.envs.swe.patches import apply_patch, reverse_patch, touched_paths
from execgym.envs.swe.repos import bundled_repo, cache_root
from execgym.envs.swe.runner import TestCommand

__all__ = ["Workspace", "oracle_actions", "parse_test_cmd", "workspace"]

WORKSPACE_CACHE_SIZE = 512


@dataclass(frozen=True)
class Workspace:
    """Where a task's repository comes from and how its tests run.

    ``base_dir``: a host folder holding the repository at its base state (None: it is in ``image``, at
    ``image_repo_dir``). ``start_files``: files written over the base for the episode (the bug). ``hidden``:
    files removed from the agent's copy and present only for grading. ``test_patch``: applied only for
    grading. ``run_tests_args``: what ``run_tests()`` runs without a selector. ``python``: the interpreter
    that runs the tests on the local executor (a task's venv ``bin/python``; None: the executor's own).
    """

    base_dir: Path | None
    image: str
    image_repo_dir: str | None
    start_files: Mapping[str, str]
    hidden: tuple[str, ...]
    test_patch: str
    command: TestCommand
    run_tests_args: tuple[str, ...]
    protected: tuple[str, ...]
    python: str | None = None


def oracle_actions(gold_patch: str) -> tuple[dict[str, Any], ...]:
    """The oracle of a repair task: apply the gold patch, then submit."""
    return ({"name": "apply_patch", "arguments": {"patch": gold_patch}}, {"name": "submit", "arguments": {}})


# Workspaces are pure functions of their task (its id and patches), so one process-wide cache serves every env.
_workspaces: LRUCache[tuple[str, str], Workspace] = LRUCache(WORKSPACE_CACHE_SIZE)
_workspaces_lock = threading.Lock()


def workspace(task: Task, *, hide_tests: bool = False) -> Workspace:
    """The workspace of a task (bundled, generated or SWE-bench), cached per task."""
    data = task.data
    fingerprint = "\0".join(
        str(data.get(k) or "") for k in ("gold_patch", "test_patch", "repo_path", "image", "repo_dir", "venv")
    )
    key = (f"{task.source}:{task.id}:{hide_tests}", hashlib.sha1(fingerprint.encode()).hexdigest())
    with _workspaces_lock:
        found = _workspaces.get(key)
    if found is not None:
        return found
    ws = _build(task, hide_tests)
    with _workspaces_lock:
        _workspaces[key] = ws
    return ws


def _build(task: Task, hide_tests: bool) -> Workspace:
    data = task.data
    graded = [*data.get("FAIL_TO_PASS", ()), *data.get("PASS_TO_PASS", ())]
    graded_files = tuple(sorted({nodeid_file(t) for t in graded}))
    if data.get("kind") == "bundled":
        repo = bundled_repo(data["repo"])
        clean = {p: (repo.root / p).read_text(encoding="utf-8") for p in touched_paths(data["gold_patch"])}
        buggy = apply_patch(reverse_patch(data["gold_patch"]), clean.get)
        hidden = tuple(sorted({nodeid_file(t) for t in data["FAIL_TO_PASS"]})) if hide_tests else ()
        return Workspace(
            repo.root,
            "python",
            None,
            {p: c for p, c in buggy.items() if c is not None},
            hidden,
            "",
            repo.command,
            (),
            graded_files,
        )
    if data.get("kind") == "swebench":
        command = TestCommand(parse_test_cmd(data.get("test_cmd")), dict(data.get("env") or {}), autoload_plugins=True)
        base = _checkout(Path(data["repo_path"]), data.get("base_commit") or "") if data.get("repo_path") else None
        protected = (
            tuple(sorted({*graded_files, *touched_paths(data["test_patch"])}))
            if data.get("test_patch")
            else graded_files
        )
        # With repo_path the image (if any) is only the tests' environment: the code comes from the host.
        return Workspace(
            base,
            data.get("image") or "python",
            data.get("repo_dir") if data.get("image") and base is None else None,
            {},
            (),
            data.get("test_patch") or "",
            command,
            graded_files,
            protected,
            os.path.join(data["venv"], "bin", "python") if data.get("venv") else None,
        )
    raise ValueError(f"task {task.id}: unknown kind {data.get('kind')!r}")


def parse_test_cmd(value: Any) -> tuple[str, ...] | str:
    """A dataset's ``test_cmd`` as a command (default ``python -m pytest``), or ``ValueError``."""
    if value is None or value == "":
        return ("python", "-m", "pytest")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"test_cmd must be a shell string or a list of strings, got {value!r}")


_checkout_lock = threading.Lock()


def _checkout(repo_path: Path, base_commit: str) -> Path:
    """A host folder holding ``repo_path`` at ``base_commit`` (extracted once with ``git archive``).

    A plain folder (no ``.git``), or no ``base_commit``, is used as it is.
    """
    repo_path = repo_path.expanduser().resolve()
    if not repo_path.is_dir():
        # It was a folder when the dataset loaded: the machine lost it, the policy had no part in it.
        raise InfraError(f"repo_path {str(repo_path)!r} is no longer a folder (it was when the dataset loaded)")
    if not base_commit or not (repo_path / ".git").exists():
        if base_commit and not (repo_path / ".git").exists():
            raise ValueError(f"repo_path {str(repo_path)!r} is not a git checkout, but base_commit is set")
        return repo_path
    key = hashlib.sha1(str(repo_path).encode()).hexdigest()[:12]
    target = cache_root() / "checkouts" / f"{repo_path.name}-{key}-{base_commit[:12]}"
    with _checkout_lock:
        if target.is_dir():
            return target
        git = ["git", "-c", "core.hooksPath=/dev/null", "-C", str(repo_path)]
        probe = subprocess.run([*git, "cat-file", "-e", f"{base_commit}^{{commit}}"], capture_output=True)
        if probe.returncode != 0:
            raise ValueError(f"{repo_path}: base_commit {base_commit} is not a commit of this repository")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            archive = Path(tmp) / "base.tar"
            with archive.open("wb") as out:
                done = subprocess.run(
                    [*git, "archive", "--format=tar", base_commit], stdout=out, stderr=subprocess.PIPE
                )
            if done.returncode != 0:
                raise ValueError(f"git archive {base_commit} failed: {done.stderr.decode(errors='replace')}")
            tree = Path(tmp) / "tree"
            tree.mkdir()
            try:
                with tarfile.open(archive) as tar:
                    tar.extractall(tree, filter="data")
            except tarfile.TarError as exc:  # a link out of the tree, an absolute path
                raise ValueError(f"{repo_path} at {base_commit}: refused a file of the checkout: {exc}") from None
            os.replace(tree, target)
    return target
