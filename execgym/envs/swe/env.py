"""SWERepairEnv: fix a Python repository so its failing tests pass, graded as SWE-bench grades.

Each episode gets a sandbox from the executor holding a working copy of the task's repository at its buggy
state. The agent works with ``bash``, ``view``, ``str_replace``, ``create``, ``apply_patch`` and
``run_tests``, and ends with ``submit``. Grading (at submit, or at truncation) trusts nothing the agent could
touch: it builds a fresh sandbox from the pristine repository (the host's copy, or the task's image),
carries over only the agent's changes to library files, adds the hidden tests and the test patch, clears
``__pycache__``, adds canary tests with random names, runs the FAIL_TO_PASS / PASS_TO_PASS tests with the JUnit
report sent down a pipe, checks the report against the canaries, and applies SWE-bench's rules (see
:mod:`execgym.envs.swe.grading`). When a verdict could rest on the machinery (no readable report, a canary
contradicted), the canaries are run again in a pristine sandbox: if that fails it is an ``InfraError``,
otherwise the agent's doing. What the agent did to tests, test configuration or
interpreter hooks, and suspicious library edits, are reported in ``info[R.HACK_FLAGS]``.

Example:
    >>> from execgym.core import report as R
    >>> env = SWERepairEnv(executor="local")
    >>> obs, info = env.reset(seed=0)
    >>> [t["function"]["name"] for t in info[R.TOOLS]]
    ['bash', 'view', 'str_replace', 'create', 'apply_patch', 'run_tests', 'submit']
    >>> for action in env.task.oracle:
    ...     obs, reward, terminated, truncated, info = env.step(action)
    >>> reward, info[R.HACK_FLAGS], info[R.REWARD_COMPONENTS]["f2p"]
    (1.0, [], 1.0)
    >>> env.close()
"""

from __future__ import annotations

import shlex
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

from cachetools import LRUCache

from execgym.core.env import AgentEnv
from execgym.core.errors import InfraError
from execgym.core.report import Grade
from execgym.core.tasks import Generator, Loader, Task
from execgym.core.tools import Tool, ToolError, ToolOutput
from execgym.envs.swe.analysis import AnalysisError, run_analysis
from execgym.envs.swe.grading import (
    Canaries,
    GradeResult,
    JUnitReport,
    Twins,
    classify_path,
    grade_tests,
    nodeid_file,
    report_flags,
    twin_flags,
    twin_source,
)
from execgym.envs.swe.patches import PatchError, added_lines, apply_patch, touched_paths
from execgym.envs.swe.runner import STABLE_TEST_ENV, TestRun, host_manifest, manifest, read_text, run_pytest
from execgym.envs.swe.swebench import load_swebench
from execgym.envs.swe.tasks import bundled_tasks, generate_task
from execgym.envs.swe.validation import BugValidator
from execgym.envs.swe.workspace import Workspace, workspace
from execgym.executor import Executor, Limits, PathError, Sandbox, SandboxSpec, get_executor, validate_relpath

__all__ = ["SWERepairEnv", "default_limits"]

MAX_CHANGED_FILES = 2000
MAX_VIEW_LINES = 1000
MAX_FAILURES_SHOWN = 8
MAX_CARRIED_BYTES = 32 * 1024 * 1024
MAX_REPORT_BYTES = 64 * 1024 * 1024
GRADING_ARGS = ("--maxfail=0",)
"""Pytest arguments of grading runs: every test runs, whatever ``-x`` a repository's configuration adds."""
MACHINERY_DEPENDENT = ("broken_test_report", "report_tampered")
"""Flags whose verdict could also come from a broken machine: the grader verifies it before blaming the agent."""
GRADING_ENV: dict[str, str] = {**STABLE_TEST_ENV}
"""Variables of grading runs (under the task's own): :data:`~execgym.envs.swe.runner.STABLE_TEST_ENV`."""


def default_limits(test_timeout_s: float = 120.0, bash_timeout_s: float = 60.0) -> Limits:
    """The sandbox limits an env uses unless given others (the executor's defaults, longer time limits).

    Example:
        >>> default_limits(120, 60).wall_time_s
        120.0
    """
    longest = float(max(test_timeout_s, bash_timeout_s))
    return Limits(wall_time_s=longest, cpu_time_s=longest)


class SWERepairEnv(AgentEnv):
    """Repair a repository: make the failing tests pass without breaking the others.

    Args:
        executor: ``"local"``, ``"docker"`` or an :class:`~execgym.executor.Executor` (default:
            ``$EXECGYM_EXECUTOR`` or local). Tasks with an ``image`` need Docker, unless they also have a
            ``repo_path`` and a ``venv`` (the local executor runs their tests with the venv's interpreter);
            tasks with a ``venv`` and no ``image`` need the local executor.
        test_timeout_s: time limit of one test run (``run_tests`` and grading).
        bash_timeout_s: time limit of one ``bash`` command.
        hide_tests: for bundled and generated tasks, remove the files holding the failing tests from the
            agent's copy (they come back for grading).
        gate_on_hack_flags: when True, any hack flag makes the outcome 0 (a gated reward); by default flags
            are only reported.
        limits: the sandbox limits (default: ``Limits`` with the time limits above).
        allow_paths_outside_dataset: a ``swebench:`` row's ``repo_path`` must resolve inside the dataset
            file's folder; ``True`` allows any folder, a list of folders allows those as well.
        skip_invalid_rows: leave malformed dataset rows out (counted in a warning) instead of raising.
        **kwargs: ``dataset`` (``"bundled"``, ``"generated[:difficulty]"``, ``"swebench:FILE.jsonl"``),
            ``split``, ``max_turns`` ... (see :class:`~execgym.core.env.AgentEnv`).

    Example:
        >>> from execgym.core import report as R
        >>> env = SWERepairEnv(executor="local")
        >>> obs, info = env.reset(options={R.TASK_ID: "spans-001"})
        >>> print(env.step({"name": "bash", "arguments": {"command": "ls"}})[0])
        README.md
        pyproject.toml
        spans
        tests
        [exit code 0]
        >>> env.close()
    """

    description: ClassVar[str] = "Repair a Python repository so its failing tests pass (SWE-bench-style grading)."
    default_max_turns: ClassVar[int] = 40
    loaders: ClassVar[dict[str, Loader]] = {"swebench": load_swebench}

    def __init__(
        self,
        *,
        executor: str | Executor | None = None,
        test_timeout_s: float = 120.0,
        bash_timeout_s: float = 60.0,
        hide_tests: bool = False,
        gate_on_hack_flags: bool = False,
        limits: Limits | None = None,
        allow_paths_outside_dataset: bool | Sequence[str] = False,
        skip_invalid_rows: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(allow_paths_outside_dataset, (str, bytes)):
            raise TypeError("allow_paths_outside_dataset must be True/False or a list of folders")
        self.allow_paths_outside_dataset = allow_paths_outside_dataset
        self.skip_invalid_rows = bool(skip_invalid_rows)
        self._owns_executor = not isinstance(executor, Executor)
        self.executor = get_executor(executor)
        self.test_timeout_s = float(test_timeout_s)
        self.bash_timeout_s = float(bash_timeout_s)
        self.hide_tests = bool(hide_tests)
        self.gate_on_hack_flags = bool(gate_on_hack_flags)
        self.limits = limits or default_limits(self.test_timeout_s, self.bash_timeout_s)
        self.sandbox: Sandbox | None = None
        self.workspace: Workspace | None = None
        self._start_manifests: LRUCache[tuple[str, str, bool], dict[str, str]] = LRUCache(64)
        self._validator = BugValidator(self.executor)
        super().__init__(**kwargs)

    # ---------------------------------------------------------------------------------------- tasks
    def bundled_tasks(self) -> list[Task]:
        """The bundled bug tasks (validated when the catalogue was built; loading runs nothing)."""
        return bundled_tasks()

    def task_generator(self) -> Generator:
        # Generated bugs are validated in this env's executor (results shared through the disk cache).
        return partial(generate_task, validator=self._validator)

    def task_loaders(self) -> dict[str, Loader]:
        """``swebench:FILE``, held to the dataset's folder (or the allowed ones) and this env's row policy."""
        allow = self.allow_paths_outside_dataset
        roots = None if allow is True else [] if allow is False else [str(r) for r in allow]
        return {
            name: partial(loader, allowed_roots=roots, skip_invalid=self.skip_invalid_rows)
            if loader is load_swebench
            else loader
            for name, loader in self.loaders.items()
        }

    # -------------------------------------------------------------------------------------- episode
    def _spec(self, ws: Workspace) -> SandboxSpec:
        return SandboxSpec(
            image=ws.image,
            workdir_from=ws.base_dir,
            files=dict(ws.start_files),
            env=ws.command.environment(),
            limits=self.limits,
            python=ws.python,
        )

    def _prepare(self, sb: Sandbox, ws: Workspace, *, hide: bool) -> None:
        steps = []
        if ws.image_repo_dir:
            steps.append(f"cp -RP --preserve=mode,timestamps {shlex.quote(ws.image_repo_dir.rstrip('/'))}/. .")
        if hide and ws.hidden:
            steps.append("rm -f -- " + shlex.join(ws.hidden))
        if steps:
            result = sb.run(["sh", "-c", " && ".join(steps)], timeout=max(self.limits.wall_time_s, 300))
            if not result.ok:
                raise InfraError(f"preparing the sandbox failed: {(result.stderr or result.stdout)[-500:]}")
        if ws.image_repo_dir and ws.start_files:
            sb.write_files(dict(ws.start_files))  # the copy from the image came after them

    def _begin(self, task: Task) -> str:
        ws = workspace(task, hide_tests=self.hide_tests)
        self._check_runs_here(task, ws)
        self.workspace = ws
        self.sandbox = self.executor.sandbox(self._spec(ws))
        self._prepare(self.sandbox, ws, hide=True)
        return task.prompt

    def _check_runs_here(self, task: Task, ws: Workspace) -> None:
        """``ValueError`` when the task's test environment exists only for the other executor."""
        on_docker = self.executor.name == "docker"
        if ws.image_repo_dir is not None and not on_docker:
            raise ValueError(f"task {task.id} runs in the Docker image {ws.image}: use executor='docker'")
        data = task.data
        if data.get("kind") != "swebench":
            return
        if on_docker and data.get("venv") and not data.get("image"):
            raise ValueError(
                f"task {task.id}'s environment is a local venv: build its tasks with --executor docker to run "
                "them on Docker"
            )
        if not on_docker and data.get("image") and data.get("repo_path") and not data.get("venv"):
            raise ValueError(
                f"task {task.id}'s environment is the Docker image {data['image']}: build its tasks with "
                "--executor local to run them on the local executor"
            )

    def _end(self) -> None:
        if self.sandbox is not None:
            try:
                self.sandbox.close()
            finally:
                self.sandbox = None

    def _snapshot_state(self) -> dict[str, Any]:
        # The episode's state is its work directory: every file the grader would list, read through the
        # executor's API, so the value holds bytes and no handle to this env's sandbox.
        sb = self._sb()
        listing = manifest(sb, timeout=self.test_timeout_s, strict=True)
        files: dict[str, bytes] = {}
        for path in listing:
            try:
                files[path] = sb.read_file(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PathError):
                continue  # removed while listing: it is not part of the state
        return {"digests": {p: listing[p] for p in files}, "files": files}

    def _restore_state(self, state: dict[str, Any]) -> None:
        # A new sandbox prepared as reset() prepares one, then brought to the snapshot's files: those that
        # differ are written, those the snapshot lacks are removed.
        assert self.task is not None
        ws = workspace(self.task, hide_tests=self.hide_tests)
        self.workspace = ws
        self.sandbox = self.executor.sandbox(self._spec(ws))
        try:
            self._prepare(self.sandbox, ws, hide=True)
            present = manifest(self.sandbox, timeout=self.test_timeout_s, strict=True)
            digests: dict[str, str] = state["digests"]
            stale = sorted(p for p in present if p not in digests)
            if stale:
                result = self.sandbox.run(["rm", "-f", "--", *stale], timeout=60)
                if not result.ok:
                    raise InfraError(f"restoring the sandbox failed: {(result.stderr or result.stdout)[-500:]}")
            changed = {p: data for p, data in state["files"].items() if present.get(p) != digests[p]}
            if changed:
                self.sandbox.write_files(changed)
        except BaseException:
            self._end()
            raise

    def close(self) -> None:
        super().close()
        if self._owns_executor:
            self.executor.close()

    def _system_prompt(self, task: Task) -> str:
        return (
            "You are a software engineer fixing a bug in a Python repository. The repository is your working "
            "directory: every path is relative to its root. Tools:\n"
            f"- bash(command): run a shell command in the repository (killed after {self.bash_timeout_s:g} s; "
            "no network).\n"
            "- view(path, start_line, end_line): show a file with line numbers, or list a folder.\n"
            "- str_replace(path, old, new): replace text that occurs exactly once in a file.\n"
            "- create(path, content): write a whole file.\n"
            "- apply_patch(patch): apply a unified diff (--- a/path, +++ b/path, @@ hunks).\n"
            "- run_tests(selector): run the tests (all of the task's, or files / node ids / -k EXPR) and show "
            "the failures.\n"
            "- submit(): finish; your changes are then graded.\n"
            "Grading runs the task's tests against pristine copies of the test files and test configuration: "
            "change the library code, not the tests. Call a tool by writing "
            '<tool_call>{"name": <tool>, "arguments": {...}}</tool_call>; several blocks run in order.'
        )

    def _tools_key(self, task: Task) -> Hashable:
        return "swe"  # the same tools for every task: built once per env

    def _tools(self, task: Task) -> list[Tool]:
        # The same for every task; each tool reads the episode's sandbox from self when it is called.
        work = (self.bash, self.view, self.str_replace, self.create, self.apply_patch, self.run_tests)
        return [*(Tool.from_function(method) for method in work), Tool.from_function(self.submit, terminal=True)]

    # ---------------------------------------------------------------------------------------- tools
    def _sb(self) -> Sandbox:
        if self.sandbox is None:
            raise InfraError("the episode has no sandbox")
        return self.sandbox

    def _path(self, path: str) -> str:
        text = path.strip()
        root = self._sb().workdir.rstrip("/") + "/"
        if text.startswith(root):
            text = text[len(root) :]
        try:
            return validate_relpath(text)
        except PathError as exc:
            raise ToolError(str(exc)) from None

    def _read(self, path: str) -> str:
        try:
            data = self._sb().read_file(path)
        except FileNotFoundError:
            raise ToolError(f"{path}: no such file") from None
        except (PathError, NotADirectoryError, IsADirectoryError) as exc:
            raise ToolError(f"{path}: {exc}") from None
        if b"\x00" in data:
            raise ToolError(f"{path} is a binary file ({len(data)} bytes)")
        return data.decode("utf-8", errors="replace")

    def bash(self, command: str) -> ToolOutput:
        """Run a shell command (bash) in the repository's root folder.

        Args:
            command: the command line, e.g. ``grep -rn "def parse" .`` or ``python -m pytest -x tests``.
        """
        result = self._sb().run(["bash", "-c", command], timeout=self.bash_timeout_s)
        out = result.stdout
        if result.stderr:
            out += ("" if not out or out.endswith("\n") else "\n") + result.stderr
        notes = []
        if result.timed_out:
            notes.append(f"[timed out after {self.bash_timeout_s:g} s: the command was killed]")
        else:
            notes.append(f"[exit code {result.exit_code}]")
        if result.truncated:
            notes.append("[output truncated]")
        body = out if out.endswith("\n") or not out else out + "\n"
        return ToolOutput(body + " ".join(notes))

    def view(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        """Show a file with line numbers (optionally only lines start_line..end_line), or list a folder.

        Args:
            path: a file or folder, relative to the repository root (``.`` for the root).
            start_line: the first line to show (1-based).
            end_line: the last line to show (inclusive).
        """
        text_path = path.strip().rstrip("/") or "."
        if text_path in (".", "./", self._sb().workdir.rstrip("/")):
            return self._listing(".")
        rel = self._path(text_path)
        try:
            content = self._read(rel)
        except ToolError as exc:
            if "no such file" in str(exc) or "not a regular file" in str(exc) or "directory" in str(exc):
                listing = self._listing(rel)
                if listing:
                    return listing
            raise
        lines = content.splitlines()
        first = 1 if start_line is None else int(start_line)
        last = len(lines) if end_line is None else int(end_line)
        if first < 1 or (lines and first > len(lines)) or last < first:
            raise ToolError(f"bad line range {start_line}..{end_line}: {rel} has {len(lines)} lines")
        last = min(last, len(lines), first + MAX_VIEW_LINES - 1)
        shown = "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(first, last + 1))
        more = ""
        if last < len(lines) and (end_line is None or last < int(end_line)):
            more = f"\n[lines {last + 1}..{len(lines)} not shown: pass start_line/end_line]"
        return shown + more if lines else f"{rel} is empty"

    def _listing(self, rel: str) -> str:
        script = (
            f"test -d {shlex.quote(rel)} || exit 3; "
            f"find {shlex.quote(rel)} -mindepth 1 -maxdepth 2 "
            "\\( -name .git -o -name __pycache__ -o -name '*.egg-info' \\) -prune -o -print "
            "| sed 's|^\\./||' | LC_ALL=C sort | head -n 500"
        )
        result = self._sb().run(["sh", "-c", script], timeout=30)
        if result.exit_code == 3 or not result.ok:
            return ""
        entries = result.stdout.strip()
        return f"{rel}/ (two levels):\n{entries}" if entries else f"{rel}/ is empty"

    def str_replace(self, path: str, old: str, new: str) -> str:
        """Replace one exact occurrence of ``old`` with ``new`` in a file.

        Args:
            path: the file, relative to the repository root.
            old: the exact text to replace (with its indentation); it must occur exactly once.
            new: the replacement text.
        """
        rel = self._path(path)
        content = self._read(rel)
        if not old:
            raise ToolError("old must not be empty (use create to write a whole file)")
        count = content.count(old)
        if count == 0:
            raise ToolError(f"old text not found in {rel}: copy it exactly, including indentation and blank lines")
        if count > 1:
            starts, i = [], content.find(old)
            while i != -1:
                starts.append(content.count("\n", 0, i) + 1)
                i = content.find(old, i + 1)
            raise ToolError(
                f"old text occurs {count} times in {rel} (lines {', '.join(map(str, starts))}): "
                "include more surrounding lines so that it occurs exactly once"
            )
        at = content.find(old)
        updated = content[:at] + new + content[at + len(old) :]
        self._sb().write_files({rel: updated})
        line = content.count("\n", 0, at) + 1
        lines = updated.splitlines()
        lo, hi = max(1, line - 3), min(len(lines), line + new.count("\n") + 3)
        snippet = "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(lo, hi + 1))
        return f"Edited {rel}. Lines {lo}..{hi} now read:\n{snippet}"

    def create(self, path: str, content: str) -> str:
        """Write a file (created, or replaced if it exists).

        Args:
            path: the file, relative to the repository root.
            content: the whole new content.
        """
        rel = self._path(path)
        try:
            existed = True
            self._sb().read_file(rel)
        except (FileNotFoundError, NotADirectoryError):
            existed = False
        except PathError as exc:
            raise ToolError(f"{rel}: {exc}") from None
        try:
            self._sb().write_files({rel: content})
        except (PathError, IsADirectoryError, NotADirectoryError) as exc:
            raise ToolError(f"{rel}: cannot write: {exc}") from None
        n = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
        return f"{'Replaced' if existed else 'Created'} {rel} ({n} lines)"

    def apply_patch(self, patch: str) -> str:
        """Apply a unified diff (as made by ``git diff`` or ``diff -u``) to the repository.

        Args:
            patch: the diff: ``--- a/path`` and ``+++ b/path`` headers, then ``@@ -l,n +l,n @@`` hunks.
        """
        sb = self._sb()
        absent: set[str] = set()

        def read(path: str) -> str | None:
            try:
                rel = validate_relpath(path)
            except PathError as exc:
                raise PatchError(str(exc)) from None
            text = read_text(sb, rel)
            if text is None:
                absent.add(rel)
            return text

        try:
            changes = apply_patch(patch, read)
        except PatchError as exc:
            raise ToolError(f"the patch does not apply: {exc}") from None
        writes = {p: c for p, c in changes.items() if c is not None}
        deletes = [p for p, c in changes.items() if c is None]
        if writes:
            try:
                sb.write_files(writes)
            except (PathError, IsADirectoryError, NotADirectoryError) as exc:
                raise ToolError(f"cannot write the patched files: {exc}") from None
        if deletes:
            sb.run(["rm", "-f", "--", *deletes], timeout=30)
        parts = []
        for verb, paths in (
            ("modified", [p for p in writes if p not in absent]),
            ("created", [p for p in writes if p in absent]),
            ("deleted", deletes),
        ):
            if paths:
                parts.append(f"{verb} {', '.join(sorted(paths))}")
        return "Patch applied: " + "; ".join(parts) + "."

    def _selector_args(self, selector: str) -> list[str]:
        try:
            tokens = shlex.split(selector)
        except ValueError as exc:
            raise ToolError(f"cannot split the selector: {exc}") from None
        args: list[str] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok == "-k" and i + 1 < len(tokens):
                args += ["-k", tokens[i + 1]]
                i += 2
                continue
            if tok in ("-x", "--exitfirst"):
                args.append("-x")
            elif tok.startswith("-"):
                raise ToolError(f"unsupported option {tok!r}: give test files, node ids, -k EXPRESSION or -x")
            else:
                validate = tok.split("::", 1)[0]
                self._path(validate)
                args.append(tok)
            i += 1
        return args

    def run_tests(self, selector: str | None = None) -> ToolOutput:
        """Run the tests and show a summary and the failures.

        Args:
            selector: which tests: files or node ids (``tests/test_x.py::test_y``), and/or ``-k EXPRESSION``;
                by default the task's tests.
        """
        ws = self.workspace
        assert ws is not None
        args = self._selector_args(selector) if selector and selector.strip() else list(ws.run_tests_args)
        run = run_pytest(self._sb(), ws.command, args, timeout=self.test_timeout_s, env=STABLE_TEST_ENV)
        return ToolOutput(format_test_run(run, self.test_timeout_s))

    def submit(self) -> str:
        """Finish the episode: your changes are graded by the task's tests."""
        return "Submitted: grading your changes."

    # -------------------------------------------------------------------------------------- grading
    def _start_manifest(self, task: Task, ws: Workspace, fresh: Sandbox) -> dict[str, str]:
        key = (task.source, task.id, self.hide_tests)
        listing = self._start_manifests.get(key)
        if listing is None:
            if ws.base_dir is not None and not ws.image_repo_dir:
                overlay: dict[str, str | None] = {**ws.start_files, **dict.fromkeys(ws.hidden)}
                listing = host_manifest(ws.base_dir, overlay)
            else:
                listing = manifest(fresh, timeout=self.test_timeout_s)
                for path in ws.hidden:
                    listing.pop(path, None)
            self._start_manifests[key] = listing
        return listing

    def _grading_spec(self, ws: Workspace) -> SandboxSpec:
        # The report comes back on the command's stdout: room for a large suite's report.
        spec = self._spec(ws)
        limits = replace(self.limits, output_bytes=max(self.limits.output_bytes, MAX_REPORT_BYTES))
        return replace(spec, limits=limits)

    def _new_sandbox(self, spec: SandboxSpec) -> Sandbox:
        try:
            return self.executor.sandbox(spec)
        except InfraError:
            raise
        except Exception as exc:  # whatever the backend raises, no sandbox is the machine's failure
            raise InfraError(f"cannot create a grading sandbox: {type(exc).__name__}: {exc}") from exc

    def _pristine(
        self, fresh: Sandbox, ws: Workspace, graded_files: Sequence[str], *, prepared: bool = False
    ) -> Canaries:
        """Bring ``fresh`` to the task's pristine graded state: the repository, the test patch, and canary
        tests (fresh random names) beside the real ones. Failures here are the machine's (``InfraError``)."""
        if not prepared:
            self._prepare(fresh, ws, hide=False)
        if ws.test_patch:

            def read(path: str) -> str | None:
                return read_text(fresh, path)

            try:
                patched = apply_patch(ws.test_patch, read)
            except PatchError as exc:
                raise InfraError(f"the task's test patch does not apply to its repository: {exc}") from None
            fresh.write_files({p: c for p, c in patched.items() if c is not None})
            removed = [p for p, c in patched.items() if c is None]
            if removed:
                fresh.run(["rm", "-f", "--", *removed], timeout=60)
        folder = nodeid_file(graded_files[0]).rpartition("/")[0] if graded_files else ""
        failing = self.task.data.get("FAIL_TO_PASS", ()) if self.task is not None else ()
        decoys = [t.split("[", 1)[0].rsplit("::", 1)[-1] for t in failing]
        canaries = Canaries.make(folder, decoys=decoys)
        fresh.write_files({canaries.path: canaries.source})
        return canaries

    def _verify_machinery(self, ws: Workspace, graded_files: Sequence[str]) -> None:
        """Prove the test machinery works on the pristine repository, or raise ``InfraError`` saying why.

        A new grading sandbox holds none of the agent's files: its canaries alone are run and must come back
        exactly as written. A missing interpreter or test runner, a sandbox that cannot be created or breaks,
        a runner that reports wrongly: all fail here, and are the machine's failure. The grader calls this
        whenever its verdict would rest on the machinery (no readable report, a canary contradicted, a
        sandbox error with the agent's files in); when it passes, what went wrong was the agent's doing.
        """
        with self._new_sandbox(self._grading_spec(ws)) as probe:
            canaries = self._pristine(probe, ws, graded_files)
            run = run_pytest(
                probe, ws.command, [*GRADING_ARGS, canaries.path], timeout=self.test_timeout_s, env=GRADING_ENV
            )
        if run.report is None:
            raise InfraError(
                f"the test runner does not work on the pristine repository: {run.error} "
                f"(exit code {run.result.exit_code}): {run.console_tail(600)}"
            )
        wrong = canaries.contradictions(run.report)
        if wrong:
            raise InfraError(
                "the test runner does not report faithfully on the pristine repository: " + "; ".join(wrong)
            )

    def _grade(self, submitted: bool) -> Grade:
        task, ws = self.task, self.workspace
        assert task is not None and ws is not None
        agent_sb = self._sb()
        agent = manifest(agent_sb, timeout=self.test_timeout_s, strict=False)
        fail_to_pass = list(task.data.get("FAIL_TO_PASS", ()))
        pass_to_pass = list(task.data.get("PASS_TO_PASS", ()))
        graded_files = sorted({nodeid_file(t) for t in [*fail_to_pass, *pass_to_pass]})
        fresh = self._new_sandbox(self._grading_spec(ws))
        try:
            self._prepare(fresh, ws, hide=False)
            start = self._start_manifest(task, ws, fresh)  # before the test patch and the canaries
            canaries = self._pristine(fresh, ws, graded_files, prepared=True)
            # From here on the agent's files go in: what goes wrong is scored, never excused, once a
            # pristine sandbox shows that the machinery itself works.
            try:
                grade = self._grade_in(task, ws, agent_sb, agent, start, fresh, canaries, graded_files)
            except InfraError as exc:
                self._verify_machinery(ws, graded_files)
                return _failed(f"broke_grading_sandbox: {exc}")
            except Exception as exc:
                return _failed(f"grading_error: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            fresh.close()
        if any(f.startswith(MACHINERY_DEPENDENT) for f in grade.hack_flags):
            self._verify_machinery(ws, graded_files)
        return grade

    def _grade_in(
        self,
        task: Task,
        ws: Workspace,
        agent_sb: Sandbox,
        agent: dict[str, str],
        start: dict[str, str],
        fresh: Sandbox,
        canaries: Canaries,
        graded_files: Sequence[str],
    ) -> Grade:
        data = task.data
        protected = {*ws.protected, *ws.hidden, *(touched_paths(ws.test_patch) if ws.test_patch else ())}
        changed = sorted(p for p in set(agent) | set(start) if agent.get(p) != start.get(p))
        dropped = changed[MAX_CHANGED_FILES:]
        changed = changed[:MAX_CHANGED_FILES]
        packages = {p.rpartition("/")[0] for p in start if p.rsplit("/", 1)[-1] == "__init__.py"}
        pristine_dirs = {d for p in start for d in _parents(p)}
        before: dict[str, str | None] = {}
        after: dict[str, str | None] = {}
        carry: dict[str, bytes] = {}
        deleted: list[str] = []
        flags: list[str] = []
        carried_bytes = 0
        for path in changed:
            kind = classify_path(path, protected)
            raw = None
            if path in agent:
                try:
                    raw = agent_sb.read_file(path)
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, PathError):
                    raw = None
                carried_bytes += len(raw or b"")
                if carried_bytes > MAX_CARRIED_BYTES:
                    return _failed(
                        f"too_many_changes: the changed files hold over {MAX_CARRIED_BYTES:,} bytes", changed=changed
                    )
            # Binary or unreadable contents stand as their hash, so a change to them is still a change.
            after[path] = _or_hash(_text(raw), agent[path]) if path in agent else None
            before[path] = _or_hash(read_text(fresh, path), start[path]) if path in start else None
            if kind != "source":
                continue
            if path in agent and raw is not None:
                if path not in start and path.endswith(".py") and _nearest_dir(path, pristine_dirs) not in packages:
                    flags.append(f"added_top_level_module: {path} (new modules are carried only inside packages)")
                    continue
                carry[path] = raw
            elif path not in agent:
                deleted.append(path)

        # What stays after the deletions; a carried path may not need a file to be a folder, or the reverse.
        remaining = ({*start, *protected, canaries.path} - set(deleted)) - set(carry)
        remaining_dirs = {d for p in remaining for d in _parents(p)}
        emptied = sorted(p for p in carry if p in pristine_dirs and p not in remaining_dirs)
        for path in sorted(carry):
            if path in remaining_dirs or any(d in remaining for d in _parents(path)):
                flags.append(f"path_conflict: {path} (a file where the repository needs a folder, or the reverse)")
                del carry[path]

        reference = [line for lines in added_lines(data.get("gold_patch") or "").values() for line in lines]
        fail_to_pass = list(data.get("FAIL_TO_PASS", ()))
        pass_to_pass = list(data.get("PASS_TO_PASS", ()))
        job = {
            "before": before,
            "after": after,
            "protected": sorted(protected),
            "carried": sorted(carry),
            "test_sources": {f: read_text(fresh, f) or "" for f in sorted({nodeid_file(t) for t in fail_to_pass})},
            "fail_to_pass": fail_to_pass,
            "reference": reference,
        }
        try:
            flags = run_analysis(job) + flags
        except AnalysisError as exc:
            return _failed(f"unanalysable_files: {exc}", flags=flags, changed=changed)

        removals = sorted(set(deleted))
        if removals or emptied:
            steps = []
            if removals:
                steps.append("rm -f -- " + shlex.join(removals))
            if emptied:
                steps.append("rm -rf -- " + shlex.join(emptied))
            fresh.run(["sh", "-c", "; ".join(steps)], timeout=120)
        if carry:
            try:
                fresh.write_files(carry)
            except (PathError, OSError) as exc:
                return _failed(f"path_conflict: cannot write the changed files: {exc}", flags=flags, changed=changed)
        prelude = "find . -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null; true"
        # The twins are made from the test files as they are now: the main run executes the agent's code,
        # which could rewrite them in this sandbox to leave nothing to twin.
        graded_sources = {path: read_text(fresh, path) for path in graded_files}
        run = run_pytest(
            fresh,
            ws.command,
            [*GRADING_ARGS, *graded_files, canaries.path],
            timeout=self.test_timeout_s,
            prelude=prelude,
            env=GRADING_ENV,
        )
        report_problems = report_flags(run.report, run.error, canaries, graded_files, [*fail_to_pass, *pass_to_pass])
        trusted = not any(f.startswith(("report_tampered", "broken_test_report")) for f in report_problems)
        result = grade_tests(fail_to_pass, pass_to_pass, run.report if trusted and run.report else JUnitReport())
        if trusted and result.f2p > 0:
            # It would pay: the same command again, each graded test file replaced by its must-fail twin.
            report_problems += self._twin_check(
                ws, fresh, result, graded_sources, [*graded_files, canaries.path], prelude
            )
            untrusted = ("report_tampered", "broken_test_report", "renamed_test_fails")
            trusted = not any(f.startswith(untrusted) for f in report_problems)
        flags += report_problems
        outcome = 1.0 if result.resolved and trusted else 0.0
        if self.gate_on_hack_flags and flags:
            outcome = 0.0
        details: dict[str, Any] = {
            "resolved": result.resolved and trusted,
            "changed_files": changed[:100],
            "carried_files": sorted(carry),
            "deleted_files": removals,
            "tests_exit_code": run.result.exit_code,
            "tests_timed_out": run.result.timed_out,
            "tests_duration_s": round(run.result.duration_s, 3),
        }
        if run.report is None:
            details["report_error"] = run.error
            details["console_tail"] = run.console_tail(1500)
        else:
            details["status_counts"] = dict(run.report.counts())
        if dropped:
            details["ignored_changed_files"] = len(dropped)
        # p2p pays for not breaking what worked only alongside progress: a do-nothing submission keeps
        # every PASS_TO_PASS test passing and must not be paid for it.
        f2p = result.f2p if trusted else 0.0
        p2p = result.p2p if trusted and f2p > 0 else 0.0
        return Grade(
            outcome=outcome,
            components={"f2p": f2p, "p2p": p2p},
            units=[t.as_unit() for t in result.tests],
            hack_flags=flags,
            details=details,
        )

    def _twin_check(
        self,
        ws: Workspace,
        fresh: Sandbox,
        result: GradeResult,
        sources: Mapping[str, str | None],
        args: Sequence[str],
        prelude: str,
    ) -> list[str]:
        """Run the graded command again with every graded test file replaced by its twin (same node ids,
        failing bodies) and a renamed copy of each (a random file name, classes and tests renamed, bodies
        untouched; see :func:`~execgym.envs.swe.grading.twin_source`), the agent's library still in. A test
        that counted must not pass as a twin (code in the test process that rewrites outcomes by node id: a
        forged report through the report's descriptor, a patched test call), and its copy must count again
        (library code that special-cases the graded tests by file, class or test name)."""
        counted = [t.id for t in result.tests if t.passed]
        lists = {t.id: t.list for t in result.tests}
        files: dict[str, str] = {}
        twins: list[Twins] = []
        for path, source in sources.items():
            made = twin_source(path, source, [t for t in counted if nodeid_file(t) == path]) if source else None
            if made is not None and made.must_fail:
                files[path] = made.text
                files[made.copy_path] = made.copy_text
                twins.append(made)
        if not twins:
            return []
        fresh.write_files(files)
        run = run_pytest(
            fresh,
            ws.command,
            [*GRADING_ARGS, *args, *(t.copy_path for t in twins)],
            timeout=self.test_timeout_s,
            prelude=prelude,
            env=GRADING_ENV,
        )
        return twin_flags(run.report, run.error, twins, lists)


def _failed(flag: str, *, flags: Sequence[str] = (), changed: Sequence[str] = ()) -> Grade:
    """A grading that ended before a trustworthy test report: 0 everywhere, with the reason as a flag."""
    details: dict[str, Any] = {"resolved": False, "changed_files": list(changed[:100]), "graded": False}
    return Grade(outcome=0.0, components={"f2p": 0.0, "p2p": 0.0}, hack_flags=[*flags, flag], details=details)


def _parents(path: str) -> list[str]:
    """The folders above a relative path, nearest first (the root is "")."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)] + [""]


def _nearest_dir(path: str, dirs: set[str]) -> str:
    """The nearest folder above ``path`` that exists in ``dirs`` (the root when none does)."""
    return next((d for d in _parents(path) if d in dirs), "")


def _or_hash(text: str | None, digest: str) -> str:
    return f"<binary {digest}>" if text is None else text


def _text(raw: bytes | None) -> str | None:
    if raw is None or b"\x00" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def format_test_run(run: TestRun, timeout: float) -> str:
    """What ``run_tests`` shows: the counts, then each failure with its traceback (trimmed)."""
    result = run.result
    if run.report is None:
        why = f"timed out after {timeout:g} s" if result.timed_out else f"exit code {result.exit_code}"
        return f"No test report was produced ({why}): {run.error}. Output:\n{run.console_tail(4000)}"
    counts = run.report.counts()
    if not counts:
        return f"No tests ran (exit code {result.exit_code}): check the selector.\n{run.console_tail(1500)}"
    order = ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL")
    summary = ", ".join(f"{counts[s]} {s.lower()}" for s in order if counts.get(s))
    lines = [f"{summary} ({result.duration_s:.1f} s)" + (" [timed out]" if result.timed_out else "")]
    failures = run.report.failures()
    for key, status, message in failures[:MAX_FAILURES_SHOWN]:
        detail = run.report.details.get(key, "").strip() or message
        if len(detail) > 1500:
            detail = "...\n" + detail[-1500:]
        lines += ["", f"{status} {run.report.nodeid(key)}", detail]
    if len(failures) > MAX_FAILURES_SHOWN:
        lines += ["", f"... and {len(failures) - MAX_FAILURES_SHOWN} more failing tests"]
    return "\n".join(lines)
