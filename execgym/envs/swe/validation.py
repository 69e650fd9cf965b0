"""Bug validation: run a bundled repository's tests in sandboxes with some mutations applied.

A bug is valid when the clean code passes every test and the bug fails at least one and at most a third
of them, without hanging. Results are cached in memory (bounded) and on disk (``$EXECGYM_CACHE_DIR/swe`` or
``~/.cache/execgym/swe``), keyed by the repository's content hash, so a combination is validated once.

Example:
    >>> from execgym.envs.swe.repos import load_catalogue
    >>> v = BugValidator(cache_dir=False)
    >>> muts = load_catalogue()["bugs"]["calcy"]
    >>> check = v.check("calcy", [sorted(muts)[0]])
    >>> check.ok, len(check.fail_to_pass) >= 1
    (True, True)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from execgym.core.errors import InfraError
from execgym.envs.swe.mutations import Mutation, MutationError, apply_mutations
from execgym.envs.swe.repos import BundledRepo, bundled_repo, cache_root
from execgym.envs.swe.runner import STABLE_TEST_ENV, TestRun, run_pytest
from execgym.executor import Executor, Limits, SandboxSpec, get_executor

__all__ = ["MAX_FAILING_FRACTION", "VALIDATION_TIMEOUT_S", "BugCheck", "BugValidator"]

MAX_FAILING_FRACTION = 1 / 3
VALIDATION_TIMEOUT_S = 30.0
MEMORY_CACHE_SIZE = 4096


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
        executor: where tests run (default: ``get_executor(None)``, made on first use).
        cache_dir: where results are kept (default ``$EXECGYM_CACHE_DIR/swe`` or ``~/.cache/execgym/swe``);
            ``False`` keeps them in memory only.
        timeout: per test run, in seconds (a bug that hangs the tests is rejected).
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
            else (cache_root() / "validated")
        )
        self.timeout = timeout
        self._memory: LRUCache[tuple[str, str, tuple[str, ...]], BugCheck] = LRUCache(MEMORY_CACHE_SIZE)
        self._clean: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = get_executor(self._executor_arg)
        return self._executor

    def _run(self, repo: BundledRepo, files: Mapping[str, str]) -> TestRun:
        limits = Limits(wall_time_s=self.timeout, cpu_time_s=self.timeout)
        spec = SandboxSpec(workdir_from=repo.root, files=dict(files), env=dict(repo.command.env), limits=limits)
        with self.executor.sandbox(spec) as sb:
            return run_pytest(sb, repo.command, [], timeout=self.timeout, env=STABLE_TEST_ENV)

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
        result = self._read_cached(repo, ids)
        if result is None:
            result = self._validate(repo, ids)
            self._write_cached(repo, ids, result)
        with self._lock:
            self._memory[key] = result
        return result

    def _read_cached(self, repo: BundledRepo, ids: tuple[str, ...]) -> BugCheck | None:
        path = self._cache_file(repo, ids)
        if path is None or not path.is_file():
            return None
        try:
            result = BugCheck.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError):
            return None
        return result if result.mutations == ids else None

    def _write_cached(self, repo: BundledRepo, ids: tuple[str, ...], result: BugCheck) -> None:
        path = self._cache_file(repo, ids)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(result.to_json()), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only costs time

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
