"""The CAD kernel worker: runs CadQuery programs and grades parts, in processes the env never shares.

The modules of this package, by concern (each imports only the ones before it):

``wire``        base64 payloads and the length-prefixed messages between a worker and its forks
``process``     resource limits, hardening, killing stray processes, restoring scratch places
``zygote``      every job in a fresh fork of the worker, under limits (:class:`Zygote`)
``programs``    executing a CadQuery program to one shape (:func:`exec_program`)
``geometry``    measurements and B-rep features of shapes
``dims``        key dimensions checked against a part's features (:func:`check_key_dims`)
``mesh``        tessellation, mesh volumes, surface samples, voxel IoU, STL files
``grade``       a part against a reference: IoU, chamfer, bounding box, volume, dims (:func:`grade_part`)
``workers``     the ``agent`` and ``grader`` JSON-lines workers
``forkserver``  the agent fork server and the serving loop (:func:`serve`)

The sandbox side is standalone (standard library, numpy and CadQuery only; scipy is used when present): the
env sends :func:`kernel_source`, these modules joined into one script, into a sandbox as
``python -I -c <script> MODE CONFIG``, and speaks JSON lines with it
(:class:`execgym.executor.base.Session`). Three modes:

``agent``   holds CadQuery imported once; every ``run`` request executes the agent's program in a fresh
            ``fork`` of that pristine process (its own process group, memory and CPU limits, a wall-clock
            deadline, a private scratch directory), so a crash, an endless loop or a monkey-patched
            module never outlives the request and the next one costs milliseconds, not an import.
            The reply carries the part's BREP bytes.
``grader``  a trusted process the agent's code never ran in. It builds reference parts from the tasks'
            reference programs (in forked children as well) or loads reference meshes, caches them, and
            grades agent parts it receives only as BREP bytes: exact volume IoU with the kernel's
            boolean ``common`` (voxel IoU from meshes when booleans fail), chamfer distance on surface
            samples, bounding-box and volume errors, key dimensions; it also measures and tessellates parts.
            Loading and grading an agent's BREP also happens in a forked child, so a malformed part can only
            fail its own grade.
``forkserver``  the agent side shared by a process's envs: holds CadQuery imported once and forks, per env,
            an ``agent`` worker isolated in namespaces of its own that talks to its env on two FIFOs
            (:class:`ForkServer`).

Requests are objects with an ``op`` key; replies are objects with ``ok``. The package also imports cleanly as a
library (CadQuery is imported lazily), which the env and its tests use for the pure-numpy parts:

>>> import numpy as np
>>> V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
>>> F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
>>> round(mesh_volume(V, F), 6)
0.166667
>>> "import execgym" in kernel_source() or "from execgym" in kernel_source()
False
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from execgym.envs.cad.kernel.dims import axis_blocked, check_key_dims
from execgym.envs.cad.kernel.forkserver import NO_NAMESPACES, ForkServer, serve
from execgym.envs.cad.kernel.geometry import export_brep, features, import_brep, measure, shape_bbox
from execgym.envs.cad.kernel.grade import (
    MAX_GRADE_FACES,
    MAX_GRADE_SOLIDS,
    Reference,
    boolean_iou,
    box_iou,
    grade_part,
    grading_limits_exceeded,
    inspect_part,
    part_iou,
)
from execgym.envs.cad.kernel.mesh import (
    make_tree,
    mesh_volume,
    nearest_distances,
    read_stl,
    rotations24,
    sample_surface,
    tessellate,
    voxel_iou,
    voxelize,
)
from execgym.envs.cad.kernel.process import Scratch, harden_worker, kill_strays
from execgym.envs.cad.kernel.programs import PROGRAM_FILENAME, ProgramError, exec_program, to_shape
from execgym.envs.cad.kernel.wire import MAX_PART_BYTES, PROTOCOL, b64, unb64
from execgym.envs.cad.kernel.workers import AgentWorker, GraderWorker, OpServer, Worker
from execgym.envs.cad.kernel.zygote import Zygote, run_forked

__all__ = [
    "MAX_GRADE_FACES",
    "MAX_GRADE_SOLIDS",
    "MAX_PART_BYTES",
    "MODULES",
    "NO_NAMESPACES",
    "PROGRAM_FILENAME",
    "PROTOCOL",
    "AgentWorker",
    "ForkServer",
    "GraderWorker",
    "OpServer",
    "ProgramError",
    "Reference",
    "Scratch",
    "Worker",
    "Zygote",
    "axis_blocked",
    "b64",
    "boolean_iou",
    "box_iou",
    "check_key_dims",
    "exec_program",
    "export_brep",
    "features",
    "grade_part",
    "grading_limits_exceeded",
    "harden_worker",
    "import_brep",
    "inspect_part",
    "kernel_source",
    "kill_strays",
    "make_tree",
    "measure",
    "mesh_volume",
    "nearest_distances",
    "part_iou",
    "read_stl",
    "rotations24",
    "run_forked",
    "sample_surface",
    "serve",
    "shape_bbox",
    "tessellate",
    "to_shape",
    "unb64",
    "voxel_iou",
    "voxelize",
]

MODULES = ("wire", "process", "zygote", "programs", "geometry", "dims", "mesh", "grade", "workers", "forkserver")
"""The package's modules in the order they are joined (each uses only names of the ones before it)."""

_HEADER = '"""execgym\'s CAD kernel worker, joined from the modules of execgym.envs.cad.kernel (see there)."""\n'


@functools.cache
def kernel_source() -> str:
    """The kernel as one standalone script, sent to sandboxes as ``python -I -c``.

    The modules' bodies follow each other in :data:`MODULES` order, under one block of their outside imports;
    their imports of each other are dropped (the names are defined above by then) and so are their docstrings.
    A top-level name defined by two modules would shadow one of them: that is an error here, not in a sandbox.
    """
    imports: dict[str, None] = {}
    bodies: list[str] = []
    owners: dict[str, str] = {}
    for name in MODULES:
        text = (Path(__file__).parent / f"{name}.py").read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        dropped: set[int] = set()
        for position, node in enumerate(ast.parse(text).body):
            is_docstring = position == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            if isinstance(node, ast.Import | ast.ImportFrom) or is_docstring:
                dropped.update(range(node.lineno - 1, node.end_lineno or node.lineno))
                module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
                if not is_docstring and module != "__future__" and not module.startswith(__name__):
                    imports[ast.unparse(node)] = None
                continue
            for defined in _defined_names(node):
                if owners.setdefault(defined, name) != name:
                    raise RuntimeError(f"kernel modules {owners[defined]} and {name} both define {defined!r}")
        bodies.append("".join(line for i, line in enumerate(lines) if i not in dropped).strip("\n"))
    head = "\n".join(
        [
            _HEADER,
            "from __future__ import annotations",
            "",
            *sorted(imports, key=lambda line: (line.startswith("from"), line)),
        ]
    )
    return head + "\n\n\n" + "\n\n\n".join(bodies) + "\n"


def _defined_names(node: ast.stmt) -> list[str]:
    """The top-level names a module statement binds (functions, classes, assignments)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return [n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)]
