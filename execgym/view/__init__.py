"""The HTML report of a run: ``execgym view PATH`` (``python -m execgym.view PATH``).

Example:
    >>> import tempfile, pathlib, json
    >>> from execgym.view import build_report
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "execgym_Toy-v0__oracle.jsonl").write_text(json.dumps({"env_id": "execgym/Toy-v0",
    ...     "task_id": "t", "outcome": 1.0, "steps": []}) + "\\n")
    >>> build_report([d], d / "report.html").name
    'report.html'
"""

from execgym.view.loader import Episode, Run, ViewError, load_run
from execgym.view.report import build_report, render_report, serve_report

__all__ = ["Episode", "Run", "ViewError", "build_report", "load_run", "render_report", "serve_report"]
