"""The agent and grader workers: JSON-lines ``op`` servers whose jobs run in forks."""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from execgym.envs.cad.kernel.geometry import export_brep, features, import_brep, measure
from execgym.envs.cad.kernel.grade import Reference, grade_part, inspect_part
from execgym.envs.cad.kernel.mesh import make_tree, read_stl, tessellate
from execgym.envs.cad.kernel.process import Scratch
from execgym.envs.cad.kernel.programs import ProgramError, _cq, exec_program, to_shape
from execgym.envs.cad.kernel.wire import MAX_PART_BYTES, PROTOCOL, array_b64, b64, unb64
from execgym.envs.cad.kernel.zygote import Zygote


class OpServer:
    """Answers a JSON-lines request ``{"op": NAME, ...}`` with the method ``op_NAME`` (an unknown op is an error)."""

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        fn = getattr(self, f"op_{op}", None)
        if fn is None:
            return {"ok": False, "kind": "protocol", "error": f"unknown op {op!r}"}
        return fn(request)


class Worker(OpServer):
    """One JSON-lines worker: answers ``op`` requests with ``op_<name>`` methods; jobs run in forks."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.memory_bytes = int(config.get("memory_bytes") or 0) or None
        roots = [os.path.expandvars(r) for r in config.get("scratch_roots") or []]
        scratch = Scratch(roots) if roots else None
        self.zygote = Zygote(
            {name[4:]: getattr(self, name) for name in dir(self) if name.startswith("job_")}, scratch=scratch
        )

    def idle(self) -> None:
        """Between requests: get the next fork ready."""
        self.zygote.prepare()

    def warmup(self) -> None:
        """Run trusted work of the kind jobs do once, so that forks find the kernel's pages already mapped.

        Booleans run serially here: a parallel one would start OCCT's thread pool in this process, and a
        fork of a process with threads can deadlock on the locks they held.
        """
        cq = _cq()
        parallel_op = cq.Shape._bool_op

        def serial_op(self: Any, args: Any, tools: Any, op: Any, parallel: bool = True) -> Any:
            return parallel_op(self, args, tools, op, False)

        cq.Shape._bool_op = serial_op
        try:
            part = (
                cq.Workplane("XY")
                .box(20, 16, 4, centered=(True, True, False))
                .edges("|Z")
                .fillet(2)
                .faces(">Z")
                .workplane()
                .rarray(10, 8, 2, 2)
                .hole(3)
                .faces(">Z")
                .edges("not(%LINE)")
                .chamfer(0.3)
            )
            shape = to_shape(part.union(cq.Workplane("XY").circle(3).extrude(8)))
            measure(shape)
            import_brep(export_brep(shape))
            features(shape)
            tessellate(shape)
        finally:
            cq.Shape._bool_op = parallel_op

    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        cq = _cq()
        return {
            "ok": True,
            "protocol": PROTOCOL,
            "cadquery": getattr(cq, "__version__", "?"),
            "pid": os.getpid(),
            "scipy": make_tree(np.zeros((1, 3))) is not None,
            "hardening": self.config.get("_hardening", {}),
            "scratch_roots": self.zygote.scratch.roots if self.zygote.scratch else [],
        }

    def job_tessellate(self, args: dict[str, Any]) -> dict[str, Any]:
        v, f, fid = tessellate(import_brep(unb64(args["brep"])))
        return _mesh_reply(v, f, fid)


class AgentWorker(Worker):
    """Runs agent programs, each in a fresh fork of the process that imported CadQuery."""

    def op_run(self, request: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(request.get("code"), str):
            return {"ok": False, "kind": "protocol", "error": "'code' must be a string"}
        return self.zygote.run(
            "run",
            {"code": request["code"]},
            timeout=float(request.get("timeout", 30.0)),
            memory_bytes=request.get("memory_bytes") or self.memory_bytes,
        )

    def job_run(self, args: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            shape = exec_program(args["code"])
        except ProgramError as exc:
            return {"ok": False, "kind": exc.kind, "error": str(exc)}
        ran = time.monotonic() - started
        try:
            data = export_brep(shape)
        except MemoryError:
            raise
        except Exception as exc:
            return {"ok": False, "kind": "invalid", "error": f"the part could not be exported: {exc}"}
        if len(data) > MAX_PART_BYTES:
            return {
                "ok": False,
                "kind": "too_large",
                "error": f"the part is too large to export ({len(data):,} bytes of BREP)",
            }
        # Only the BREP leaves this process: it ran the agent's code, so the grader measures the part.
        return {"ok": True, "brep": b64(data), "run_s": ran}


class GraderWorker(Worker):
    """Holds reference parts and grades BREP parts against them (never runs agent code)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.refs: OrderedDict[str, Reference] = OrderedDict()
        self.max_refs = int(config.get("max_references", 256))

    def op_reference(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request["key"]
        if key in self.refs:
            self.refs.move_to_end(key)
            return {"ok": True, "cached": True, "source": self.refs[key].kind, "summary": self.refs[key].summary}
        n_points = int(request.get("chamfer_points", 8192))
        mm_points = int(request.get("mm_points") or 0)
        errors = []
        ref: Reference | None = None
        if request.get("code"):
            built = self.zygote.run(
                "build",
                {"code": request["code"], "fallback_last": bool(request.get("fallback_last"))},
                timeout=float(request.get("timeout", 120.0)),
                memory_bytes=self.memory_bytes,
            )
            if built.get("ok"):
                try:
                    ref = Reference(shape=import_brep(unb64(built["brep"])), n_points=n_points)
                    if not ref.summary["volume"] > 0:
                        errors.append("the reference program's part has no volume")
                        ref = None
                except Exception as exc:
                    errors.append(f"the reference part could not be loaded: {exc}")
            else:
                errors.append(f"the reference program failed: {built.get('error')}")
        if ref is None and request.get("mesh"):
            try:
                ref = Reference(mesh=read_stl(unb64(request["mesh"])), n_points=n_points)
            except Exception as exc:
                errors.append(f"the reference mesh could not be read: {exc}")
        if ref is None:
            return {"ok": False, "kind": "reference", "error": "; ".join(errors) or "no reference program or mesh"}
        if mm_points > n_points:
            ref.sampled(mm_points)
        self.refs[key] = ref
        while len(self.refs) > self.max_refs:
            self.refs.popitem(last=False)
        self.zygote.invalidate()  # the next fork must hold this reference
        return {"ok": True, "cached": False, "source": ref.kind, "summary": ref.summary, "notes": errors}

    def job_build(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            shape = exec_program(args["code"], fallback_last=bool(args.get("fallback_last")))
        except ProgramError as exc:
            return {"ok": False, "kind": exc.kind, "error": str(exc)}
        return {"ok": True, "brep": b64(export_brep(shape))}

    def op_grade(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request.get("key")
        if key not in self.refs:
            return _missing_reference(key)
        self.refs.move_to_end(key)
        options = dict(request.get("options") or {})
        args = {"key": key, "brep": request.get("brep", ""), "options": options}
        timeout = float(request.get("timeout", 60.0))
        graded = self.zygote.run("grade", args, timeout=timeout, memory_bytes=self.memory_bytes)
        if graded.get("ok") or options.get("iou_method") == "voxel" or graded.get("kind") == "part":
            return graded
        # Booleans on a pathological part can hang or crash the kernel: fall back to meshes once.
        retry = self.zygote.run(
            "grade",
            {**args, "options": {**options, "iou_method": "voxel"}},
            timeout=timeout,
            memory_bytes=self.memory_bytes,
        )
        if retry.get("ok"):
            retry.setdefault("notes", []).append(f"exact grading failed ({graded.get('error')}); voxel IoU used")
        elif retry.get("kind") in ("timeout", "memory"):
            # Out of time or memory twice: the part is too much to grade, the agent's 0 (never an infra error).
            return {
                "ok": False,
                "kind": "part",
                "error": f"the part is too complex to grade within the grader's limits ({timeout:g} s of CPU per "
                f"attempt, and its memory limit): {retry.get('error')}",
            }
        return retry

    def job_grade(self, args: dict[str, Any]) -> dict[str, Any]:
        return _with_part(args, lambda brep: grade_part(self.refs[args["key"]], brep, args["options"]))

    def op_inspect(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request.get("key")
        if key not in self.refs:
            return _missing_reference(key)
        args = {"key": key, "brep": request.get("brep", ""), "options": dict(request.get("options") or {})}
        timeout = float(request.get("timeout", 60.0))
        return self.zygote.run("inspect", args, timeout=timeout, memory_bytes=self.memory_bytes)

    def job_inspect(self, args: dict[str, Any]) -> dict[str, Any]:
        return _with_part(args, inspect_part)

    def op_tessellate(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("key"):
            ref = self.refs.get(request["key"])
            if ref is None:
                return _missing_reference(request["key"])
            return _mesh_reply(ref.mesh[0], ref.mesh[1], ref.face_ids)
        return self.zygote.run(
            "tessellate",
            {"brep": request.get("brep", "")},
            timeout=float(request.get("timeout", 60.0)),
            memory_bytes=self.memory_bytes,
        )


def _missing_reference(key: Any) -> dict[str, Any]:
    return {"ok": False, "kind": "missing_reference", "error": f"no reference {key!r}"}


def _with_part(args: dict[str, Any], job: Callable[[bytes], dict[str, Any]]) -> dict[str, Any]:
    """``job(brep)`` on the request's part once its BREP bytes load; unreadable bytes are the part's failure."""
    try:
        brep = unb64(args["brep"])
        import_brep(brep)
    except Exception as exc:
        return {"ok": False, "kind": "part", "error": f"the part's BREP data cannot be read: {exc}"}
    return job(brep)


def _mesh_reply(v: np.ndarray, f: np.ndarray, fid: np.ndarray) -> dict[str, Any]:
    return {
        "ok": True,
        "vertices": array_b64(v, "<f4"),
        "triangles": array_b64(f, "<i4"),
        "face_ids": array_b64(fid, "<i4"),
    }
