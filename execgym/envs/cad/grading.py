"""Grading of CAD parts: thresholds, the pass rules, and the clients of the kernel worker processes.

The env never imports CadQuery. It talks to two :mod:`execgym.envs.cad.kernel` workers, each a
JSON-lines :class:`~execgym.executor.base.Session` in a sandbox:

* the **agent session** (the env's executor: local or Docker) runs the agent's programs and returns
  measurements and BREP bytes;
* the **grader** (a local sandbox by default, since it needs CadQuery on this machine) holds the reference
  parts, built from the tasks' reference programs or read from meshes, and grades BREP bytes. It never
  receives the agent's code.

By default the envs of one process share them (:class:`SharedGrader`; with the local executor the agent
side is a :class:`ForkedAgent` per env, forked by one :class:`ForkServer` into namespaces of its own), so
CadQuery is imported once per side, not per env. Shared workers are reference-counted: the first env starts
them, the last env's ``close`` stops them.

The pass rule (``outcome``) is applied here, on the metrics the grader returns, so it is data:

>>> t = Thresholds()
>>> metrics = {"valid_solid": 1.0, "box_iou": 0.99, "iou": 0.97, "bbox_error": 0.004, "dims": 1.0, "chamfer": 2e-4,
...            "volume_error": 0.01, "chamfer_mm": 0.2, "hausdorff95_mm": 0.5, "extent_diff_mm": 0.1}
>>> outcome, components, checks = score(metrics, t, executable=True)
>>> outcome, round(components["chamfer_score"], 3), [c.id for c in checks if not c.passed]
(1.0, 0.833, [])
>>> score({**metrics, "dims": 0.75}, t, executable=True)[0]
0.0
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import math
import os
import secrets
import select
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from execgym.core.errors import InfraError as CoreInfraError
from execgym.core.report import Criterion
from execgym.envs.cad.kernel import NO_NAMESPACES, b64, kernel_source, unb64
from execgym.envs.cad.kernel.forkserver import keeper_name
from execgym.executor import ENV_VAR as EXECUTOR_ENV_VAR
from execgym.executor.local.cgroup import SandboxCgroups

__all__ = [
    "CADGrader",
    "ForkServer",
    "ForkedAgent",
    "KernelProcess",
    "NamespacesUnavailable",
    "SharedGrader",
    "Thresholds",
    "chamfer_score",
    "kernel_source",
    "require_cadquery",
    "score",
]

CAD_EXTRA_HINT = 'pip install "execgym[cad]"'
_FAILED_METRICS = {
    "valid_solid": 0.0,
    "box_iou": 0.0,
    "iou": 0.0,
    "chamfer": 1.0,
    "bbox_error": 1.0,
    "volume_error": 1.0,
    "dims": 0.0,
}
# Each metric's range; a value outside it (or not finite) counts as the failed value.
_METRIC_RANGES = {
    "valid_solid": (0.0, 1.0),
    "box_iou": (0.0, 1.0),
    "iou": (0.0, 1.0),
    "chamfer": (0.0, math.inf),
    "bbox_error": (0.0, math.inf),
    "volume_error": (0.0, math.inf),
    "dims": (0.0, 1.0),
}


class NamespacesUnavailable(CoreInfraError):
    """The sandbox cannot give forked env workers namespaces of their own (nested user namespaces are off)."""


class WorkerFailure(CoreInfraError):
    """A kernel worker's session failed (the process died, hung or answered nonsense); the sandbox is gone.

    Whether that is the machinery's fault (an :class:`InfraError`) or the agent's (its program was running)
    is for the caller to decide.
    """


def require_cadquery(what: str = "CADModelEnv") -> None:
    """Raise a clear error when CadQuery is not installed here.

    >>> require_cadquery() if importlib.util.find_spec("cadquery") else None
    """
    if importlib.util.find_spec("cadquery") is None:
        from gymnasium.error import DependencyNotInstalled

        raise DependencyNotInstalled(
            f"{what} needs the 'cad' extra (CadQuery is not installed, and a worker would run on this machine; "
            f'executor="docker" runs them in the image instead): {CAD_EXTRA_HINT}'
        )


def resolve_executor(executor: Any) -> Any:
    """An executor argument as the envs compare it: None is ``$EXECGYM_EXECUTOR`` (else local), names lower case."""
    if executor is None:
        executor = os.environ.get(EXECUTOR_ENV_VAR, "").strip() or "local"
    return executor.strip().lower() if isinstance(executor, str) else executor


@dataclass(frozen=True)
class Thresholds:
    """When a part passes, and how the metrics are computed.

    Attributes:
        rule: ``"execgym"`` (default): valid solid, IoU >= ``iou``, bounding-box error <= ``bbox`` and a
            fraction >= ``dims`` of the task's key dimensions matched. ``"cadqueryeval"``: CadQueryEval's
            rule (valid closed solid, the reference's number of solids, every bounding-box extent within
            ``cqe_bbox_mm``, volume within ``cqe_volume_pct`` %, chamfer distance <= ``cqe_chamfer_mm`` and
            95th-percentile Hausdorff distance <= ``cqe_hausdorff_mm``; distances in mm on
            ``cqe_points`` samples per part). Parts are compared in place, or after the best of the 24
            axis rotations when the task says orientation is free (CadQueryEval itself aligns with ICP).
        iou: minimum volume IoU.
        bbox: maximum relative bounding-box error (largest over the axes of |extent - target| / target).
        dims: minimum fraction of key dimensions matched (1.0: all).
        dims_abs_tol, dims_rel_tol: a size matches within ``max(abs, rel * size)``; ``abs`` is in mm, capped
            at 0.1 % of the target's largest extent (tolerances shrink with small, e.g. normalised, parts).
        dims_pos_rel_tol: a position matches within ``max(dims_abs_tol, this * largest extent)``.
        chamfer_points: surface samples per part for the chamfer distance (cadrille: 8,192).
        chamfer_scale: ``chamfer_score = 1 / (1 + chamfer / chamfer_scale)``; 1e-3 puts 0.5 where cadrille's
            reported CD x 1000 equals 1.
        voxel_resolution: voxels along the longest side for the fallback IoU.
        on_target_iou: from which overlap a part counts as an attempt at this target. ``valid_solid`` needs
            its bounding box to overlap the target's by at least this box IoU (cheap enough for every run);
            ``dims``, ``bbox_error`` and ``volume_error`` need this volume IoU. Below it they pay nothing: a
            unit cube earns none of them, a cube of the target's volume no ``volume_error``, a thin shell of the
            target's bounding box no ``dims`` or ``bbox_error``.

    Example:
        >>> Thresholds.from_any({"iou": 0.9}).iou
        0.9
    """

    rule: str = "execgym"
    iou: float = 0.95
    bbox: float = 0.01
    dims: float = 1.0
    dims_abs_tol: float = 0.05
    dims_rel_tol: float = 0.005
    dims_pos_rel_tol: float = 0.0025
    chamfer_points: int = 8192
    chamfer_scale: float = 1e-3
    voxel_resolution: int = 128
    on_target_iou: float = 0.5
    cqe_bbox_mm: float = 1.0
    cqe_volume_pct: float = 2.0
    cqe_chamfer_mm: float = 1.0
    cqe_hausdorff_mm: float = 1.0
    cqe_points: int = 50_000

    def __post_init__(self) -> None:
        if self.rule not in ("execgym", "cadqueryeval"):
            raise ValueError(f"Thresholds.rule must be 'execgym' or 'cadqueryeval', got {self.rule!r}")

    @classmethod
    def from_any(cls, value: Thresholds | Mapping[str, Any] | None) -> Thresholds:
        if value is None:
            return cls()
        if isinstance(value, Thresholds):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown threshold(s) {unknown}; known: {sorted(known)}")
        return replace(cls(), **dict(value))

    def grader_options(self) -> dict[str, Any]:
        """What the grader worker needs to compute the metrics."""
        return {
            "chamfer_points": self.chamfer_points,
            "mm_points": self.cqe_points if self.rule == "cadqueryeval" else 0,
            "voxel_resolution": self.voxel_resolution,
            "dims_abs_tol": self.dims_abs_tol,
            "dims_rel_tol": self.dims_rel_tol,
            "dims_pos_rel_tol": self.dims_pos_rel_tol,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def chamfer_score(chamfer: float, scale: float = 1e-3) -> float:
    """Map a chamfer distance (lower is better) to 0..1 (higher is better).

    >>> chamfer_score(0.0), chamfer_score(1e-3), round(chamfer_score(1e-2), 3)
    (1.0, 0.5, 0.091)
    """
    if not math.isfinite(chamfer) or chamfer < 0:
        return 0.0
    return 1.0 / (1.0 + chamfer / scale)


def score(
    metrics: Mapping[str, float] | None,
    thresholds: Thresholds,
    *,
    executable: bool,
    reference_solids: int | None = None,
    part_solids: int | None = None,
) -> tuple[float, dict[str, float], list[Criterion]]:
    """The outcome (0/1), the reward components and the checklist (:class:`Criterion` s) for a graded part.

    ``metrics`` is what the grader returned (None when there was no part to grade).
    """
    m = dict(_FAILED_METRICS)
    if metrics:
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            low, high = _METRIC_RANGES.get(k, (-math.inf, math.inf))
            if math.isfinite(v) and low <= v <= high:
                m[k] = float(v)
            elif k in _FAILED_METRICS:
                m[k] = _FAILED_METRICS[k]
    m["valid_solid"] = float(m["valid_solid"] >= 1.0)
    ok_part = bool(executable and metrics)
    on_target = ok_part and m["iou"] >= thresholds.on_target_iou
    boxed = ok_part and m["box_iou"] >= thresholds.on_target_iou
    chamfer = min(m["chamfer"], 1.0)
    components = {
        "executable": float(executable),
        "valid_solid": m["valid_solid"] if boxed else 0.0,
        "iou": m["iou"] if ok_part else 0.0,
        "chamfer": chamfer if ok_part else 1.0,
        "chamfer_score": chamfer_score(chamfer, thresholds.chamfer_scale) if ok_part else 0.0,
        "bbox_error": min(m["bbox_error"], 1.0) if on_target else 1.0,
        "volume_error": min(m["volume_error"], 1.0) if on_target else 1.0,
        "dims": m["dims"] if on_target else 0.0,
    }
    checks = [
        Criterion(
            "executable",
            bool(executable),
            "the program ran and produced a part" if executable else "the program did not produce a part",
        ),
        Criterion("valid_solid", ok_part and m["valid_solid"] >= 1.0, f"valid closed solid: {bool(m['valid_solid'])}"),
    ]
    if thresholds.rule == "cadqueryeval":
        ext = m.get("extent_diff_mm", math.inf)
        vol_pct = m["volume_error"] * 100
        cmm = m.get("chamfer_mm", math.inf)
        h95 = m.get("hausdorff95_mm", math.inf)
        solids_ok = reference_solids is None or part_solids == reference_solids
        rule = [
            ("solids", solids_ok, f"{part_solids} solid(s), target {reference_solids}"),
            (
                "bbox",
                ext <= thresholds.cqe_bbox_mm,
                f"largest extent difference {ext:.3g} mm <= {thresholds.cqe_bbox_mm:g} mm",
            ),
            (
                "volume",
                vol_pct <= thresholds.cqe_volume_pct,
                f"volume off by {vol_pct:.3g} % <= {thresholds.cqe_volume_pct:g} %",
            ),
            (
                "chamfer",
                cmm <= thresholds.cqe_chamfer_mm,
                f"chamfer distance {cmm:.3g} mm <= {thresholds.cqe_chamfer_mm:g} mm",
            ),
            (
                "hausdorff",
                h95 <= thresholds.cqe_hausdorff_mm,
                f"95th percentile Hausdorff {h95:.3g} mm <= {thresholds.cqe_hausdorff_mm:g} mm",
            ),
        ]
    else:
        rule = [
            ("iou", m["iou"] >= thresholds.iou, f"IoU {m['iou']:.4f} >= {thresholds.iou:g}"),
            (
                "bbox",
                m["bbox_error"] <= thresholds.bbox,
                f"bounding box off by {m['bbox_error'] * 100:.3g} % <= {thresholds.bbox * 100:g} %",
            ),
            (
                "dims",
                m["dims"] >= thresholds.dims - 1e-9,
                f"{m['dims'] * 100:.0f} % of key dimensions matched (need {thresholds.dims * 100:.0f} %)",
            ),
        ]
    # A rule's checks pass only for a graded part: without one every check fails, whatever the default metrics say.
    checks += [Criterion(name, ok_part and bool(passed), evidence) for name, passed, evidence in rule]
    outcome = float(all(c.passed for c in checks))
    return outcome, components, checks


# ============================================================================================= processes


class KernelProcess:
    """One kernel worker (``"agent"`` or ``"grader"`` mode) in a sandbox session of an executor.

    The worker imports CadQuery once; :meth:`request` returns the worker's reply, or an error reply
    (``{"ok": False, "kind": "worker", ...}``) when the worker crashed or hung and was restarted by the
    session. Failing to start at all raises :class:`~execgym.core.errors.InfraError`.

    Example:
        >>> proc = KernelProcess("local", "agent")                       # doctest: +SKIP
        >>> proc.request({"op": "run", "code": "import cadquery as cq\\nresult = cq.Workplane().box(1, 2, 3)"},
        ...              timeout=30)["measurements"]["volume"]          # doctest: +SKIP
        6.0
    """

    def __init__(
        self,
        executor: Any,
        mode: str,
        *,
        image: str = "cad",
        memory_bytes: int = 2 * 1024**3,
        sandbox_memory_bytes: int = 8 * 1024**3,
        start_timeout: float = 300.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in ("agent", "grader", "forkserver"):
            raise ValueError(f"mode must be 'agent', 'grader' or 'forkserver', got {mode!r}")
        self.executor_spec = executor
        self.mode = mode
        self.image = image
        self.memory_bytes = int(memory_bytes)
        self.sandbox_memory_bytes = int(sandbox_memory_bytes)
        self.start_timeout = float(start_timeout)
        self.config = dict(config or {})
        self.executor: Any = None
        self.sandbox: Any = None
        self.session: Any = None
        self.info: dict[str, Any] = {}
        self.starts = 0
        self.max_processes = 64
        self._ready = False

    @property
    def running(self) -> bool:
        return self.session is not None and self._ready

    def start(self) -> None:
        """Start the sandbox and the worker, and wait until CadQuery is imported (idempotent)."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Create the sandbox and spawn the worker without waiting for it (it imports CadQuery meanwhile).

        Call from the thread that owns the env: sandboxes may be tied to the spawning thread's lifetime.
        """
        if self.session is not None:
            return
        from execgym.executor import Limits, SandboxSpec, get_executor

        with self._closed_on_failure(f"could not start the CAD {self.mode} worker"):
            self.executor = self.executor if self.executor is not None else get_executor(self.executor_spec)
            limits = Limits(
                wall_time_s=120.0,
                cpu_time_s=None,
                memory_bytes=self.sandbox_memory_bytes,
                max_processes=self.max_processes,
                output_bytes=128 * 1024 * 1024,
                disk_bytes=256 * 1024 * 1024,
                network=False,
            )
            self.sandbox = self.executor.sandbox(SandboxSpec(image=self.image, limits=limits))
            roots = self._scratch_roots() if self.mode != "forkserver" else []  # env workers have their own
            config = {"memory_bytes": self.memory_bytes, "scratch_roots": roots, **self.config}
            # -I: no user site, no PYTHON* variables, no script directory: nothing a program wrote in the
            # sandbox is imported by a restarted worker.
            argv = ["python", "-I", "-c", kernel_source(), self.mode, json.dumps(config)]
            self.session = self.sandbox.session(argv)
            self._ready = False

    @contextlib.contextmanager
    def _closed_on_failure(self, what: str) -> Iterator[None]:
        """Close the sandbox when the block fails; a failure that is not an InfraError becomes one, saying ``what``."""
        try:
            yield
        except CoreInfraError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise CoreInfraError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def _scratch_roots(self) -> list[str]:
        """The writable places of the sandbox that the worker restores after every job.

        The work directory and ``$TMPDIR`` always; ``/tmp`` and ``/dev/shm`` only where they are the sandbox's
        own (Docker, bubblewrap), never a host's shared ones.
        """
        roots = [".", "$TMPDIR"]
        if getattr(self.executor, "name", "") == "docker" or getattr(self.executor, "use_bwrap", False):
            roots += ["/tmp", "/dev/shm"]
        return roots

    def wait_ready(self) -> None:
        """Wait for a launched worker's first reply (CadQuery imported); failures raise InfraError."""
        if self.session is None:
            self.launch()
        if self._ready:
            return
        with self._closed_on_failure(f"the CAD {self.mode} worker failed to start"):
            reply = self.session.request({"op": "ping"}, timeout=self.start_timeout)
        if not reply.ok or not isinstance(reply.value, dict) or not reply.value.get("ok"):
            value = reply.value if isinstance(reply.value, dict) else {}
            detail = reply.error or value.get("error") or reply.value
            stderr = (reply.stderr or "").strip()[-1500:]
            self.close()
            hint = f" ({CAD_EXTRA_HINT} in the sandbox's Python)" if "cadquery" in stderr.lower() else ""
            raise CoreInfraError(f"the CAD {self.mode} worker failed to start{hint}: {detail}\n{stderr}".rstrip())
        self.info = reply.value
        self._ready = True
        self.starts += 1

    def sandbox_pid(self) -> int:
        """The worker's pid as its sandbox's other processes see it (what a fault test kills)."""
        return int(self.request({"op": "ping"}, timeout=self.start_timeout)["pid"])

    def request(self, message: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and return the worker's reply (a dict).

        When the worker or its session fails (died, hung, answered something that is not a JSON object),
        the whole sandbox is closed, so that the next request starts a fresh one that shares nothing with it,
        and :class:`WorkerFailure` is raised. A worker that the session had to restart before this request
        was sent answers with ``"restarted": True`` (state such as grader references is gone).
        Failing to start raises :class:`~execgym.core.errors.InfraError`.
        """
        self.start()
        try:
            reply = self.session.request(dict(message), timeout=timeout)
        except Exception as exc:  # the session machinery itself broke
            self.close()
            raise WorkerFailure(f"the CAD {self.mode} worker's session failed: {type(exc).__name__}: {exc}") from exc
        if reply.ok and isinstance(reply.value, dict):
            value = reply.value
            if reply.restarted:
                value["restarted"] = True
                self.starts += 1
            return value
        self.close()
        detail = "timed out" if reply.timed_out else f"failed: {reply.error or 'no JSON object in its reply'}"
        stderr = (reply.stderr or "").strip()[-800:]
        raise WorkerFailure(f"the CAD {self.mode} worker {detail}" + (f"\n{stderr}" if stderr else ""))

    def restart(self) -> None:
        """Close the sandbox and start the worker in a fresh one (InfraError when that fails)."""
        self.close()
        self.start()

    def close(self) -> None:
        for thing in (self.session, self.sandbox):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()
        self.session = None
        self.sandbox = None
        self._ready = False


@dataclass
class _Registration:
    code: str | None
    mesh_path: str | None
    fallback_last: bool
    summary: dict[str, Any] | None = None
    source: str = ""


# Seconds one grading attempt of one part may take (CPU and wall clock); see CADGrader.
GRADE_TIMEOUT_S = 120.0


class CADGrader:
    """The trusted grader: reference parts and the metrics of agent parts against them.

    ``executor`` runs the grader worker (default: a local sandbox; the worker needs CadQuery there).
    References are registered per key (the task id and a hash of its reference) and replayed into a
    restarted worker automatically.

    ``timeout`` (default ``GRADE_TIMEOUT_S``) bounds one grading attempt of one part: the forked child that
    grades it gets that many seconds of CPU (+1 s) and of wall clock. An attempt that fails is retried once
    with voxel IoU, so a part costs at most two attempts; a part that runs out of time or memory both
    times, or that has more solids or faces than ``kernel.MAX_GRADE_SOLIDS``/``MAX_GRADE_FACES`` (or four
    times the target's), is the agent's failure ("too complex to grade", outcome 0), never an infra error.

    Example (starts a CadQuery worker, a few seconds):
        >>> grader = CADGrader()                                                      # doctest: +SKIP
        >>> box = "import cadquery as cq\\nresult = cq.Workplane().box(2, 2, 2)"
        >>> key = grader.register("t1", code=box)                                     # doctest: +SKIP
        >>> grader.summary(key)["volume"], grader.summary(key)["source"]              # doctest: +SKIP
        (8.0, 'brep')
        >>> grader.close()                                                            # doctest: +SKIP
    """

    def __init__(
        self, executor: Any = "local", *, timeout: float = GRADE_TIMEOUT_S, memory_bytes: int = 2 * 1024**3
    ) -> None:
        self.process = KernelProcess(executor, "grader", memory_bytes=memory_bytes)
        self.timeout = float(timeout)
        self._registrations: dict[str, _Registration] = {}
        self._loaded: set[str] = set()
        self._thresholds: dict[str, Thresholds] = {}
        self._starts_seen = 0

    def start(self) -> None:
        self.process.start()

    def launch(self) -> None:
        """Spawn the worker without waiting for its CadQuery import (see :meth:`KernelProcess.launch`)."""
        self.process.launch()

    def wait_ready(self) -> None:
        self.process.wait_ready()

    @staticmethod
    def reference_key(task_id: str, code: str | None, mesh_path: str | None) -> str:
        digest = hashlib.sha1(f"{code or ''}\0{mesh_path or ''}".encode()).hexdigest()[:12]
        return f"{task_id}#{digest}"

    def register(
        self,
        task_id: str,
        *,
        code: str | None = None,
        mesh_path: str | None = None,
        fallback_last: bool = False,
        thresholds: Thresholds | None = None,
    ) -> str:
        """Build (or reuse) the reference part of a task; returns its key. Failures raise InfraError."""
        if not code and not mesh_path:
            raise ValueError(f"task {task_id!r} has neither a reference program nor a reference mesh")
        key = self.reference_key(task_id, code, mesh_path)
        self._registrations.setdefault(key, _Registration(code, mesh_path, fallback_last))
        self._ensure(key, thresholds or Thresholds())
        return key

    def summary(self, key: str) -> dict[str, Any]:
        reg = self._registrations[key]
        return dict(reg.summary or {}, source=reg.source)

    def _call(self, message: dict[str, Any], timeout: float, *, key: str | None = None) -> dict[str, Any]:
        """One request to the grader; a failed worker is replaced once, then it is an InfraError.

        The grader never runs agent code and grades each part in a forked child, so a failure of the worker
        itself is the machinery's, whatever part it was grading.
        """
        for attempt in range(2):
            try:
                if key is not None:
                    self._ensure(key, self._thresholds.get(key, Thresholds()))
                reply = self.process.request(message, timeout=timeout)
            except WorkerFailure as exc:
                self._loaded.clear()
                if attempt:
                    raise CoreInfraError(f"the CAD grading worker failed twice: {exc}") from exc
                continue
            if reply.get("restarted"):
                self._loaded.clear()
            if reply.get("kind") == "missing_reference" and key is not None:
                self._loaded.discard(key)
                if attempt:
                    raise CoreInfraError(f"the CAD grading worker lost the reference {key!r}")
                continue
            return reply
        raise AssertionError("unreachable")

    def _ensure(self, key: str, thresholds: Thresholds) -> None:
        self.process.start()
        if self.process.starts != self._starts_seen:  # a fresh worker holds no references
            self._loaded.clear()
            self._starts_seen = self.process.starts
        if key in self._loaded:
            return
        reg = self._registrations[key]
        self._thresholds.setdefault(key, thresholds)
        options = thresholds.grader_options()
        message: dict[str, Any] = {
            "op": "reference",
            "key": key,
            "code": reg.code,
            "fallback_last": reg.fallback_last,
            "chamfer_points": options["chamfer_points"],
            "mm_points": options["mm_points"],
            "timeout": self.timeout,
        }
        if reg.mesh_path:
            from execgym.envs.cad.tasks import MAX_MESH_BYTES, DatasetError, read_regular_file

            try:  # a regular file of bounded size, opened non-blocking: a FIFO put in its place cannot hang
                message["mesh"] = b64(read_regular_file(reg.mesh_path, key, "reference mesh", MAX_MESH_BYTES))
            except DatasetError as exc:
                if not reg.code:
                    raise CoreInfraError(str(exc)) from exc
        try:
            reply = self.process.request(message, timeout=self.timeout + 60)
        except WorkerFailure:
            # Once more in a fresh sandbox; a second failure (InfraError) is the machinery's or the dataset's.
            reply = self.process.request(message, timeout=self.timeout + 60)
        if reply.get("restarted"):
            self._loaded.clear()
            self._starts_seen = self.process.starts
        if not reply.get("ok"):
            raise CoreInfraError(
                f"the reference part of {key.split('#')[0]!r} could not be built: {reply.get('error')}"
            )
        reg.summary = reply.get("summary")
        reg.source = reply.get("source", "")
        self._loaded.add(key)

    def grade(
        self,
        key: str,
        brep: bytes,
        *,
        key_dims: list[dict[str, Any]],
        thresholds: Thresholds,
        orientation: str = "fixed",
    ) -> dict[str, Any]:
        """Metrics of a part (BREP bytes) against the reference ``key``: the worker's reply (``ok``, ``metrics``,
        ``dims_detail``, ``part``, ``reference``, ``iou_method``, ``notes``) or ``{"ok": False, "kind", "error"}``
        when the part itself could not be graded (the agent's failure). A failure of the grader is an InfraError."""
        options = {**thresholds.grader_options(), "key_dims": key_dims, "orientation": orientation}
        message = {"op": "grade", "key": key, "brep": b64(brep), "options": options, "timeout": self.timeout}
        self._thresholds.setdefault(key, thresholds)
        return self._call(message, 2 * self.timeout + 60, key=key)

    def inspect(self, key: str, brep: bytes, *, thresholds: Thresholds) -> dict[str, Any]:
        """Trusted measurements of a part (``{"ok": True, "measurements"}``), or ``{"ok": False, "kind", "error"}``
        when the part cannot be read (the agent's failure). A failure of the grader is an InfraError."""
        message = {"op": "inspect", "key": key, "brep": b64(brep), "timeout": self.timeout}
        self._thresholds.setdefault(key, thresholds)
        return self._call(message, 2 * self.timeout + 60, key=key)

    def tessellate(self, *, key: str | None = None, brep: bytes | None = None) -> tuple[np.ndarray, ...] | None:
        """Triangles of a reference (``key``) or of a part (``brep``): vertices, triangles, face ids."""
        if key is not None:
            message: dict[str, Any] = {"op": "tessellate", "key": key}
        elif brep is not None:
            message = {"op": "tessellate", "brep": b64(brep), "timeout": self.timeout}
        else:
            raise ValueError("tessellate needs a key or BREP bytes")
        reply = self._call(message, self.timeout + 60, key=key)
        if not reply.get("ok"):
            return None
        try:
            v = np.frombuffer(unb64(reply["vertices"]), dtype="<f4").reshape(-1, 3).astype(np.float64)
            f = np.frombuffer(unb64(reply["triangles"]), dtype="<i4").reshape(-1, 3).astype(np.int64)
            fid = np.frombuffer(unb64(reply["face_ids"]), dtype="<i4").astype(np.int64)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise CoreInfraError(f"the CAD grading worker sent a malformed mesh: {exc}") from exc
        return v, f, fid

    def close(self) -> None:
        self.process.close()
        self._loaded.clear()


# ================================================================================== shared in this process


class _Owner:
    """A thread that owns a shared worker's sandbox and makes every call to it, one at a time.

    A local sandbox dies with the thread that spawned it (bubblewrap's ``--die-with-parent``): a worker shared
    by envs stepped on different threads (AsyncRollout's slots) is spawned, restarted and spoken to here.
    """

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._pool.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


_SHARED_LOCK = threading.Lock()
_SHARED: dict[tuple[Any, ...], list[Any]] = {}  # key -> [object, number of envs holding it]


def _forget_shared_in_child() -> None:
    """A forked child (a vector env's subprocess) starts shared workers of its own: the ones it inherited are
    its parent's (their threads do not exist here, their sandboxes are not this process's to close)."""
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()
    _SHARED.clear()


os.register_at_fork(after_in_child=_forget_shared_in_child)


def _executor_key(executor: Any) -> Any:
    spec = resolve_executor(executor)
    return spec if isinstance(spec, str) else ("object", id(spec))


def _acquire(key: tuple[Any, ...], factory: Callable[[], Any]) -> Any:
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            entry = _SHARED[key] = [factory(), 0]
        entry[1] += 1
        return entry[0]


def _release(key: tuple[Any, ...], obj: Any) -> None:
    with _SHARED_LOCK:
        entry = _SHARED.get(key)
        if entry is None or entry[0] is not obj:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _SHARED[key]
    obj.shutdown()


def shared_servers() -> dict[str, int]:
    """The shared CAD workers alive in this process and how many envs hold each (for tests and benchmarks)."""
    with _SHARED_LOCK:
        return {f"{key[0]}:{key[1]}": entry[1] for key, entry in _SHARED.items()}


class SharedGrader(CADGrader):
    """One trusted grader for every env of this process on the same executor (it never runs agent code).

    References are keyed by task and reference program, so envs on the same task share one. Calls are
    serialised on the grader's own thread (the worker answers one request at a time anyway). Get one with
    :meth:`acquire`; :meth:`close` drops this env's hold, and the last one stops the worker.
    """

    def __init__(self, executor: Any, *, memory_bytes: int, key: tuple[Any, ...]) -> None:
        super().__init__(executor, memory_bytes=memory_bytes)
        self.key = key
        self.owner = _Owner("execgym-cad-grader")

    @classmethod
    def acquire(cls, executor: Any = "local", *, memory_bytes: int = 2 * 1024**3) -> SharedGrader:
        key = ("grader", _executor_key(executor), int(memory_bytes))
        grader = _acquire(key, lambda: cls(executor, memory_bytes=memory_bytes, key=key))
        if isinstance(key[1], tuple):
            grader._executor_ref = executor  # keep the object (and so its id) alive while shared
        return grader

    def start(self) -> None:
        self.owner.call(super().start)

    def launch(self) -> None:
        self.owner.call(super().launch)

    def wait_ready(self) -> None:
        self.owner.call(super().wait_ready)

    def register(self, task_id: str, **kwargs: Any) -> str:
        return self.owner.call(super().register, task_id, **kwargs)

    def grade(self, key: str, brep: bytes, **kwargs: Any) -> dict[str, Any]:
        return self.owner.call(super().grade, key, brep, **kwargs)

    def inspect(self, key: str, brep: bytes, *, thresholds: Thresholds) -> dict[str, Any]:
        return self.owner.call(super().inspect, key, brep, thresholds=thresholds)

    def tessellate(self, *, key: str | None = None, brep: bytes | None = None) -> tuple[np.ndarray, ...] | None:
        return self.owner.call(super().tessellate, key=key, brep=brep)

    def close(self) -> None:
        """This env no longer needs the grader (the worker stops when no env holds it)."""
        _release(self.key, self)

    def shutdown(self) -> None:
        self.owner.call(super().close)
        self.owner.shutdown()


class ForkServer:
    """The process's agent zygote: one sandbox whose worker imported CadQuery once and forks env workers.

    Each env worker is isolated from the others in namespaces of its own (see the kernel's ``ForkServer``);
    the env talks to it on two FIFOs, not through this server. Calls run on the server's own thread. A failed
    server is replaced once per call; a second failure is an :class:`~execgym.core.errors.InfraError`.
    """

    def __init__(self, executor: Any, *, image: str, key: tuple[Any, ...]) -> None:
        self.key = key
        self.process = KernelProcess(executor, "forkserver", image=image, sandbox_memory_bytes=64 * 1024**3)
        self.process.max_processes = 4096  # each env worker is held to its own budget (RLIMIT_NPROC) inside
        self.owner = _Owner("execgym-cad-forkserver")

    @classmethod
    def acquire(cls, executor: Any = "local", *, image: str = "cad") -> ForkServer:
        key = ("forkserver", _executor_key(executor), image)
        server = _acquire(key, lambda: cls(executor, image=image, key=key))
        if isinstance(key[1], tuple):
            server._executor_ref = executor
        return server

    def release(self) -> None:
        _release(self.key, self)

    def launch(self) -> None:
        self.owner.call(self.process.launch)

    def wait_ready(self) -> None:
        self.owner.call(self.process.wait_ready)

    def call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self.owner.call(self._call, message, timeout)

    def _call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        for attempt in range(2):
            try:
                return self.process.request(message, timeout=timeout)
            except WorkerFailure as exc:
                if attempt:
                    raise CoreInfraError(f"the CAD agent fork server failed twice: {exc}") from exc
        raise AssertionError("unreachable")

    def sandbox_paths(self) -> tuple[str, str]:
        """The server's work directory inside its sandbox and the same directory on this machine."""
        sandbox = self.process.sandbox
        inside = str(sandbox.workdir)
        return inside, str(getattr(sandbox, "host_workdir", inside))

    def ping(self) -> dict[str, Any]:
        return self.call({"op": "ping"}, timeout=self.process.start_timeout)

    def host_pids(self) -> list[int]:
        """This machine's pids of the server's sandbox (where an env finds its keeper to confine it)."""
        return list(self.process.sandbox.host_pids())

    def shutdown(self) -> None:
        self.owner.call(self.process.close)
        self.owner.shutdown()


_REPLY_CAP = 160 * 1024 * 1024


class ForkedAgent:
    """An env's agent worker forked from the shared :class:`ForkServer`, with :class:`KernelProcess`'s interface.

    ``request`` returns the worker's reply or raises :class:`WorkerFailure` (the worker died or hung: it is
    stopped with everything it started, and the next request gets a fresh one). Failing to start is an
    :class:`~execgym.core.errors.InfraError`. ``share="host"`` forks it from the machine's CAD host daemon
    (:mod:`execgym.envs.cad.host`) instead of this process's own server.

    Limits: each program gets ``memory_bytes`` beyond the worker's own (RLIMIT_AS) and the worker's whole
    namespace a process budget; where sandboxes get a memory cgroup (as root), the worker and everything it
    starts get one of their own too, capped at ``sandbox_memory_bytes`` (what a sandbox of the env's own would
    hold), so that one env exhausting its memory is killed in its own cgroup, not the server's.

    Example:
        >>> agent = ForkedAgent("local", memory_bytes=2 * 1024**3)                        # doctest: +SKIP
        >>> agent.request({"op": "run", "code": "import cadquery as cq\\nresult = cq.Workplane().box(1, 2, 3)"},
        ...               timeout=30)["measurements"]["volume"]                          # doctest: +SKIP
        6.0
        >>> agent.memory_scope                                                            # doctest: +SKIP
        'sandbox'
    """

    mode = "agent"

    def __init__(
        self,
        executor: Any = "local",
        *,
        image: str = "cad",
        memory_bytes: int = 2 * 1024**3,
        sandbox_memory_bytes: int = 8 * 1024**3,
        start_timeout: float = 300.0,
        share: str = "process",
    ) -> None:
        if share not in ("process", "host"):
            raise ValueError(f"share must be 'process' or 'host', got {share!r}")
        self.executor_spec = executor
        self.image = image
        self.memory_bytes = int(memory_bytes)
        self.sandbox_memory_bytes = int(sandbox_memory_bytes)
        self.start_timeout = float(start_timeout)
        self.share = share
        self.server: Any = None  # a ForkServer of this process, or the host daemon's (execgym.envs.cad.host)
        self.token: str | None = None
        self.pid: int | None = None
        self.cgroup: SandboxCgroups | None = None
        self.info: dict[str, Any] = {}
        self.starts = 0
        self._fds: tuple[int, int] | None = None
        self._buf = b""

    @property
    def memory_scope(self) -> str:
        """``"sandbox"`` when the running worker's memory cgroup caps it with all it starts, else ``"process"``."""
        return "sandbox" if self.cgroup is not None and self.cgroup.memory_dir is not None else "process"

    @property
    def running(self) -> bool:
        return self._fds is not None

    def launch(self) -> None:
        """Hold the shared server (started, importing CadQuery, by the first env) without waiting for it."""
        if self.server is None:
            if self.share == "host":
                from execgym.envs.cad.host import HostForkServer

                self.server = HostForkServer.acquire(resolve_executor(self.executor_spec), image=self.image,
                                                     memory_bytes=self.memory_bytes)
            else:
                self.server = ForkServer.acquire(self.executor_spec, image=self.image)
        try:
            self.server.launch()
        except CoreInfraError:
            raise
        except Exception as exc:
            raise CoreInfraError(f"could not start the CAD agent fork server: {type(exc).__name__}: {exc}") from exc

    def wait_ready(self) -> None:
        """Fork this env's worker (once the server is ready) and wait for its first reply."""
        if self._fds is not None:
            return
        self.launch()
        assert self.server is not None
        self.server.wait_ready()
        token = secrets.token_hex(8)
        timeout = min(self.start_timeout, 60.0)
        message = {"op": "spawn", "token": token, "timeout": timeout, "memory_bytes": self.memory_bytes}
        reply = self.server.call(message, timeout=self.start_timeout)
        if not reply.get("ok"):
            raise CoreInfraError(f"the CAD agent fork server could not fork a worker: {reply.get('error')}")
        self.token = token
        try:
            self._confine(token, int(reply["keeper"]), time.monotonic() + timeout)
        except BaseException:
            self._stop_worker()
            raise
        self._open_channel(token, reply, timeout)

    def _confine(self, token: str, keeper: int, deadline: float) -> None:
        """Move the env's keeper into a memory cgroup of its own before it forks the worker (it waits for the
        env to open its reply FIFO first), where this machine gives sandboxes one; otherwise a no-op, as a
        sandbox of the env's own would then have per-process limits only."""
        assert self.server is not None
        cgroup = SandboxCgroups.create(None, self.sandbox_memory_bytes)
        if cgroup is None:
            return
        try:
            pid = _host_pid(self.server.host_pids, keeper_name(token), keeper, deadline)
            cgroup.adopt(pid)
        except (OSError, TimeoutError) as exc:
            cgroup.destroy()
            raise CoreInfraError(f"could not give the CAD agent worker a memory cgroup of its own: {exc}") from exc
        self.cgroup = cgroup

    def _open_channel(self, token: str, reply: dict[str, Any], timeout: float) -> None:
        assert self.server is not None
        fds: list[int] = []
        try:
            inside, host = self.server.sandbox_paths()
            directory = os.path.join(host, os.path.relpath(str(reply["path"]), inside))
            deadline = time.monotonic() + timeout
            fds.append(_open_writer(os.path.join(directory, "request"), deadline))
            fds.append(os.open(os.path.join(directory, "reply"), os.O_RDONLY | os.O_NONBLOCK))
            started = self.server.call({"op": "started", "token": token, "timeout": timeout}, timeout=timeout + 30)
            if not started.get("ok"):
                error = str(started.get("error"))
                kind = NamespacesUnavailable if NO_NAMESPACES in error else CoreInfraError
                raise kind(f"the CAD agent worker did not start: {error}")
            self._fds = (fds[0], fds[1])
            self._buf = b""
            self.pid = int(started["pid"])
            info = self._exchange({"op": "ping"}, time.monotonic() + self.start_timeout)
        except (OSError, WorkerFailure, KeyError, ValueError) as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = None
            self._stop_worker()
            raise CoreInfraError(f"the CAD agent worker failed to start: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = None
            self._stop_worker()
            raise
        if not info.get("ok"):
            self._drop()
            raise CoreInfraError(f"the CAD agent worker failed to start: {info.get('error')}")
        self.info = info
        self.starts += 1

    def start(self) -> None:
        self.wait_ready()

    def sandbox_pid(self) -> int:
        """The worker's pid as the server's sandbox sees it (what a fault test kills)."""
        self.start()
        assert self.pid is not None
        return self.pid

    def request(self, message: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        self.start()
        try:
            return self._exchange(dict(message), time.monotonic() + timeout)
        except WorkerFailure:
            self._drop()
            raise

    def _exchange(self, message: dict[str, Any], deadline: float) -> dict[str, Any]:
        assert self._fds is not None
        request_fd, reply_fd = self._fds
        data = memoryview((json.dumps(message) + "\n").encode())
        os.set_blocking(request_fd, False)
        while data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [request_fd], [], left)[1]:
                raise WorkerFailure("the CAD agent worker timed out (not reading its requests)")
            try:
                data = data[os.write(request_fd, data) :]
            except BlockingIOError:
                continue
            except OSError as exc:  # EPIPE: it died
                raise WorkerFailure(f"the CAD agent worker died ({exc})") from exc
        while True:
            newline = self._buf.find(b"\n")
            if newline >= 0:
                line, self._buf = self._buf[:newline], self._buf[newline + 1 :]
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    raise WorkerFailure("the CAD agent worker answered something that is not JSON") from exc
                if not isinstance(value, dict):
                    raise WorkerFailure("the CAD agent worker answered something that is not a JSON object")
                return value
            if len(self._buf) > _REPLY_CAP:
                raise WorkerFailure("the CAD agent worker's reply exceeds the output limit")
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([reply_fd], [], [], left)[0]:
                raise WorkerFailure("the CAD agent worker timed out")
            try:
                chunk = os.read(reply_fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                raise WorkerFailure("the CAD agent worker died without replying")
            self._buf += chunk

    def _drop(self) -> None:
        """Close this env's FIFOs and stop its worker (and everything in its namespaces)."""
        if self._fds is not None:
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = None
        self._buf = b""
        self._stop_worker()

    def _stop_worker(self) -> None:
        token, self.token, self.pid = self.token, None, None
        if token is not None and self.server is not None:
            with contextlib.suppress(Exception):
                self.server.call({"op": "kill", "token": token}, timeout=30.0)
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is not None:
            cgroup.destroy()  # kills whatever of the worker's is left, then removes the cgroup

    def restart(self) -> None:
        """A fresh worker (InfraError when the server cannot fork one, after replacing the server once)."""
        self._drop()
        self.start()

    def close(self) -> None:
        """Stop this env's worker and drop its hold on the server (the last env's close stops it)."""
        self._drop()
        if self.server is not None:
            server, self.server = self.server, None
            server.release()


def _host_pid(candidates: Callable[[], list[int]], name: str, inner: int, deadline: float) -> int:
    """This machine's pid of the process named ``name`` whose innermost pid is ``inner``, among ``candidates()``.

    Only the keeper knows its name (made from the env's secret token) and takes it as it starts, before any agent
    program runs; polled until ``deadline`` (TimeoutError).
    """
    while True:
        for pid in candidates():
            try:
                status = dict(
                    line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
                )
            except (OSError, ValueError):
                continue
            if status.get("Name", "").strip() == name and status.get("NSpid", "").split()[-1:] == [str(inner)]:
                return pid
        if time.monotonic() > deadline:
            raise TimeoutError(f"no process {name!r} (pid {inner} in the fork server's sandbox) on this machine")
        time.sleep(0.001)


def _open_writer(path: str, deadline: float) -> int:
    """Open a FIFO for writing once its reader (the env worker's keeper) has it open."""
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno not in (errno.ENXIO, errno.ENOENT) or time.monotonic() > deadline:
                raise
            time.sleep(0.002)
