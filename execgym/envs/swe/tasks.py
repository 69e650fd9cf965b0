"""SWE repair tasks: the bundled bug tasks, a seeded bug generator, and (re-exported) the SWE-bench loader.

The bundled tasks come from the catalogue (:mod:`execgym.envs.swe.repos`); loading them runs nothing. The
generator draws one to three validated bugs (in different functions) for a seed; a combination is
validated on demand in a sandbox by the caller's :class:`~execgym.envs.swe.validation.BugValidator` (results
cached on disk). Difficulty: ``easy`` = one mutation failing at most 3 tests; ``hard`` = three mutations or
more than 12 failing tests; ``medium`` = the rest.

SWE-bench instances load with ``dataset="swebench:FILE.jsonl"`` (see
:func:`~execgym.envs.swe.swebench.load_swebench`). This module also re-exports the names of the modules it
was split into (repos, validation, workspace, swebench), so ``execgym.envs.swe.tasks`` keeps its API.

Example:
    >>> tasks = bundled_tasks()
    >>> len(tasks) >= 30, sorted({t.data["repo"] for t in tasks})
    (True, ['calcy', 'spans', 'texttab'])
    >>> t = tasks[0]
    >>> t.oracle[0]["name"], t.oracle[1]["name"]
    ('apply_patch', 'submit')
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Protocol

from execgym.core.tasks import DIFFICULTIES, Task
from execgym.envs.swe.mutations import Mutation, apply_mutations, function_spans
from execgym.envs.swe.patches import make_patch
from execgym.envs.swe.repos import (
    BUNDLED_COMMAND,
    CATALOGUE_FORMAT,
    CATALOGUE_PATH,
    REPOS_DIR,
    BundledRepo,
    bundled_repo,
    bundled_repo_names,
    load_catalogue,
)
from execgym.envs.swe.swebench import load_swebench
from execgym.envs.swe.validation import BugCheck, BugValidator
from execgym.envs.swe.workspace import Workspace, oracle_actions, workspace

__all__ = [
    "BUNDLED_COMMAND",
    "CATALOGUE_FORMAT",
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


class Described(Protocol):
    """What a problem statement names: a project's ``name`` and a one-line ``description``."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...


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


def problem_statement(
    repo: BundledRepo | Described,
    fail_to_pass: Sequence[str],
    messages: Mapping[str, str],
    *,
    groups: int = 8,
    per_group: int = 3,
    opening: str | None = None,
    run_hint: str = "`PYTHONPATH=. python -m pytest`",
) -> str:
    """An issue-style statement written from the failing tests' names and failure messages only.

    Tests that fail with the same message are listed together (at most ``per_group`` names each).
    ``repo`` is anything with a ``name`` and a ``description``; ``opening`` replaces the first sentence and
    ``run_hint`` says how the tests run.

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
    first = f"The `{repo.name}` library ({description}) has a bug: {n} of its tests fail{'s' if n == 1 else ''}."
    lines = [opening or first, "", "Failing tests and what they report:"]
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
        f"{run_hint} (or the run_tests tool). Call submit() when you are done.",
    ]
    return "\n".join(lines)


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
        oracle=oracle_actions(gold),
        difficulty=difficulty or difficulty_of(len(check.mutations), len(check.fail_to_pass)),
        split=split,
        source=source,
    )


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
                oracle=oracle_actions(row["gold_patch"]),
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
    validator = validator or BugValidator()  # a fresh one: its results persist in the disk cache
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
