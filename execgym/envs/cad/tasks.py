"""CAD tasks: bundled ones, a seeded generator over the part families, and dataset loaders.

Every task's ``data`` holds what the env and grader need:

* ``code``: the reference CadQuery program (the grader builds the target part from it), or
* ``mesh_path``: a reference mesh (STL), used when there is no program (then IoU is voxel-based);
* ``prompt_detailed`` / ``prompt_abstract``: the two descriptions (CADPrompt's with / without measurements);
* ``key_dims``: the dimensions checked by the ``dims`` component (empty: the bounding-box extents);
* ``orientation``: ``"fixed"`` (compared in place) or ``"free"`` (best of the 24 axis rotations, centred).

Loaders (``dataset="<format>:<path>"``):

* ``jsonl:FILE`` (or a directory holding ``<split>.jsonl``): one ``{"id", "prompt", "code"}`` object per line,
  optionally ``"prompt_detailed"``, ``"key_dims"``, ``"orientation"``, ``"difficulty"``, ``"split"``,
  ``"mesh"`` (an STL path, relative to the file).
* ``cadprompt:DIR``: CADPrompt's layout, one folder per sample holding ``Python_Code.py``,
  ``Natural_Language_Descriptions_Prompt.txt`` (abstract), ``..._with_specific_measurements.txt`` (detailed)
  and ``Ground_Truth.stl`` (the target when there is no program). Its parts sit where DeepCAD put them,
  which the prompts do not say, so these tasks compare with free orientation.

Example:
    >>> tasks = bundled_tasks()
    >>> len(tasks), sorted({t.split for t in tasks})
    (27, ['test', 'train'])
    >>> generate_task(5, "hard").data["family"] == generate_task(5, "hard").data["family"]
    True
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from execgym.core.tasks import DIFFICULTIES, Task, read_json_or_jsonl
from execgym.envs.cad.families import DIFFICULTY_LEVELS, FAMILIES, PartSpec

__all__ = [
    "BUNDLED_SEEDS",
    "CADPROMPT_FILES",
    "EXAMPLES",
    "LOADERS",
    "DatasetError",
    "bundled_tasks",
    "generate_task",
    "load_cadprompt",
    "load_jsonl",
    "task_from_spec",
]

BUNDLED_SEEDS = (1000, 1001, 1002)
"""Bundled tasks: for every family one part per seed, the k-th seed at difficulty level k."""

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "cad" / "examples.jsonl"
"""Four hand-written tasks in the JSONL format: ``dataset=f"jsonl:{EXAMPLES}"``."""

CADPROMPT_FILES = {
    "code": "Python_Code.py",
    "abstract": "Natural_Language_Descriptions_Prompt.txt",
    "detailed": "Natural_Language_Descriptions_Prompt_with_specific_measurements.txt",
    "mesh": "Ground_Truth.stl",
}


def task_from_spec(
    spec: PartSpec, task_id: str, *, split: str = "test", source: str = "bundled", seed: int | None = None
) -> Task:
    """Turn a generated part into a task (the oracle submits the reference program)."""
    return Task(
        id=task_id,
        prompt=spec.prompt_detailed,
        data={
            "code": spec.code,
            "prompt_detailed": spec.prompt_detailed,
            "prompt_abstract": spec.prompt_abstract,
            "key_dims": spec.key_dims,
            "orientation": "fixed",
            "family": spec.family,
            "params": dict(spec.params),
            "features": list(spec.features),
            "seed": seed,
        },
        oracle=({"name": "submit", "arguments": {"code": spec.code}},),
        difficulty=spec.difficulty,
        split=split,
        source=source,
    )


def bundled_tasks() -> list[Task]:
    """3 seeds x 9 families; per family one of its three parts (a different level each time) is ``test``."""
    tasks = []
    for index, (name, family) in enumerate(FAMILIES.items()):
        for level, seed in enumerate(BUNDLED_SEEDS):
            spec = family.generate(np.random.default_rng(seed), level)
            split = "test" if level == index % len(BUNDLED_SEEDS) else "train"
            tasks.append(task_from_spec(spec, f"{name}-{DIFFICULTY_LEVELS[level]}-{seed}", split=split, seed=seed))
    return tasks


def generate_task(seed: int, difficulty: str | None = None) -> Task:
    """The generated task for ``seed``: family ``seed % 9``, dimensions drawn from the seed.

    ``difficulty`` (``easy`` / ``medium`` / ``hard``) sets the number of features; None draws it from the seed.
    """
    rng = np.random.default_rng([int(seed), 7])
    if difficulty is None:
        level = int(rng.integers(len(DIFFICULTY_LEVELS)))
    elif difficulty in DIFFICULTY_LEVELS:
        level = DIFFICULTY_LEVELS.index(difficulty)
    else:
        raise ValueError(f"unknown difficulty {difficulty!r} (use one of {DIFFICULTIES})")
    names = list(FAMILIES)
    name = names[int(seed) % len(names)]
    spec = FAMILIES[name].generate(rng, level)
    return task_from_spec(spec, f"{name}-{spec.difficulty}-{seed}", source="generated", seed=int(seed))


# ============================================================================================== loaders


class DatasetError(ValueError):
    """A malformed dataset entry; the message names the file and the entry, in one line."""


_KEY_DIM_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind -> (required numeric fields (one of a '|' group), optional fields)
    "extent": (("value",), ("axis",)),
    "volume": (("value",), ()),
    "hole": (("diameter|radius",), ("count", "axis", "centers")),
    "cylinder": (("diameter|radius",), ("count", "axis", "centers")),
    "arc": (("diameter|radius",), ("count", "axis", "centers", "convex")),
    "level": (("value",), ("axis",)),
    "chamfer": (("size",), ("count", "diameter")),
    "circle": (("diameter",), ("count",)),
}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _check_key_dim(spec: Any, i: int) -> str | None:
    """Why key dimension ``i`` is malformed, or None."""
    if not isinstance(spec, dict):
        return f"key_dims[{i}] must be an object"
    kind = spec.get("kind")
    if kind not in _KEY_DIM_FIELDS:
        return f"key_dims[{i}] has unknown kind {kind!r} (known: {sorted(_KEY_DIM_FIELDS)})"
    required, _optional = _KEY_DIM_FIELDS[kind]
    for group in required:
        names = group.split("|")
        if not any((_number(spec.get(n)) and spec[n] > 0) or (n == "value" and _number(spec.get(n))) for n in names):
            return f"key_dims[{i}] ({kind}) needs a finite number {' or '.join(repr(n) for n in names)}"
    axis = spec.get("axis")
    if (
        kind in ("extent", "level")
        and axis not in ("x", "y", "z")
        and not (
            kind == "level"
            and isinstance(axis, list)
            and len(axis) == 3
            and all(_number(a) for a in axis)
            and any(axis)
        )
    ):
        return f"key_dims[{i}] ({kind}) needs 'axis' 'x', 'y' or 'z'"
    if (
        axis is not None
        and kind not in ("extent", "level")
        and axis not in ("x", "y", "z")
        and not (isinstance(axis, list) and len(axis) == 3 and all(_number(a) for a in axis) and any(axis))
    ):
        return f"key_dims[{i}] ({kind}): 'axis' must be 'x', 'y', 'z' or a non-zero [x, y, z]"
    count = spec.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return f"key_dims[{i}] ({kind}): 'count' must be a non-negative integer"
    centers = spec.get("centers")
    if centers is not None and not (
        isinstance(centers, list) and all(isinstance(c, list) and len(c) == 3 and all(map(_number, c)) for c in centers)
    ):
        return f"key_dims[{i}] ({kind}): 'centers' must be a list of [x, y, z] points"
    if "label" in spec and not isinstance(spec["label"], str):
        return f"key_dims[{i}] ({kind}): 'label' must be text"
    return None


def _key_dims(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    dims = row.get("key_dims") or []
    if not isinstance(dims, list):
        raise DatasetError(f"{where}: 'key_dims' must be a list of objects")
    for i, spec in enumerate(dims):
        problem = _check_key_dim(spec, i)
        if problem:
            raise DatasetError(f"{where}: {problem}")
    return dims


def _inside(root: Path, path: Path, where: str, what: str, *, allow_outside: bool) -> Path:
    """``path`` resolved (symlinks followed); it must stay inside ``root`` unless ``allow_outside``."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise DatasetError(f"{where}: {what} {str(path)!r} cannot be resolved ({type(exc).__name__}: {exc})") from None
    if not allow_outside and not real.is_relative_to(root):
        raise DatasetError(
            f"{where}: {what} {str(path)!r} resolves to {str(real)!r}, outside the dataset's folder {str(root)!r} "
            "(pass allow_paths_outside_dataset=True to allow it)"
        )
    return real


# The largest file a dataset may name: a prompt or a program, a reference mesh, a JSONL/JSON file of rows.
MAX_TEXT_BYTES = 4 * 1024**2
MAX_MESH_BYTES = 256 * 1024**2
MAX_ROWS_BYTES = 1024**3


def check_regular_file(path: Path, where: str, what: str, max_bytes: int) -> int:
    """``path``'s size; it must be a regular file (a FIFO, a device or a folder would block or mislead a
    reader) of at most ``max_bytes``. Checked with ``stat``, never by opening it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DatasetError(f"{where}: {what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DatasetError(f"{where}: {what} {str(path)!r} is not a regular file")
    if st.st_size > max_bytes:
        raise DatasetError(f"{where}: {what} {str(path)!r} is {st.st_size} bytes, over the {max_bytes}-byte limit")
    return int(st.st_size)


def read_regular_file(path: Path | str, where: str, what: str, max_bytes: int) -> bytes:
    """The bytes of a dataset file, opened non-blocking and checked (``fstat``) to be a regular file of at
    most ``max_bytes`` before a byte is read, so that a file swapped for a FIFO after loading cannot hang."""
    path = Path(path)
    check_regular_file(path, where, what, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DatasetError(f"{where}: {what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            raise DatasetError(f"{where}: {what} {str(path)!r} is not a regular file of at most {max_bytes} bytes")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise DatasetError(f"{where}: {what} {str(path)!r} grew over the {max_bytes}-byte limit")
        return b"".join(chunks)
    except OSError as exc:
        raise DatasetError(f"{where}: {what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _read_text(path: Path, where: str) -> str:
    return read_regular_file(path, where, repr(path.name), MAX_TEXT_BYTES).decode("utf-8", errors="replace")


def _collect(rows: list[tuple[str, Any]], build: Any, *, skip_bad: bool, source: str) -> list[Task]:
    """Build a task from every ``(where, row)``; a malformed one raises, or with ``skip_bad`` is skipped and counted."""
    tasks, bad = [], []
    for where, row in rows:
        try:
            task = build(where, row)
        except DatasetError as exc:
            if not skip_bad:
                raise
            bad.append(str(exc))
            continue
        if task is not None:
            tasks.append(task)
    if bad:
        warnings.warn(f"{source}: skipped {len(bad)} malformed row(s); first: {bad[0]}", stacklevel=3)
    return tasks


def _read_rows(file: Path) -> list[Any]:
    check_regular_file(file, str(file), "the dataset file", MAX_ROWS_BYTES)
    try:
        return read_json_or_jsonl(file)
    except RecursionError:
        raise DatasetError(f"{file}: JSON nested too deeply to read") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DatasetError(f"{file}: cannot read: {exc.strerror or exc}") from None


def load_jsonl(path: Path, split: str | None, *, allow_outside: bool = False, skip_bad: bool = False) -> list[Task]:
    """Tasks from a JSONL (or JSON list) file, or from ``<dir>/<split>.jsonl``.

    Every row is checked here: a malformed one is a :class:`DatasetError` naming the file and the row
    (``skip_bad``: skipped, with a warning that counts them). A row's ``mesh`` must resolve inside the file's
    folder (symlinks included) unless ``allow_outside``.
    """
    if path.is_dir():
        name = split or "test"
        candidates = [path / f"{name}.jsonl", path / f"{name}.json"]
        file = next((c for c in candidates if c.exists()), None)
        if file is None:
            available = sorted(p.stem for p in path.glob("*.json*"))
            raise FileNotFoundError(f"{path}: no {name}.jsonl for split {name!r} (found: {available})")
        rows, filter_split = _read_rows(file), False
        root = path.resolve()
    else:
        file = path
        rows = _read_rows(file)
        # Rows that carry a "split" are filtered by it; a file without splits is all one split.
        filter_split = split is not None and any(isinstance(r, dict) and "split" in r for r in rows)
        root = file.resolve().parent

    def build(where: str, row: Any) -> Task | None:
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in ("id", "prompt", "prompt_detailed", "code", "mesh", "split", "difficulty", "orientation"):
            value = row.get(key)
            if value is not None and not isinstance(value, str) and not (key == "id" and isinstance(value, int)):
                raise DatasetError(f"{where}: {key!r} must be text, got {type(value).__name__}")
        missing = [k for k in ("id", "prompt") if row.get(k) in (None, "")]
        if not row.get("code") and not row.get("mesh"):
            missing.append("code")
        if missing:
            raise DatasetError(f"{where}: missing {', '.join(repr(m) for m in missing)}")
        row_split = str(row.get("split") or ("test" if filter_split else split or "test"))
        if filter_split and row_split != split:
            return None
        mesh = row.get("mesh")
        mesh_path = str(_inside(root, file.parent / mesh, where, "mesh", allow_outside=allow_outside)) if mesh else None
        if mesh_path:
            check_regular_file(Path(mesh_path), where, "mesh", MAX_MESH_BYTES)
        orientation = row.get("orientation", "fixed")
        if orientation not in ("fixed", "free"):
            raise DatasetError(f"{where}: 'orientation' must be 'fixed' or 'free', got {orientation!r}")
        detailed = row.get("prompt_detailed") or row["prompt"]
        data = {
            "code": row.get("code"),
            "mesh_path": mesh_path,
            "prompt_detailed": detailed,
            "prompt_abstract": row["prompt"],
            "key_dims": _key_dims(row, where),
            "orientation": orientation,
        }
        return Task(
            id=str(row["id"]),
            prompt=detailed,
            data=data,
            oracle=({"name": "submit", "arguments": {"code": row["code"]}},) if row.get("code") else (),
            difficulty=str(row.get("difficulty", "medium")),
            split=row_split,
            source=f"jsonl:{file}",
        )

    tasks = _collect(
        [(f"{file}:{n}", row) for n, row in enumerate(rows, 1)], build, skip_bad=skip_bad, source=str(file)
    )
    ids = [t.id for t in tasks]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise DatasetError(f"{file}: task id(s) {dupes[:5]} appear more than once")
    return tasks


def load_cadprompt(path: Path, split: str | None, *, allow_outside: bool = False, skip_bad: bool = False) -> list[Task]:
    """CADPrompt samples: one folder per sample (see the module docstring); a single split, ``test``.

    Every file a sample names must resolve inside the dataset's folder (symlinks included) unless
    ``allow_outside``; a sample folder with a prompt but nothing to grade against, or whose files cannot be
    read, is a :class:`DatasetError` naming it (``skip_bad``: skipped and counted).
    """
    if split not in (None, "test"):
        raise ValueError(f"CADPrompt has a single split, 'test' (asked for {split!r})")
    if not path.is_dir():
        raise ValueError(f"cadprompt: {path} is not a directory of sample folders")
    root = path.resolve()

    def build(where: str, folder: Path) -> Task | None:
        real_folder = _inside(root, folder, where, "sample folder", allow_outside=allow_outside)
        files = {}
        for key, name in CADPROMPT_FILES.items():
            candidate = folder / name
            if candidate.exists() or candidate.is_symlink():
                files[key] = _inside(root, candidate, where, repr(name), allow_outside=allow_outside)
        texts = {k: _read_text(files[k], where).strip() for k in ("abstract", "detailed") if k in files}
        texts = {k: v for k, v in texts.items() if v}
        code = _read_text(files["code"], where) if "code" in files else None
        mesh = str(files["mesh"]) if "mesh" in files else None
        if mesh:
            check_regular_file(files["mesh"], where, repr(CADPROMPT_FILES["mesh"]), MAX_MESH_BYTES)
        if not texts and not (code or mesh):
            return None  # not a sample folder
        if not texts:
            raise DatasetError(f"{where}: no prompt ({CADPROMPT_FILES['abstract']!r} is missing or empty)")
        if not (code and code.strip()) and not mesh:
            raise DatasetError(
                f"{where}: nothing to grade against ({CADPROMPT_FILES['code']!r} and {CADPROMPT_FILES['mesh']!r} "
                "are missing or empty)"
            )
        del real_folder
        detailed = texts.get("detailed") or texts["abstract"]
        abstract = texts.get("abstract") or detailed
        code = code if code and code.strip() else None
        return Task(
            id=folder.name,
            prompt=detailed,
            data={
                "code": code,
                "mesh_path": mesh,
                "prompt_detailed": detailed,
                "prompt_abstract": abstract,
                "key_dims": [],
                "orientation": "free",
                "fallback_last": True,
            },
            oracle=({"name": "submit", "arguments": {"code": code}},) if code else (),
            difficulty="medium",
            split="test",
            source=f"cadprompt:{path}",
        )

    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    tasks = _collect(
        [(f"cadprompt:{path}: sample {p.name!r}", p) for p in folders], build, skip_bad=skip_bad, source=str(path)
    )
    if not tasks:
        raise ValueError(
            f"cadprompt: no sample folders with {CADPROMPT_FILES['abstract']!r} and "
            f"{CADPROMPT_FILES['code']!r} or {CADPROMPT_FILES['mesh']!r} under {path}"
        )
    return tasks


LOADERS = {"jsonl": load_jsonl, "cadprompt": load_cadprompt}
