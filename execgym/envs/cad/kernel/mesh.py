"""Mesh math: tessellation, volumes, surface samples, nearest distances, voxel IoU, STL files."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from execgym.envs.cad.kernel.geometry import shape_bbox


def tessellate(shape: Any, tolerance: float | None = None, angular: float = 0.2) -> tuple[np.ndarray, ...]:
    """Triangulate a shape: vertices (N,3) float64, triangles (M,3) int64 outward-oriented, face ids (M,)."""
    from OCP.BRep import BRep_Tool
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.TopAbs import TopAbs_REVERSED
    from OCP.TopLoc import TopLoc_Location

    lo, hi = shape_bbox(shape)
    if tolerance is None:
        tolerance = max(1e-4, 1e-3 * float(np.linalg.norm(hi - lo)))
    BRepMesh_IncrementalMesh(shape.wrapped, tolerance, False, angular, False)
    verts: list[np.ndarray] = []
    tris: list[np.ndarray] = []
    fids: list[np.ndarray] = []
    offset = 0
    for face_id, face in enumerate(shape.Faces()):
        loc = TopLoc_Location()
        poly = BRep_Tool.Triangulation_s(face.wrapped, loc)
        if poly is None:
            continue
        trsf = loc.Transformation()
        n_nodes = poly.NbNodes()
        nodes = np.empty((n_nodes, 3))
        for i in range(n_nodes):
            p = poly.Node(i + 1).Transformed(trsf)
            nodes[i] = (p.X(), p.Y(), p.Z())
        n_tri = poly.NbTriangles()
        t = np.empty((n_tri, 3), dtype=np.int64)
        for i in range(n_tri):
            t[i] = poly.Triangle(i + 1).Get()
        t -= 1
        if face.wrapped.Orientation() == TopAbs_REVERSED:
            t = t[:, ::-1]
        verts.append(nodes)
        tris.append(t + offset)
        fids.append(np.full(n_tri, face_id, dtype=np.int64))
        offset += n_nodes
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(verts), np.concatenate(tris), np.concatenate(fids)


def mesh_volume(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Signed volume of a closed, outward-oriented triangle mesh."""
    if len(triangles) == 0:
        return 0.0
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def sample_surface(vertices: np.ndarray, triangles: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points drawn uniformly (by area) on a triangle mesh, reproducibly."""
    if len(triangles) == 0:
        return np.zeros((0, 3))
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = areas.sum()
    if not total > 0:
        return np.repeat(a[:1], n, axis=0)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(areas), size=n, p=areas / total)
    r1 = np.sqrt(rng.random(n))
    r2 = rng.random(n)
    return (1 - r1)[:, None] * a[idx] + (r1 * (1 - r2))[:, None] * b[idx] + (r1 * r2)[:, None] * c[idx]


def nearest_distances(queries: np.ndarray, points: np.ndarray, tree: Any = None) -> np.ndarray:
    """Distance from each query point to its nearest neighbour in ``points`` (scipy KD-tree when present)."""
    if len(points) == 0 or len(queries) == 0:
        return np.full(len(queries), np.inf)
    if tree is None:
        tree = make_tree(points)
    if tree is not None:
        dist, _ = tree.query(queries, k=1)
        return np.asarray(dist, dtype=float)
    out = np.empty(len(queries))
    sq = (points**2).sum(1)
    for s in range(0, len(queries), 512):
        q = queries[s : s + 512]
        d2 = (q**2).sum(1)[:, None] - 2 * q @ points.T + sq[None, :]
        out[s : s + 512] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def make_tree(points: np.ndarray) -> Any:
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        return None
    return cKDTree(points)


def voxelize(
    vertices: np.ndarray, triangles: np.ndarray, origin: np.ndarray, pitch: float, shape: tuple[int, int, int]
) -> np.ndarray:
    """Occupancy grid of a closed mesh by ray parity along Z (voxel centres at origin + (i + 0.5) * pitch)."""
    nx, ny, nz = shape
    grid = np.zeros(shape, dtype=bool)
    if len(triangles) == 0:
        return grid
    tri = (vertices[triangles] - origin) / pitch - 0.5  # index space: voxel i's centre sits at i
    tx, ty, tz = tri[:, :, 0], tri[:, :, 1], tri[:, :, 2]
    i0 = np.clip(np.ceil(tx.min(1)), 0, nx).astype(np.int64)
    i1 = np.clip(np.floor(tx.max(1)), -1, nx - 1).astype(np.int64)
    j0 = np.clip(np.ceil(ty.min(1)), 0, ny).astype(np.int64)
    j1 = np.clip(np.floor(ty.max(1)), -1, ny - 1).astype(np.int64)
    ni, nj = i1 - i0 + 1, j1 - j0 + 1
    keep = (ni > 0) & (nj > 0)
    if not keep.any():
        return grid
    idx_t = np.nonzero(keep)[0]
    counts = (ni * nj)[idx_t]
    tri_of = np.repeat(idx_t, counts)
    local = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    ci = i0[tri_of] + local // nj[tri_of]
    cj = j0[tri_of] + local % nj[tri_of]
    ax, ay = tx[tri_of, 0], ty[tri_of, 0]
    bx, by = tx[tri_of, 1], ty[tri_of, 1]
    cx, cy = tx[tri_of, 2], ty[tri_of, 2]
    det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    ok = np.abs(det) > 1e-12
    det = np.where(ok, det, 1.0)
    w0 = ((by - cy) * (ci - cx) + (cx - bx) * (cj - cy)) / det
    w1 = ((cy - ay) * (ci - cx) + (ax - cx) * (cj - cy)) / det
    w2 = 1.0 - w0 - w1
    inside = ok & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    z = w0 * tz[tri_of, 0] + w1 * tz[tri_of, 1] + w2 * tz[tri_of, 2]
    col = (ci * ny + cj)[inside]
    pos = np.clip(np.floor(z[inside]).astype(np.int64) + 1, 0, nz)
    crossings = np.zeros((nx * ny, nz + 1), dtype=np.int32)
    np.add.at(crossings, (col, pos), 1)
    parity = np.cumsum(crossings, axis=1)[:, :nz] % 2 == 1
    return parity.reshape(nx, ny, nz)


def voxel_iou(
    mesh_a: tuple[np.ndarray, np.ndarray], mesh_b: tuple[np.ndarray, np.ndarray], resolution: int = 128
) -> float:
    """Volume IoU of two closed meshes on a shared voxel grid (``resolution`` cells on the longest side)."""
    va, fa = mesh_a
    vb, fb = mesh_b
    if len(fa) == 0 or len(fb) == 0:
        return 0.0
    lo = np.minimum(va.min(0), vb.min(0))
    hi = np.maximum(va.max(0), vb.max(0))
    pitch = float((hi - lo).max()) / resolution or 1.0
    # An irrational shift keeps voxel centres off the faces and edges of axis-aligned parts.
    origin = lo - pitch * np.array([0.5 + 0.01234, 0.5 + 0.02345, 0.5 + 0.03456])
    shape = tuple(int(s) for s in np.ceil((hi - origin) / pitch) + 1)
    a = voxelize(va, fa, origin, pitch, shape)
    b = voxelize(vb, fb, origin, pitch, shape)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def read_stl(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of an STL file (binary or ASCII), duplicate vertices merged."""
    tris: np.ndarray
    if len(data) >= 84:
        (count,) = struct.unpack_from("<I", data, 80)
        if 84 + count * 50 == len(data):
            rec = np.frombuffer(
                data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), count=count, offset=84
            )
            tris = rec["v"].astype(np.float64)
            return _merge_vertices(tris)
    text = data.decode("utf-8", errors="replace")
    coords = [line.split()[1:4] for line in text.splitlines() if line.strip().startswith("vertex")]
    if not coords or len(coords) % 3:
        raise ValueError("not a readable STL file (binary or ASCII)")
    tris = np.array(coords, dtype=np.float64).reshape(-1, 3, 3)
    return _merge_vertices(tris)


def _merge_vertices(tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = tris.reshape(-1, 3)
    keys = np.round(flat, 9)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1, 3).astype(np.int64)


def rotations24() -> list[np.ndarray]:
    """The 24 rotations that map the coordinate axes onto each other (the cube's rotation group)."""
    out = []
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        for signs in (
            (1, 1, 1),
            (1, 1, -1),
            (1, -1, 1),
            (1, -1, -1),
            (-1, 1, 1),
            (-1, 1, -1),
            (-1, -1, 1),
            (-1, -1, -1),
        ):
            m = np.zeros((3, 3))
            for row, (col, s) in enumerate(zip(perm, signs)):
                m[row, col] = s
            if np.linalg.det(m) > 0:
                out.append(m)
    return out
