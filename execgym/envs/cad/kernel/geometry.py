"""Measurements and B-rep features of shapes (bounding boxes, volumes, cylinders, planes, circles, cones)."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from execgym.envs.cad.kernel.programs import _cq

TWO_PI = 2.0 * math.pi


def shape_bbox(shape: Any) -> tuple[np.ndarray, np.ndarray]:
    """The tight axis-aligned bounding box (min corner, max corner), from the exact geometry."""
    from OCP.Bnd import Bnd_Box
    from OCP.BRepBndLib import BRepBndLib

    box = Bnd_Box()
    BRepBndLib.AddOptimal_s(shape.wrapped, box, False, False)
    if box.IsVoid():
        return np.zeros(3), np.zeros(3)
    x0, y0, z0, x1, y1, z1 = box.Get()
    return np.array([x0, y0, z0]), np.array([x1, y1, z1])


def measure(shape: Any) -> dict[str, Any]:
    """Volume, bounding box, counts and validity of a shape (what the agent sees after a run)."""
    from OCP.BRep import BRep_Tool

    lo, hi = shape_bbox(shape)
    solids = shape.Solids()
    shells = shape.Shells()
    faces = shape.Faces()
    try:
        volume = float(sum(s.Volume() for s in solids))  # a wire's or a sheet's "volume" means nothing
    except Exception:
        volume = 0.0
    try:
        area = float(shape.Area())
    except Exception:
        area = 0.0
    try:
        valid = bool(shape.isValid())
    except Exception:
        valid = False
    closed = bool(shells) and all(BRep_Tool.IsClosed_s(s.wrapped) for s in shells)
    faces_in_solids = sum(len(s.Faces()) for s in solids)
    closed = closed and faces_in_solids == len(faces)
    return {
        "volume": volume,
        "area": area,
        "bbox_min": lo.tolist(),
        "bbox_max": hi.tolist(),
        "size": (hi - lo).tolist(),
        "solids": len(solids),
        "shells": len(shells),
        "faces": len(faces),
        "edges": len(shape.Edges()),
        "valid": valid,
        "closed": closed,
        "valid_solid": bool(solids) and valid and closed and volume > 1e-9,
    }


def export_brep(shape: Any) -> bytes:
    buf = io.BytesIO()
    shape.exportBrep(buf)
    return buf.getvalue()


def import_brep(data: bytes) -> Any:
    cq = _cq()
    shape = cq.Shape.importBrep(io.BytesIO(data))
    if shape is None or shape.wrapped.IsNull():
        raise ValueError("the BREP data holds no shape")
    return shape


def features(shape: Any) -> dict[str, Any]:
    """Cylindrical surfaces (grouped by axis and radius), axis-aligned planes and circular edges.

    These are what key dimensions are checked against: a hole is a concave cylinder group whose faces
    go all the way round, a fillet a partial one, a step a plane at some height, a chamfer or
    countersink a circle of some diameter.
    """
    from OCP.BRepAdaptor import BRepAdaptor_Curve, BRepAdaptor_Surface
    from OCP.BRepGProp import BRepGProp_Face
    from OCP.GeomAbs import GeomAbs_Circle, GeomAbs_Cone, GeomAbs_Cylinder, GeomAbs_Plane
    from OCP.gp import gp_Pnt, gp_Vec

    groups: dict[tuple, dict[str, Any]] = {}
    planes: list[dict[str, Any]] = []
    cones: list[dict[str, Any]] = []
    for face in shape.Faces():
        surface = BRepAdaptor_Surface(face.wrapped)
        kind = surface.GetType()
        if kind == GeomAbs_Cylinder:
            cyl = surface.Cylinder()
            axis = cyl.Axis()
            loc = np.array([axis.Location().X(), axis.Location().Y(), axis.Location().Z()])
            direction = np.array([axis.Direction().X(), axis.Direction().Y(), axis.Direction().Z()])
            direction = _canonical_direction(direction)
            foot = loc - direction * float(loc @ direction)
            u0, u1 = surface.FirstUParameter(), surface.LastUParameter()
            v0, v1 = surface.FirstVParameter(), surface.LastVParameter()
            point, normal = gp_Pnt(), gp_Vec()
            BRepGProp_Face(face.wrapped).Normal((u0 + u1) / 2, (v0 + v1) / 2, point, normal)
            p = np.array([point.X(), point.Y(), point.Z()])
            radial = (p - loc) - direction * float((p - loc) @ direction)
            n = np.array([normal.X(), normal.Y(), normal.Z()])
            convex = bool(n @ radial > 0)
            radius = float(cyl.Radius())
            key = (round(radius, 4), convex, *np.round(direction, 5), *np.round(foot, 4))
            group = groups.setdefault(
                key,
                {
                    "radius": radius,
                    "convex": convex,
                    "axis": direction.tolist(),
                    "point": foot.tolist(),
                    "span": 0.0,
                    "t_range": [math.inf, -math.inf],
                },
            )
            group["span"] += abs(u1 - u0)
            # The face's extent along the (canonical) axis, measured from ``point``: where a hole starts and ends.
            own = np.array([cyl.Axis().Direction().X(), cyl.Axis().Direction().Y(), cyl.Axis().Direction().Z()])
            base, sign = float((loc - foot) @ direction), float(own @ direction)
            for v in (v0, v1):
                if math.isfinite(v):
                    t = base + v * sign
                    group["t_range"] = [min(group["t_range"][0], t), max(group["t_range"][1], t)]
        elif kind == GeomAbs_Plane:
            pln = surface.Plane()
            ax = pln.Axis()
            normal = _canonical_direction(np.array([ax.Direction().X(), ax.Direction().Y(), ax.Direction().Z()]))
            origin = np.array([ax.Location().X(), ax.Location().Y(), ax.Location().Z()])
            planes.append({"normal": normal.tolist(), "offset": float(origin @ normal)})
        elif kind == GeomAbs_Cone:
            cone = surface.Cone()
            direction = cone.Axis().Direction()
            radii = []
            for edge in face.Edges():
                curve = BRepAdaptor_Curve(edge.wrapped)
                if curve.GetType() == GeomAbs_Circle:
                    radii.append(float(curve.Circle().Radius()))
                else:
                    radii.append(0.0 if edge.Length() < 1e-9 else -1.0)
            known = [r for r in radii if r >= 0]
            if known:
                cones.append(
                    {
                        "axis": _canonical_direction(np.array([direction.X(), direction.Y(), direction.Z()])).tolist(),
                        "semi_angle": float(cone.SemiAngle()),
                        "r_min": min(known),
                        "r_max": max(known),
                    }
                )
    circles: dict[tuple, dict[str, Any]] = {}
    for edge in shape.Edges():
        curve = BRepAdaptor_Curve(edge.wrapped)
        if curve.GetType() != GeomAbs_Circle:
            continue
        circ = curve.Circle()
        center = np.array([circ.Location().X(), circ.Location().Y(), circ.Location().Z()])
        direction = _canonical_direction(
            np.array([circ.Axis().Direction().X(), circ.Axis().Direction().Y(), circ.Axis().Direction().Z()])
        )
        key = (round(circ.Radius(), 4), *np.round(center, 4), *np.round(direction, 5))
        circles.setdefault(key, {"radius": float(circ.Radius()), "center": center.tolist(), "axis": direction.tolist()})
    cylinders = list(groups.values())
    for group in cylinders:
        group["full"] = group["span"] >= TWO_PI - 1e-3
        if not all(math.isfinite(t) for t in group["t_range"]):
            group["t_range"] = None
    return {"cylinders": cylinders, "planes": planes, "circles": list(circles.values()), "cones": cones}


def _canonical_direction(v: np.ndarray) -> np.ndarray:
    v = v / (np.linalg.norm(v) or 1.0)
    i = int(np.argmax(np.abs(v)))
    return -v if v[i] < 0 else v
