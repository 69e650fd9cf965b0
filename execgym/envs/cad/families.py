"""Parametric part families: each draws seeded dimensions and writes a part's reference CadQuery program,
its two descriptions (CADPrompt's abstract one and the one with measurements) and its key dimensions.

Pure Python (no CadQuery): programs are text, run only by the kernel worker. Units are millimetres. Every
part's placement is part of its description, because parts are compared in place with the target.

Difficulty comes from the number of features: level 0 (``easy``) is the bare part, each higher level
adds features (more holes, fillets, chamfers, a lip, a hub, ...).

Example:
    >>> import numpy as np
    >>> spec = FAMILIES["plate_holes"].generate(np.random.default_rng(0), 1)
    >>> spec.family, spec.difficulty, "result" in spec.code
    ('plate_holes', 'medium', True)
    >>> [d["kind"] for d in spec.key_dims][:3]
    ['extent', 'extent', 'extent']
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = ["DIFFICULTY_LEVELS", "FAMILIES", "Family", "PartSpec", "fmt"]

DIFFICULTY_LEVELS = ("easy", "medium", "hard")

PLACEMENT_FLAT = "It lies on the XY plane (bottom face at Z = 0), centred on the origin in X and Y."
PLACEMENT_FLAT_ABSTRACT = "It lies flat on the XY plane, centred on the origin."
PLACEMENT_AXIAL = "Its axis is the Z axis and its bottom face lies on the XY plane (Z = 0)."
PLACEMENT_AXIAL_ABSTRACT = "It stands upright on the XY plane, centred on the Z axis."


def fmt(x: float) -> str:
    """A dimension as a person writes it: ``fmt(6.0) == '6'``, ``fmt(2.50) == '2.5'``.

    >>> fmt(6.0), fmt(2.5), fmt(-0.0), fmt(1 / 3)
    ('6', '2.5', '0', '0.333')
    """
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _pick(rng: np.random.Generator, lo: float, hi: float, step: float = 1.0) -> float:
    """A value in [lo, hi] on a grid of ``step`` (friendly numbers)."""
    n = math.floor((hi - lo) / step + 1e-9)
    return round(lo + step * int(rng.integers(0, max(n, 0) + 1)), 6)


def _choice(rng: np.random.Generator, options: list[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


@dataclass(frozen=True)
class PartSpec:
    """One generated part: program, descriptions, key dimensions, features.

    Attributes:
        family: the family's name.
        level: 0, 1 or 2 (``difficulty`` is its name).
        params: the dimensions the part was built from.
        code: the reference CadQuery program (leaves the part in ``result``).
        prompt_detailed: the description with measurements and placement.
        prompt_abstract: the description in words only, without measurements.
        key_dims: the dimensions the grader checks (see ``kernel.check_key_dims``).
        features: the part's features, one name each (their number sets the difficulty).
    """

    family: str
    level: int
    params: Mapping[str, Any]
    code: str
    prompt_detailed: str
    prompt_abstract: str
    key_dims: list[dict[str, Any]] = field(default_factory=list)
    features: list[str] = field(default_factory=list)

    @property
    def difficulty(self) -> str:
        return DIFFICULTY_LEVELS[self.level]


class Family(abc.ABC):
    """A parametric part family. Subclasses draw parameters and turn them into a :class:`PartSpec`.

    ``key_params(params)`` names the parameters whose change by 10% must change the grade (the tests
    check it for every family).
    """

    name: ClassVar[str]
    title: ClassVar[str]

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        """Seeded dimensions for a part of this level."""

    @abc.abstractmethod
    def build(self, p: Mapping[str, Any]) -> PartSpec:
        """The part for these dimensions."""

    @abc.abstractmethod
    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        """Parameters that are key dimensions of this part."""

    def generate(self, rng: np.random.Generator, level: int) -> PartSpec:
        if level not in (0, 1, 2):
            raise ValueError(f"level must be 0, 1 or 2, got {level!r}")
        params = self.sample(rng, level)
        params["level"] = level
        return self.build(params)

    def _spec(
        self,
        p: Mapping[str, Any],
        code: str,
        detailed: str,
        abstract: str,
        key_dims: list[dict[str, Any]],
        features: list[str],
    ) -> PartSpec:
        return PartSpec(
            self.name, int(p["level"]), dict(p), code.strip() + "\n", detailed, abstract, key_dims, features
        )


def _extents(x: float, y: float, z: float) -> list[dict[str, Any]]:
    return [
        {"kind": "extent", "axis": "x", "value": x, "label": f"size along X = {fmt(x)}"},
        {"kind": "extent", "axis": "y", "value": y, "label": f"size along Y = {fmt(y)}"},
        {"kind": "extent", "axis": "z", "value": z, "label": f"size along Z = {fmt(z)}"},
    ]


def _grid(nx: int, ny: int, sx: float, sy: float) -> list[tuple[float, float]]:
    xs = [(i - (nx - 1) / 2) * sx for i in range(nx)]
    ys = [(j - (ny - 1) / 2) * sy for j in range(ny)]
    return [(x, y) for x in xs for y in ys]


def _count_words(n: int) -> str:
    words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 8: "eight", 10: "ten", 12: "twelve"}
    return words.get(n, str(n))


def _top_edge_chamfer(size: float, diameter: float) -> dict[str, Any]:
    """The key dimension of a round part's chamfered top outer edge (``diameter`` across, before the chamfer)."""
    return {
        "kind": "chamfer",
        "size": size,
        "diameter": diameter,
        "count": 1,
        "label": f"{fmt(size)} mm chamfer on the top outer edge",
    }


def _plate_params(
    length: float, width: float, thickness: float, grid: tuple[int, int], margins: tuple[float, float], **sizes: float
) -> dict[str, Any]:
    """A flat plate's parameters: its size, its holes' ``sizes``, and a centred ``grid`` of them inside ``margins``."""
    (nx, ny), (margin_x, margin_y) = grid, margins
    return {
        "length": length,
        "width": width,
        "thickness": thickness,
        **sizes,
        "nx": nx,
        "ny": ny,
        "pitch_x": (length - 2 * margin_x) / (nx - 1) if nx > 1 else 0.0,
        "pitch_y": (width - 2 * margin_y) / (ny - 1) if ny > 1 else 0.0,
    }


def _plate_program(p: Mapping[str, Any], sizes: str) -> list[str]:
    """The head of a flat plate's program, up to its top workplane (vertical corners rounded with ``fillet_r``)."""
    lines = [
        "import cadquery as cq",
        "",
        f"length, width, thickness = {p['length']}, {p['width']}, {p['thickness']}",
        sizes,
        "",
        "result = (",
        '    cq.Workplane("XY")',
        "    .box(length, width, thickness, centered=(True, True, False))",
    ]
    if "fillet_r" in p:
        lines.append(f'    .edges("|Z").fillet({p["fillet_r"]})')
    lines.append('    .faces(">Z").workplane()')
    return lines


def _hole_grid(p: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The key dimension of a plate's grid of ``hole_d`` through holes along Z, at the grid's centres."""
    nx, ny = int(p["nx"]), int(p["ny"])
    centers = _grid(nx, ny, p["pitch_x"], p["pitch_y"])
    return {
        "kind": "hole",
        "diameter": p["hole_d"],
        "count": nx * ny,
        "axis": "z",
        "centers": [[x, y, 0.0] for x, y in centers],
        "label": label,
    }


class _FlatPlate(Family):
    """A flat plate with a centred grid of holes (see :func:`_plate_params`); ``fillet_r`` rounds its corners."""

    hole_feature: ClassVar[str] = "hole"
    corners: ClassVar[tuple[str, str]] = ("corner fillets {r}", " Its corners are rounded.")
    """The key dimension's label of the rounded corners and what the abstract description adds."""

    def _plate_spec(
        self, p: Mapping[str, Any], lines: list[str], text: tuple[str, str], key: list[dict[str, Any]]
    ) -> PartSpec:
        detailed, abstract = text
        features = ["plate"] + [self.hole_feature] * (int(p["nx"]) * int(p["ny"]))
        if "fillet_r" in p:
            r = p["fillet_r"]
            label, note = self.corners
            key.append({"kind": "arc", "radius": r, "count": 4, "convex": True, "label": label.format(r=fmt(r))})
            features.append("fillet")
            detailed += f" Round the four vertical corner edges with a {fmt(r)} mm radius."
            abstract += note
        return self._spec(p, "\n".join(lines), detailed, abstract, key, features)


# ============================================================================================ plate_holes


class PlateWithHoles(_FlatPlate):
    """A rectangular plate with a centred grid of through holes (and rounded corners when hard)."""

    name = "plate_holes"
    title = "mounting plate with a hole pattern"
    corners = ("corner fillets of radius {r}", " Its four corners are rounded.")
    GRIDS: ClassVar[dict[int, tuple[int, int]]] = {0: (1, 1), 1: (2, 2), 2: (3, 2)}

    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        nx, ny = self.GRIDS[level]
        d = _choice(rng, [3.0, 4.0, 5.0, 6.0, 8.0])
        length = _pick(rng, 60, 120, 5)
        width = _pick(rng, 40, min(90, length - 10), 5)
        thickness = _pick(rng, 4, 12, 1)
        margin_x = _pick(rng, max(2 * d, 10), max(2 * d, length / 4), 1)
        margin_y = _pick(rng, max(2 * d, 10), max(2 * d, width / 4), 1)
        p = _plate_params(length, width, thickness, (nx, ny), (margin_x, margin_y), hole_d=d)
        if level == 2:
            p["fillet_r"] = _pick(rng, 2, max(2, min(margin_x, margin_y) / 2), 0.5)
        return p

    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        names = ["length", "width", "thickness", "hole_d"]
        names += ["pitch_x"] if p["nx"] > 1 else []
        names += ["pitch_y"] if p["ny"] > 1 else []
        return names + (["fillet_r"] if "fillet_r" in p else [])

    def build(self, p: Mapping[str, Any]) -> PartSpec:
        L, W, T, d = p["length"], p["width"], p["thickness"], p["hole_d"]
        nx, ny = int(p["nx"]), int(p["ny"])
        n = nx * ny
        lines = _plate_program(p, f"hole_diameter = {d}")
        if n > 1:
            lines.append(f"    .rarray({p['pitch_x'] or 1.0}, {p['pitch_y'] or 1.0}, {nx}, {ny})")
        lines += ["    .hole(hole_diameter)", ")"]
        key = [*_extents(L, W, T), _hole_grid(p, f"{n} through hole(s) of diameter {fmt(d)} at the given positions")]
        if n == 1:
            holes = f"Drill one through hole of diameter {fmt(d)} mm at the centre of the plate."
            holes_abs = "It has a single round through hole in the middle."
        else:
            rows = []
            if nx > 1:
                rows.append(f"{fmt(p['pitch_x'])} mm apart along X")
            if ny > 1:
                rows.append(f"{fmt(p['pitch_y'])} mm apart along Y")
            holes = (
                f"Drill {_count_words(n)} through holes of diameter {fmt(d)} mm through the thickness in a "
                f"{nx} x {ny} grid centred on the plate, {' and '.join(rows)}."
            )
            holes_abs = f"It has {_count_words(n)} small round through holes arranged in an even grid."
        detailed = (
            f"Model a flat rectangular mounting plate, {fmt(L)} mm long along X, {fmt(W)} mm wide along Y "
            f"and {fmt(T)} mm thick along Z. {PLACEMENT_FLAT} {holes}"
        )
        abstract = f"A flat rectangular mounting plate. {PLACEMENT_FLAT_ABSTRACT} {holes_abs}"
        return self._plate_spec(p, lines, (detailed, abstract), key)


# ============================================================================================= l_bracket


class LBracket(Family):
    """An L-shaped angle bracket; harder ones add an inner fillet, bolt holes and a rounded heel."""

    name = "l_bracket"
    title = "L-bracket with fillets"

    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        t = _pick(rng, 4, 10, 1)
        p: dict[str, Any] = {
            "base": _pick(rng, 50, 100, 5),
            "height": _pick(rng, 40, 90, 5),
            "width": _pick(rng, 24, 60, 2),
            "thickness": t,
        }
        if level >= 1:
            p["inner_r"] = _pick(rng, 2, min(t, 6), 0.5)
            p["hole_d"] = _pick(rng, 4, min(10, p["width"] / 3), 0.5)
        if level == 2:
            p["outer_r"] = _pick(rng, 1, t / 2, 0.5)
        return p

    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        return ["base", "height", "width", "thickness"] + [k for k in ("inner_r", "hole_d", "outer_r") if k in p]

    def build(self, p: Mapping[str, Any]) -> PartSpec:
        a, h, w, t = p["base"], p["height"], p["width"], p["thickness"]
        level = int(p["level"])
        lines = [
            "import cadquery as cq",
            "",
            f"base, height, width, thickness = {a}, {h}, {w}, {t}",
            "",
            "# L profile in the XZ plane, extruded symmetrically along Y",
            "profile = [(0, 0), (base, 0), (base, thickness), (thickness, thickness), (thickness, height),"
            " (0, height)]",
            'result = cq.Workplane("XZ").polyline(profile).close().extrude(width / 2, both=True)',
        ]
        key = [
            *_extents(a, w, h),
            {"kind": "level", "axis": "z", "value": t, "label": f"top of the base leg at Z = {fmt(t)}"},
            {"kind": "level", "axis": "x", "value": t, "label": f"inner face of the upright leg at X = {fmt(t)}"},
        ]
        detailed = (
            f"Model an L-shaped angle bracket of constant thickness {fmt(t)} mm and width {fmt(w)} mm along Y, "
            f"centred on Y = 0. The horizontal leg lies on the XY plane (bottom at Z = 0) and runs from "
            f"X = 0 to X = {fmt(a)}; the vertical leg stands at X = 0 to X = {fmt(t)} and rises to "
            f"Z = {fmt(h)}."
        )
        abstract = (
            "An L-shaped angle bracket made of two flat legs of the same thickness meeting at a right angle: "
            "one lying on the XY plane along +X, one standing up along +Z from its end at the origin."
        )
        features = ["base leg", "upright leg"]
        if level >= 1:
            ri, d = p["inner_r"], p["hole_d"]
            xb = (t + a) / 2
            lines += [
                "",
                "# round the inside corner where the legs meet",
                f"result = result.edges(cq.selectors.NearestToPointSelector(({t}, 0, {t}))).fillet({ri})",
                "",
                "# bolt hole through the horizontal leg",
                f'result = result.cut(cq.Workplane("XY").center({xb}, 0).circle({d} / 2).extrude(thickness))',
            ]
            key += [
                {"kind": "arc", "radius": ri, "count": 1, "convex": False, "label": f"inner fillet radius {fmt(ri)}"},
                {
                    "kind": "hole",
                    "diameter": d,
                    "count": 2 if level == 2 else 1,
                    "centers": [[xb, 0.0, 0.0]] + ([[0.0, 0.0, (t + h) / 2]] if level == 2 else []),
                    "label": f"bolt hole(s) of diameter {fmt(d)}",
                },
            ]
            detailed += (
                f" Round the inside corner between the legs with a {fmt(ri)} mm radius. Drill a "
                f"{fmt(d)} mm through hole vertically through the horizontal leg at X = {fmt(xb)}, Y = 0."
            )
            abstract += " The inside corner is rounded and the horizontal leg has a bolt hole."
            features += ["inner fillet", "hole"]
        if level == 2:
            zu, ro = (t + h) / 2, p["outer_r"]
            lines += [
                "",
                "# bolt hole through the vertical leg",
                f'result = result.cut(cq.Workplane("YZ").center(0, {zu}).circle({p["hole_d"]} / 2).extrude(thickness))',
                "",
                "# round the outer heel of the bracket",
                f"result = result.edges(cq.selectors.NearestToPointSelector((0, 0, 0))).fillet({ro})",
            ]
            key.append(
                {
                    "kind": "arc",
                    "radius": ro,
                    "count": 1,
                    "convex": True,
                    "label": f"outer heel fillet radius {fmt(ro)}",
                }
            )
            detailed += (
                f" Drill a second {fmt(p['hole_d'])} mm through hole horizontally (along X) through the "
                f"vertical leg at Y = 0, Z = {fmt(zu)}. Round the outer heel edge (along Y at X = 0, Z = 0) "
                f"with a {fmt(ro)} mm radius."
            )
            abstract += " The vertical leg has a bolt hole too, and the outer heel is rounded."
            features += ["hole", "outer fillet"]
        return self._spec(p, "\n".join(lines), detailed, abstract, key, features)


# ================================================================================================= flange


class Flange(Family):
    """A round flange: disc, central bore, bolt circle; then a chamfered rim, then a raised hub."""

    name = "flange"
    title = "flange with bolt circle"

    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        D = _pick(rng, 100 if level == 2 else 70, 160, 5)
        T = _pick(rng, 6, 16, 1)
        n = 4 if level == 0 else _choice(rng, [6, 8])
        h = _pick(rng, 5, 11, 0.5)
        bore = _pick(rng, round(0.2 * D), round((0.25 if level == 2 else 0.3) * D), 1)
        p: dict[str, Any] = {"diameter": D, "thickness": T, "bore_d": bore, "holes": n, "hole_d": h}
        if level >= 1:
            p["chamfer"] = _pick(rng, 1, 2.5, 0.5)
        if level == 2:
            p["hub_d"] = _pick(rng, bore + 10, bore + 16, 1)
            p["hub_h"] = _pick(rng, 5, 20, 1)
        inner = p.get("hub_d", bore) * 1.1 / 2 + h * 1.1 / 2 + 3
        outer = D / 2 - p.get("chamfer", 0) - h * 1.1 / 2 - 3
        p["pcd"] = 2 * _pick(rng, inner, max(inner, min(outer, outer / 1.1)), 0.5)
        return p

    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        return ["diameter", "thickness", "bore_d", "hole_d", "pcd"] + [
            k for k in ("chamfer", "hub_d", "hub_h") if k in p
        ]

    def build(self, p: Mapping[str, Any]) -> PartSpec:
        D, T, b, n, h, pcd = p["diameter"], p["thickness"], p["bore_d"], int(p["holes"]), p["hole_d"], p["pcd"]
        lines = [
            "import cadquery as cq",
            "",
            f"diameter, thickness = {D}, {T}",
            f"bore_diameter, bolt_hole_diameter, bolt_circle_diameter = {b}, {h}, {pcd}",
            "",
            'result = cq.Workplane("XY").circle(diameter / 2).extrude(thickness)',
        ]
        height = T
        key: list[dict[str, Any]] = []
        detailed = f"Model a round flange: a disc of diameter {fmt(D)} mm and thickness {fmt(T)} mm. {PLACEMENT_AXIAL}"
        abstract = (
            f"A round flange: a flat disc with a central bore and a ring of bolt holes. {PLACEMENT_AXIAL_ABSTRACT}"
        )
        features = ["disc", "bore"] + ["bolt hole"] * n
        if "chamfer" in p:
            c = p["chamfer"]
            lines.append(f'result = result.faces(">Z").edges().chamfer({c})')
            key.append(_top_edge_chamfer(c, D))
            detailed += f" Chamfer the top outer edge of the disc by {fmt(c)} mm."
            abstract += " The top outer edge of the disc is chamfered."
            features.append("chamfer")
        if "hub_d" in p:
            Dh, Hh = p["hub_d"], p["hub_h"]
            height = T + Hh
            lines.append(f'result = result.faces(">Z").workplane().circle({Dh} / 2).extrude({Hh})  # raised hub')
            key += [
                {"kind": "cylinder", "diameter": Dh, "count": 1, "label": f"hub diameter {fmt(Dh)}"},
                {"kind": "level", "axis": "z", "value": T, "label": f"top of the disc at Z = {fmt(T)}"},
            ]
            detailed += f" A raised cylindrical hub of diameter {fmt(Dh)} mm stands {fmt(Hh)} mm high on the top face."
            abstract += " A raised round hub stands on its top face."
            features.append("hub")
        lines += [
            'result = result.faces(">Z").workplane().hole(bore_diameter)',
            "",
            "# bolt holes on the bolt circle, the first one on the +X axis",
            f'bolts = cq.Workplane("XY").polarArray(bolt_circle_diameter / 2, 0, 360, {n})'
            ".circle(bolt_hole_diameter / 2).extrude(thickness)",
            "result = result.cut(bolts)",
        ]
        angles = [2 * math.pi * i / n for i in range(n)]
        centers = [[round(pcd / 2 * math.cos(a), 9), round(pcd / 2 * math.sin(a), 9), 0.0] for a in angles]
        key = [
            *_extents(D, D, height),
            {"kind": "cylinder", "diameter": D, "count": 1, "label": f"outer diameter {fmt(D)}"},
            {"kind": "hole", "diameter": b, "count": 1, "centers": [[0.0, 0.0, 0.0]], "label": f"bore {fmt(b)}"},
            {
                "kind": "hole",
                "diameter": h,
                "count": n,
                "centers": centers,
                "label": f"{n} bolt holes of diameter {fmt(h)} on a {fmt(pcd)} mm bolt circle",
            },
            *key,
        ]
        detailed += (
            f" Bore a {fmt(b)} mm hole through the centre{' of disc and hub' if 'hub_d' in p else ''}. "
            f"Drill {_count_words(n)} {fmt(h)} mm through holes through the disc, equally spaced on a "
            f"{fmt(pcd)} mm diameter bolt circle, the first one on the +X axis."
        )
        return self._spec(p, "\n".join(lines), detailed, abstract, key, features)


# ========================================================================================= stepped_shaft


class SteppedShaft(Family):
    """A shaft of 2 to 4 cylindrical sections along Z; harder ones chamfer one or both ends."""

    name = "stepped_shaft"
    title = "stepped shaft with chamfers"

    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        k = 2 + level
        diameters: list[float] = []
        while len(diameters) < k:
            d = _pick(rng, 12, 60, 2)
            if all(abs(d - e) >= 6 for e in diameters):
                diameters.append(d)
        lengths = [_pick(rng, 10, 35, 1) for _ in range(k)]
        p: dict[str, Any] = {f"d{i}": d for i, d in enumerate(diameters)}
        p.update({f"l{i}": length for i, length in enumerate(lengths)})
        p["sections"] = k
        if level >= 1:
            p["chamfer_top"] = _pick(rng, 1, max(1, min(3, diameters[-1] / 10)), 0.5)
        if level == 2:
            p["chamfer_bottom"] = _pick(rng, 1, max(1, min(3, diameters[0] / 10)), 0.5)
        return p

    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        k = int(p["sections"])
        return (
            [f"d{i}" for i in range(k)]
            + [f"l{i}" for i in range(k)]
            + [c for c in ("chamfer_top", "chamfer_bottom") if c in p]
        )

    def build(self, p: Mapping[str, Any]) -> PartSpec:
        k = int(p["sections"])
        ds = [p[f"d{i}"] for i in range(k)]
        ls = [p[f"l{i}"] for i in range(k)]
        sections = ", ".join(f"({d}, {length})" for d, length in zip(ds, ls))
        lines = [
            "import cadquery as cq",
            "",
            f"sections = [{sections}]  # (diameter, length) from the bottom up",
            "",
            'result = cq.Workplane("XY").circle(sections[0][0] / 2).extrude(sections[0][1])',
            "for diameter, length in sections[1:]:",
            '    result = result.faces(">Z").workplane().circle(diameter / 2).extrude(length)',
        ]
        total = sum(ls)
        key = _extents(max(ds), max(ds), total)
        for d in sorted(set(ds)):
            key.append(
                {
                    "kind": "cylinder",
                    "diameter": d,
                    "count": ds.count(d),
                    "axis": "z",
                    "label": f"section of diameter {fmt(d)}",
                }
            )
        z = 0.0
        for i in range(k - 1):
            z += ls[i]
            key.append({"kind": "level", "axis": "z", "value": z, "label": f"step at Z = {fmt(z)}"})
        desc = "; ".join(f"{fmt(d)} mm diameter for {fmt(length)} mm" for d, length in zip(ds, ls))
        detailed = (
            f"Model a stepped round shaft made of {k} coaxial cylindrical sections stacked along Z, from the "
            f"bottom up: {desc} (total length {fmt(total)} mm). {PLACEMENT_AXIAL}"
        )
        abstract = (
            f"A stepped round shaft of {_count_words(k)} coaxial cylindrical sections of different diameters "
            f"stacked end to end. {PLACEMENT_AXIAL_ABSTRACT}"
        )
        features = ["section"] * k
        ends = []
        if "chamfer_top" in p:
            c = p["chamfer_top"]
            lines.append(f'result = result.faces(">Z").edges().chamfer({c})')
            ends.append(("top", c, ds[-1]))
        if "chamfer_bottom" in p:
            c = p["chamfer_bottom"]
            lines.append(f'result = result.faces("<Z").edges().chamfer({c})')
            ends.append(("bottom", c, ds[0]))
        chamfers: dict[tuple[float, float], int] = {}
        for _, c, d in ends:
            chamfers[(c, d)] = chamfers.get((c, d), 0) + 1
        for (c, d), count in chamfers.items():
            key.append(
                {
                    "kind": "chamfer",
                    "size": c,
                    "diameter": d,
                    "count": count,
                    "label": f"{fmt(c)} mm end chamfer on the {fmt(d)} mm section",
                }
            )
        if ends:
            detailed += " " + " ".join(f"Chamfer the {where} end edge by {fmt(c)} mm." for where, c, _ in ends)
            abstract += " Its end edge" + ("s are" if len(ends) > 1 else " is") + " chamfered."
            features += ["chamfer"] * len(ends)
        return self._spec(p, "\n".join(lines), detailed, abstract, key, features)


# ============================================================================================= enclosure


class Enclosure(Family):
    """An open-top shelled box; harder ones add a lid lip on the rim and a cable hole in the front wall."""

    name = "enclosure"
    title = "shelled enclosure with lid lip"

    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        p: dict[str, Any] = {
            "length": _pick(rng, 60, 140, 5),
            "width": _pick(rng, 40, 100, 5),
            "height": _pick(rng, 25, 60, 5),
            "wall": _pick(rng, 2, 4, 0.5),
        }
        if level >= 1:
            p["lip_h"] = _pick(rng, 5, 10, 1)
            p["lip_t"] = _pick(rng, 1, p["wall"] / 2, 0.5)
        if level == 2:
            p["cable_d"] = _pick(rng, 6, min(14, p["height"] / 3), 1)
        return p

    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        return ["length", "width", "height", "wall"] + [k for k in ("lip_h", "cable_d") if k in p]

    def build(self, p: Mapping[str, Any]) -> PartSpec:
        L, W, H, t = p["length"], p["width"], p["height"], p["wall"]
        lines = [
            "import cadquery as cq",
            "",
            f"length, width, height, wall = {L}, {W}, {H}, {t}",
            "",
            "# a box hollowed out from the top face: walls and floor `wall` thick, open at the top",
            'result = (cq.Workplane("XY").box(length, width, height, centered=(True, True, False))',
            '          .faces(">Z").shell(-wall))',
        ]
        top = H
        key: list[dict[str, Any]] = [
            {"kind": "level", "axis": "z", "value": t, "label": f"inside floor at Z = {fmt(t)}"},
            {"kind": "level", "axis": "x", "value": L / 2 - t, "label": f"inner wall face at X = {fmt(L / 2 - t)}"},
            {"kind": "level", "axis": "y", "value": W / 2 - t, "label": f"inner wall face at Y = {fmt(W / 2 - t)}"},
        ]
        detailed = (
            f"Model an open-top rectangular enclosure (a box without its lid): outside {fmt(L)} mm along X, "
            f"{fmt(W)} mm along Y and {fmt(H)} mm tall, with walls and floor {fmt(t)} mm thick. "
            f"{PLACEMENT_FLAT}"
        )
        abstract = (
            "An open-top rectangular box with thin walls and a floor, like an enclosure without its lid. "
            + PLACEMENT_FLAT_ABSTRACT
        )
        features = ["box", "shell"]
        if "lip_h" in p:
            lh, lt = p["lip_h"], p["lip_t"]
            top = H + lh
            lines += [
                "",
                "# lid lip: a thin rim standing on the walls, flush with their inside faces",
                f"lip_height, lip_thickness = {lh}, {lt}",
                "inner_l, inner_w = length - 2 * wall, width - 2 * wall",
                'lip = (cq.Workplane("XY").workplane(offset=height)',
                "       .rect(inner_l + 2 * lip_thickness, inner_w + 2 * lip_thickness).rect(inner_l, inner_w)",
                "       .extrude(lip_height))",
                "result = result.union(lip)",
            ]
            key.append({"kind": "level", "axis": "z", "value": H, "label": f"wall top at Z = {fmt(H)}"})
            detailed += (
                f" On top of the walls stands a lid lip {fmt(lh)} mm high and {fmt(lt)} mm thick, flush with "
                f"the inside faces of the walls, so the part is {fmt(top)} mm tall overall."
            )
            abstract += " A thin lip rises from the top of the walls, flush with their inside, to locate a lid."
            features.append("lip")
        if "cable_d" in p:
            dc = p["cable_d"]
            zc = H / 2
            lines += [
                "",
                "# cable hole through the front (-Y) wall",
                f'result = result.cut(cq.Workplane("XZ", origin=(0, -width / 2 + wall, 0)).center(0, {zc})'
                f".circle({dc} / 2).extrude(2 * wall))",
            ]
            key.append(
                {
                    "kind": "hole",
                    "diameter": dc,
                    "count": 1,
                    "axis": "y",
                    "centers": [[0.0, 0.0, zc]],
                    "label": f"cable hole of diameter {fmt(dc)}",
                }
            )
            detailed += (
                f" Cut a {fmt(dc)} mm round cable hole through the front wall (the one at Y = {fmt(-W / 2)}), "
                f"centred at X = 0, Z = {fmt(zc)}."
            )
            abstract += " A round cable hole goes through the front wall."
            features.append("hole")
        key = _extents(L, W, top) + key
        return self._spec(p, "\n".join(lines), detailed, abstract, key, features)


# =============================================================================================== bushing


class Bushing(Family):
    """A spacer tube; harder ones add a flange at the bottom and a chamfer on the top outer edge."""

    name = "bushing"
    title = "spacer / flanged bushing"

    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        od = _pick(rng, 16, 60, 2)
        p: dict[str, Any] = {
            "outer_d": od,
            "inner_d": _pick(rng, round(0.4 * od), round(0.65 * od), 1),
            "length": _pick(rng, 12, 50, 1),
        }
        if level >= 1:
            p["flange_d"] = _pick(rng, od + 10, od + 30, 2)
            p["flange_t"] = _pick(rng, 2, min(8, p["length"] / 3), 1)
        if level == 2:
            p["chamfer"] = _pick(rng, 1, max(1, (od - p["inner_d"]) / 6), 0.5)
        return p

    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        return ["outer_d", "inner_d", "length"] + [k for k in ("flange_d", "flange_t", "chamfer") if k in p]

    def build(self, p: Mapping[str, Any]) -> PartSpec:
        od, idia, length = p["outer_d"], p["inner_d"], p["length"]
        lines = [
            "import cadquery as cq",
            "",
            f"outer_diameter, inner_diameter, length = {od}, {idia}, {length}",
            "",
            'result = cq.Workplane("XY").circle(outer_diameter / 2).extrude(length)',
        ]
        width = od
        key: list[dict[str, Any]] = [
            {"kind": "cylinder", "diameter": od, "count": 1, "label": f"outer diameter {fmt(od)}"}
        ]
        detailed = f"Model a cylindrical spacer bushing: a tube {fmt(length)} mm long with outer diameter {fmt(od)} mm"
        abstract = "A cylindrical spacer bushing: a short thick-walled tube"
        features = ["tube", "bore"]
        if "flange_d" in p:
            fd, ft = p["flange_d"], p["flange_t"]
            width = fd
            lines.append(f'result = result.union(cq.Workplane("XY").circle({fd} / 2).extrude({ft}))  # flange')
            key += [
                {"kind": "cylinder", "diameter": fd, "count": 1, "label": f"flange diameter {fmt(fd)}"},
                {"kind": "level", "axis": "z", "value": ft, "label": f"top of the flange at Z = {fmt(ft)}"},
            ]
            detailed += f", with a flange of diameter {fmt(fd)} mm and thickness {fmt(ft)} mm at its bottom end"
            abstract += " with a wide flange at its bottom end"
            features.append("flange")
        if "chamfer" in p:
            c = p["chamfer"]
            lines.append(f'result = result.faces(">Z").edges().chamfer({c})  # top outer edge')
            key.append(_top_edge_chamfer(c, od))
            detailed += f"; chamfer its top outer edge by {fmt(c)} mm"
            abstract += ", its top outer edge chamfered"
            features.append("chamfer")
        lines.append('result = result.faces(">Z").workplane().hole(inner_diameter)')
        key = (
            _extents(width, width, length)
            + key
            + [
                {
                    "kind": "hole",
                    "diameter": idia,
                    "count": 1,
                    "centers": [[0.0, 0.0, 0.0]],
                    "label": f"bore {fmt(idia)}",
                }
            ]
        )
        detailed += f". A {fmt(idia)} mm bore runs through its whole length. {PLACEMENT_AXIAL}"
        abstract += f", with a round bore all the way through. {PLACEMENT_AXIAL_ABSTRACT}"
        return self._spec(p, "\n".join(lines), detailed, abstract, key, features)


# ========================================================================================== slotted_link


class SlottedLink(Family):
    """A flat link with rounded ends and a hole at each end; harder ones add a central slot and unequal holes."""

    name = "slotted_link"
    title = "slotted link"

    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        w = _pick(rng, 16, 32, 2)
        c = _pick(rng, 70 if level else 50, 130, 5)
        p: dict[str, Any] = {
            "centers": c,
            "width": w,
            "thickness": _pick(rng, 3, 10, 1),
            "hole_d": _pick(rng, 4, w - 8, 1),
        }
        if level >= 1:
            room = (c - max(p["hole_d"], w - 8) - 10) / 1.1  # the slot must clear the end holes, even 10% longer
            p["slot_w"] = _pick(rng, 4, max(4, min(w - 8, room - 10)), 1)
            p["slot_l"] = _pick(rng, p["slot_w"] + 10, max(p["slot_w"] + 10, room), 1)
        if level == 2:
            options = [d for d in np.arange(4, w - 7, 1.0) if abs(d - p["hole_d"]) >= 2]
            p["hole2_d"] = float(_choice(rng, options)) if options else p["hole_d"] + 2
        return p

    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        return ["centers", "width", "thickness", "hole_d"] + [k for k in ("slot_w", "slot_l", "hole2_d") if k in p]

    def build(self, p: Mapping[str, Any]) -> PartSpec:
        c, w, t, d = p["centers"], p["width"], p["thickness"], p["hole_d"]
        d2 = p.get("hole2_d", d)
        lines = [
            "import cadquery as cq",
            "",
            f"centers, width, thickness = {c}, {w}, {t}  # end-hole spacing, link width, plate thickness",
            "",
            "# slot2D takes the overall length; the ends are half circles of diameter `width`",
            'result = cq.Workplane("XY").slot2D(centers + width, width).extrude(thickness)',
        ]
        if d2 == d:
            lines.append(
                f'result = result.faces(">Z").workplane().pushPoints([(-centers / 2, 0), (centers / 2, 0)]).hole({d})'
            )
            holes = [
                {
                    "kind": "hole",
                    "diameter": d,
                    "count": 2,
                    "centers": [[-c / 2, 0.0, 0.0], [c / 2, 0.0, 0.0]],
                    "label": f"two end holes of diameter {fmt(d)}",
                }
            ]
            hole_text = f"Each end has a {fmt(d)} mm through hole centred on its rounded end (X = ±{fmt(c / 2)})."
        else:
            lines += [
                f'result = result.faces(">Z").workplane().pushPoints([(-centers / 2, 0)]).hole({d})',
                f'result = result.faces(">Z").workplane().pushPoints([(centers / 2, 0)]).hole({d2})',
            ]
            holes = [
                {
                    "kind": "hole",
                    "diameter": d,
                    "count": 1,
                    "centers": [[-c / 2, 0.0, 0.0]],
                    "label": f"end hole of diameter {fmt(d)} at X = {fmt(-c / 2)}",
                },
                {
                    "kind": "hole",
                    "diameter": d2,
                    "count": 1,
                    "centers": [[c / 2, 0.0, 0.0]],
                    "label": f"end hole of diameter {fmt(d2)} at X = {fmt(c / 2)}",
                },
            ]
            hole_text = (
                f"The end at X = {fmt(-c / 2)} has a {fmt(d)} mm through hole and the end at X = {fmt(c / 2)} "
                f"a {fmt(d2)} mm through hole, each centred on its rounded end."
            )
        key = (
            _extents(c + w, w, t)
            + holes
            + [
                {
                    "kind": "arc",
                    "radius": w / 2,
                    "count": 2,
                    "convex": True,
                    "centers": [[-c / 2, 0.0, 0.0], [c / 2, 0.0, 0.0]],
                    "label": f"rounded ends of radius {fmt(w / 2)}",
                }
            ]
        )
        detailed = (
            f"Model a flat link plate {fmt(t)} mm thick, {fmt(w)} mm wide along Y, with fully rounded ends "
            f"(half circles of diameter {fmt(w)} mm) whose centres are {fmt(c)} mm apart along X, so it is "
            f"{fmt(c + w)} mm long overall. {PLACEMENT_FLAT} {hole_text}"
        )
        abstract = (
            f"A flat link plate with fully rounded ends and a round hole at each end. {PLACEMENT_FLAT_ABSTRACT}"
            + (" The two end holes have different sizes." if d2 != d else "")
        )
        features = ["link", "hole", "hole"]
        if "slot_w" in p:
            ls, ws = p["slot_l"], p["slot_w"]
            lines += [
                "",
                "# central through slot along X",
                f'result = result.cut(cq.Workplane("XY").slot2D({ls}, {ws}).extrude(thickness))',
            ]
            e = (ls - ws) / 2
            key.append(
                {
                    "kind": "arc",
                    "radius": ws / 2,
                    "count": 2,
                    "convex": False,
                    "centers": [[-e, 0.0, 0.0], [e, 0.0, 0.0]],
                    "through": True,
                    "label": f"central slot {fmt(ls)} x {fmt(ws)}",
                }
            )
            detailed += (
                f" Cut a straight through slot with rounded ends in the middle, {fmt(ls)} mm long overall "
                f"along X and {fmt(ws)} mm wide, centred on the origin."
            )
            abstract += " A straight slot with rounded ends runs along the middle between the holes."
            features.append("slot")
        if d2 != d:
            features.append("unequal holes")
        return self._spec(p, "\n".join(lines), detailed, abstract, key, features)


# ===================================================================================== countersunk_plate


class CountersunkPlate(_FlatPlate):
    """A plate with 90-degree countersunk holes in a row or grid; the hardest also rounds its corners."""

    name = "countersunk_plate"
    title = "countersunk plate"
    hole_feature = "countersunk hole"
    SIZES: ClassVar[list[tuple[float, float]]] = [(3.4, 6.5), (4.5, 9.0), (5.5, 11.0), (6.6, 13.0)]
    GRIDS: ClassVar[dict[int, tuple[int, int]]] = {0: (2, 1), 1: (2, 2), 2: (3, 2)}

    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        d, D = _choice(rng, self.SIZES)
        nx, ny = self.GRIDS[level]
        margin = _pick(rng, max(D, 12), max(D, 12) + 6, 1)
        length = _pick(rng, max(70, 2 * margin + (nx - 1) * 1.5 * D), 140, 5)
        width = _pick(rng, 2 * margin + 2 * D if ny > 1 else 30, 90, 5)
        thickness = _pick(rng, max(5, math.ceil((1.1 * D - d) / 2) + 2), 12, 1)
        p = _plate_params(length, width, thickness, (nx, ny), (margin, margin), hole_d=d, csk_d=D)
        if level == 2:
            p["fillet_r"] = _pick(rng, 2, margin / 2, 0.5)
        return p

    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        names = ["length", "width", "thickness", "hole_d", "csk_d", "pitch_x"]
        return names + (["pitch_y"] if p["ny"] > 1 else []) + (["fillet_r"] if "fillet_r" in p else [])

    def build(self, p: Mapping[str, Any]) -> PartSpec:
        L, W, T, d, D = p["length"], p["width"], p["thickness"], p["hole_d"], p["csk_d"]
        nx, ny = int(p["nx"]), int(p["ny"])
        n = nx * ny
        lines = _plate_program(p, f"hole_diameter, countersink_diameter = {d}, {D}")
        lines += [
            f"    .rarray({p['pitch_x']}, {p['pitch_y'] or 1.0}, {nx}, {ny})",
            "    .cskHole(hole_diameter, countersink_diameter, 90)",
            ")",
        ]
        key = [
            *_extents(L, W, T),
            _hole_grid(p, f"{n} holes of diameter {fmt(d)} at the given positions"),
            {"kind": "circle", "diameter": D, "count": n, "label": f"{n} countersinks of diameter {fmt(D)}"},
        ]
        spacing = f"{fmt(p['pitch_x'])} mm apart along X" + (
            f" and {fmt(p['pitch_y'])} mm apart along Y" if ny > 1 else ""
        )
        arrangement = (
            f"in a row along X, centred on the plate, {spacing}"
            if ny == 1
            else (f"in a {nx} x {ny} grid centred on the plate, {spacing}")
        )
        detailed = (
            f"Model a flat rectangular plate {fmt(L)} mm along X, {fmt(W)} mm along Y and {fmt(T)} mm thick. "
            f"{PLACEMENT_FLAT} It has {_count_words(n)} countersunk through holes for flat-head screws, "
            f"{arrangement}: each a {fmt(d)} mm hole with a 90 degree countersink of {fmt(D)} mm diameter at the "
            "top face."
        )
        abstract = (
            f"A flat rectangular plate with {_count_words(n)} countersunk screw holes "
            f"{'in a row' if ny == 1 else 'in a grid'}, countersunk from the top face. {PLACEMENT_FLAT_ABSTRACT}"
        )
        return self._plate_spec(p, lines, (detailed, abstract), key)


# ========================================================================================== hex_standoff


class HexStandoff(Family):
    """A hexagonal standoff with a bore; harder ones add a stud on top (blind bore) and a cross hole."""

    name = "hex_standoff"
    title = "hex standoff"

    def sample(self, rng: np.random.Generator, level: int) -> dict[str, Any]:
        s = _pick(rng, 10, 24, 1)
        h = _pick(rng, 12, 40, 1)
        p: dict[str, Any] = {"across_flats": s, "height": h, "bore_d": _pick(rng, round(0.3 * s), round(0.5 * s), 0.5)}
        if level >= 1:
            p["bore_depth"] = _pick(rng, round(0.4 * h), round(0.7 * h), 1)
            p["stud_d"] = _pick(rng, round(0.35 * s), round(0.55 * s), 0.5)
            p["stud_l"] = _pick(rng, 5, 15, 1)
        if level == 2:
            p["cross_d"] = _pick(rng, 2, max(2, round(0.25 * s)), 0.5)
        return p

    def key_params(self, p: Mapping[str, Any]) -> list[str]:
        return ["across_flats", "height", "bore_d"] + [
            k for k in ("bore_depth", "stud_d", "stud_l", "cross_d") if k in p
        ]

    def build(self, p: Mapping[str, Any]) -> PartSpec:
        s, h, d = p["across_flats"], p["height"], p["bore_d"]
        corners = 2 * s / math.sqrt(3)
        lines = [
            "import cadquery as cq",
            "import math",
            "",
            f"across_flats, height, bore_diameter = {s}, {h}, {d}",
            "",
            "# polygon() takes the corner-to-corner diameter; two flats end up parallel to the X axis",
            'result = cq.Workplane("XY").polygon(6, across_flats * 2 / math.sqrt(3)).extrude(height)',
        ]
        top = h
        key: list[dict[str, Any]] = []
        detailed = (
            f"Model a hexagonal standoff: a hexagonal prism {fmt(s)} mm across the flats and {fmt(h)} mm tall, "
            f"with two of its flats parallel to the X axis (corners on the X axis). {PLACEMENT_AXIAL}"
        )
        abstract = (
            "A hexagonal standoff spacer: a six-sided prism with a round bore along its axis. "
            + PLACEMENT_AXIAL_ABSTRACT
        )
        features = ["hex prism", "bore"]
        if "stud_d" in p:
            db, sd, sl = p["bore_depth"], p["stud_d"], p["stud_l"]
            top = h + sl
            lines += [
                f'result = result.faces(">Z").workplane().circle({sd} / 2).extrude({sl})  # stud on top',
                f'result = result.faces("<Z").workplane().hole(bore_diameter, {db})  # blind bore from below',
            ]
            key += [
                {"kind": "cylinder", "diameter": sd, "count": 1, "axis": "z", "label": f"stud diameter {fmt(sd)}"},
                {"kind": "level", "axis": "z", "value": h, "label": f"top of the hexagon at Z = {fmt(h)}"},
                {"kind": "level", "axis": "z", "value": db, "label": f"bottom of the blind bore at Z = {fmt(db)}"},
            ]
            detailed += (
                f" A round stud of diameter {fmt(sd)} mm and length {fmt(sl)} mm sticks up from the centre of "
                f"the top face. A blind bore of diameter {fmt(d)} mm goes {fmt(db)} mm deep into the bottom "
                "face (flat-bottomed)."
            )
            abstract += " A round stud sticks up from its top and the bore is blind, from the bottom."
            features += ["stud"]
        else:
            lines.append('result = result.faces(">Z").workplane().hole(bore_diameter)  # through bore')
            detailed += f" A {fmt(d)} mm bore goes through it along its axis."
        if "cross_d" in p:
            dc = p["cross_d"]
            lines += [
                "",
                "# cross hole along X through the hexagon, at mid height",
                f'result = result.cut(cq.Workplane("YZ").workplane(offset=-across_flats).center(0, {h / 2})'
                f".circle({dc} / 2).extrude(2 * across_flats))",
            ]
            key.append(
                {
                    "kind": "hole",
                    "diameter": dc,
                    "count": 1,
                    "axis": "x",
                    "centers": [[0.0, 0.0, h / 2]],
                    "label": f"cross hole {fmt(dc)}",
                }
            )
            detailed += f" A {fmt(dc)} mm cross hole goes right through the hexagon along X at Z = {fmt(h / 2)}."
            abstract += " A small cross hole goes through it sideways."
            features.append("cross hole")
        key = [
            *_extents(corners, s, top),
            {
                "kind": "hole",
                "diameter": d,
                "count": 1,
                "axis": "z",
                "centers": [[0.0, 0.0, 0.0]],
                "through": "stud_d" not in p,  # the stud's bore is blind: its depth is the ``level`` entry
                "label": f"bore {fmt(d)}",
            },
            *key,
        ]
        return self._spec(p, "\n".join(lines), detailed, abstract, key, features)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        PlateWithHoles(),
        LBracket(),
        Flange(),
        SteppedShaft(),
        Enclosure(),
        Bushing(),
        SlottedLink(),
        CountersunkPlate(),
        HexStandoff(),
    )
}
