"""A real project's test dependencies as a venv (local executor) or a Docker image, resolved on the host.

Sandboxes have no network, so everything a project's tests import is fetched here, on the host, as wheels
for CPython 3.11 on Linux, and installed offline:

1. :func:`read_requirements` reads the project's declared dependencies *statically* (``pyproject.toml``,
   ``PKG-INFO``, ``setup.cfg``, test requirements files); no project code runs. The project's own
   distribution is dropped, so the code under test can only come from the working copy.
2. :func:`resolve_wheels` downloads the wheels once per :func:`environment_key` into
   ``cache_root()/"wheels"/<key>`` (``pip download --only-binary=:all:``: no sdist is ever built).
3. :func:`build_venv` installs them into ``cache_root()/"envs"/<key>`` (the local executor's interpreter:
   ``venv / "bin" / "python"``); :func:`build_image` installs them into ``execgym/swe-env:<key>``, built
   with no network from the python sandbox image.

A step that fails raises :class:`EnvironmentBuildError`, whose message names the step and pip's (or
Docker's) last error line.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "pyproject.toml").write_text(
    ...         '[project]\\nname = "demo"\\ndependencies = ["attrs>=22", "colorama; sys_platform == \\'win32\\'"]\\n'
    ...         '[project.optional-dependencies]\\ntest = ["hypothesis"]\\ndocs = ["sphinx"]\\n'
    ...     )
    ...     reqs = read_requirements(Path(tmp))
    >>> reqs.packages, reqs.source, reqs.project
    (('attrs>=22', 'hypothesis', 'pytest'), 'pyproject.toml [project] + extras [test]', 'demo')
    >>> len(environment_key(reqs))
    16
"""

from __future__ import annotations

import configparser
import contextlib
import email.parser
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from execgym.envs.swe.repos import cache_root
from execgym.executor.docker.container import DEFAULT_IMAGES, USER, _client
from execgym.executor.images import PYTHON_VERSION, _pip_platforms

if TYPE_CHECKING:
    import docker as docker_sdk

__all__ = [
    "IMAGE_REPOSITORY",
    "KEY_LABEL",
    "STEPS",
    "TEST_EXTRAS",
    "EnvironmentBuildError",
    "ProjectEnvironment",
    "Requirements",
    "build_image",
    "build_venv",
    "environment_key",
    "prepare_environment",
    "read_requirements",
    "resolve_wheels",
]

STEPS = ("read requirements", "resolve dependencies", "install dependencies", "build image")
TEST_EXTRAS = ("test", "tests", "testing", "dev")
"""Extras and dependency groups that hold a project's test dependencies (names as PEP 685 normalizes them)."""
REQUIREMENTS_FILES = (
    "requirements-test.txt",
    "requirements-tests.txt",
    "requirements_test.txt",
    "test-requirements.txt",
    "test_requirements.txt",
    "requirements-dev.txt",
    "requirements_dev.txt",
    "requirements/test.txt",
    "requirements/tests.txt",
    "requirements/testing.txt",
    "requirements/dev.txt",
    "tests/requirements.txt",
)
IMAGE_REPOSITORY = "execgym/swe-env"
KEY_LABEL = "org.execgym.swe-env.key"
BASE_LABEL = "org.execgym.swe-env.base"
STAGE_LABEL = "org.execgym.build-stage"
MARKER_FILE = ".execgym-env.json"
PLATFORM_TAG = _pip_platforms()[-1]  # linux_<arch>: what the wheels are for besides CPython 3.11
_PYTHON_FULL = ".".join(map(str, sys.version_info[:3])) if sys.version_info[:2] == (3, 11) else "3.11.0"
MARKER_ENV: dict[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": _PYTHON_FULL,
    "os_name": "posix",
    "platform_machine": PLATFORM_TAG.removeprefix("linux_"),
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": _PYTHON_FULL,
    "python_version": PYTHON_VERSION,
    "sys_platform": "linux",
}
"""The environment markers are evaluated in: CPython 3.11 on Linux (the sandboxes' interpreter)."""
PIP_TIMEOUT_S = 1800
# ``-e .[test]`` or ``.[test]`` in a requirements file: the project itself, with extras to pull in.
_SELF_LINE = re.compile(r"^(?:-e\s+|--editable\s+)?\.(?:\[(?P<extras>[^\]]*)\])?/?$")


class EnvironmentBuildError(ValueError):
    """A project's environment could not be made; ``step`` says which step failed (one of :data:`STEPS`).

    Example:
        >>> e = EnvironmentBuildError("resolve dependencies", "No matching distribution found for nope")
        >>> e.step, str(e)
        ('resolve dependencies', 'resolve dependencies failed: No matching distribution found for nope')
    """

    def __init__(self, step: str, why: str) -> None:
        if step not in STEPS:
            raise ValueError(f"unknown environment build step {step!r}: use one of {list(STEPS)}")
        self.step = step
        self.why = " ".join(why.split())
        super().__init__(f"{step} failed: {self.why}")


@dataclass(frozen=True)
class Requirements:
    """What a project's tests need installed: PEP 508 requirement strings (markers already evaluated for
    CPython 3.11 on Linux), where they were read, and the project's own distribution name (never installed,
    even when a dependency depends on it, as pytest does on ``pluggy``).

    Example:
        >>> Requirements(("pyjokes", "pytest"), "requirements-test.txt").project is None
        True
    """

    packages: tuple[str, ...]
    source: str
    project: str | None = None


@dataclass(frozen=True)
class ProjectEnvironment:
    """The environment a project's tasks run in: a venv for the local executor, an image for Docker.

    Example:
        >>> env = ProjectEnvironment("0123456789abcdef", Requirements(("pytest",), "none"), None, None)
        >>> env.python is None
        True
    """

    key: str
    requirements: Requirements
    venv: Path | None
    image: str | None

    @property
    def python(self) -> Path | None:
        """The venv's interpreter (what ``LocalExecutor(python=...)`` takes), or None without a venv."""
        return self.venv / "bin" / "python" if self.venv is not None else None


# --- reading requirements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Declared:
    """One declared requirement: ``extra`` is the extra or group it belongs to ("" for the base
    dependencies), or None when its marker says (``extra == "test"`` in PKG-INFO)."""

    requirement: Requirement
    extra: str | None
    origin: str


def _parse(text: str, origin: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as e:
        raise EnvironmentBuildError("read requirements", f"{origin}: invalid requirement {text!r}: {e}") from e


def _marker_true(marker: Marker | None, extra: str, origin: str) -> bool:
    if marker is None:
        return True
    try:
        return marker.evaluate({**MARKER_ENV, "extra": extra})
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName) as e:
        raise EnvironmentBuildError("read requirements", f"{origin}: bad marker {str(marker)!r}: {e}") from e


def _string_list(value: Any, origin: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EnvironmentBuildError("read requirements", f"{origin} must be a list of strings")
    return value


def _from_pyproject_project(project: Mapping[str, Any]) -> list[_Declared]:
    base = _string_list(project.get("dependencies", []), "[project].dependencies")
    out = [_Declared(_parse(s, "pyproject.toml"), "", "pyproject.toml [project]") for s in base]
    optional = project.get("optional-dependencies", {})
    if not isinstance(optional, dict):
        raise EnvironmentBuildError("read requirements", "[project.optional-dependencies] must be a table")
    for extra, items in optional.items():
        listed = _string_list(items, f"[project.optional-dependencies].{extra}")
        out += [_Declared(_parse(s, "pyproject.toml"), canonicalize_name(extra), "extras") for s in listed]
    return out


def _from_dependency_groups(groups: Any) -> tuple[list[_Declared], list[str]]:
    """The requirements of the test groups, with their ``include-group`` entries followed (PEP 735)."""
    if not isinstance(groups, dict):
        raise EnvironmentBuildError("read requirements", "[dependency-groups] must be a table")
    by_name = {canonicalize_name(k): v for k, v in groups.items()}
    out: list[_Declared] = []
    used: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise EnvironmentBuildError("read requirements", f"[dependency-groups] include a cycle: {name}")
        items = by_name.get(name)
        if items is None:
            raise EnvironmentBuildError("read requirements", f"[dependency-groups] has no group {name!r}")
        if not isinstance(items, list):
            raise EnvironmentBuildError("read requirements", f"[dependency-groups].{name} must be a list")
        for item in items:
            if isinstance(item, str):
                out.append(_Declared(_parse(item, "pyproject.toml"), "", "groups"))
            elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
                visit(canonicalize_name(item["include-group"]), (*stack, name))
            else:
                raise EnvironmentBuildError("read requirements", f"[dependency-groups].{name}: bad entry {item!r}")

    for name in TEST_EXTRAS:
        if name in by_name:
            used.append(name)
            visit(name, ())
    return out, used


def _from_pkg_info(text: str) -> tuple[list[_Declared], str | None]:
    meta = email.parser.Parser().parsestr(text, headersonly=True)
    reqs = [_Declared(_parse(s, "PKG-INFO"), None, "PKG-INFO") for s in meta.get_all("Requires-Dist") or []]
    return reqs, meta.get("Name")


def _cfg_lines(value: str, root: Path, origin: str) -> list[str]:
    """A setup.cfg list value: one requirement a line, or ``file: a.txt, b.txt`` (read as requirements files)."""
    value = value.strip()
    if value.startswith("file:"):
        lines: list[str] = []
        for name in value.removeprefix("file:").split(","):
            lines += _requirement_file_lines(_inside(root, name.strip(), origin), origin)
        return lines
    return [line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def _from_setup_cfg(text: str, root: Path) -> tuple[list[_Declared], str | None]:
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        cfg.read_string(text)
    except configparser.Error as e:
        raise EnvironmentBuildError("read requirements", f"setup.cfg: {e}") from e
    base = _cfg_lines(cfg.get("options", "install_requires", fallback=""), root, "setup.cfg")
    out = [_Declared(_parse(s, "setup.cfg"), "", "setup.cfg") for s in base]
    if cfg.has_section("options.extras_require"):
        for extra, value in cfg.items("options.extras_require"):
            listed = _cfg_lines(value, root, "setup.cfg")
            out += [_Declared(_parse(s, "setup.cfg"), canonicalize_name(extra), "extras") for s in listed]
    return out, cfg.get("metadata", "name", fallback=None)


def _inside(root: Path, rel: str, origin: str) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise EnvironmentBuildError("read requirements", f"{origin}: no file {rel!r} in the project")
    return path


_INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s+|=)(?P<file>\S+)$")


def _requirement_file_lines(
    path: Path, origin: str, *, root: Path | None = None, seen: frozenset[Path] = frozenset()
) -> list[str]:
    """Requirement lines of a pip requirements file: comments, options (``-e``, ``--hash``...), URLs and
    local paths left out; ``-r FILE`` includes followed when they stay inside the project (``root``);
    ``.[extras]`` (the project itself) kept, as the caller reads it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EnvironmentBuildError("read requirements", f"{origin}: cannot read {path.name}: {e}") from e
    lines: list[str] = []
    top = (root or path.parent).resolve()
    for raw in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        include = _INCLUDE.match(line)
        if include:
            target = (path.parent / include["file"]).resolve()
            if target.is_relative_to(top) and target.is_file() and target not in seen and len(seen) < 16:
                lines += _requirement_file_lines(target, origin, root=top, seen=seen | {path.resolve()})
            continue
        line = re.split(r"\s--?[a-z]", " " + line)[0].strip() if not line.startswith("-") else line
        if not line:
            continue
        if _SELF_LINE.match(line):
            lines.append(line)
        elif line.startswith(("-", ".", "/", "~")) or "://" in line or " @ " in line or line.endswith((".whl", ".zip")):
            continue
        else:
            lines.append(line)
    return lines


def _from_requirement_files(root: Path, names: Iterable[str]) -> tuple[list[_Declared], list[str], set[str]]:
    out: list[_Declared] = []
    used: list[str] = []
    self_extras: set[str] = set()
    for rel in names:
        path = root / rel
        if not path.is_file():
            continue
        used.append(rel)
        for line in _requirement_file_lines(path, rel, root=root):
            m = _SELF_LINE.match(line)
            if m:
                self_extras |= {canonicalize_name(e) for e in (m.group("extras") or "").split(",") if e.strip()}
            else:
                out.append(_Declared(_parse(line, rel), "", rel))
    return out, used, self_extras


def _select(declared: Iterable[_Declared], own: str | None, extras: set[str]) -> tuple[list[Requirement], set[str]]:
    """The requirements whose markers hold, with the active extras grown by the project's references to
    itself (``own[other]``), until nothing changes; returns them (without the project) and the extras."""
    declared = list(declared)
    active = {""} | extras
    while True:
        chosen: list[Requirement] = []
        grown = False
        for d in declared:
            contexts = sorted(active) if d.extra is None else ([d.extra] if d.extra in active else [])
            if not any(_marker_true(d.requirement.marker, c, d.origin) for c in contexts):
                continue
            if own is not None and canonicalize_name(d.requirement.name) == own:
                more = {canonicalize_name(e) for e in d.requirement.extras} - active
                if more:
                    active |= more
                    grown = True
                continue
            chosen.append(d.requirement)
        if not grown:
            return chosen, active - {""}


def _merge(reqs: Iterable[Requirement]) -> tuple[str, ...]:
    """One requirement string per distribution (specifiers intersected, extras united), sorted."""
    names: dict[str, tuple[set[str], SpecifierSet]] = {}
    for r in reqs:
        if r.url:  # a direct reference cannot come from the wheelhouse
            continue
        key = canonicalize_name(r.name)
        extras, spec = names.get(key, (set(), SpecifierSet()))
        names[key] = (extras | set(r.extras), spec & r.specifier)
    names.setdefault("pytest", (set(), SpecifierSet()))
    out = []
    for name, (extras, spec) in names.items():
        extra = f"[{','.join(sorted(extras))}]" if extras else ""
        out.append(f"{name}{extra}{','.join(sorted({str(s) for s in spec}))}")
    return tuple(sorted(out))


def read_requirements(root: Path, project_name: str | None = None) -> Requirements:
    """The test dependencies a project declares in ``root``, read without running any of its code.

    The first of ``pyproject.toml`` ``[project]`` (when its dependencies are not ``dynamic``),
    ``PKG-INFO`` or ``setup.cfg`` gives the dependencies and the test extras (:data:`TEST_EXTRAS`, plus the
    extras they pull in as ``name[other]``), else ``requirements.txt`` does (``setup.py`` is never run);
    ``[dependency-groups]`` test groups and the usual test requirements files (:data:`REQUIREMENTS_FILES`)
    add to them. Markers are evaluated for CPython 3.11 on
    Linux, the project itself (``project_name`` or its declared name) is dropped and ``pytest`` is added.

    >>> read_requirements(Path("/nonexistent"))
    Traceback (most recent call last):
    ...
    execgym.envs.swe.environments.EnvironmentBuildError: read requirements failed: no project folder at /nonexistent
    """
    root = Path(root)
    if not root.is_dir():
        raise EnvironmentBuildError("read requirements", f"no project folder at {root}")
    declared: list[_Declared] = []
    parts: list[str] = []
    name = project_name
    pyproject: dict[str, Any] = {}
    if (root / "pyproject.toml").is_file():
        try:
            pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
            raise EnvironmentBuildError("read requirements", f"pyproject.toml: {e}") from e
    project = pyproject.get("project")
    if isinstance(project, dict) and isinstance(project.get("name"), str):
        name = name or project["name"]
    dynamic = set(_string_list(project.get("dynamic", []), "[project].dynamic")) if isinstance(project, dict) else set()
    if isinstance(project, dict) and not dynamic & {"dependencies", "optional-dependencies"}:
        declared += _from_pyproject_project(project)
        parts.append("pyproject.toml [project]")
    elif (root / "PKG-INFO").is_file():
        found, meta_name = _from_pkg_info((root / "PKG-INFO").read_text(encoding="utf-8", errors="replace"))
        declared += found
        name = name or meta_name
        parts.append("PKG-INFO")
    elif (root / "setup.cfg").is_file():
        found, meta_name = _from_setup_cfg((root / "setup.cfg").read_text(encoding="utf-8"), root)
        declared += found
        name = name or meta_name
        if found:
            parts.append("setup.cfg")
    elif isinstance(project, dict):  # dynamic dependencies and nothing static that holds them
        declared += _from_pyproject_project(project)
        parts.append("pyproject.toml [project] (dynamic dependencies not read)")
    if "dependency-groups" in pyproject:
        found, groups = _from_dependency_groups(pyproject["dependency-groups"])
        declared += found
        if groups:
            parts.append(f"groups [{', '.join(groups)}]")
    # Without static metadata (a setup.py-only checkout), requirements.txt stands for the dependencies.
    files = REQUIREMENTS_FILES if declared or parts else ("requirements.txt", *REQUIREMENTS_FILES)
    found, files, self_extras = _from_requirement_files(root, files)
    declared += found
    own = canonicalize_name(name) if name else None
    chosen, active = _select(declared, own, set(TEST_EXTRAS) | self_extras)
    declared_extras = {d.extra for d in declared if d.extra} | {
        canonicalize_name(e) for d in declared if d.extra is None for e in _marker_extras(d.requirement.marker)
    }
    used = sorted(active & declared_extras)
    if used:
        at = 1 if parts and not parts[0].startswith("groups") else 0
        parts.insert(at, f"extras [{', '.join(used)}]")
    parts += files
    return Requirements(_merge(chosen), " + ".join(parts) or "none (pytest only)", own)


def _marker_extras(marker: Marker | None) -> set[str]:
    """The extras a marker names (``extra == "test"``), for the ``source`` description."""
    return set(re.findall(r"""extra\s*==\s*["']([^"']+)["']""", str(marker))) if marker else set()


# --- keys, locks and pip ---------------------------------------------------------------------------------


LAYOUT = 2
"""How environments are made (part of their key): 2 = venvs without pip or setuptools of their own."""


def environment_key(reqs: Requirements) -> str:
    """16 hex characters naming an environment: a hash of the packages, the project's name (whose wheel is
    left out), the Python version and the platform (what the wheelhouse, the venv and the image are cached
    by; where the requirements were read does not count).

    >>> environment_key(Requirements(("pytest",), "a")) == environment_key(Requirements(("pytest",), "b"))
    True
    """
    h = hashlib.sha256()
    fixed = (f"project={reqs.project or ''}", f"python={PYTHON_VERSION}", PLATFORM_TAG, f"layout={LAYOUT}")
    for item in (*sorted(reqs.packages), *fixed):
        h.update(item.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a lock file), between processes and between threads alike."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pip_error(output: str) -> str:
    """pip's last relevant error line (``ERROR: ...``), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR:", "error:"))]
    errors = [e for e in errors if not e.startswith("ERROR: Exception")] or errors
    line = errors[-1] if errors else (lines[-1] if lines else "pip gave no output")
    return re.sub(r"^(ERROR|error):\s*", "", line)


def _run_pip(
    step: str, cmd: list[str], *, env: Mapping[str, str] | None = None, timeout: float = PIP_TIMEOUT_S
) -> None:
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            env=dict(env) if env is not None else None,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise EnvironmentBuildError(step, f"pip ran over {timeout:.0f} s") from e
    except OSError as e:
        raise EnvironmentBuildError(step, f"cannot run {cmd[0]}: {e}") from e
    if proc.returncode != 0:
        why = _pip_error(f"{proc.stdout}\n{proc.stderr}")
        if step == "resolve dependencies" and ("No matching distribution" in why or "satisfies the requirement" in why):
            why += f" (only wheels for CPython {PYTHON_VERSION} on {PLATFORM_TAG} are used; sdists are never built)"
        raise EnvironmentBuildError(step, why)


def _offline_pip_env() -> dict[str, str]:
    """The environment of an offline install: no pip configuration or PIP_* variable of the host applies
    (a host's find-links, constraints or index must not change what gets installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _wheels(wheelhouse: Path) -> list[Path]:
    return sorted(wheelhouse.glob("*.whl"))


def _dist_name(wheel: Path) -> str | None:
    try:
        return canonicalize_name(parse_wheel_filename(wheel.name)[0])
    except InvalidWheelFilename:
        return None


def _check_python() -> None:
    if sys.version_info[:2] != tuple(int(p) for p in PYTHON_VERSION.split(".")):
        raise EnvironmentBuildError(
            "install dependencies",
            f"the wheels are for CPython {PYTHON_VERSION} but this is Python {sys.version.split()[0]}: "
            f"run execgym with Python {PYTHON_VERSION} for local environments, or use executor='docker'",
        )


# --- the wheelhouse, the venv and the image --------------------------------------------------------------


def resolve_wheels(reqs: Requirements, *, cache: Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """The wheelhouse ``<cache>/wheels/<key>`` holding every wheel the packages need (their whole
    dependency closure, less the project's own distribution), downloaded once per key.

    ``cache`` defaults to :func:`~execgym.envs.swe.repos.cache_root`. The download goes to a temporary
    folder renamed into place, under a lock, so a wheelhouse that exists is complete.
    """
    key = environment_key(reqs)
    wheels_dir = Path(cache or cache_root()) / "wheels"
    final = wheels_dir / key
    if final.is_dir():
        return final
    with _locked(wheels_dir / f".{key}.lock"):
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=wheels_dir))
        try:
            if log:
                log(f"[environments] {key}: downloading wheels for {len(reqs.packages)} requirement(s)")
            cmd = [
                sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
                "--progress-bar", "off", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
                "--implementation", "cp", "--abi", f"cp{PYTHON_VERSION.replace('.', '')}", "--abi", "abi3",
                "--abi", "none", *[arg for p in _pip_platforms() for arg in ("--platform", p)],
                "--platform", "any", "-d", str(tmp), *reqs.packages,
            ]  # fmt: skip
            _run_pip("resolve dependencies", cmd)
            for wheel in _wheels(tmp):
                if reqs.project is not None and _dist_name(wheel) == reqs.project:
                    wheel.unlink()  # pulled in by a dependency (pytest needs pluggy): the working copy has it
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def build_venv(reqs: Requirements, *, cache: Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """The venv ``<cache>/envs/<key>`` with the wheelhouse installed; its interpreter is ``bin/python``.

    Made with this interpreter's ``venv`` (no system site-packages), filled offline with ``pip install
    --no-index --no-deps`` of exactly the wheelhouse's wheels (the resolved closure, so the project's own
    distribution stays out even where a dependency requires it). It is built in place under a lock file,
    not renamed into place (a venv's scripts hold their absolute path), and a marker file written last
    tells a complete venv, which later calls reuse.
    """
    key = environment_key(reqs)
    envs = Path(cache or cache_root()) / "envs"
    venv = envs / key
    if (venv / MARKER_FILE).is_file():
        return venv
    _check_python()
    wheelhouse = resolve_wheels(reqs, cache=cache, log=log)
    with _locked(envs / f".{key}.lock"):
        if (venv / MARKER_FILE).is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)  # what an interrupted build left
        if log:
            log(f"[environments] {key}: building the venv {venv}")
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True, text=True,
                stdin=subprocess.DEVNULL, timeout=600,
            )  # fmt: skip
        except (subprocess.SubprocessError, OSError) as e:
            out = getattr(e, "stderr", None) or str(e)
            raise EnvironmentBuildError("install dependencies", f"python -m venv: {_pip_error(out)}") from e
        wheels = [str(w) for w in _wheels(wheelhouse)]
        # The host's pip installs into the venv (pip --python): the venv gets no pip or setuptools of its own,
        # whose vendored copies (packaging, tomli, idna, urllib3, ...) would be a mined project's answer.
        python = str(venv / "bin" / "python")
        cmd = [sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps", "-q", *wheels]
        _run_pip("install dependencies", cmd, env=_offline_pip_env())
        marker = {"key": key, "packages": list(reqs.packages), "project": reqs.project, "python": sys.version}
        tmp = venv / f"{MARKER_FILE}.tmp"
        tmp.write_text(json.dumps(marker, indent=1), encoding="utf-8")
        os.replace(tmp, venv / MARKER_FILE)
    return venv


_DOCKERFILE = """\
# A project's test environment: the python sandbox image with /opt/venv replaced by a fresh venv holding
# exactly the project's wheels (host-downloaded; built with no network).
FROM {base} AS build
LABEL {stage}=1
USER root
COPY wheels /opt/execgym/wheels
RUN set -eu; \\
    home="$(sed -n 's/^home *= *//p' /opt/venv/pyvenv.cfg)"; \\
    mv /opt/venv /opt/pipvenv; \\
    "$home/python3" -m venv --without-pip /opt/venv; \\
    PIP_CONFIG_FILE=/dev/null /opt/pipvenv/bin/python -m pip --python /opt/venv/bin/python install \\
        --no-cache-dir --no-index --no-deps --disable-pip-version-check /opt/execgym/wheels/*.whl

FROM {base}
USER root
RUN rm -rf /opt/venv
COPY --from=build /opt/venv /opt/venv
USER {user}
"""


def build_image(
    reqs: Requirements,
    *,
    client: docker_sdk.DockerClient | None = None,
    cache: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> str:
    """The image ``execgym/swe-env:<key>``: the python sandbox image whose ``/opt/venv`` holds exactly the
    wheelhouse (as :func:`build_venv`'s venv does), built with ``network_mode="none"``; returns its tag.

    Skipped when the tag exists, carries the key and was built on the current python image. The wheels
    are copied in a throw-away stage only, so the image holds no wheel files.
    """
    import docker

    key = environment_key(reqs)
    tag = f"{IMAGE_REPOSITORY}:{key}"
    base_tag = DEFAULT_IMAGES["python"]
    client = client or _client(timeout=600)
    try:
        base_id = client.images.get(base_tag).id
    except docker.errors.ImageNotFound as e:
        why = f"the python sandbox image {base_tag} is missing: run `execgym images build python`"
        raise EnvironmentBuildError("build image", why) from e
    with contextlib.suppress(docker.errors.ImageNotFound):
        labels = client.images.get(tag).labels or {}
        if labels.get(KEY_LABEL) == key and labels.get(BASE_LABEL) == base_id:
            return tag
    wheelhouse = resolve_wheels(reqs, cache=cache, log=log)
    with tempfile.TemporaryDirectory(prefix=f"execgym-swe-env-{key}-") as tmp:
        ctx = Path(tmp)
        (ctx / "wheels").mkdir()
        for wheel in _wheels(wheelhouse):
            try:
                os.link(wheel, ctx / "wheels" / wheel.name)
            except OSError:  # another file system
                shutil.copy2(wheel, ctx / "wheels" / wheel.name)
        dockerfile = _DOCKERFILE.format(base=base_tag, stage=STAGE_LABEL, user=USER)
        (ctx / "Dockerfile").write_text(dockerfile, encoding="utf-8")
        if log:
            log(f"[environments] {key}: building {tag} from {base_tag}")
        lines: list[str] = []
        try:
            stream = client.api.build(
                path=str(ctx), tag=tag, labels={KEY_LABEL: key, BASE_LABEL: base_id}, rm=True, forcerm=True,
                pull=False, decode=True, network_mode="none",
            )  # fmt: skip
            for chunk in stream:
                lines += [line for line in str(chunk.get("stream", "")).splitlines() if line.strip()]
                if "error" in chunk:
                    pip_lines = [line for line in lines if line.strip().startswith("ERROR:")]
                    why = _pip_error(pip_lines[-1]) if pip_lines else str(chunk["error"]).strip().splitlines()[-1]
                    raise EnvironmentBuildError("build image", why)
        except docker.errors.APIError as e:
            raise EnvironmentBuildError("build image", str(e.explanation or e)) from e
    with contextlib.suppress(docker.errors.APIError):  # the wheel-installing stage is left dangling
        client.images.prune(filters={"dangling": True, "label": f"{STAGE_LABEL}=1"})
    return tag


def prepare_environment(
    reqs: Requirements,
    executor: str,
    *,
    cache: Path | None = None,
    client: docker_sdk.DockerClient | None = None,
    log: Callable[[str], None] | None = None,
) -> ProjectEnvironment:
    """The environment for an executor: ``"local"`` builds the venv, ``"docker"`` the image (both from
    one wheelhouse).

    >>> prepare_environment(Requirements(("pytest",), "none"), "ray")
    Traceback (most recent call last):
    ...
    ValueError: unknown executor 'ray' for a project environment: use 'local' or 'docker'
    """
    key = environment_key(reqs)
    if executor == "local":
        return ProjectEnvironment(key, reqs, build_venv(reqs, cache=cache, log=log), None)
    if executor == "docker":
        return ProjectEnvironment(key, reqs, None, build_image(reqs, client=client, cache=cache, log=log))
    raise ValueError(f"unknown executor {executor!r} for a project environment: use 'local' or 'docker'")
