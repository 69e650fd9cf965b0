"""Real projects as SWE tasks: ``execgym swe build-tasks SOURCE`` (see :func:`build_tasks`).

A project (a folder, a git checkout or ``pypi:NAME==VERSION``) is snapshotted (:mod:`~execgym.envs.swe.sources`),
its dependencies are resolved on the host and installed into a per-project venv or image
(:mod:`~execgym.envs.swe.environments`), and its own test suite is run in sandboxes to make validated tasks
from two sources:

* **mutations**: the mutation engine (:mod:`~execgym.envs.swe.mutations`) over the project's own library
  modules, one bug per task, candidates in a seeded order spread over files and kinds;
* **released versions** (``pypi:NAME==A..B``): each pair of consecutive releases whose change edits library
  code and tests becomes a task: the library part is the gold patch, the test part the test patch (applied
  only for grading), the base is the older release.

Validation, as SWE-bench and its successors learned it: every state's tests run at least twice with a fixed
``TZ`` and ``PYTHONHASHSEED`` (:data:`~execgym.envs.swe.runner.STABLE_TEST_ENV`, the grader's too), and a test
whose status differs between runs is dropped as flaky. A task is kept only when its FAIL_TO_PASS fail on the
buggy state and pass with the gold patch in every run, and its PASS_TO_PASS pass in every run of both; only
tests in test files count. The problem statement is written from the failing tests' output, never from the
diff. The task's working copy is a snapshot of the buggy state with no history, packaged copies or caches,
and the project itself is never installed into its environment.

Results are cached by content hash (``$EXECGYM_CACHE_DIR/swe/mined``), so a second build of the same project
runs no tests again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shlex
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from execgym.core.errors import InfraError
from execgym.envs.swe.environments import (
    EnvironmentBuildError,
    ProjectEnvironment,
    Requirements,
    prepare_environment,
    read_requirements,
    resolve_wheels,
)
from execgym.envs.swe.grading import MISSING, PASSED, JUnitReport, classify_path, nodeid_file, twin_source
from execgym.envs.swe.mutations import Mutation, MutationError, apply_mutations, find_mutations
from execgym.envs.swe.patches import make_patch
from execgym.envs.swe.repos import cache_root
from execgym.envs.swe.runner import STABLE_TEST_ENV, TestCommand, TestRun, run_pytest
from execgym.envs.swe.sources import ProjectSource, SourceError, SourceSpec, fetch_source, parse_source, pypi_versions
from execgym.envs.swe.tasks import difficulty_of, problem_statement
from execgym.envs.swe.validation import MAX_FAILING_FRACTION, _first_lines
from execgym.executor import Executor, Limits, PathError, SandboxSpec, get_executor, validate_relpath

__all__ = ["BuildError", "BuildReport", "ProjectTests", "build_tasks", "library_files", "stable_statuses"]

RUNS = 2
"""How many times each state's tests run (a test whose status differs between runs is flaky)."""
DEFAULT_LIMIT = 20
MAX_REPORT_BYTES = 64 * 1024 * 1024
MINED_FORMAT = 2
GRADING_ARGS = ("--maxfail=0",)
_NOT_LIBRARY = frozenset({"setup.py", "conftest.py", "noxfile.py", "fabfile.py", "tasks.py", "__main__.py"})


class BuildError(ValueError):
    """A project that cannot become tasks; ``step`` names what failed and the message says why, in one line."""

    def __init__(self, step: str, why: str) -> None:
        self.step = step
        super().__init__(f"{step} failed: {why}")


@dataclass
class BuildReport:
    """What a build did: counts, rejections and seconds per step (written beside the tasks as JSON)."""

    source: str
    project: str
    executor: str
    environment: str = ""
    tests: int = 0
    stable_passing: int = 0
    flaky: list[str] = field(default_factory=list)
    name_dependent: list[str] = field(default_factory=list)
    failing_on_clean: int = 0
    candidates: int = 0
    validated: int = 0
    tasks: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cached_runs: int = 0
    test_runs: int = 0

    def total_tasks(self) -> int:
        return sum(self.tasks.values())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


def library_files(root: Path) -> dict[str, str]:
    """The project's library modules (relative path -> text): Python files of its importable packages (at the
    root or under ``src/``) and its top-level modules, without tests, hooks, config or build scripts."""
    out: dict[str, str] = {}
    for rel in sorted(_python_files(root)):
        parts = rel.split("/")
        if classify_path(rel) != "source" or parts[-1] in _NOT_LIBRARY:
            continue
        if parts[0] in ("docs", "doc", "examples", "example", "benchmarks", "bench", "scripts", "tools", "ci"):
            continue
        inside = parts[1:] if parts[0] == "src" and len(parts) > 1 else parts
        if len(inside) > 1 and not (root / ("src/" if parts[0] == "src" else "") / inside[0] / "__init__.py").is_file():
            continue  # a folder that is not a package
        try:
            out[rel] = (root / rel).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
    return out


def _python_files(root: Path) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")


def _import_env(root: Path) -> dict[str, str]:
    """Variables the project's tests need to import it from its folder (``src`` layouts: ``PYTHONPATH=src``)."""
    src = root / "src"
    if src.is_dir() and any((p / "__init__.py").is_file() or p.suffix == ".py" for p in src.iterdir()):
        return {"PYTHONPATH": "src"}
    return {}


def stable_statuses(runs: Sequence[Mapping[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Per test (node id -> status in each run), its status when every run agrees; and the tests whose status
    differs between runs or that are missing from some (flaky), sorted.

    Example:
        >>> stable_statuses([{"t.py::a": "PASSED", "t.py::b": "PASSED"}, {"t.py::a": "PASSED", "t.py::b": "FAILED"}])
        ({'t.py::a': 'PASSED'}, ['t.py::b'])
    """
    ids: dict[str, None] = {}
    for run in runs:
        ids.update(dict.fromkeys(run))
    stable: dict[str, str] = {}
    flaky: list[str] = []
    for nodeid in ids:
        seen = {run.get(nodeid, MISSING) for run in runs}
        if len(seen) == 1:
            stable[nodeid] = seen.pop()
        else:
            flaky.append(nodeid)
    return stable, sorted(flaky)


def _gradable(nodeid: str) -> bool:
    """Only tests in test files count (a doctest of a library module would protect the module from the fix)."""
    try:
        validate_relpath(nodeid_file(nodeid))
    except PathError:
        return False
    return classify_path(nodeid_file(nodeid)) == "test" and "\n" not in nodeid


class ProjectTests:
    """Runs a project's test suite in sandboxes of its environment, with files written over it or removed.

    Args:
        root: the snapshot to copy into every sandbox.
        executor: where the tests run.
        environment: the project's venv (local) or image (Docker).
        env: variables the tests need (``PYTHONPATH=src``), under :data:`STABLE_TEST_ENV`.
        timeout: seconds per run.
    """

    def __init__(
        self, root: Path, executor: Executor, environment: ProjectEnvironment, env: Mapping[str, str], timeout: float
    ) -> None:
        self.root = root
        self.executor = executor
        self.environment = environment
        self.command = TestCommand(("python", "-m", "pytest"), dict(env), autoload_plugins=True)
        self.timeout = timeout

    def spec(self, files: Mapping[str, str]) -> SandboxSpec:
        limits = Limits(wall_time_s=self.timeout, cpu_time_s=self.timeout, output_bytes=MAX_REPORT_BYTES)
        extra: dict[str, Any] = {}
        if self.environment.venv is not None and self.executor.name != "docker":
            extra["python"] = str(self.environment.venv / "bin" / "python")
        return SandboxSpec(
            image=self.environment.image or "python",
            workdir_from=self.root,
            files=dict(files),
            env=self.command.environment(),
            limits=limits,
            **extra,
        )

    def run(self, overlay: Mapping[str, str | None] = ()) -> TestRun:
        """The suite on the snapshot with ``overlay`` applied (text: written, None: removed)."""
        overlay = dict(overlay)
        files = {p: c for p, c in overlay.items() if c is not None}
        removed = sorted(p for p, c in overlay.items() if c is None)
        prelude = ("rm -f -- " + shlex.join(removed)) if removed else ""
        with self.executor.sandbox(self.spec(files)) as sb:
            return run_pytest(
                sb, self.command, list(GRADING_ARGS), timeout=self.timeout, prelude=prelude, env=STABLE_TEST_ENV
            )


@dataclass
class _Project:
    source: ProjectSource
    environment: ProjectEnvironment
    env: dict[str, str]
    tests: ProjectTests
    cache: Path | None
    report: BuildReport
    runs_per_state: int = RUNS
    flaky: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cached(self, kind: str, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        path = None
        if self.cache is not None:
            path = self.cache / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("format") == MINED_FORMAT and data.get("key") == key:
                    with self.lock:
                        self.report.cached_runs += 1
                    return data
            except (OSError, ValueError):
                pass
        data = {"format": MINED_FORMAT, "key": key, **compute()}
        if path is not None and not data.get("timed_out"):  # a busy moment must not reject it for good
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(json.dumps(data), encoding="utf-8")
                os.replace(tmp, path)
            except OSError:
                pass  # an unwritable cache only costs time
        return data

    def runs(self, overlay: Mapping[str, str | None] | None = None, n: int | None = None) -> dict[str, Any]:
        """Run the suite ``n`` times (default: ``runs_per_state``) on the overlay: stable statuses, flaky
        tests, failure messages."""
        n = self.runs_per_state if n is None else n
        reports: list[JUnitReport] = []
        started = time.perf_counter()
        timed_out = False
        error = ""
        for _ in range(n):
            with self.lock:
                self.report.test_runs += 1
            run = self.tests.run(overlay or {})
            if run.result.timed_out:
                timed_out = True
                break
            if run.report is None:
                error = f"{run.error} (exit code {run.result.exit_code}): {run.console_tail(400)}"
                break
            reports.append(run.report)
        if timed_out or error:
            return {"ok": False, "timed_out": timed_out, "error": error}
        stable, flaky = stable_statuses([{t: r.status(t) for t in r.nodeids()} for r in reports])
        messages = {
            t: _first_lines(reports[0].message(t) or s) for t, s in stable.items() if s != PASSED and _gradable(t)
        }
        seconds = round(time.perf_counter() - started, 3)
        return {"ok": True, "statuses": stable, "flaky": flaky, "messages": messages, "seconds": seconds}


def _spread(candidates: Sequence[Mutation], seed: str) -> list[Mutation]:
    """Every candidate, in a seeded order that takes files and mutation kinds in turn."""
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[Mutation]] = {}
    for m in candidates:
        groups.setdefault((m.path, m.kind), []).append(m)
    for group in groups.values():
        rng.shuffle(group)
    keys = sorted(groups)
    rng.shuffle(keys)
    out: list[Mutation] = []
    while keys:
        for key in list(keys):
            out.append(groups[key].pop())
            if not groups[key]:
                keys.remove(key)
    return out


def _copy_with(base: Path, dest: Path, overlay: Mapping[str, str | None]) -> None:
    """A task's working copy: ``base`` with ``overlay`` applied (a fresh copy: nothing links back to ``base``)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base, dest, symlinks=False)
    for rel, content in overlay.items():
        target = dest / rel
        if content is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def _task_lists(clean: Mapping[str, str], buggy_runs: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """FAIL_TO_PASS (pass on the clean state, fail on the buggy one) and PASS_TO_PASS (pass on both)."""
    f2p = sorted(t for t, s in clean.items() if s == PASSED and _gradable(t) and buggy_runs.get(t, "MISSING") != PASSED)
    f2p = [t for t in f2p if t in buggy_runs]  # a test the bug made vanish is not a failing test
    p2p = sorted(t for t, s in clean.items() if s == PASSED and _gradable(t) and buggy_runs.get(t) == PASSED)
    return f2p, p2p


def _row(
    project: _Project,
    instance_id: str,
    repo_path: str,
    statement: str,
    gold: str,
    test_patch: str,
    f2p: Sequence[str],
    p2p: Sequence[str],
    difficulty: str,
    origin: dict[str, Any],
) -> dict[str, Any]:
    env = project.environment
    row: dict[str, Any] = {
        "instance_id": instance_id,
        "repo": project.source.name,
        "base_commit": "",
        "problem_statement": statement,
        "patch": gold,
        "test_patch": test_patch,
        "FAIL_TO_PASS": list(f2p),
        "PASS_TO_PASS": list(p2p),
        "repo_path": repo_path,
        "env": dict(project.env),
        "difficulty": difficulty,
        "split": "test",
        "created_from": origin,
    }
    if env.venv is not None:
        row["venv"] = str(env.venv)
    if env.image is not None:
        row["image"] = env.image
    return row


def _run_hint(env: Mapping[str, str]) -> str:
    prefix = " ".join(f"{k}={v}" for k, v in env.items())
    return f"`{prefix + ' ' if prefix else ''}python -m pytest`"


def _mutation_tasks(
    project: _Project, clean: dict[str, Any], limit: int, seed: int, workers: int, repos_dir: Path, repos_rel: str
) -> list[dict[str, Any]]:
    report = project.report
    files = library_files(project.source.root)
    found = [m for path, text in sorted(files.items()) for m in find_mutations(path, text)]
    order = _spread(found, f"execgym-mined-{seed}-{project.source.name}")
    report.candidates += len(found)
    statuses: dict[str, str] = clean["statuses"]
    passing = [t for t, s in statuses.items() if s == PASSED and _gradable(t)]
    rows: list[dict[str, Any]] = []
    name, version = project.source.name, project.source.version
    ident = f"{name}-{version}" if version else name
    key_base = f"{project.source.content_hash()}\0{project.environment.key}\0{project.tests.executor.name}"

    def check(m: Mutation) -> tuple[Mutation, dict[str, str], dict[str, Any]] | tuple[Mutation, None, str]:
        try:
            buggy = apply_mutations(files, [m])
        except (MutationError, ValueError) as exc:
            return m, None, f"does not apply ({str(exc)[:60]})"
        first = project.cached(
            "mutation", f"{key_base}\0{m.id}\0{_digest(buggy)}\0once", lambda: project.runs(buggy, 1)
        )
        if not first["ok"]:
            return m, None, "the tests time out" if first.get("timed_out") else "no test report"
        f2p, _ = _task_lists(statuses, first["statuses"])
        if not f2p:
            return m, None, "no test fails"
        if len(f2p) > MAX_FAILING_FRACTION * len(passing):
            return m, None, "too broad"
        # Kept so far: its buggy state runs again, and only what held in every run counts.
        more = project.runs_per_state - 1
        again = project.cached(
            "mutation", f"{key_base}\0{m.id}\0{_digest(buggy)}\0again{more}", lambda: project.runs(buggy, more)
        )
        if not again["ok"]:
            return m, None, "the tests time out" if again.get("timed_out") else "no test report"
        both, flaky = stable_statuses([first["statuses"], again["statuses"]])
        flaky = sorted({*flaky, *again["flaky"]})
        with project.lock:
            project.flaky.update(flaky)
        f2p, p2p = _task_lists(statuses, both)
        if not f2p:
            return m, None, "flaky under the bug"
        messages = {t: first["messages"].get(t, "") for t in f2p}
        return m, buggy, {"f2p": f2p, "p2p": p2p, "messages": messages, "flaky": flaky}

    position = 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        while position < len(order) and len(rows) < limit:
            batch = order[position : position + max(1, workers) * 2]
            position += len(batch)
            for m, buggy, outcome in pool.map(check, batch):
                report.validated += 1
                if buggy is None:
                    report.reject(str(outcome))
                    continue
                if len(rows) >= limit:
                    continue
                assert isinstance(outcome, dict)
                number = len(rows) + 1
                instance_id = f"{ident}-mut-{number:03d}"
                _copy_with(project.source.root, repos_dir / instance_id, buggy)
                gold = make_patch(buggy, {p: files[p] for p in buggy})
                make_statement = partial(
                    problem_statement,
                    _Described(name, f"version {version}" if version else "a Python project"),
                    messages=outcome["messages"],
                    run_hint=_run_hint(project.env),
                )
                statement = make_statement(outcome["f2p"])
                rows.append(
                    _row(
                        project,
                        instance_id,
                        f"{repos_rel}/{instance_id}",
                        statement,
                        gold,
                        "",
                        outcome["f2p"],
                        outcome["p2p"],
                        difficulty_of(1, len(outcome["f2p"])),
                        {"kind": "mutation", "source": project.source.origin, "mutation": m.id},
                    )
                )
                rows[-1]["_statement"] = make_statement
    report.tasks["mutation"] = report.tasks.get("mutation", 0) + len(rows)
    return rows


@dataclass(frozen=True)
class _Described:
    name: str
    description: str


def _text_files(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(dirnames)
        for name in filenames:
            full = Path(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            try:
                out[rel] = full.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
    return out


def _version_change(old_root: Path, new_root: Path) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """The change between two releases split into its library part and its test part (text files only;
    everything else, docs, metadata, config, build scripts, is left out)."""
    old, new = _text_files(old_root), _text_files(new_root)
    old_lib, new_lib = set(library_files(old_root)), set(library_files(new_root))
    library: dict[str, str | None] = {}
    tests: dict[str, str | None] = {}
    for rel in sorted(set(old) | set(new)):
        if old.get(rel) == new.get(rel):
            continue
        kind = classify_path(rel)
        if kind == "test":
            tests[rel] = new.get(rel)
        elif kind == "source" and (rel in old_lib or rel in new_lib):
            library[rel] = new.get(rel)
    return library, tests


def _version_tasks(
    project: _Project, spec: SourceSpec, work: Path, repos_dir: Path, repos_rel: str, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One task per pair of consecutive releases from A to B whose change edits library code and tests."""
    assert spec.name is not None
    report = project.report
    versions = pypi_versions(spec.name, spec.versions[0], spec.versions[1])
    rows: list[dict[str, Any]] = []
    snapshots: dict[str, ProjectSource] = {project.source.version or "": project.source}
    for old_v, new_v in itertools.pairwise(versions):
        for v in (old_v, new_v):
            if v not in snapshots:
                snapshots[v] = fetch_source(spec, work / f"v-{v}", version=v)
        old, new = snapshots[old_v], snapshots[new_v]
        library, tests = _version_change(old.root, new.root)
        report.candidates += 1
        if not library or not tests:
            report.reject("release edits no library code and tests")
            continue
        base = _Project(
            old,
            project.environment,
            _import_env(old.root),
            project.tests,
            project.cache,
            report,
            project.runs_per_state,
        )
        base.tests = ProjectTests(
            old.root, project.tests.executor, project.environment, base.env, project.tests.timeout
        )
        key = f"{old.content_hash()}\0{new.content_hash()}\0{project.environment.key}\0{project.tests.executor.name}"
        key += f"\0{project.runs_per_state}\0{_digest(tests)}\0{_digest(library)}"
        buggy = base.cached("version", key + "\0buggy", partial(base.runs, tests))
        fixed = base.cached("version", key + "\0fixed", partial(base.runs, {**tests, **library}))
        project.flaky.update(buggy.get("flaky", ()), fixed.get("flaky", ()))
        report.validated += 1
        if not buggy["ok"] or not fixed["ok"]:
            report.reject(
                "the tests time out" if buggy.get("timed_out") or fixed.get("timed_out") else "no test report"
            )
            continue
        f2p, p2p = _task_lists(fixed["statuses"], buggy["statuses"])
        if not f2p:
            report.reject("no test fails on the older release")
            continue
        if not p2p:
            report.reject("nothing passes on the older release")
            continue
        instance_id = f"{spec.name}-{old_v}-to-{new_v}"
        _copy_with(old.root, repos_dir / instance_id, {})
        old_text = _text_files(old.root)
        gold = make_patch({p: old_text.get(p) for p in library}, library)
        test_patch = make_patch({p: old_text.get(p) for p in tests}, tests)

        hint = _run_hint(base.env)

        def make_statement(
            f2p: Sequence[str], old_v: str = old_v, messages: dict[str, str] = buggy["messages"], hint: str = hint
        ) -> str:
            n = len(f2p)
            return problem_statement(
                _Described(spec.name or "", f"version {old_v}"),
                f2p,
                messages,
                opening=(
                    f"`{spec.name}` {old_v} does not do what its next release's tests expect: "
                    f"{n} test{'s' if n != 1 else ''} fail{'s' if n == 1 else ''}."
                ),
                run_hint=hint,
            )

        statement = make_statement(f2p)
        rows.append(
            _row(
                base,
                instance_id,
                f"{repos_rel}/{instance_id}",
                statement,
                gold,
                test_patch,
                f2p,
                p2p,
                "hard" if len(f2p) > 12 else "medium",
                {"kind": "version", "source": f"pypi:{spec.name}=={old_v}..{new_v}", "from": old_v, "to": new_v},
            )
        )
        rows[-1]["_statement"] = make_statement
        log(f"{instance_id}: {len(f2p)} failing, {len(p2p)} passing tests")
    report.tasks["version"] = report.tasks.get("version", 0) + len(rows)
    return rows


def _name_dependent(project: _Project, passing: Sequence[str], key: str) -> set[str]:
    """Tests whose renamed copy does not pass on the clean code (they read their own file, class or function
    name, or lean on names' order): the grader runs such copies to catch library code that special-cases the
    graded tests, so a task listing one could not be resolved."""
    by_file: dict[str, list[str]] = {}
    for t in passing:
        by_file.setdefault(nodeid_file(t), []).append(t)
    overlay: dict[str, str | None] = {}
    renamed: dict[str, str] = {}
    for path, ids in sorted(by_file.items()):
        try:
            source = (project.source.root / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        made = twin_source(path, source, ids, seed=len(overlay))
        if made is None:
            continue
        overlay[made.copy_path] = made.copy_text
        renamed.update(made.renamed)
    if not overlay:
        return set()
    probe = project.cached("renamed", key + "\0renamed", partial(project.runs, overlay, 1))
    if not probe["ok"]:
        return set(renamed)  # nothing can be said for them
    statuses = probe["statuses"]
    return {t for t, copy_id in renamed.items() if statuses.get(copy_id) != PASSED}


def _digest(overlay: Mapping[str, str | None]) -> str:
    """A hash of an overlay's files (what a cached run is valid for, whatever made them)."""
    h = hashlib.sha256()
    for rel, content in sorted(overlay.items()):
        h.update(f"{rel}\0{'-' if content is None else hashlib.sha256(content.encode()).hexdigest()}\n".encode())
    return h.hexdigest()[:16]


def _copy_in_environment(requirements: Requirements, root: Path) -> str | None:
    """A module or package of the project's own name inside a wheel of its environment (a vendored copy in a
    dependency: ``pip/_vendor/packaging``), which would hand an agent the clean code; None when there is none."""
    tops = {rel.split("/")[1] if rel.startswith("src/") else rel.split("/")[0] for rel in library_files(root)}
    names = {t.removesuffix(".py") for t in tops if t}
    if not names:
        return None
    for wheel in sorted(resolve_wheels(requirements).glob("*.whl")):
        try:
            with zipfile.ZipFile(wheel) as zf:
                listing = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            continue
        for entry in listing:
            parts = entry.split("/")
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if (part in names and not last) or (
                    last and part.removesuffix(".py") in names and part.endswith(".py")
                ):
                    return f"{wheel.name}: {entry}"
    return None


def _without_flaky(
    rows: list[dict[str, Any]], flaky: set[str], staging: Path, report: BuildReport
) -> list[dict[str, Any]]:
    """Every task without the tests found flaky in any state's runs; a task left with no failing test goes."""
    kept = []
    for row in rows:
        listed = row["FAIL_TO_PASS"]
        make_statement = row.pop("_statement", None)
        row["FAIL_TO_PASS"] = [t for t in row["FAIL_TO_PASS"] if t not in flaky]
        if row["FAIL_TO_PASS"] != listed and row["FAIL_TO_PASS"] and make_statement is not None:
            row["problem_statement"] = make_statement(row["FAIL_TO_PASS"])  # never naming a dropped test
        row["PASS_TO_PASS"] = [t for t in row["PASS_TO_PASS"] if t not in flaky]
        if row["FAIL_TO_PASS"]:
            kept.append(row)
            continue
        report.reject("flaky")
        kind = row["created_from"]["kind"]
        report.tasks[kind] -= 1
        shutil.rmtree(staging / row["instance_id"], ignore_errors=True)
    return kept


def _verify_oracles(
    rows: list[dict[str, Any]],
    executor: Executor,
    folder: Path,
    staging: Path,
    repos_rel: str,
    report: BuildReport,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """The rows whose oracle the SWE env's own grader resolves (outcome 1, no infra error)."""
    from execgym.envs.swe.env import SWERepairEnv

    check = folder / f".{staging.name}.verify.jsonl"
    moved = [{**r, "repo_path": f"{staging.name}/{r['instance_id']}"} for r in rows]
    check.write_text("".join(json.dumps(r) + "\n" for r in moved), encoding="utf-8")
    kept: list[dict[str, Any]] = []
    env = SWERepairEnv(executor=executor, dataset=f"swebench:{check}")
    try:
        for row, task in zip(rows, env.tasks, strict=True):
            env.reset(options={"task_id": task.id})
            info: dict[str, Any] = {}
            for action in task.oracle:
                *_, info = env.step(action)
            if info.get("infra_error"):
                raise BuildError("verify oracles", f"{task.id}: {info['infra_error']}".splitlines()[0])
            if info.get("outcome") == 1.0:
                kept.append(row)
                continue
            flags = "; ".join(info.get("hack_flags") or ()) or "its tests do not pass"
            log(f"{task.id}: dropped, the oracle does not resolve it ({flags[:200]})")
            report.reject("oracle does not resolve")
            report.tasks[row["created_from"]["kind"]] -= 1
            shutil.rmtree(staging / row["instance_id"], ignore_errors=True)
    finally:
        env.close()
        check.unlink(missing_ok=True)
    return kept


def build_tasks(
    source: str,
    out: Path | str,
    *,
    executor: str | Executor = "local",
    limit: int = DEFAULT_LIMIT,
    seed: int = 0,
    workers: int | None = None,
    timeout: float | None = None,
    cache: bool = True,
    runs: int = RUNS,
    verify: bool = True,
    log: Callable[[str], None] = lambda line: None,
) -> BuildReport:
    """Turn ``source`` into validated SWE-bench-format tasks in ``out`` (JSONL) that
    ``dataset="swebench:<out>"`` loads; the working copies go to ``<out stem>.repos/`` beside it and the
    build's report to ``<out stem>.build.json``. Raises :class:`BuildError` naming the step that failed.

    ``limit``: at most this many mutation tasks (version tasks come on top, one per release pair). ``runs``:
    how many times each state's tests run (at least 2); a test whose status differed in any state's runs is
    dropped from every task. ``verify``: play every task's oracle in the SWE env itself (its grader, twins and
    all) and keep only those it resolves.
    """
    if runs < 2:
        raise ValueError(f"runs must be at least 2 (flaky tests are found by running twice), got {runs}")
    started = time.perf_counter()
    out = Path(out)
    try:
        spec = parse_source(source)
    except SourceError as exc:
        raise BuildError("fetch source", str(exc).removeprefix("fetch source failed: ")) from None
    owns = not isinstance(executor, Executor)
    try:
        ex = get_executor(executor)
    except (InfraError, ValueError, ImportError) as exc:
        raise BuildError("start executor", str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    report = BuildReport(source=source, project="", executor=ex.name)
    try:
        with tempfile.TemporaryDirectory(prefix="execgym-build-") as tmp:
            work = Path(tmp)
            tick = time.perf_counter()
            try:
                src = fetch_source(spec, work / "snapshot", version=spec.versions[-1] if spec.versions else None)
            except SourceError as exc:
                raise BuildError("fetch source", str(exc).removeprefix("fetch source failed: ")) from None
            report.project = src.name
            report.seconds["fetch source"] = round(time.perf_counter() - tick, 2)
            tick = time.perf_counter()
            try:
                requirements = read_requirements(src.root, src.name)
                environment = prepare_environment(requirements, ex.name)
            except EnvironmentBuildError as exc:
                raise BuildError(exc.step, str(exc).split(" failed: ", 1)[-1]) from None
            report.environment = environment.key
            copy = _copy_in_environment(requirements, src.root)
            if copy:
                raise BuildError("install dependencies", f"the environment holds a copy of the project: {copy}")
            report.seconds["environment"] = round(time.perf_counter() - tick, 2)
            if spec.kind == "pypi" and len(spec.versions) == 2:
                # The newest release's environment serves every release of the range; mutations use the newest.
                pass
            env = _import_env(src.root)
            cache_dir = (
                (cache_root() / "mined" / f"{src.name}-{src.content_hash()}-{environment.key}") if cache else None
            )
            tests = ProjectTests(src.root, ex, environment, env, timeout or 120.0)
            project = _Project(src, environment, env, tests, cache_dir, report, runs)

            tick = time.perf_counter()
            key = f"{src.content_hash()}\0{environment.key}\0{ex.name}\0clean{runs}"
            clean = project.cached("clean", key, project.runs)
            report.seconds["clean runs"] = round(time.perf_counter() - tick, 2)
            if not clean["ok"]:
                what = "timed out" if clean.get("timed_out") else clean.get("error", "")
                raise BuildError("collect tests", f"the clean code's tests did not run: {what}"[:400])
            statuses = clean["statuses"]
            report.tests = len(statuses)
            project.flaky.update(clean["flaky"])
            report.flaky = list(clean["flaky"])
            passing = [t for t, s in statuses.items() if s == PASSED and _gradable(t)]
            report.stable_passing = len(passing)
            report.failing_on_clean = sum(1 for s in statuses.values() if s != PASSED)
            if not statuses:
                raise BuildError("collect tests", "pytest collected no tests")
            if not passing:
                raise BuildError("run clean tests", f"none of the {len(statuses)} tests passes on the clean code")
            log(
                f"{src.name}: {len(statuses)} tests, {len(passing)} pass in every run, {len(report.flaky)} flaky, "
                f"{report.failing_on_clean} fail or skip on the clean code"
            )
            if timeout is None:
                tests.timeout = min(300.0, max(20.0, 10 * float(clean.get("seconds", 30.0)) / runs))
            tick = time.perf_counter()
            name_dependent = _name_dependent(project, passing, key)
            report.name_dependent = sorted(name_dependent)
            report.seconds["renamed copies"] = round(time.perf_counter() - tick, 2)
            if name_dependent:
                log(f"{src.name}: {len(name_dependent)} tests fail as renamed copies (left out of every task)")
            statuses = {t: st for t, st in statuses.items() if t not in name_dependent}
            clean = {**clean, "statuses": statuses}

            out.parent.mkdir(parents=True, exist_ok=True)
            repos_rel = f"{out.stem}.repos"
            repos_dir = out.parent / repos_rel
            staging = out.parent / f".{out.stem}.repos.new"
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir()
            tick = time.perf_counter()
            rows = _mutation_tasks(
                project, clean, limit, seed, workers or max(1, min(4, os.cpu_count() or 1)), staging, repos_rel
            )
            report.seconds["mutation tasks"] = round(time.perf_counter() - tick, 2)
            if spec.kind == "pypi" and len(spec.versions) == 2:
                tick = time.perf_counter()
                try:
                    rows += _version_tasks(project, spec, work, staging, repos_rel, log)
                except SourceError as exc:
                    raise BuildError("fetch source", str(exc).removeprefix("fetch source failed: ")) from None
                report.seconds["version tasks"] = round(time.perf_counter() - tick, 2)
            rows = _without_flaky(rows, project.flaky | name_dependent, staging, report)
            report.flaky = sorted(project.flaky)
            if verify and rows:
                tick = time.perf_counter()
                rows = _verify_oracles(rows, ex, out.parent, staging, repos_rel, report, log)
                report.seconds["oracle check"] = round(time.perf_counter() - tick, 2)
            if not rows:
                raise BuildError("validate tasks", f"no candidate became a valid task (rejected: {report.rejected})")
            if repos_dir.exists():
                shutil.rmtree(repos_dir)
            os.replace(staging, repos_dir)
            tmp_out = out.with_suffix(out.suffix + ".tmp")
            tmp_out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            os.replace(tmp_out, out)
            report.seconds["total"] = round(time.perf_counter() - started, 2)
            (out.parent / f"{out.stem}.build.json").write_text(json.dumps(report.to_json(), indent=1), encoding="utf-8")
            return report
    except InfraError as exc:
        raise BuildError("run tests", f"the sandbox failed: {exc}".splitlines()[0]) from None
    except OSError as exc:
        raise BuildError("write tasks", f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    finally:
        if owns:
            ex.close()
