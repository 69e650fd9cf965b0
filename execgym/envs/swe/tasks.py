"""SWE repair tasks: bundled bug tasks, a seeded bug generator, and a SWE-bench loader.

Bundled repositories live in ``execgym/assets/swe/repos/<name>`` (small libraries written for execgym, run
from their folder; the root is on ``sys.path``, last). ``execgym/assets/swe/catalogue.json`` holds, per
repository, its test ids and every single-mutation bug (see :mod:`execgym.envs.swe.mutations`) that was validated in a
sandbox (the clean code passes every test, the bug fails at least one and at most a third of them), plus
the bundled tasks made from them. It is rebuilt with ``python -m execgym.envs.swe.build``.

The generator draws one to three validated bugs (in different functions) for a seed; a combination is
validated on demand in a sandbox and the result cached on disk (``$EXECGYM_CACHE_DIR`` or
``~/.cache/execgym``). Difficulty: ``easy`` = one mutation failing at most 3 tests; ``hard`` = three
mutations or more than 12 failing tests; ``medium`` = the rest.

SWE-bench instances load with ``dataset="swebench:FILE.jsonl"`` (see :func:`load_swebench`).

Example:
    >>> tasks = bundled_tasks()
    >>> len(tasks) >= 30, sorted({t.data["repo"] for t in tasks})
    (True, ['calcy', 'spans', 'texttab'])
    >>> t = tasks[0]
    >>> t.oracle[0]["name"], t.oracle[1]["name"]
    ('apply_patch', 'submit')
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import tarfile
import tempfile
import threading
import tomllib
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from execgym.core.errors import InfraError
from execgym.core.tasks import DIFFICULTIES, Task, read_json_or_jsonl
from execgym.envs.swe.grading import classify_path, nodeid_file
from execgym.envs.swe.mutations import Mutation, MutationError, apply_mutations, function_spans
from execgym.envs.swe.patches import PatchError, apply_patch, make_patch, reverse_patch, touched_paths
from execgym.envs.swe.runner import TestCommand, host_manifest, run_pytest
from execgym.executor import Executor, Limits, PathError, SandboxSpec, get_executor, validate_relpath

__all__ = [
    "BUNDLED_COMMAND",
    "CATALOGUE_PATH",
    "REPOS_DIR",
    "BugCheck",
    "BugValidator",
    "BundledRepo",
    "Workspace",
    "bundled_repo",
    "bundled_repo_names",
    "bundled_tasks",
    "difficulty_of",
    "generate_task",
    "load_catalogue",
    "load_swebench",
    "make_bug_task",
    "problem_statement",
    "workspace",
]

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "swe"
REPOS_DIR = ASSETS / "repos"
CATALOGUE_PATH = ASSETS / "catalogue.json"
BUNDLED_COMMAND = TestCommand(("python", "-m", "pytest"), {}, autoload_plugins=False)
MAX_FAILING_FRACTION = 1 / 3
VALIDATION_TIMEOUT_S = 30.0
MEMORY_CACHE_SIZE = 4096
CATALOGUE_FORMAT = 1


def difficulty_of(n_mutations: int, n_failing: int) -> str:
    """``easy`` / ``medium`` / ``hard`` from the number of mutations and of failing tests.

    Example:
        >>> difficulty_of(1, 2), difficulty_of(2, 5), difficulty_of(1, 20), difficulty_of(3, 3)
        ('easy', 'medium', 'hard', 'hard')
    """
    if n_mutations >= 3 or n_failing > 12:
        return "hard"
    if n_mutations == 1 and n_failing <= 3:
        return "easy"
    return "medium"


def _cache_root() -> Path:
    root = os.environ.get("EXECGYM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "execgym")
    return Path(root) / "swe"


# ------------------------------------------------------------------------------------ bundled repos


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


# --------------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class BugCheck:
    """The result of running a repository's tests with some mutations applied.

    ``fail_to_pass`` are the tests that pass on the clean code and fail with the bug; ``messages`` their
    failure messages (from the JUnit report) for the problem statement.
    """

    repo: str
    mutations: tuple[str, ...]
    ok: bool
    reason: str = ""
    fail_to_pass: tuple[str, ...] = ()
    pass_to_pass: tuple[str, ...] = ()
    messages: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "mutations": list(self.mutations),
            "ok": self.ok,
            "reason": self.reason,
            "fail_to_pass": list(self.fail_to_pass),
            "pass_to_pass": list(self.pass_to_pass),
            "messages": dict(self.messages),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BugCheck:
        return cls(
            data["repo"],
            tuple(data["mutations"]),
            bool(data["ok"]),
            data.get("reason", ""),
            tuple(data.get("fail_to_pass", ())),
            tuple(data.get("pass_to_pass", ())),
            dict(data.get("messages", {})),
        )


class BugValidator:
    """Validates bugs by running the tests in sandboxes, caching results in memory and on disk.

    Args:
        executor: where tests run (default: ``get_executor(None)``).
        cache_dir: where results are kept (default ``$EXECGYM_CACHE_DIR/swe`` or ``~/.cache/execgym/swe``);
            ``False`` keeps them in memory only.
        timeout: per test run, in seconds (a bug that hangs the tests is rejected).

    Example:
        >>> v = BugValidator(cache_dir=False)
        >>> muts = load_catalogue()["bugs"]["calcy"]
        >>> check = v.check("calcy", [sorted(muts)[0]])
        >>> check.ok, len(check.fail_to_pass) >= 1
        (True, True)
    """

    def __init__(
        self,
        executor: Executor | str | None = None,
        *,
        cache_dir: Path | str | bool | None = None,
        timeout: float = VALIDATION_TIMEOUT_S,
    ) -> None:
        self._executor_arg = executor
        self._executor: Executor | None = executor if isinstance(executor, Executor) else None
        self.cache_dir = (
            None
            if cache_dir is False
            else Path(cache_dir)
            if cache_dir not in (None, True)
            else (_cache_root() / "validated")
        )
        self.timeout = timeout
        self._memory: dict[tuple[str, str, tuple[str, ...]], BugCheck] = {}
        self._clean: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = get_executor(self._executor_arg)
        return self._executor

    def _limits(self) -> Limits:
        return Limits(wall_time_s=self.timeout, cpu_time_s=self.timeout)

    def _run(self, repo: BundledRepo, files: Mapping[str, str]):  # type: ignore[no-untyped-def]
        spec = SandboxSpec(
            workdir_from=repo.root, files=dict(files), env=dict(BUNDLED_COMMAND.env), limits=self._limits()
        )
        with self.executor.sandbox(spec) as sb:
            return run_pytest(sb, BUNDLED_COMMAND, [], timeout=self.timeout)

    def clean_tests(self, repo_name: str) -> tuple[str, ...]:
        """The node ids of the clean repository's tests (all must pass, else ``ValueError``)."""
        with self._lock:
            if repo_name in self._clean:
                return self._clean[repo_name]
        repo = bundled_repo(repo_name)
        run = self._run(repo, {})
        if run.report is None:
            # The shipped repository's tests pass; no report means the sandbox cannot run them.
            raise InfraError(
                f"{repo_name}: the test runner does not work in the sandbox: {run.error} "
                f"(exit code {run.result.exit_code}): {run.console_tail(600)}"
            )
        bad = {k: s for k, s in run.report.statuses.items() if s != "PASSED"}
        if bad:
            raise ValueError(f"{repo_name}: the clean code fails tests: {bad}")
        tests = tuple(run.report.nodeids())
        with self._lock:
            self._clean[repo_name] = tests
        return tests

    def _cache_file(self, repo: BundledRepo, ids: tuple[str, ...]) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:24]
        return self.cache_dir / f"{repo.name}-{repo.content_hash()}" / f"{key}.json"

    def check(self, repo_name: str, mutation_ids: Sequence[str]) -> BugCheck:
        """Validate one bug (one or more mutations applied together)."""
        repo = bundled_repo(repo_name)
        ids = tuple(sorted(mutation_ids))
        key = (repo_name, repo.content_hash(), ids)
        with self._lock:
            if key in self._memory:
                return self._memory[key]
        path = self._cache_file(repo, ids)
        if path is not None and path.is_file():
            try:
                result = BugCheck.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError):
                result = None
            if result is not None and result.mutations == ids:
                self._remember(key, result)
                return result
        result = self._validate(repo, ids)
        self._remember(key, result)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(json.dumps(result.to_json()), encoding="utf-8")
                os.replace(tmp, path)
            except OSError:
                pass  # an unwritable cache only costs time
        return result

    def _remember(self, key: tuple[str, str, tuple[str, ...]], result: BugCheck) -> None:
        with self._lock:
            self._memory[key] = result
            while len(self._memory) > MEMORY_CACHE_SIZE:
                self._memory.pop(next(iter(self._memory)))

    def check_many(self, repo_name: str, bugs: Sequence[Sequence[str]], workers: int | None = None) -> list[BugCheck]:
        """Validate many bugs in parallel sandboxes."""
        self.clean_tests(repo_name)
        workers = workers or max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda ids: self.check(repo_name, ids), bugs))

    def _validate(self, repo: BundledRepo, ids: tuple[str, ...]) -> BugCheck:
        clean = self.clean_tests(repo.name)
        try:
            files = apply_mutations(repo.library_files(), [Mutation.from_id(i) for i in ids])
        except (MutationError, ValueError) as exc:
            return BugCheck(repo.name, ids, False, f"does not apply: {exc}")
        run = self._run(repo, files)
        if run.result.timed_out:
            return BugCheck(repo.name, ids, False, "the tests time out")
        if run.report is None:
            return BugCheck(repo.name, ids, False, f"no test report: {run.error}")
        failing = tuple(t for t in clean if run.report.status(t) not in ("PASSED",))
        passing = tuple(t for t in clean if t not in set(failing))
        if not failing:
            return BugCheck(repo.name, ids, False, "no test fails")
        if len(failing) > MAX_FAILING_FRACTION * len(clean):
            return BugCheck(repo.name, ids, False, f"{len(failing)} of {len(clean)} tests fail (too broad)")
        messages = {t: _first_lines(run.report.message(t) or run.report.status(t)) for t in failing}
        return BugCheck(repo.name, ids, True, "", failing, passing, messages)


def _first_lines(text: str, lines: int = 2, limit: int = 240) -> str:
    kept = [line.rstrip() for line in text.strip().splitlines() if line.strip()][:lines]
    out = "\n".join(kept)
    return out if len(out) <= limit else out[: limit - 3] + "..."


# ------------------------------------------------------------------------------------ task building


def problem_statement(
    repo: BundledRepo, fail_to_pass: Sequence[str], messages: Mapping[str, str], *, groups: int = 8, per_group: int = 3
) -> str:
    """An issue-style statement written from the failing tests' names and failure messages only.

    Tests that fail with the same message are listed together (at most ``per_group`` names each).

    Example:
        >>> text = problem_statement(bundled_repo("spans"), ["tests/a.py::t1", "tests/a.py::t2"],
        ...                          {"tests/a.py::t1": "assert 1 == 2", "tests/a.py::t2": "assert 1 == 2"})
        >>> print(text.split("\\n\\n")[1])
        Failing tests and what they report:
        - tests/a.py::t1
        - tests/a.py::t2
            assert 1 == 2
    """
    n = len(fail_to_pass)
    description = repo.description[:1].lower() + repo.description[1:]
    by_message: dict[str, list[str]] = {}
    for test in fail_to_pass:
        by_message.setdefault(messages.get(test) or "", []).append(test)
    lines = [
        f"The `{repo.name}` library ({description}) has a bug: {n} of its tests fail{'s' if n == 1 else ''}.",
        "",
        "Failing tests and what they report:",
    ]
    for message, tests in list(by_message.items())[:groups]:
        lines += [f"- {test}" for test in tests[:per_group]]
        if len(tests) > per_group:
            lines.append(f"- ... and {len(tests) - per_group} more failing the same way")
        lines += [f"    {msg_line}" for msg_line in message.splitlines()]
    hidden = sum(len(tests) for tests in list(by_message.values())[groups:])
    if hidden:
        lines.append(f"- ... and {hidden} more tests with other failures")
    lines += [
        "",
        "Find the cause in the library code and fix it, so that these tests pass and every other test keeps "
        "passing. Do not change the tests. The repository runs from its folder: "
        "`PYTHONPATH=. python -m pytest` (or the run_tests tool). Call submit() when you are done.",
    ]
    return "\n".join(lines)


def _oracle(gold_patch: str) -> tuple[dict[str, Any], ...]:
    return ({"name": "apply_patch", "arguments": {"patch": gold_patch}}, {"name": "submit", "arguments": {}})


def make_bug_task(
    check: BugCheck,
    *,
    task_id: str,
    split: str = "test",
    source: str = "bundled",
    difficulty: str | None = None,
    statement: str | None = None,
) -> Task:
    """A task from a validated bug: the gold patch is the reverse of the mutation's diff."""
    if not check.ok:
        raise ValueError(f"bug {check.mutations} is not valid: {check.reason}")
    repo = bundled_repo(check.repo)
    clean = repo.library_files()
    buggy = apply_mutations(clean, [Mutation.from_id(i) for i in check.mutations])
    gold = make_patch(buggy, {p: clean[p] for p in buggy})
    return Task(
        id=task_id,
        prompt=statement or problem_statement(repo, check.fail_to_pass, check.messages),
        data={
            "kind": "bundled",
            "repo": check.repo,
            "mutations": list(check.mutations),
            "gold_patch": gold,
            "FAIL_TO_PASS": list(check.fail_to_pass),
            "PASS_TO_PASS": list(check.pass_to_pass),
        },
        oracle=_oracle(gold),
        difficulty=difficulty or difficulty_of(len(check.mutations), len(check.fail_to_pass)),
        split=split,
        source=source,
    )


# ---------------------------------------------------------------------------------------- catalogue


@cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, Any]:
    """The shipped catalogue of validated bugs and bundled tasks."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != CATALOGUE_FORMAT:
        raise ValueError(f"{path}: unsupported catalogue format {data.get('format')!r}")
    return data


def bundled_tasks() -> list[Task]:
    """The bundled bug tasks (pre-validated; loading runs nothing)."""
    data = load_catalogue()
    tasks = []
    for row in data["tasks"]:
        tests = data["repos"][row["repo"]]["tests"]
        f2p = [tests[i] for i in row["fail_to_pass"]]
        failing = set(row["fail_to_pass"])
        p2p = [t for i, t in enumerate(tests) if i not in failing]
        tasks.append(
            Task(
                id=row["id"],
                prompt=row["statement"],
                data={
                    "kind": "bundled",
                    "repo": row["repo"],
                    "mutations": list(row["mutations"]),
                    "gold_patch": row["gold_patch"],
                    "FAIL_TO_PASS": f2p,
                    "PASS_TO_PASS": p2p,
                },
                oracle=_oracle(row["gold_patch"]),
                difficulty=row["difficulty"],
                split=row["split"],
                source="bundled",
            )
        )
    return tasks


def _pick_bugs(
    rng: random.Random, bugs: Mapping[str, Sequence[int]], n: int, difficulty: str, repo: BundledRepo
) -> list[str] | None:
    """Up to ``n`` catalogue bugs in different functions whose predicted failures fit ``difficulty``."""
    ids = sorted(bugs)
    spans: dict[str, dict[str, tuple[int, int]]] = {}
    files = repo.library_files()
    for _ in range(50):
        chosen = rng.sample(ids, n) if len(ids) >= n else []
        if not chosen:
            return None
        muts = [Mutation.from_id(i) for i in chosen]
        places = set()
        overlap = False
        for m in muts:
            if m.path not in spans:
                spans[m.path] = function_spans(files[m.path])
            lo, hi = spans[m.path][m.function]
            for path, a, b in places:
                if path == m.path and not (hi < a or lo > b):
                    overlap = True
            places.add((m.path, lo, hi))
        if overlap:
            continue
        predicted = set().union(*(set(bugs[i]) for i in chosen))
        if difficulty_of(n, len(predicted)) == difficulty:
            return chosen
    return None


def generate_task(seed: int, difficulty: str | None = None, validator: BugValidator | None = None) -> Task:
    """A generated bug task for ``seed``: same seed and difficulty, same task.

    Example:
        >>> t = generate_task(7, "easy", BugValidator(cache_dir=False))
        >>> t.difficulty, len(t.data["mutations"]), 1 <= len(t.data["FAIL_TO_PASS"]) <= 3
        ('easy', 1, True)
    """
    rng = random.Random(f"execgym-swe-{seed}")
    difficulty = difficulty or DIFFICULTIES[rng.randrange(len(DIFFICULTIES))]
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r} (use one of {DIFFICULTIES})")
    validator = validator or _default_validator()
    catalogue = load_catalogue()
    repos = sorted(catalogue["bugs"])
    for _attempt in range(40):
        repo = bundled_repo(repos[rng.randrange(len(repos))])
        entry = catalogue["repos"][repo.name]
        if entry["hash"] != repo.content_hash():
            raise RuntimeError(f"the bug catalogue is stale for {repo.name}: run python -m execgym.envs.swe.build")
        n = {"easy": 1, "medium": rng.choice((1, 2, 2)), "hard": rng.choice((2, 3, 3))}[difficulty]
        chosen = _pick_bugs(rng, catalogue["bugs"][repo.name], n, difficulty, repo)
        if chosen is None:
            continue
        check = validator.check(repo.name, chosen)
        if check.ok and difficulty_of(len(chosen), len(check.fail_to_pass)) == difficulty:
            return make_bug_task(
                check, task_id=f"gen-{difficulty}-{seed}", source="generated", difficulty=difficulty, split="generated"
            )
    raise RuntimeError(f"no {difficulty} bug found for seed {seed}")


@cache
def _default_validator() -> BugValidator:
    return BugValidator()


# ---------------------------------------------------------------------------------------- workspace


@dataclass(frozen=True)
class Workspace:
    """Where a task's repository comes from and how its tests run.

    ``base_dir``: a host folder holding the repository at its base state (None: it is in ``image``, at
    ``image_repo_dir``). ``start_files``: files written over the base for the episode (the bug). ``hidden``:
    files removed from the agent's copy and present only for grading. ``test_patch``: applied only for
    grading. ``run_tests_args``: what ``run_tests()`` runs without a selector.
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


_workspaces: OrderedDict[tuple[str, str], Workspace] = OrderedDict()
_workspaces_lock = threading.Lock()
_WORKSPACE_CACHE_SIZE = 512


def workspace(task: Task, *, hide_tests: bool = False) -> Workspace:
    """The workspace of a task (bundled, generated or SWE-bench), cached per task."""
    fingerprint = f"{task.data.get('gold_patch', '')}\0{task.data.get('test_patch', '')}\0{task.data.get('repo_path')}"
    key = (f"{task.source}:{task.id}:{hide_tests}", hashlib.sha1(fingerprint.encode()).hexdigest())
    with _workspaces_lock:
        if key in _workspaces:
            _workspaces.move_to_end(key)
            return _workspaces[key]
    data = task.data
    graded = [*data.get("FAIL_TO_PASS", ()), *data.get("PASS_TO_PASS", ())]
    graded_files = tuple(sorted({nodeid_file(t) for t in graded}))
    if data.get("kind") == "bundled":
        repo = bundled_repo(data["repo"])
        clean = {p: (repo.root / p).read_text(encoding="utf-8") for p in touched_paths(data["gold_patch"])}
        buggy = apply_patch(reverse_patch(data["gold_patch"]), clean.get)
        hidden = tuple(sorted({nodeid_file(t) for t in data["FAIL_TO_PASS"]})) if hide_tests else ()
        ws = Workspace(
            repo.root,
            "python",
            None,
            {p: c for p, c in buggy.items() if c is not None},
            hidden,
            "",
            BUNDLED_COMMAND,
            (),
            graded_files,
        )
    elif data.get("kind") == "swebench":
        command = TestCommand(_command(data.get("test_cmd")), dict(data.get("env") or {}), autoload_plugins=True)
        base = _checkout(Path(data["repo_path"]), data.get("base_commit") or "") if data.get("repo_path") else None
        protected = (
            tuple(sorted({*graded_files, *touched_paths(data["test_patch"])}))
            if data.get("test_patch")
            else graded_files
        )
        ws = Workspace(
            base,
            data.get("image") or "python",
            data.get("repo_dir") if data.get("image") else None,
            {},
            (),
            data.get("test_patch") or "",
            command,
            graded_files,
            protected,
        )
    else:
        raise ValueError(f"task {task.id}: unknown kind {data.get('kind')!r}")
    with _workspaces_lock:
        _workspaces[key] = ws
        while len(_workspaces) > _WORKSPACE_CACHE_SIZE:
            _workspaces.popitem(last=False)
    return ws


def _command(value: Any) -> tuple[str, ...] | str:
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
    target = _cache_root() / "checkouts" / f"{repo_path.name}-{key}-{base_commit[:12]}"
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


# ---------------------------------------------------------------------------------------- SWE-bench


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
    repo_dir = row.get("repo_dir") or "/testbed"
    if not repo_dir.startswith("/"):
        raise ValueError(f"repo_dir must be an absolute path in the image, got {repo_dir!r}")
    data = {
        "kind": "swebench",
        "repo": row.get("repo") or "",
        "base_commit": row.get("base_commit") or "",
        "repo_path": repo_path,
        "image": row.get("image"),
        "repo_dir": repo_dir,
        "gold_patch": _patch_paths(row["patch"], "patch", required=True),
        "test_patch": _patch_paths(row.get("test_patch"), "test_patch", required=False),
        "FAIL_TO_PASS": _test_list(row["FAIL_TO_PASS"], "FAIL_TO_PASS", nonempty=True),
        "PASS_TO_PASS": _test_list(row["PASS_TO_PASS"], "PASS_TO_PASS"),
        "test_cmd": row.get("test_cmd"),
        "env": dict(env),
    }
    _command(data["test_cmd"])
    return data


def load_swebench(
    path: Path, split: str | None, *, allowed_roots: Sequence[Path | str] | None = (), skip_invalid: bool = False
) -> list[Task]:
    """Load SWE-bench-format instances from a JSON/JSONL file (or ``<folder>/<split or test>.jsonl``).

    Each instance has ``instance_id``, ``repo``, ``base_commit``, ``patch`` (the gold fix), ``test_patch``,
    ``problem_statement``, ``FAIL_TO_PASS`` (at least one) and ``PASS_TO_PASS`` (lists, or JSON-encoded
    lists of pytest node ids), and either ``repo_path`` (a local git checkout containing ``base_commit``,
    or a plain folder at the base state; relative paths are relative to the file) or ``image`` (a Docker
    image holding the repo at ``repo_dir``, default ``/testbed``; needs ``executor="docker"``). Optional:
    ``test_cmd`` (a list, or a shell string; default ``python -m pytest``), ``env`` (variables for the
    tests), ``split``, ``difficulty``.

    Every row is checked here, not later: an error names the file and the row in one line (with
    ``skip_invalid``, bad rows are left out and counted in a warning). ``repo_path`` must resolve (symlinks
    followed) inside the dataset file's folder or one of ``allowed_roots``, and a plain folder may hold no
    link that leads out of them; ``allowed_roots=None`` allows any folder.
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
                oracle=_oracle(row["patch"]),
                difficulty=str(row.get("difficulty") or "medium"),
                split=str(row.get("split") or split or "test"),
                source=f"swebench:{path}",
            )
        )
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} malformed instance(s); first: {skipped[0]}", stacklevel=2)
    return tasks
