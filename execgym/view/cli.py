"""The ``execgym view`` command: a run's trajectories as one self-contained HTML report.

Wired into ``execgym`` through :func:`register` (or :func:`add_parser`); ``python -m execgym.view`` runs it alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "build_parser", "main", "register", "run"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a run folder (execgym run --out, execgym train --out) or trajectory JSONL files")
    p.add_argument("--out", help="the HTML file to write (default: report.html in the run folder, or next to "
                                 "the first file)")
    p.add_argument("--serve", action="store_true", help="also serve the report over HTTP until Ctrl-C")
    p.add_argument("--port", type=_port, default=8765, help="--serve: the port (0: any free one; default 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="--serve: the address to bind (default loopback; anything else exposes the episodes)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``view`` to the ``execgym`` command line (``subparsers`` of its parser); returns the sub-parser."""
    p = subparsers.add_parser("view", help="turn a run's trajectories into a self-contained HTML report")
    _options(p)
    p.set_defaults(func=main)
    return p


register = add_parser  # the name execgym/cli.py looks for in the modules that contribute commands


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone parser of ``python -m execgym.view``."""
    p = argparse.ArgumentParser(prog="execgym view", description="A run's trajectories as one HTML report.")
    _options(p)
    return p


def _default_out(paths: Sequence[str]) -> Path:
    first = Path(paths[0])
    return first / "report.html" if first.is_dir() else first.with_name(first.stem + ".report.html")


def main(args: argparse.Namespace) -> int:
    """Write the report (and serve it with ``--serve``); bad input is one line on stderr and exit status 2."""
    try:
        from execgym.view.loader import ViewError
        from execgym.view.report import build_report, serve_report
    except ImportError as exc:  # jinja2 is the view extra's
        print(f"execgym view: needs {exc.name or 'jinja2'}: pip install 'execgym[view]'", file=sys.stderr)
        return 2

    out = Path(args.out) if args.out else _default_out(args.paths)
    try:
        path = build_report(args.paths, out)
    except ViewError as exc:
        print(f"execgym view: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"execgym view: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"report written to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.serve:
        def ready(url: str) -> None:
            print(f"serving {path.name} at {url} (Ctrl-C stops)", flush=True)

        try:
            serve_report(path, host=args.host, port=args.port, ready=ready)
        except OSError as exc:
            print(f"execgym view: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    """``python -m execgym.view ARGS``."""
    return main(build_parser().parse_args(argv))
