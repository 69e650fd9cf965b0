"""The bundled repositories and their bug catalogue (data shipped with execgym; reading them runs nothing).

Bundled repositories live in ``execgym/assets/swe/repos/<name>`` (small libraries written for execgym, run
from their folder; the root is on ``sys.path``, last). ``execgym/assets/swe/catalogue.json`` holds, per
repository, its test ids and every single-mutation bug (see :mod:`execgym.envs.swe.mutations`) that was
validated in a sandbox, plus the bundled tasks made from them. It is rebuilt with
``python -m execgym.envs.swe.build``.

Example:
    >>> repo = bundled_repo("calcy")
    >>> repo.name in bundled_repo_names(), sorted(load_catalogue()["repos"]) == list(bundled_repo_names())
    (True, True)
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from execgym.envs.swe.grading import classify_path
from execgym.envs.swe.runner import TestCommand, host_manifest

__all__ = [
    "BUNDLED_COMMAND",
    "CATALOGUE_FORMAT",
    "CATALOGUE_PATH",
    "REPOS_DIR",
    "BundledRepo",
    "bundled_repo",
    "bundled_repo_names",
    "cache_root",
    "load_catalogue",
]

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "swe"
REPOS_DIR = ASSETS / "repos"
CATALOGUE_PATH = ASSETS / "catalogue.json"
BUNDLED_COMMAND = TestCommand(("python", "-m", "pytest"), {}, autoload_plugins=False)
"""How every bundled repository runs its tests (read at call time through :attr:`BundledRepo.command`)."""
CATALOGUE_FORMAT = 1


def cache_root() -> Path:
    """Where the SWE env keeps validation results and checkouts (``$EXECGYM_CACHE_DIR`` or ``~/.cache/execgym``)."""
    root = os.environ.get("EXECGYM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "execgym")
    return Path(root) / "swe"


@dataclass(frozen=True)
class BundledRepo:
    """A small library shipped with execgym: its folder, description and files.

    Example:
        >>> repo = bundled_repo("calcy")
        >>> "calcy/parser.py" in repo.library_files(), repo.test_files()[0].startswith("tests/")
        (True, True)
    """

    name: str
    root: Path
    description: str

    @property
    def command(self) -> TestCommand:
        return BUNDLED_COMMAND

    def library_files(self) -> dict[str, str]:
        """Library source files (relative path -> text): Python files that are not tests or config."""
        return {
            rel: (self.root / rel).read_text(encoding="utf-8")
            for rel in self._files()
            if rel.endswith(".py") and classify_path(rel) == "source"
        }

    def test_files(self) -> list[str]:
        return [rel for rel in self._files() if rel.endswith(".py") and classify_path(rel) != "source"]

    def _files(self) -> list[str]:
        return sorted(self._manifest())

    def _manifest(self) -> dict[str, str]:
        # Bytecode is left out: installing the package compiles the repositories' files next to them.
        return {
            rel: h
            for rel, h in host_manifest(self.root).items()
            if "__pycache__" not in rel.split("/") and not rel.endswith(".pyc")
        }

    def content_hash(self) -> str:
        """A hash of every source file (what a catalogue's validation results are valid for)."""
        digest = hashlib.sha256()
        for rel, h in sorted(self._manifest().items()):
            digest.update(f"{rel}\0{h}\n".encode())
        return digest.hexdigest()[:16]


@cache
def bundled_repo_names() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in REPOS_DIR.iterdir() if (p / "pyproject.toml").is_file()))


@cache
def bundled_repo(name: str) -> BundledRepo:
    root = REPOS_DIR / name
    if not (root / "pyproject.toml").is_file():
        raise KeyError(f"no bundled repository {name!r} (have: {', '.join(bundled_repo_names())})")
    meta = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    return BundledRepo(name, root, str(meta.get("description", name)))


@cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, Any]:
    """The shipped catalogue of validated bugs and bundled tasks."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != CATALOGUE_FORMAT:
        raise ValueError(f"{path}: unsupported catalogue format {data.get('format')!r}")
    return data
