"""Running CadQuery programs: the agent's or a reference, to one ``cadquery.Shape``."""

from __future__ import annotations

import builtins
import linecache
import traceback
from typing import Any

PROGRAM_FILENAME = "<cadquery program>"


class ProgramError(Exception):
    """The agent's (or a reference) program failed; ``kind`` is syntax / runtime / no_result / not_3d."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _cq() -> Any:
    import cadquery

    return cadquery


def _format_exception(exc: BaseException, max_lines: int = 14) -> str:
    """The exception with the traceback's last lines, starting at the program's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != PROGRAM_FILENAME:
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    text = "".join(lines).rstrip().splitlines()
    if len(text) > max_lines:
        text = ["Traceback (most recent call last, earlier lines cut):", *text[-(max_lines - 1) :]]
    return "\n".join(text)


def exec_program(code: str, *, fallback_last: bool = False) -> Any:
    """Execute a CadQuery program and return its part as a ``cadquery.Shape``.

    The part is the variable ``result``, else what ``show_object`` was given, else (``fallback_last``,
    for dataset reference programs) the last Workplane / Shape / Assembly the program assigned.
    """
    cq = _cq()
    shown: list[Any] = []

    def show_object(obj: Any, name: Any = None, options: Any = None, **_: Any) -> None:
        shown.append(obj)

    def debug(obj: Any, *_: Any, **__: Any) -> None:
        return None

    linecache.cache[PROGRAM_FILENAME] = (len(code), None, code.splitlines(True), PROGRAM_FILENAME)
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "cq": cq,
        "cadquery": cq,
        "show_object": show_object,
        "debug": debug,
    }
    try:
        compiled = compile(code, PROGRAM_FILENAME, "exec")
    except (SyntaxError, ValueError) as exc:
        raise ProgramError("syntax", "".join(traceback.format_exception_only(type(exc), exc)).rstrip()) from None
    try:
        exec(compiled, namespace)
    except SystemExit:
        pass
    except MemoryError:
        raise ProgramError("memory", "MemoryError: the program ran out of memory") from None
    except BaseException as exc:
        raise ProgramError("runtime", _format_exception(exc)) from None
    if namespace.get("result") is not None:
        obj = namespace["result"]
    elif shown:
        obj = shown if len(shown) > 1 else shown[0]
    elif fallback_last:
        candidates = [v for k, v in namespace.items() if not k.startswith("__") and _is_geometry(v)]
        if not candidates:
            raise ProgramError("no_result", "the program defines no Workplane, Shape or Assembly")
        obj = candidates[-1]
    else:
        raise ProgramError(
            "no_result",
            "the program ran but defined no part: assign it to a variable named `result` "
            "(a cq.Workplane or a Shape), or call show_object(part)",
        )
    return to_shape(obj)


def _is_geometry(value: Any) -> bool:
    cq = _cq()
    return isinstance(value, cq.Workplane | cq.Shape | cq.Assembly)


def to_shape(obj: Any) -> Any:
    """Turn a Workplane / Shape / Assembly / OCP shape (or a list of them) into one ``cadquery.Shape``."""
    cq = _cq()
    from OCP.TopoDS import TopoDS_Shape

    shapes: list[Any] = []

    def collect(item: Any) -> None:
        if isinstance(item, cq.Workplane):
            values = [v for v in item.vals() if isinstance(v, cq.Shape)]
            if not values:
                kinds = sorted({type(v).__name__ for v in item.vals()}) or ["nothing"]
                raise ProgramError(
                    "not_3d",
                    f"`result` is a Workplane holding {', '.join(kinds)}, not a 3D shape (did you forget to extrude?)",
                )
            shapes.extend(values)
        elif isinstance(item, cq.Shape):
            shapes.append(item)
        elif isinstance(item, cq.Assembly):
            shapes.append(item.toCompound())
        elif isinstance(item, TopoDS_Shape):
            shapes.append(cq.Shape.cast(item))
        elif isinstance(item, list | tuple):
            for sub in item:
                collect(sub)
        elif isinstance(item, cq.Sketch):
            raise ProgramError("not_3d", "`result` is a 2D Sketch, not a 3D shape (extrude it first)")
        else:
            raise ProgramError("not_3d", f"`result` is a {type(item).__name__}, expected a cq.Workplane or a cq.Shape")

    collect(obj)
    if not shapes:
        raise ProgramError("not_3d", "`result` holds no shape")
    if not any(s.Faces() for s in shapes):
        kinds = sorted({type(s).__name__ for s in shapes})
        raise ProgramError(
            "not_3d", f"`result` holds only {', '.join(kinds)} (no faces): extrude, revolve or loft it into a solid"
        )
    if len(shapes) == 1:
        return shapes[0]
    return cq.Compound.makeCompound(shapes)
