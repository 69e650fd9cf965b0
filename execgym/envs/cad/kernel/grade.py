"""Grading a part against a reference: IoU, chamfer and Hausdorff distances, bounding box, volume, dims."""

from __future__ import annotations

from typing import Any

import numpy as np

from execgym.envs.cad.kernel.dims import check_key_dims
from execgym.envs.cad.kernel.geometry import features, import_brep, measure, shape_bbox
from execgym.envs.cad.kernel.mesh import (
    make_tree,
    mesh_volume,
    nearest_distances,
    rotations24,
    sample_surface,
    tessellate,
    voxel_iou,
)
from execgym.envs.cad.kernel.programs import _cq

# The most solids and faces a part may have to be graded (or four times the reference's, if more): a cheap
# compound of thousands of boxes would otherwise cost the grader minutes of booleans and tessellation.
MAX_GRADE_SOLIDS = 500
MAX_GRADE_FACES = 20_000


class Reference:
    """A target part held by the grader: exact shape (from a program) or a mesh (from a file)."""

    def __init__(
        self, *, shape: Any = None, mesh: tuple[np.ndarray, np.ndarray] | None = None, n_points: int = 8192
    ) -> None:
        self.shape = shape
        if shape is not None:
            self.summary = measure(shape)
            self.features = features(shape)
            v, f, fid = tessellate(shape)
            self.mesh = (v, f)
            self.face_ids = fid
            self.lo, self.hi = shape_bbox(shape)
            self.volume = self.summary["volume"]
        else:
            assert mesh is not None
            v, f = mesh
            self.mesh = (v, f)
            self.face_ids = np.zeros(len(f), dtype=np.int64)
            self.lo, self.hi = v.min(0), v.max(0)
            self.volume = abs(mesh_volume(v, f))
            self.features = {"cylinders": [], "planes": [], "circles": [], "cones": []}
            self.summary = {
                "volume": self.volume,
                "bbox_min": self.lo.tolist(),
                "bbox_max": self.hi.tolist(),
                "size": (self.hi - self.lo).tolist(),
                "solids": None,
                "faces": None,
                "edges": None,
                "valid_solid": True,
            }
        self._samples: dict[int, tuple[np.ndarray, Any]] = {}
        self.points, self.tree = self.sampled(n_points)

    def sampled(self, n: int) -> tuple[np.ndarray, Any]:
        """``n`` surface samples (seed 0) and their KD-tree, cached."""
        if n not in self._samples:
            points = sample_surface(self.mesh[0], self.mesh[1], n, seed=0)
            self._samples[n] = (points, make_tree(points))
        return self._samples[n]

    @property
    def kind(self) -> str:
        return "brep" if self.shape is not None else "mesh"


def _transform_shape(shape: Any, rotation: np.ndarray, translation: np.ndarray) -> Any:
    from OCP.BRepBuilderAPI import BRepBuilderAPI_Transform
    from OCP.gp import gp_Trsf

    cq = _cq()
    trsf = gp_Trsf()
    r, t = rotation, translation
    trsf.SetValues(r[0, 0], r[0, 1], r[0, 2], t[0], r[1, 0], r[1, 1], r[1, 2], t[1], r[2, 0], r[2, 1], r[2, 2], t[2])
    return cq.Shape.cast(BRepBuilderAPI_Transform(shape.wrapped, trsf, True).Shape())


def boolean_iou(a: Any, b: Any) -> float:
    """Exact volume IoU with the kernel's boolean ``common``: V(A∩B) / (V(A) + V(B) - V(A∩B))."""
    from OCP.BRepAlgoAPI import BRepAlgoAPI_Common
    from OCP.BRepGProp import BRepGProp
    from OCP.GProp import GProp_GProps
    from OCP.TopTools import TopTools_ListOfShape

    va, vb = float(a.Volume()), float(b.Volume())
    if va <= 0 or vb <= 0:
        raise ValueError("a part has no volume")
    op = BRepAlgoAPI_Common()
    args, tools = TopTools_ListOfShape(), TopTools_ListOfShape()
    args.Append(a.wrapped)
    tools.Append(b.wrapped)
    op.SetArguments(args)
    op.SetTools(tools)
    op.SetRunParallel(False)
    op.Build()
    if not op.IsDone():
        raise ValueError("boolean common failed")
    props = GProp_GProps()
    BRepGProp.VolumeProperties_s(op.Shape(), props)
    vc = float(props.Mass())
    eps = 1e-6 * max(va, vb)
    if vc < -eps or vc > min(va, vb) + eps:
        raise ValueError(f"boolean common gave an impossible volume {vc:g}")
    vc = min(max(vc, 0.0), min(va, vb))
    return vc / (va + vb - vc)


def grade_part(ref: Reference, part_brep: bytes, options: dict[str, Any]) -> dict[str, Any]:
    """All geometric metrics of an agent's part (given as BREP bytes) against a reference."""
    n_points = int(options.get("chamfer_points", 8192))
    orientation_free = options.get("orientation") == "free"
    part = import_brep(part_brep)
    too_complex = grading_limits_exceeded(ref, part, options)
    if too_complex:
        return {"ok": False, "kind": "part", "error": too_complex}
    summary = measure(part)
    notes: list[str] = []
    rotation = np.eye(3)
    aligned = False
    if orientation_free and summary["volume"] > 0:
        part, rotation = _align(ref, part, n_points)
        aligned = True
        summary = measure(part)
    lo, hi = np.array(summary["bbox_min"]), np.array(summary["bbox_max"])
    v, f, _ = tessellate(part)
    points = sample_surface(v, f, n_points, seed=0)  # the reference's seed: a part identical to it scores 0
    # cadrille's normalisation (bbox centred, largest extent scaled to 1) taken from the reference for both
    # parts, so that an in-place comparison keeps position and size errors (centring cancels in distances).
    scale = float((ref.hi - ref.lo).max()) or 1.0
    if len(points) and len(ref.points):
        d_part = nearest_distances(points, ref.points, ref.tree)
        d_ref = nearest_distances(ref.points, points)
        chamfer = float(np.mean((d_part / scale) ** 2) + np.mean((d_ref / scale) ** 2))
        mm_points = int(options.get("mm_points") or 0)
        if mm_points > n_points:  # CadQueryEval's distances are in mm on denser samples
            ref_dense, ref_tree = ref.sampled(mm_points)
            dense = sample_surface(v, f, mm_points, seed=0)
            d_part = nearest_distances(dense, ref_dense, ref_tree)
            d_ref = nearest_distances(ref_dense, dense)
        chamfer_mm = float((d_part.mean() + d_ref.mean()) / 2)
        hausdorff95 = float(np.percentile(np.concatenate([d_part, d_ref]), 95))
    else:
        chamfer, chamfer_mm, hausdorff95 = 1.0, float("inf"), float("inf")
        notes.append("the part has no surface to sample")
    iou, iou_method = part_iou(ref, part, summary, (v, f), options, notes)
    ref_ext = ref.hi - ref.lo
    ext = hi - lo
    if orientation_free:
        ref_ext, ext = np.sort(ref_ext), np.sort(ext)
    denom = np.where(ref_ext > 1e-9, ref_ext, 1.0)
    bbox_error = float(np.max(np.abs(ext - ref_ext) / denom)) if summary["faces"] else 1.0
    volume_error = abs(summary["volume"] - ref.volume) / ref.volume if ref.volume > 0 else 1.0
    key_dims = options.get("key_dims") or []
    # Absolute tolerances are in mm, capped at 0.1% of the target's size so that they shrink with small
    # (e.g. unit-normalised) parts.
    abs_tol = min(float(options.get("dims_abs_tol", 0.05)), 1e-3 * float((ref.hi - ref.lo).max()))
    dims_detail = check_key_dims(
        key_dims,
        features(part),
        (lo, hi),
        summary["volume"],
        abs_tol=abs_tol,
        rel_tol=float(options.get("dims_rel_tol", 0.005)),
        pos_rel_tol=float(options.get("dims_pos_rel_tol", 0.0025)),
        shape=part,
    )
    dims = sum(d["passed"] for d in dims_detail) / len(dims_detail) if dims_detail else 1.0
    return {
        "ok": True,
        "metrics": {
            "valid_solid": float(summary["valid_solid"]),
            "iou": float(iou),
            "chamfer": chamfer,
            "chamfer_mm": chamfer_mm,
            "hausdorff95_mm": hausdorff95,
            "bbox_error": min(bbox_error, 1e6),
            "volume_error": min(float(volume_error), 1e6),
            "dims": float(dims),
            "box_iou": box_iou(lo, hi, ref.lo, ref.hi, free=orientation_free),
            "extent_diff_mm": float(np.max(np.abs(np.sort(ext) - np.sort(ref_ext)))),
        },
        "iou_method": iou_method,
        "dims_detail": dims_detail,
        "part": summary,
        "reference": ref.summary,
        "aligned": aligned,
        "rotation": rotation.tolist(),
        "notes": notes,
    }


def grading_limits_exceeded(ref: Reference, part: Any, options: dict[str, Any]) -> str | None:
    """Why a part is too complex to grade (counted before any expensive measurement), or None.

    A part may have at most ``max_solids`` solids and ``max_faces`` faces (options; by default
    ``MAX_GRADE_SOLIDS`` and ``MAX_GRADE_FACES``, or four times the reference's counts where those are more).
    """
    from OCP.TopAbs import TopAbs_FACE, TopAbs_SOLID
    from OCP.TopExp import TopExp_Explorer

    def count(kind: Any, limit: int) -> int:
        n, explorer = 0, TopExp_Explorer(part.wrapped, kind)
        while explorer.More() and n <= limit:
            n += 1
            explorer.Next()
        return n

    for what, kind, option, default in (
        ("solids", TopAbs_SOLID, "max_solids", MAX_GRADE_SOLIDS),
        ("faces", TopAbs_FACE, "max_faces", MAX_GRADE_FACES),
    ):
        limit = int(options.get(option) or max(default, 4 * int(ref.summary.get(what) or 0)))
        n = count(kind, limit)
        if n > limit:
            return (
                f"the part is too complex to grade: more than {limit} {what} (the target has "
                f"{ref.summary.get(what) or 'an unknown number of'}); model the part itself, as one solid"
            )
    return None


def part_iou(
    ref: Reference,
    part: Any,
    summary: dict[str, Any],
    mesh: tuple[np.ndarray, np.ndarray],
    options: dict[str, Any],
    notes: list[str],
) -> tuple[float, str]:
    """Volume IoU of a part with the reference: exact (boolean ``common``) when possible, else on voxels."""
    if not summary["volume"] > 0:
        return 0.0, "none"
    if ref.kind == "brep" and options.get("iou_method", "auto") in ("auto", "boolean") and summary["valid"]:
        try:
            return boolean_iou(part, ref.shape), "boolean"
        except Exception as exc:
            notes.append(f"boolean IoU failed ({exc}); voxel IoU used")
    return voxel_iou(mesh, ref.mesh, int(options.get("voxel_resolution", 128))), "voxel"


def inspect_part(part_brep: bytes) -> dict[str, Any]:
    """What a run reports, measured by trusted code from the part alone (never by the process that built it)."""
    return {"ok": True, "measurements": measure(import_brep(part_brep))}


def box_iou(lo: Any, hi: Any, ref_lo: Any, ref_hi: Any, *, free: bool = False) -> float:
    """IoU of two axis-aligned bounding boxes; with ``free`` orientation, of the boxes centred with sorted extents.

    >>> box_iou([0, 0, 0], [2, 2, 2], [1, 0, 0], [3, 2, 2])
    0.3333333333333333
    >>> box_iou([0, 0, 0], [1, 2, 3], [5, 5, 5], [8, 7, 6], free=True)
    1.0
    """
    lo, hi, ref_lo, ref_hi = (np.asarray(x, dtype=float) for x in (lo, hi, ref_lo, ref_hi))
    ext, ref_ext = np.maximum(hi - lo, 0.0), np.maximum(ref_hi - ref_lo, 0.0)
    if free:
        ext, ref_ext = np.sort(ext), np.sort(ref_ext)
        inter = float(np.prod(np.minimum(ext, ref_ext)))
    else:
        inter = float(np.prod(np.maximum(np.minimum(hi, ref_hi) - np.maximum(lo, ref_lo), 0.0)))
    union = float(np.prod(ext)) + float(np.prod(ref_ext)) - inter
    return inter / union if union > 0 and np.isfinite(union) else 0.0


def _align(ref: Reference, part: Any, n_points: int) -> tuple[Any, np.ndarray]:
    """Move the part onto the reference: bbox centres matched, best of the 24 axis rotations by chamfer."""
    lo, hi = shape_bbox(part)
    v, f, _ = tessellate(part)
    pts = sample_surface(v, f, min(n_points, 2048), seed=2) - (lo + hi) / 2
    ref_center = (ref.lo + ref.hi) / 2
    target = ref.points - ref_center
    tree = make_tree(target)
    best = None
    for rot in rotations24():
        moved = pts @ rot.T
        d1 = nearest_distances(moved, target, tree)
        score = float(np.mean(d1**2))
        if best is None or score < best[0]:
            best = (score, rot)
    assert best is not None
    rot = best[1]
    translation = ref_center - rot @ ((lo + hi) / 2)
    return _transform_shape(part, rot, translation), rot
