"""Key dimensions: a task's named sizes and positions checked against a part's features."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from execgym.envs.cad.kernel.geometry import _canonical_direction


def _tol(value: float, abs_tol: float, rel_tol: float) -> float:
    return max(abs_tol, rel_tol * abs(value))


def _axis_vector(axis: Any) -> np.ndarray | None:
    if axis is None:
        return None
    if isinstance(axis, str):
        return np.eye(3)["xyz".index(axis.lower())]
    v = np.asarray(axis, dtype=float)
    return _canonical_direction(v)


def check_key_dims(
    key_dims: list[dict[str, Any]],
    feats: dict[str, Any],
    bbox: tuple[np.ndarray, np.ndarray],
    volume: float,
    *,
    abs_tol: float = 0.05,
    rel_tol: float = 0.005,
    pos_rel_tol: float = 0.0025,
    shape: Any = None,
) -> list[dict[str, Any]]:
    """Check each key dimension against a part's features; one ``{"label", "passed", "found"}`` per entry.

    Sizes must match within ``max(abs_tol, rel_tol * size)``, positions within
    ``max(abs_tol, pos_rel_tol * largest extent)``, counts exactly. A ``hole`` is a through hole unless
    its entry says ``"through": False`` (a blind one, whose depth a ``level`` entry checks), and so is an
    ``arc`` whose entry says ``"through": True`` (a through slot's rounded ends): given the
    part's ``shape``, each matching hole's axis must be free of material along its length and past both
    of its ends (see ``axis_blocked``), so that a shallow dimple of the right diameter does not pass.
    """
    lo, hi = bbox
    extent = hi - lo
    pos_tol = max(abs_tol, pos_rel_tol * float(extent.max() if extent.size else 0.0))
    results = []
    for spec in key_dims:
        kind = spec.get("kind")
        label = spec.get("label") or kind
        passed = False
        found: Any = None
        if kind == "extent":
            i = "xyz".index(spec["axis"])
            found = float(extent[i])
            passed = abs(found - spec["value"]) <= _tol(spec["value"], abs_tol, rel_tol)
        elif kind == "volume":
            found = volume
            passed = abs(volume - spec["value"]) <= max(abs_tol**3, rel_tol * abs(spec["value"]))
        elif kind in ("hole", "cylinder", "arc"):
            radius = spec["diameter"] / 2 if "diameter" in spec else spec["radius"]
            tol = _tol(radius, abs_tol / 2, rel_tol)
            axis = _axis_vector(spec.get("axis"))
            matches = []
            for g in feats["cylinders"]:
                if abs(g["radius"] - radius) > tol:
                    continue
                if kind == "hole" and (g["convex"] or not g["full"]):
                    continue
                if kind == "cylinder" and (not g["convex"] or not g["full"]):
                    continue
                if kind == "arc":
                    if g["full"]:
                        continue
                    if spec.get("convex") is not None and g["convex"] != bool(spec["convex"]):
                        continue
                if axis is not None and abs(float(np.dot(axis, g["axis"]))) < 0.999:
                    continue
                matches.append(g)
            count = int(spec.get("count", 1))
            found = len(matches)
            passed = found == count
            if passed and spec.get("centers"):
                passed = _centers_match(spec["centers"], matches, pos_tol)
                if not passed:
                    found = f"{found} at other positions"
            through = spec.get("through", kind == "hole")  # a slot's end arcs opt in with ``"through": True``
            if passed and kind in ("hole", "arc") and through and shape is not None:
                eps = max(abs_tol, 1e-3 * float(extent.max() if extent.size else 0.0))
                blind = sum(_axis_blocked_or_unknown(shape, g, eps) for g in matches)
                if blind:
                    passed = False
                    found = f"{found}, {blind} of them not through (material on the axis)"
        elif kind == "level":
            axis = _axis_vector(spec["axis"])
            levels = [p["offset"] for p in feats["planes"] if abs(float(np.dot(axis, p["normal"]))) > 0.999]
            value = float(spec["value"])
            near = [lv for lv in levels if abs(lv - value) <= pos_tol]
            passed = bool(near)
            found = near[0] if near else (min(levels, key=lambda lv: abs(lv - value)) if levels else None)
        elif kind == "chamfer":
            size = float(spec["size"])
            tol = _tol(size, abs_tol, rel_tol)
            matches = [
                c
                for c in feats["cones"]
                if abs((c["r_max"] - c["r_min"]) - size) <= tol
                and (
                    "diameter" not in spec
                    or abs(c["r_max"] - spec["diameter"] / 2) <= _tol(spec["diameter"] / 2, abs_tol / 2, rel_tol)
                )
            ]
            found = len(matches)
            passed = found == int(spec.get("count", 1))
        elif kind == "circle":
            radius = spec["diameter"] / 2
            tol = _tol(radius, abs_tol / 2, rel_tol)
            matches = [c for c in feats["circles"] if abs(c["radius"] - radius) <= tol]
            found = len(matches)
            passed = found == int(spec.get("count", 1))
        else:
            found = f"unknown kind {kind!r}"
        results.append({"label": label, "kind": kind, "passed": bool(passed), "found": found})
    return results


def axis_blocked(shape: Any, group: dict[str, Any], eps: float) -> bool:
    """Whether solid material lies on a hole's axis within its length, or just beyond either of its ends.

    A through hole is empty along its whole axis and opens out at both ends; a blind hole (a dimple, a
    drilled pocket) has material past its floor, and two blind holes meeting in the middle a skin between
    them. The axis is cut where it crosses the part's faces and a point inside each piece is classified.
    """
    from OCP.BRepClass3d import BRepClass3d_SolidClassifier
    from OCP.gp import gp_Dir, gp_Lin, gp_Pnt
    from OCP.IntCurvesFace import IntCurvesFace_ShapeIntersector
    from OCP.TopAbs import TopAbs_IN, TopAbs_ON

    if not group.get("t_range"):
        return True
    t0, t1 = group["t_range"][0] - eps, group["t_range"][1] + eps
    point, axis = np.asarray(group["point"], dtype=float), np.asarray(group["axis"], dtype=float)
    line = gp_Lin(gp_Pnt(*point.tolist()), gp_Dir(*axis.tolist()))
    cuts = IntCurvesFace_ShapeIntersector()
    cuts.Load(shape.wrapped, 1e-7)
    cuts.Perform(line, t0, t1)
    ts = sorted({t0, t1, *(float(cuts.WParameter(i)) for i in range(1, cuts.NbPnt() + 1))})
    probes = [(a + b) / 2 for a, b in itertools.pairwise(ts) if b - a > 1e-9]
    for t in probes:
        x = point + axis * t
        state = BRepClass3d_SolidClassifier(shape.wrapped, gp_Pnt(*x.tolist()), 1e-7).State()
        if state in (TopAbs_IN, TopAbs_ON):
            return True
    return False


def _axis_blocked_or_unknown(shape: Any, group: dict[str, Any], eps: float) -> bool:
    try:
        return axis_blocked(shape, group, eps)
    except Exception:  # a part the kernel cannot classify does not show a through hole
        return True


def _centers_match(centers: list[list[float]], groups: list[dict[str, Any]], tol: float) -> bool:
    """Every expected centre lies on a distinct group's axis (within ``tol``)."""
    used: set[int] = set()
    for c in centers:
        c = np.asarray(c, dtype=float)
        best = None
        for i, g in enumerate(groups):
            if i in used:
                continue
            axis = np.asarray(g["axis"])
            rel = c - np.asarray(g["point"])
            dist = float(np.linalg.norm(rel - axis * float(rel @ axis)))
            if dist <= tol and (best is None or dist < best[0]):
                best = (dist, i)
        if best is None:
            return False
        used.add(best[1])
    return True
