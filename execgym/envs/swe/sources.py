"""Where a real project's code comes from: a folder, a git checkout or a PyPI sdist, as a clean snapshot.

A snapshot is the project's files and nothing that could carry an answer: no version-control history (a git
checkout is exported with ``git archive``, so no other commit, tag or branch comes along), no packaged copies
(sdists, wheels, ``*.egg-info``), no caches or bytecode, no virtual environments, no links. PyPI sdists are
fetched on the host (sandboxes have no network) from the index's JSON simple API, checked against its sha256,
and unpacked without running any of the project's code (``pip download`` would build an sdist's metadata).

Example (a folder source):
    >>> import tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> (tmp / "proj" / "pkg").mkdir(parents=True)
    >>> _ = (tmp / "proj" / "pkg" / "__init__.py").write_text("X = 1\\n")
    >>> _ = (tmp / "proj" / "pkg" / "__pycache__").mkdir()
    >>> src = fetch_source(str(tmp / "proj"), tmp / "snap")
    >>> src.kind, sorted(p.name for p in (src.root / "pkg").iterdir())
    ('folder', ['__init__.py'])
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from execgym.envs.swe.runner import host_manifest

__all__ = [
    "INDEX_URL_ENV",
    "ProjectSource",
    "SourceError",
    "SourceSpec",
    "fetch_source",
    "parse_source",
    "pypi_versions",
    "snapshot_tree",
]

INDEX_URL_ENV = "EXECGYM_INDEX_URL"
"""The package index whose JSON simple API sdists come from (default ``$PIP_INDEX_URL`` or PyPI's)."""
DEFAULT_INDEX = "https://pypi.org/simple"
MAX_SDIST_BYTES = 64 * 1024 * 1024
# What never goes into a snapshot: history, packaged copies, caches, environments.
SKIP_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
        ".tox", ".nox", ".venv", ".eggs", "node_modules", ".idea", ".vscode", "htmlcov", "_build",
    }
)  # fmt: skip
# Only at the project's root (a package may hold a module folder named ``build``).
SKIP_TOP_DIRS = frozenset({"build", "dist", "venv", "env"})
SKIP_SUFFIXES = (
    ".pyc", ".pyo", ".so", ".pyd", ".whl", ".tar.gz", ".tgz", ".zip", ".egg", ".orig", ".rej", ".bak", "~", ".swp",
)  # fmt: skip
MAX_FILE_BYTES = 4 * 1024 * 1024


class SourceError(ValueError):
    """A project source that cannot be read or fetched; the message is one line naming the step."""


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``SOURCE`` argument: ``folder``/``git`` with a path, or ``pypi`` with a name and one or two
    versions (``pypi:NAME==A`` or ``pypi:NAME==A..B``).

    Example:
        >>> parse_source("pypi:cachetools==5.4.0..5.5.0")
        SourceSpec(kind='pypi', path=None, name='cachetools', versions=('5.4.0', '5.5.0'))
    """

    kind: str
    path: Path | None = None
    name: str | None = None
    versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectSource:
    """A project's clean snapshot on the host: its name, version (when known), folder and origin."""

    kind: str
    name: str
    version: str | None
    root: Path
    origin: str

    def content_hash(self) -> str:
        """A hash of every file of the snapshot (what mined tasks and their validation are keyed by)."""
        digest = hashlib.sha256()
        for rel, h in sorted(host_manifest(self.root, max_bytes=MAX_FILE_BYTES + 1).items()):
            digest.update(f"{rel}\0{h}\n".encode())
        return digest.hexdigest()[:16]


_PYPI = re.compile(r"^pypi:(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<a>[^.\s][^\s]*?)(?:\.\.(?P<b>[^\s]+))?$")


def parse_source(source: str) -> SourceSpec:
    """``SOURCE`` as a :class:`SourceSpec`, or :class:`SourceError` saying what is wrong with it."""
    if source.startswith("pypi:"):
        match = _PYPI.match(source.strip())
        if not match:
            raise SourceError(f"bad source {source!r}: expected pypi:NAME==VERSION or pypi:NAME==A..B")
        versions = tuple(v for v in (match["a"], match["b"]) if v)
        for v in versions:
            try:
                Version(v)
            except InvalidVersion:
                raise SourceError(f"bad source {source!r}: {v!r} is not a version") from None
        if len(versions) == 2 and Version(versions[0]) >= Version(versions[1]):
            raise SourceError(f"bad source {source!r}: the first version must be older than the second")
        return SourceSpec("pypi", None, match["name"], versions)
    path = Path(source).expanduser()
    if not path.is_dir():
        raise SourceError(f"source {source!r} is not a folder, a git checkout or pypi:NAME==VERSION")
    return SourceSpec("git" if (path / ".git").exists() else "folder", path.resolve())


def snapshot_tree(src: Path, dest: Path) -> Path:
    """Copy ``src`` into the new folder ``dest`` leaving out history, packaged copies, caches and links."""
    dest.mkdir(parents=True)
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS
            and not (Path(dirpath) == src and d in SKIP_TOP_DIRS)
            and not (Path(dirpath, d) / "pyvenv.cfg").exists()
            and not d.endswith((".egg-info", ".dist-info"))
            and not os.path.islink(Path(dirpath, d))
        )
        rel_dir = Path(dirpath).relative_to(src)
        (dest / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            full = Path(dirpath, name)
            if full.is_symlink() or not full.is_file() or name.endswith(SKIP_SUFFIXES) or name == ".coverage":
                continue
            if full.stat().st_size > MAX_FILE_BYTES:
                continue
            shutil.copy2(full, dest / rel_dir / name)
    return dest


_SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def _project_name(root: Path, fallback: str) -> str:
    """The distribution name from pyproject.toml, setup.cfg or PKG-INFO (read, never run), else ``fallback``;
    normalized (PEP 503), and ``fallback`` when it is not a plain name (it names folders and files)."""
    for candidate in (_declared_name(root), fallback):
        name = canonicalize_name(candidate or "")
        if _SAFE_NAME.match(name) and ".." not in name:
            return name
    return "project"


def _declared_name(root: Path) -> str | None:
    import configparser
    import tomllib

    try:
        name = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {}).get("name")
        if isinstance(name, str) and name:
            return name
    except (OSError, tomllib.TOMLDecodeError, AttributeError):
        pass
    cfg = configparser.ConfigParser()
    try:
        cfg.read(root / "setup.cfg", encoding="utf-8")
        if cfg.has_option("metadata", "name"):
            return cfg.get("metadata", "name")
    except (configparser.Error, OSError):
        pass
    try:
        for line in (root / "PKG-INFO").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git_export(repo: Path, dest: Path) -> str:
    """``git archive HEAD`` of ``repo`` unpacked into ``dest`` (tracked files only, no history); the commit."""
    git = ["git", "-c", "core.hooksPath=/dev/null", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        raise SourceError(f"fetch source failed: {repo} has no commit ({head.stderr.strip()[:200]})")
    commit = head.stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "head.tar"
        with archive.open("wb") as out:
            done = subprocess.run([*git, "archive", "--format=tar", commit], stdout=out, stderr=subprocess.PIPE)
        if done.returncode != 0:
            raise SourceError(f"fetch source failed: git archive: {done.stderr.decode(errors='replace')[:200]}")
        tree = Path(tmp) / "tree"
        tree.mkdir()
        _extract(archive, tree)
        snapshot_tree(tree, dest)
    return commit


MAX_UNPACKED_BYTES = 512 * 1024 * 1024
"""The most an archive may unpack to (an sdist is a few MB; more is a bomb, not a project)."""


def _extract(archive: Path, dest: Path) -> None:
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                if sum(info.file_size for info in zf.infolist()) > MAX_UNPACKED_BYTES:
                    raise SourceError(
                        f"fetch source failed: {archive.name} unpacks to over {MAX_UNPACKED_BYTES:,} bytes"
                    )
                for info in zf.infolist():
                    target = (dest / info.filename).resolve()
                    if not str(target).startswith(str(dest.resolve()) + os.sep) and target != dest.resolve():
                        raise SourceError(f"fetch source failed: {archive.name} holds a path outside it")
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tar:
                if sum(member.size for member in tar.getmembers()) > MAX_UNPACKED_BYTES:
                    raise SourceError(
                        f"fetch source failed: {archive.name} unpacks to over {MAX_UNPACKED_BYTES:,} bytes"
                    )
                tar.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"fetch source failed: cannot unpack {archive.name}: {exc}") from None


def _index_url() -> str:
    return (os.environ.get(INDEX_URL_ENV) or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX).rstrip("/")


_ANCHOR = re.compile(
    r"<a\s[^>]*?href=[\"'](?P<href>[^\"'#]+)(?:#sha256=(?P<sha>[0-9a-f]{64}))?[^\"']*[\"'][^>]*>(?P<name>[^<]+)</a>",
    re.I,
)


def _simple_files(name: str, *, timeout: float = 60) -> list[dict]:  # type: ignore[type-arg]
    """The files of a project's page on the index: the JSON simple API (PEP 691), or the HTML one (PEP 503)
    that file mirrors and older indexes serve; a ``file://`` index is read from its ``index.html``."""
    url = f"{_index_url()}/{canonicalize_name(name)}/"
    target = url + "index.html" if url.startswith("file://") else url
    accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    request = urllib.request.Request(target, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(32 * 1024 * 1024).decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        why = "no such project" if exc.code == 404 else f"HTTP {exc.code}"
        raise SourceError(f"fetch source failed: {url}: {why}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, FileNotFoundError) or isinstance(exc, FileNotFoundError):
            raise SourceError(f"fetch source failed: {url}: no such project") from None
        raise SourceError(f"fetch source failed: {url}: {reason}") from None
    try:
        data = json.loads(body)
    except ValueError:
        files = [
            {"filename": m["name"].strip(), "url": m["href"], "hashes": {"sha256": m["sha"]} if m["sha"] else {}}
            for m in _ANCHOR.finditer(body)
        ]
        if files or "<html" in body.lower():
            return files
        raise SourceError(f"fetch source failed: {url} answered neither the JSON nor the HTML simple API") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise SourceError(f"fetch source failed: {url} did not answer with the JSON simple API")
    return files


def _sdists(name: str) -> dict[Version, dict]:  # type: ignore[type-arg]
    out: dict[Version, dict] = {}  # type: ignore[type-arg]
    for entry in _simple_files(name):
        filename = entry.get("filename", "")
        if not filename.endswith((".tar.gz", ".zip")) or entry.get("yanked"):
            continue
        try:
            sdist_name, version = parse_sdist_filename(filename)
        except ValueError:
            continue
        if sdist_name == canonicalize_name(name):
            out[version] = entry
    return out


def pypi_versions(name: str, first: str, last: str) -> list[str]:
    """The released versions of ``name`` from ``first`` to ``last`` (both included) that have an sdist, oldest
    first; pre-releases only where an end is one."""
    a, b = Version(first), Version(last)
    found = sorted(v for v in _sdists(name) if a <= v <= b and (not v.is_prerelease or v in (a, b)))
    for end in (a, b):
        if end not in found:
            raise SourceError(f"fetch source failed: {name} {end} has no sdist on {_index_url()}")
    return [str(v) for v in found]


def _download_sdist(name: str, version: str, dest: Path) -> Path:
    entry = _sdists(name).get(Version(version))
    if entry is None:
        raise SourceError(f"fetch source failed: {name}=={version} has no sdist on {_index_url()}")
    if not isinstance(entry.get("url"), str) or not entry["url"]:
        raise SourceError(f"fetch source failed: the index lists {entry.get('filename')} without a URL")
    # Mirrors answer with URLs relative to the project's page (``../../packages/...``).
    url = urllib.parse.urljoin(f"{_index_url()}/{canonicalize_name(name)}/", entry["url"])
    if not url.startswith(("https://", "http://", "file://")):
        raise SourceError(f"fetch source failed: {entry.get('filename')}: unsupported URL {url[:100]!r}")
    target = dest / entry["filename"]
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=120) as response, target.open("wb") as out:
            while chunk := response.read(1 << 16):
                size += len(chunk)
                if size > MAX_SDIST_BYTES:
                    raise SourceError(f"fetch source failed: {entry['filename']} is over {MAX_SDIST_BYTES:,} bytes")
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SourceError(f"fetch source failed: {url}: {getattr(exc, 'reason', exc)}") from None
    expected = (entry.get("hashes") or {}).get("sha256")
    if expected and digest.hexdigest() != expected:
        raise SourceError(f"fetch source failed: {entry['filename']}: sha256 does not match the index's")
    return target


def fetch_source(source: str | SourceSpec, dest: Path, *, version: str | None = None) -> ProjectSource:
    """A clean snapshot of ``source`` in the new folder ``dest`` (for ``pypi`` sources: of ``version``, default
    the first one named)."""
    spec = parse_source(source) if isinstance(source, str) else source
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    if spec.kind == "pypi":
        assert spec.name is not None
        version = version or spec.versions[0]
        with tempfile.TemporaryDirectory() as tmp:
            archive = _download_sdist(spec.name, version, Path(tmp))
            tree = Path(tmp) / "tree"
            tree.mkdir()
            _extract(archive, tree)
            tops = [p for p in tree.iterdir()]
            top = tops[0] if len(tops) == 1 and tops[0].is_dir() else tree
            snapshot_tree(top, dest)
        return ProjectSource("pypi", spec.name, version, dest, f"pypi:{spec.name}=={version}")
    assert spec.path is not None
    if spec.kind == "git":
        commit = _git_export(spec.path, dest)
        return ProjectSource(
            "git", _project_name(dest, spec.path.name), None, dest, f"git:{spec.path.name}@{commit[:12]}"
        )
    snapshot_tree(spec.path, dest)
    return ProjectSource("folder", _project_name(dest, spec.path.name), None, dest, f"folder:{spec.path.name}")
