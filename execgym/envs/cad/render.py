"""Headless pictures of parts: a small numpy z-buffer rasteriser, a 5x7 bitmap font and a PNG writer.

No display, no OpenGL, no matplotlib: triangles (from the grader's tessellation) are projected
orthographically, shaded flat with a directional light, depth-tested per pixel, and the boundaries
between CAD faces are drawn as dark lines.

Example:
    >>> import numpy as np
    >>> V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    >>> F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    >>> picture = render_comparison((V, F, np.arange(4)), (V, F, np.arange(4)), tile=64)
    >>> picture.shape, picture.dtype
    ((164, 192, 3), dtype('uint8'))
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["VIEWS", "Mesh", "png_bytes", "rasterize", "render_comparison", "render_views", "save_png", "text_image"]

Mesh = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Vertices (N, 3), triangles (M, 3) and a CAD face id per triangle (M,)."""

BACKGROUND = np.array([246, 246, 243], dtype=np.float64)
PART_COLOR = np.array([226, 139, 62], dtype=np.float64)
TARGET_COLOR = np.array([84, 132, 201], dtype=np.float64)
LABEL_HEIGHT = 18


def _camera(forward: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Rows: screen right, screen up, towards the viewer (the direction the camera sits in)."""
    back = np.asarray(forward, dtype=float)
    back /= np.linalg.norm(back)
    right = np.cross(np.asarray(up, dtype=float), back)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(back, right), back])


VIEWS: dict[str, np.ndarray] = {
    "ISO": _camera((1.0, -1.0, 0.8)),
    "FRONT": _camera((0.0, -1.0, 0.0)),
    "TOP": _camera((0.0, 0.0, 1.0), up=(0.0, 1.0, 0.0)),
}
_LIGHT = np.array([-0.35, 0.55, 0.76]) / np.linalg.norm([-0.35, 0.55, 0.76])


def rasterize(
    mesh: Mesh, camera: np.ndarray, size: int, center: np.ndarray, extent: float, color: np.ndarray
) -> np.ndarray:
    """One shaded view (size x size x 3 uint8) of a mesh, framed on ``center`` with ``extent`` visible."""
    image = np.broadcast_to(BACKGROUND, (size, size, 3)).copy()
    vertices, triangles, face_ids = mesh
    if len(triangles) == 0:
        return image.astype(np.uint8)
    cam = (vertices - center) @ camera.T
    scale = 0.86 * size / (extent or 1.0)
    px = cam[:, 0] * scale + size / 2
    py = size / 2 - cam[:, 1] * scale
    depth = cam[:, 2]
    tri = triangles
    x, y, z = px[tri], py[tri], depth[tri]
    normals = np.cross(cam[tri[:, 1]] - cam[tri[:, 0]], cam[tri[:, 2]] - cam[tri[:, 0]])
    lengths = np.linalg.norm(normals, axis=1)
    normals = normals / np.where(lengths > 0, lengths, 1.0)[:, None]
    normals[normals[:, 2] < 0] *= -1  # two-sided: a visible back face is lit like a front face
    shade = 0.38 + 0.62 * np.clip(normals @ _LIGHT, 0.0, 1.0)
    # pixel centres at (i + 0.5): candidates are the pixels inside each triangle's bounding box
    x0 = np.clip(np.ceil(x.min(1) - 0.5), 0, size).astype(np.int64)
    x1 = np.clip(np.floor(x.max(1) - 0.5), -1, size - 1).astype(np.int64)
    y0 = np.clip(np.ceil(y.min(1) - 0.5), 0, size).astype(np.int64)
    y1 = np.clip(np.floor(y.max(1) - 0.5), -1, size - 1).astype(np.int64)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    keep = np.nonzero((w > 0) & (h > 0) & (lengths > 0))[0]
    counts = (w * h)[keep]
    total = int(counts.sum())
    if total == 0:
        return image.astype(np.uint8)
    owner = np.repeat(keep, counts)
    local = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    cx = x0[owner] + local % w[owner] + 0.5
    cy = y0[owner] + local // w[owner] + 0.5
    ax, ay, bx, by, qx, qy = x[owner, 0], y[owner, 0], x[owner, 1], y[owner, 1], x[owner, 2], y[owner, 2]
    det = (by - qy) * (ax - qx) + (qx - bx) * (ay - qy)
    det = np.where(np.abs(det) > 1e-12, det, 1e-12)
    l0 = ((by - qy) * (cx - qx) + (qx - bx) * (cy - qy)) / det
    l1 = ((qy - ay) * (cx - qx) + (ax - qx) * (cy - qy)) / det
    l2 = 1.0 - l0 - l1
    eps = -1e-9
    inside = (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
    if not inside.any():
        return image.astype(np.uint8)
    owner, cx, cy = owner[inside], cx[inside], cy[inside]
    zz = l0[inside] * z[owner, 0] + l1[inside] * z[owner, 1] + l2[inside] * z[owner, 2]
    pixel = (cy.astype(np.int64)) * size + cx.astype(np.int64)
    order = np.lexsort((zz, pixel))
    pixel_sorted = pixel[order]
    last = np.r_[pixel_sorted[1:] != pixel_sorted[:-1], True]
    winners = order[last]
    flat = image.reshape(-1, 3)
    face = np.full(size * size, -1, dtype=np.int64)
    flat[pixel[winners]] = shade[owner[winners], None] * color[None, :]
    face[pixel[winners]] = face_ids[owner[winners]]
    face = face.reshape(size, size)
    edge = np.zeros((size, size), dtype=bool)
    edge[:, :-1] |= face[:, :-1] != face[:, 1:]
    edge[:-1, :] |= face[:-1, :] != face[1:, :]
    image[edge] = image[edge] * 0.25 + np.array([40.0, 40.0, 40.0]) * 0.75
    return np.clip(image, 0, 255).astype(np.uint8)


def _framing(meshes: Sequence[Mesh | None]) -> tuple[np.ndarray, np.ndarray]:
    points = [m[0] for m in meshes if m is not None and len(m[0])]
    if not points:
        return np.zeros(3), np.ones(3)
    allp = np.concatenate(points)
    lo, hi = allp.min(0), allp.max(0)
    return (lo + hi) / 2, hi - lo


def render_views(
    mesh: Mesh | None,
    *,
    color: np.ndarray,
    center: np.ndarray,
    size: np.ndarray,
    tile: int = 240,
    label: str = "",
    empty_text: str = "NO PART",
) -> np.ndarray:
    """A strip of the ISO, FRONT and TOP views of one mesh with a label bar above it."""
    tiles = []
    for name, camera in VIEWS.items():
        corners = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)]) * size
        projected = corners @ camera.T
        extent = float(max(np.ptp(projected[:, 0]), np.ptp(projected[:, 1]))) or 1.0
        if mesh is None:
            view = np.broadcast_to(BACKGROUND, (tile, tile, 3)).astype(np.uint8).copy()
            _stamp(view, empty_text, tile // 2 - len(empty_text) * 6, tile // 2 - 7, scale=2, color=(150, 150, 150))
        else:
            view = rasterize(mesh, camera, tile, center, extent, color)
        _stamp(view, name, 6, 6, scale=1, color=(110, 110, 110))
        view[:, -1] = 215
        tiles.append(view)
    strip = np.concatenate(tiles, axis=1)
    bar = np.broadcast_to(np.array([232, 232, 228], dtype=np.uint8), (LABEL_HEIGHT, strip.shape[1], 3)).copy()
    _stamp(bar, label, 6, (LABEL_HEIGHT - 7 * 2) // 2, scale=2, color=tuple(int(c * 0.7) for c in color))
    return np.concatenate([bar, strip], axis=0)


def render_comparison(
    part: Mesh | None,
    target: Mesh | None,
    *,
    tile: int = 240,
    part_label: str = "YOUR PART",
    target_label: str = "TARGET",
) -> np.ndarray:
    """The agent's part (top row) above the target (bottom row), in three views, framed alike.

    The shared framing makes sizes comparable between the rows: a part twice too big looks twice as big.
    """
    center, size = _framing([part, target])
    top = render_views(part, color=PART_COLOR, center=center, size=size, tile=tile, label=part_label)
    bottom = render_views(
        target, color=TARGET_COLOR, center=center, size=size, tile=tile, label=target_label, empty_text="NO TARGET"
    )
    return np.concatenate([top, bottom], axis=0)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an HxWx3 (or HxW, or HxWx4) uint8 image as PNG bytes (no imaging library needed).

    Example:
        >>> png_bytes(np.zeros((4, 5, 3), np.uint8))[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
        True
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 or HxWx4 image, got shape {array.shape}")
    array = np.ascontiguousarray(np.clip(array, 0, 255).astype(np.uint8))
    height, width, channels = array.shape
    raw = b"".join(b"\x00" + array[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an HxWx3 (or HxW) uint8 image as a PNG file; returns the path.

    Example:
        >>> import tempfile, os
        >>> p = save_png(np.zeros((4, 5, 3), np.uint8), os.path.join(tempfile.mkdtemp(), "x.png"))
        >>> p.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
        True
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png_bytes(image))
    return out


# ============================================================================================ 5x7 font

_GLYPHS = {
    "A": "01110100011000111111100011000110001",
    "B": "11110100011000111110100011000111110",
    "C": "01110100011000010000100001000101110",
    "D": "11110100011000110001100011000111110",
    "E": "11111100001000011110100001000011111",
    "F": "11111100001000011110100001000010000",
    "G": "01110100011000010111100011000101111",
    "H": "10001100011000111111100011000110001",
    "I": "01110001000010000100001000010001110",
    "J": "00111000100001000010000101001001100",
    "K": "10001100101010011000101001001010001",
    "L": "10000100001000010000100001000011111",
    "M": "10001110111010110101100011000110001",
    "N": "10001100011100110101100111000110001",
    "O": "01110100011000110001100011000101110",
    "P": "11110100011000111110100001000010000",
    "Q": "01110100011000110001101011001001101",
    "R": "11110100011000111110101001001010001",
    "S": "01111100001000001110000010000111110",
    "T": "11111001000010000100001000010000100",
    "U": "10001100011000110001100011000101110",
    "V": "10001100011000110001100010101000100",
    "W": "10001100011000110101101011010101010",
    "X": "10001100010101000100010101000110001",
    "Y": "10001100010101000100001000010000100",
    "Z": "11111000010001000100010001000011111",
    "0": "01110100011001110101110011000101110",
    "1": "00100011000010000100001000010001110",
    "2": "01110100010000100010001000100011111",
    "3": "11111000100010000010000011000101110",
    "4": "00010001100101010010111110001000010",
    "5": "11111100001111000001000011000101110",
    "6": "00110010001000011110100011000101110",
    "7": "11111000010001000100010000100001000",
    "8": "01110100011000101110100011000101110",
    "9": "01110100011000101111000010001001100",
    " ": "0" * 35,
    "-": "00000000000000011111000000000000000",
    ".": "00000000000000000000000000110001100",
    ":": "00000011000110000000011000110000000",
    "(": "00010001000100001000010000010000010",
    ")": "01000001000001000010000100010001000",
    "/": "00000000010001000100010001000000000",
    "%": "11000110010001000100010001001100011",
    "=": "00000000001111100000111110000000000",
}


def _stamp(
    image: np.ndarray, text: str, x: int, y: int, *, scale: int = 1, color: tuple[int, int, int] = (60, 60, 60)
) -> None:
    """Draw ``text`` (upper case letters, digits, a little punctuation) into ``image`` in place."""
    cursor = x
    for char in text.upper():
        glyph = _GLYPHS.get(char, _GLYPHS[" "])
        bits = np.array([int(b) for b in glyph], dtype=bool).reshape(7, 5)
        bits = np.kron(bits, np.ones((scale, scale), dtype=bool))
        h, w = bits.shape
        y0, x0 = max(y, 0), max(cursor, 0)
        y1, x1 = min(y + h, image.shape[0]), min(cursor + w, image.shape[1])
        if y1 > y0 and x1 > x0:
            region = image[y0:y1, x0:x1]
            mask = bits[y0 - y : y1 - y, x0 - cursor : x1 - cursor]
            region[mask] = color
        cursor += 6 * scale


def text_image(text: str, *, width: int = 400, height: int = 40, scale: int = 2) -> np.ndarray:
    """A small picture holding one line of text (used when there is nothing to draw).

    >>> text_image("NO PART").shape
    (40, 400, 3)
    """
    image = np.broadcast_to(BACKGROUND, (height, width, 3)).astype(np.uint8).copy()
    _stamp(image, text, 6, (height - 7 * scale) // 2, scale=scale)
    return image
