"""Rebuild ``execgym/assets/swe/catalogue.json``: validate candidate bugs and pick the bundled tasks.

Run ``python -m execgym.envs.swe.build`` after changing a bundled repository. A fixed, kind-stratified
sample of each repository's candidate mutations (``--limit``, default 150) is validated in sandboxes (the
clean code passes, the bug fails 1 to a third of the tests, nothing hangs): these are the bugs the generator
combines. Bundled tasks (one to three bugs each) are drawn with a fixed seed and validated as a whole; then
every bundled task's oracle is played (it must resolve; submitting no change must not).

Example (what the catalogue holds):
    >>> from execgym.envs.swe.repos import load_catalogue
    >>> cat = load_catalogue()
    >>> sorted(cat["repos"]) == sorted(cat["bugs"]), len(cat["tasks"]) >= 30
    (True, True)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from execgym.core import report as R
from execgym.envs.swe.mutations import Mutation, find_mutations
from execgym.envs.swe.repos import CATALOGUE_FORMAT, CATALOGUE_PATH, bundled_repo, bundled_repo_names, load_catalogue
from execgym.envs.swe.tasks import _pick_bugs, bundled_tasks, difficulty_of, make_bug_task, problem_statement
from execgym.envs.swe.validation import BugValidator

__all__ = ["build_catalogue", "dump_catalogue", "main", "sample_candidates", "verify_oracles"]

TASKS_PER_REPO = {"easy": 7, "medium": 6, "hard": 3}
CANDIDATES_PER_REPO = 150


def sample_candidates(candidates: list[Mutation], limit: int, seed: str) -> list[Mutation]:
    """A deterministic sample of at most ``limit`` candidates, spread over the mutation kinds."""
    if len(candidates) <= limit:
        return list(candidates)
    rng = random.Random(seed)
    by_kind: dict[str, list[Mutation]] = {}
    for m in candidates:
        by_kind.setdefault(m.kind, []).append(m)
    for group in by_kind.values():
        rng.shuffle(group)
    picked: list[Mutation] = []
    while len(picked) < limit:
        for kind in sorted(by_kind):
            if by_kind[kind] and len(picked) < limit:
                picked.append(by_kind[kind].pop())
    return sorted(picked, key=lambda m: m.id)


def build_catalogue(
    validator: BugValidator, *, seed: int = 0, workers: int | None = None, limit: int = CANDIDATES_PER_REPO, log=print
) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Validate candidate bugs of every bundled repository (a sample of ``limit`` each) and pick the tasks."""
    out: dict[str, Any] = {"format": CATALOGUE_FORMAT, "repos": {}, "bugs": {}, "tasks": []}
    for name in bundled_repo_names():
        repo = bundled_repo(name)
        start = time.perf_counter()
        tests = list(validator.clean_tests(name))
        index = {t: i for i, t in enumerate(tests)}
        found = [m for path, text in sorted(repo.library_files().items()) for m in find_mutations(path, text)]
        candidates = sample_candidates(found, limit, f"execgym-swe-candidates-{seed}-{name}")
        checks = validator.check_many(name, [[m.id] for m in candidates], workers=workers)
        bugs = {c.mutations[0]: [index[t] for t in c.fail_to_pass] for c in checks if c.ok}
        reasons: dict[str, int] = {}
        for c in checks:
            if not c.ok:
                reason = c.reason.split(":")[0].split(" (")[0]
                reason = "too broad" if "too broad" in c.reason else reason
                reasons[reason] = reasons.get(reason, 0) + 1
        out["repos"][name] = {
            "hash": repo.content_hash(),
            "description": repo.description,
            "tests": tests,
            "candidates": len(found),
            "validated": len(candidates),
            "rejected": dict(sorted(reasons.items())),
        }
        out["bugs"][name] = dict(sorted(bugs.items()))
        log(
            f"{name}: {len(tests)} tests, {len(candidates)} candidate bugs, {len(bugs)} valid, rejected {reasons} "
            f"({time.perf_counter() - start:.0f} s)"
        )
        rng = random.Random(f"execgym-swe-bundled-{seed}-{name}")
        number = 0
        seen: set[tuple[str, ...]] = set()
        for difficulty, count in TASKS_PER_REPO.items():
            made = 0
            while made < count:
                n = {"easy": 1, "medium": 1 if made % 3 == 0 else 2, "hard": 3}[difficulty]
                chosen = _pick_bugs(rng, bugs, n, difficulty, repo)
                if chosen is None or tuple(sorted(chosen)) in seen:
                    continue
                seen.add(tuple(sorted(chosen)))
                check = validator.check(name, chosen)
                if not check.ok or difficulty_of(n, len(check.fail_to_pass)) != difficulty:
                    continue
                number += 1
                made += 1
                task = make_bug_task(check, task_id=f"{name}-{number:03d}")
                out["tasks"].append(
                    {
                        "id": task.id,
                        "repo": name,
                        "mutations": list(check.mutations),
                        "fail_to_pass": [index[t] for t in check.fail_to_pass],
                        "difficulty": difficulty,
                        "split": "test" if number % 3 == 0 else "train",
                        "statement": problem_statement(repo, check.fail_to_pass, check.messages),
                        "gold_patch": task.data["gold_patch"],
                    }
                )
    return out


def verify_oracles(executor: str = "local", log=print) -> list[str]:  # type: ignore[no-untyped-def]
    """Play every bundled task's oracle (gold patch, submit) and a no-op submit; return what went wrong."""
    from execgym.envs.swe.env import SWERepairEnv

    load_catalogue.cache_clear()
    problems = []
    env = SWERepairEnv(executor=executor)
    for task in bundled_tasks():
        env.reset(options={R.TASK_ID: task.id})
        for action in task.oracle:
            _, reward, _, _, info = env.step(action)
        if reward != 1.0 or info[R.HACK_FLAGS]:
            problems.append(f"{task.id}: the oracle got {reward} with flags {info[R.HACK_FLAGS]}")
        env.reset(options={R.TASK_ID: task.id})
        _, reward, _, _, _ = env.step({"name": "submit", "arguments": {}})
        if reward != 0.0:
            problems.append(f"{task.id}: submitting no change got {reward}")
    env.close()
    log(f"verified {len(bundled_tasks())} bundled tasks: {len(problems)} problem(s)")
    return problems


def dump_catalogue(catalogue: dict[str, Any]) -> str:
    """The catalogue as JSON with one line per repository, bug and task (small, and diffs read well)."""

    def one(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    repos = ",\n".join(f"  {one(k)}: {one(v)}" for k, v in catalogue["repos"].items())
    bugs = ",\n".join(
        f"  {one(repo)}: {{\n" + ",\n".join(f"   {one(k)}: {one(v)}" for k, v in entries.items()) + "\n  }"
        for repo, entries in catalogue["bugs"].items()
    )
    tasks = ",\n".join(f"  {one(t)}" for t in catalogue["tasks"])
    return (
        f'{{"format": {one(catalogue["format"])},\n "repos": {{\n{repos}\n }},\n "bugs": {{\n{bugs}\n }},\n'
        f' "tasks": [\n{tasks}\n ]}}\n'
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CATALOGUE_PATH)
    parser.add_argument("--executor", default="local")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=CANDIDATES_PER_REPO, help="candidates validated per repository")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip playing every task's oracle")
    args = parser.parse_args(argv)
    validator = BugValidator(args.executor)
    catalogue = build_catalogue(validator, seed=args.seed, workers=args.workers, limit=args.limit)
    text = dump_catalogue(catalogue)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text) // 1024} KiB, {len(catalogue['tasks'])} tasks)", file=sys.stderr)
    if args.verify and args.out == CATALOGUE_PATH:
        problems = verify_oracles(args.executor)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
