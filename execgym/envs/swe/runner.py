"""Running a task's tests and listing files inside a sandbox (everything here goes through the executor).

:func:`run_pytest` runs the test command with its JUnit report written to a pipe (file descriptor 3, the
command's stdout; pytest's console goes to stderr), so no file holds the report for code in the test process
to rewrite. :func:`manifest` lists the work directory's files with a content hash, so the grader can tell
which files the agent changed without trusting anything the agent ran; :func:`host_manifest` computes the
same listing for a host folder.

Example:
    >>> from execgym.executor import SandboxSpec, get_executor
    >>> test = "def test_ok():\\n    assert 1 + 1 == 2\\n"
    >>> with get_executor("local").sandbox(SandboxSpec(files={"tests/test_a.py": test})) as sb:
    ...     run = run_pytest(sb, TestCommand(), ["tests"], timeout=60)
    ...     sorted(run.report.statuses.values()), sorted(manifest(sb))
    (['PASSED'], ['tests/test_a.py'])
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from execgym.core.errors import InfraError
from execgym.envs.swe.grading import JUnitReport, parse_junit
from execgym.executor import ExecResult, Sandbox

__all__ = [
    "MAX_FILE_BYTES",
    "SAFE_PATH_LAUNCHER",
    "STABLE_TEST_ENV",
    "TestCommand",
    "TestRun",
    "host_manifest",
    "manifest",
    "read_text",
    "run_pytest",
    "runner_missing",
]

MAX_FILE_BYTES = 2 * 1024 * 1024
"""Files this large or larger are left out of manifests (and so never carried into grading)."""
HASH_CHARS = 16
# Caches that no test run reads (ours disable pytest's cache provider). ``__pycache__`` is listed on
# purpose: a planted .pyc is how stale-bytecode tricks work, and the grader flags it.
_SKIP_DIRS = (".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".tox", ".venv")

STABLE_TEST_ENV: Mapping[str, str] = MappingProxyType({"TZ": "UTC", "PYTHONHASHSEED": "0"})
"""Variables under every test run the env makes (grading, ``run_tests``, bug validation): a fixed time zone
and hash seed, without which runs flake (SWE-bench issue #602: set iteration order and local times differ
from run to run). A task's own ``env`` still wins over them."""


@dataclass(frozen=True)
class TestCommand:
    """How a repository runs its tests.

    ``argv`` is the command before pytest's own arguments (``python -m pytest``, run through
    :data:`SAFE_PATH_LAUNCHER`), or a shell string run with ``bash -c`` (``"source env/bin/activate &&
    pytest"``). ``env`` adds variables.
    ``autoload_plugins`` lets pytest load installed plugins (off for bundled repos, which need none).

    Example:
        >>> TestCommand(("pytest",)).argv_for(["tests/test_a.py"], "r.xml")[-3:]
        ['--junitxml=r.xml', '-q', 'tests/test_a.py']
    """

    __test__ = False  # not a pytest class

    argv: tuple[str, ...] | str = ("python", "-m", "pytest")
    env: Mapping[str, str] = field(default_factory=dict)
    autoload_plugins: bool = False

    def argv_for(self, args: Sequence[str], junit_path: str) -> list[str]:
        extra = ["-p", "no:cacheprovider", "-o", "junit_family=xunit1", f"--junitxml={junit_path}", "-q", *args]
        if isinstance(self.argv, str):
            return ["bash", "-c", f"{self.argv} {shlex.join(extra)}"]
        if tuple(self.argv) == ("python", "-m", "pytest"):
            return ["python", "-P", "-s", "-c", SAFE_PATH_LAUNCHER, *extra]
        return [*self.argv, *extra]

    def environment(self) -> dict[str, str]:
        env = {"PYTHONDONTWRITEBYTECODE": "1", **self.env}
        if not self.autoload_plugins:
            env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        return env


SAFE_PATH_LAUNCHER = (
    "import os, runpy, sys; sys.path.append(os.getcwd()); "
    "runpy.run_module('pytest', run_name='__main__', alter_sys=True)"
)
"""How ``python -m pytest`` runs: with safe-path semantics (``-P``), the repository root put *last* on
``sys.path``, so the repository's modules import but none of them can shadow the standard library or an
installed module (pytest, pluggy, ...); and without the user site (``-s``): a sandbox's ``HOME`` is its work
directory, so ``~/.local/lib/python3.X/site-packages`` would be a folder of the repository that Python
scans for ``.pth`` files on its own."""


@dataclass
class TestRun:
    """A test run: the command's result and its parsed report (None when no readable report was written)."""

    __test__ = False  # not a pytest class

    result: ExecResult
    report: JUnitReport | None
    error: str | None = None

    def console_tail(self, limit: int = 3000) -> str:
        """The end of pytest's console output (its stderr: stdout carries the report)."""
        return self.result.stderr.strip()[-limit:]


# The report travels on a pipe: pytest writes it to file descriptor 3, which is the command's stdout, while
# pytest's own console output goes to stderr. Bytes in a pipe are out of the test process's reach once
# written, so code running inside the test process (an ``atexit`` hook, a patched writer) can only add
# bytes to the channel, which makes the report unreadable, never rewrite it; and there is no file to find.
_REPORT_FD_SHELL = 'exec "$@" 3>&1 1>&2'
REPORT_PATH = "/dev/fd/3"
RUNNER_MISSING = ("No module named pytest", "command not found", "No such file or directory", "not found")


def run_pytest(
    sandbox: Sandbox,
    command: TestCommand,
    args: Sequence[str],
    *,
    timeout: float,
    prelude: str = "",
    env: Mapping[str, str] | None = None,
) -> TestRun:
    """Run the tests (``args``: files, node ids, ``-k EXPR``) and read the JUnit report back.

    ``prelude`` is shell run first in the same command, its output sent to stderr (the grader clears
    ``__pycache__`` there). ``env`` adds variables under the command's own (the task's ``env`` wins).
    """
    argv = command.argv_for(args, REPORT_PATH)
    script = (f"{{ {prelude}\n}} 1>&2\n" if prelude else "") + _REPORT_FD_SHELL
    argv = ["sh", "-c", script, "sh", *argv]
    environment = {**(env or {}), **command.environment()}
    result: ExecResult = sandbox.run(argv, timeout=timeout, env=environment)
    report, error = None, None
    data = result.stdout.strip()
    if not data:
        error = "the test run wrote no report" + (" (it timed out)" if result.timed_out else "")
        missing = runner_missing(result)
        if missing:
            error += f" (the console says: {missing})"
    else:
        try:
            report = parse_junit(data)
        except ValueError as exc:
            error = str(exc) + (" (the output was truncated at the sandbox's output limit)" if result.truncated else "")
    return TestRun(result, report, error)


def runner_missing(result: ExecResult) -> str | None:
    """The console line that says the test runner or interpreter is missing, if there is one."""
    if result.exit_code not in (1, 2, 126, 127) and "No module named" not in result.stderr:
        return None
    for line in reversed(result.stderr.strip().splitlines()):
        if any(marker in line for marker in RUNNER_MISSING):
            return line.strip()[:300]
    return None


def _manifest_script(max_bytes: int) -> str:
    prune = " -o ".join(f"-name {shlex.quote(d)}" for d in _SKIP_DIRS)
    return (
        f"find . \\( {prune} \\) -prune -o -type f -size -{max_bytes}c -print0 "
        f"| xargs -0 -r sha256sum -- | cut -c1-{HASH_CHARS},65-"
    )


def manifest(
    sandbox: Sandbox, *, timeout: float = 120, max_bytes: int = MAX_FILE_BYTES, strict: bool = True
) -> dict[str, str]:
    """Path -> short content hash of every regular file under the work directory.

    Version-control and tool-cache folders are skipped, as are files of ``max_bytes`` or more and names
    that ``sha256sum`` has to escape (they can't be carried into grading). A listing that times out or
    overflows the output limit raises ``InfraError`` when ``strict``; otherwise what was listed is
    returned (for the agent's sandbox, whose contents are the agent's doing).
    """
    result = sandbox.run(["sh", "-c", _manifest_script(max_bytes)], timeout=timeout)
    lines = result.stdout.splitlines()
    if result.timed_out or result.truncated:
        if strict:
            raise InfraError("listing the sandbox's files timed out or overflowed the output limit")
        lines = lines[:-1]  # the last line may be cut
    out = {}
    for line in lines:
        if line.startswith("\\") or len(line) < HASH_CHARS + 3:
            continue
        digest, path = line[:HASH_CHARS], line[HASH_CHARS + 2 :]
        if path.startswith("./"):
            path = path[2:]
        out[path] = digest
    return out


def host_manifest(
    root: Path, overlay: Mapping[str, str | bytes | None] = (), *, max_bytes: int = MAX_FILE_BYTES
) -> dict[str, str]:
    """The same listing as :func:`manifest` for a host folder, with ``overlay`` applied (None: removed)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            if os.path.getsize(full) >= max_bytes or "\\" in name or "\n" in name:
                continue
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()[:HASH_CHARS]
    for rel, content in dict(overlay).items():
        if content is None:
            out.pop(rel, None)
            continue
        data = content.encode() if isinstance(content, str) else content
        if len(data) < max_bytes:
            out[rel] = hashlib.sha256(data).hexdigest()[:HASH_CHARS]
    return out


def read_text(sandbox: Sandbox, path: str, *, max_bytes: int = MAX_FILE_BYTES) -> str | None:
    """A file's text through the sandbox; None when it is missing, not a regular file, too big or binary."""
    try:
        data = sandbox.read_file(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError):
        return None
    if len(data) > max_bytes or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
