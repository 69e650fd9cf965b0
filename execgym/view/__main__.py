"""``python -m execgym.view PATH [--out FILE] [--serve [--port N]]``."""

from execgym.view.cli import run

raise SystemExit(run())
