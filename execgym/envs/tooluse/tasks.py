"""Tool-use tasks: the seeded generator, the bundled set and the command that writes it.

A task's ``data`` is plain JSON::

    {"domain": "shop", "template": "shop-cancel", "services": ["shop"], "world": {"shop": {...}},
     "turns": [{"user": "...", "gold": [[{"name", "arguments"}, ...], ...], "outputs": ["59.97"]}, ...],
     "checklist": [{"id", "turn", "kind", ...}, ...]}

``world`` is the initial state of each service; each turn holds the user's message, the gold calls per
agent step and the information the answer must give. ``Task.oracle`` plays, for every turn, the gold steps
and then a plain-text answer that holds the required outputs.

Tasks come from the templates of :mod:`~execgym.envs.tooluse.templates`, written in the scenario DSL of
:mod:`~execgym.envs.tooluse.scenario` over the worlds of :mod:`~execgym.envs.tooluse.worlds`. The bundled
tasks (``execgym/assets/tooluse/tasks.jsonl``) are written by this module::

    python -m execgym.envs.tooluse.tasks            # rewrite the bundled file
    python -m execgym.envs.tooluse.tasks --check    # fail if the file is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from execgym.core.tasks import DIFFICULTIES, Task
from execgym.envs.tooluse.gold import must_be_looked_up, replay_gold
from execgym.envs.tooluse.scenario import WRITE_TOOLS, Retry, Rng, Scenario
from execgym.envs.tooluse.templates import TEMPLATES, Template
from execgym.envs.tooluse.worlds import ERRORS, TITLES, files_world, office_world, shop_world

__all__ = [
    "BUNDLED_PATH",
    "ERRORS",
    "TEMPLATES",
    "TITLES",
    "WRITE_TOOLS",
    "Rng",
    "Scenario",
    "Task",
    "Template",
    "build_bundled",
    "bundled_tasks",
    "files_world",
    "generate_task",
    "must_be_looked_up",
    "office_world",
    "replay_gold",
    "shop_world",
]

BUNDLED_PATH = Path(__file__).resolve().parents[2] / "assets" / "tooluse" / "tasks.jsonl"
PER_TEMPLATE = 6
_ATTEMPTS = 50


def _make(template: Template, task_id: str, split: str, source: str, *seed: Any) -> Task:
    problem = None
    for attempt in range(_ATTEMPTS):
        try:
            scenario = template.build(Rng(*seed, attempt))
            data, oracle = scenario.build(template.id, template.difficulty)
        except Retry as exc:
            problem = exc
            continue
        return Task(id=task_id, prompt=data["turns"][0]["user"], data=data, oracle=oracle,
                    difficulty=template.difficulty, split=split, source=source)
    raise RuntimeError(f"template {template.id} found no fitting world for seed {seed} ({problem})")


def generate_task(seed: int, difficulty: str | None = None) -> Task:
    """A generated task: the seed picks the template (of ``difficulty``, if given) and the world.

    Example:
        >>> t = generate_task(7, "hard")
        >>> t.difficulty, t.data == generate_task(7, "hard").data, len(t.data["turns"]) >= 1
        ('hard', True, True)
    """
    rng = Rng("generated", seed)
    if difficulty is None:
        difficulty = DIFFICULTIES[rng.below(len(DIFFICULTIES))]
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r} (use one of {DIFFICULTIES})")
    template = rng.choice([t for t in TEMPLATES if t.difficulty == difficulty])
    return _make(template, f"{template.id}-gen-{seed}", "generated", "generated", "generated", seed, difficulty)


def build_bundled(per_template: int = PER_TEMPLATE) -> list[Task]:
    """The bundled tasks, built from the templates (``per_template`` each; every 3rd one is in ``test``)."""
    tasks = []
    for template in TEMPLATES:
        for k in range(per_template):
            split = "test" if k % 3 == 2 else "train"
            tasks.append(_make(template, f"{template.id}-{k:02d}", split, "bundled", "bundled", template.id, k))
    return tasks


def _to_row(task: Task) -> dict[str, Any]:
    return {"id": task.id, "difficulty": task.difficulty, "split": task.split, "prompt": task.prompt,
            "oracle": list(task.oracle), "data": task.data}


@cache
def _load_bundled(path: str) -> tuple[Task, ...]:
    from execgym.envs.tooluse.loading import load_rows, task_from_row  # loading imports this module's peers

    return tuple(load_rows(Path(path), lambda _line, row: task_from_row(row, source="bundled"),
                           skip_invalid=False, what="task"))


def bundled_tasks() -> list[Task]:
    """The bundled tasks, read from ``execgym/assets/tooluse/tasks.jsonl``."""
    if not BUNDLED_PATH.is_file():
        raise FileNotFoundError(f"the bundled tool-use tasks are missing ({BUNDLED_PATH}); "
                                "write them with: python -m execgym.envs.tooluse.tasks")
    return list(_load_bundled(str(BUNDLED_PATH)))


def _dump(tasks: Sequence[Task]) -> str:
    return "".join(json.dumps(_to_row(t), ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
                   for t in tasks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or check) the bundled tool-use tasks.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the bundled file is out of date")
    parser.add_argument("--out", type=Path, default=BUNDLED_PATH, help="where to write the JSONL file")
    args = parser.parse_args(argv)
    text = _dump(build_bundled())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m execgym.envs.tooluse.tasks", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} tasks to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
