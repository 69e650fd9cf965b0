"""The self-contained HTML report of a run, and a loopback server for it.

The page is one file that works offline: styles and script are inlined, nothing is fetched. Episodes are
embedded lazily: the list is one small JSON index, and each episode's full record travels gzip-compressed in
blocks of :data:`BLOCK_SIZE` episodes that the page decompresses only when an episode is opened, so a run of
10,000 episodes opens in seconds. All episode text is untrusted: the template autoescapes, JSON is embedded
with ``<``, ``>`` and ``&`` escaped, and the script writes episode text only as text nodes.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import json
import math
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from execgym.core import report as R
from execgym.view.loader import Episode, Run, load_run

__all__ = ["BLOCK_SIZE", "build_report", "render_report", "serve_report"]

BLOCK_SIZE = 64
# what the episode page shows; everything else in a record (the chat, which repeats the steps; the tools'
# schemas, shown once per env) is left out of the blobs to keep the file small
_DETAIL_KEYS = (R.TASK_ID, "seed", "options", "reset_observation", R.SYSTEM_PROMPT, "steps", "return", R.OUTCOME,
                R.UNITS, R.CHECKLIST, R.HACK_FLAGS, R.INFRA_ERROR, R.AGENT_ERROR, R.TURNS, "episode_time_s",
                "reset_time_s", "inner_wrappers", "env_kwargs", "execgym_version", "renders", R.SUBMITTED)
_PLOT_PATTERNS = ("*__components.png", "curves.png")


def _plain(value: Any) -> Any:
    """JSON-safe for a browser: non-finite floats (which records may hold) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _detail(ep: Episode) -> dict[str, Any]:
    record = ep.record
    out = {k: record[k] for k in _DETAIL_KEYS if k in record}
    if isinstance(out.get("steps"), list):  # token ids grow with every turn: a trainer's data, not the page's
        out["steps"] = [{k: v for k, v in s.items() if k != "tokens"} if isinstance(s, dict) else s
                        for s in out["steps"]]
    out["env_id"] = ep.env_id
    out["agent"] = ep.agent
    out["source"] = ep.source
    return out


def _browser_json(value: Any) -> str:
    """Compact ASCII JSON (lone surrogates survive as escapes) that ``JSON.parse`` reads: NaN and infinities,
    which records may hold, become strings (the walk runs only when there are some)."""
    try:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_plain(value), ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _blocks(episodes: Sequence[Episode]) -> list[str]:
    """Base64 of gzip of a JSON list of BLOCK_SIZE episodes' details."""
    out = []
    for start in range(0, len(episodes), BLOCK_SIZE):
        chunk = [_detail(ep) for ep in episodes[start:start + BLOCK_SIZE]]
        raw = _browser_json(chunk).encode("ascii")
        out.append(base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii"))
    return out


def _tools_by_env(episodes: Sequence[Episode]) -> dict[str, list[dict[str, Any]]]:
    """Each env's tool schemas once (every record repeats them)."""
    tools: dict[str, list[dict[str, Any]]] = {}
    for ep in episodes:
        if ep.env_id not in tools and isinstance(ep.record.get(R.TOOLS), list):
            tools[ep.env_id] = ep.record[R.TOOLS]
    return tools


def _plots(paths: Sequence[Path]) -> list[dict[str, str]]:
    """The run's PNG plots as data URIs (inlined: the page fetches nothing)."""
    found = []
    for folder in (p for p in paths if p.is_dir()):
        for pattern in _PLOT_PATTERNS:
            for png in sorted(folder.glob(pattern)):
                data = base64.b64encode(png.read_bytes()).decode("ascii")
                found.append({"name": png.name, "uri": f"data:image/png;base64,{data}"})
    return found


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("execgym.view", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _asset(name: str) -> str:
    text = resources.files("execgym.view").joinpath("templates", name).read_text(encoding="utf-8")
    if "</" in text and name.endswith(".js"):
        raise RuntimeError(f"{name} must not contain '</' (it is inlined in a <script>)")
    return text


def render_report(run: Run, *, plots: Sequence[dict[str, str]] = ()) -> str:
    """The report's HTML for a loaded :class:`~execgym.view.loader.Run`.

    Example:
        >>> from execgym.view.loader import Episode, Run
        >>> ep = Episode.from_record({"env_id": "execgym/Toy-v0", "task_id": "<b>t</b>", "steps": []},
        ...                          agent="oracle", source="x.jsonl")
        >>> html = render_report(Run("demo", [ep], [], "none"))
        >>> "<b>t</b>" in html, "\\\\u003cb\\\\u003et" in html
        (False, True)
    """
    index = [ep.index_row() for ep in run.episodes]
    data = {
        "index": _plain(index),
        "block_size": BLOCK_SIZE,
        R.TOOLS: _plain(_tools_by_env(run.episodes)),
        "lower_is_better": sorted(_lower_is_better()),
    }
    script = _asset("report.js")
    # the page's Content-Security-Policy lets only this script run: text that got past the escaping still could not
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    template = _environment().get_template("report.html.j2")
    return template.render(
        script_hash=f"sha256-{digest}",
        title=run.title,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        run=run,
        summary=_summary_rows(run.summary),
        summary_source=run.summary_source,
        train_log=run.train_log,
        plots=list(plots),
        data=data,
        blocks=_blocks(run.episodes),
        style=_asset("report.css"),
        script=script,
        episodes=len(run.episodes),
    )


def _lower_is_better() -> set[str]:
    from execgym.rollout.plots import LOWER_IS_BETTER

    return set(LOWER_IS_BETTER)


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _summary_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """summary.json rows as the table's cells (text; the template escapes them)."""
    lower = _lower_is_better()
    out = []
    for row in rows:
        ci = row.get("success_ci95") or [None, None]
        rate = row.get("success_rate")
        success = f"{_fmt(rate)} [{_fmt(ci[0])}, {_fmt(ci[1])}]" if rate is not None else "- (none scored)"
        comps = row.get("component_means") or {}
        out.append({
            "env": str(row.get("env_id", "")).removeprefix("execgym/"),
            "agent": str(row.get("agent", "")),
            "episodes": row.get("episodes", "-"),
            "errors": f"{row.get('infra_errors', 0)} / {row.get('agent_errors', 0)}",
            "success": success,
            "reward": _fmt(row.get("mean_reward"), 3),
            R.TURNS: _fmt(row.get("mean_turns"), 1),
            "calls": _fmt(row.get("mean_tool_calls"), 1),
            "hack": row.get("hack_flagged", 0),
            "components": [(k + (" ↓" if k in lower else ""), _fmt(v)) for k, v in comps.items()],
        })
    return out


def build_report(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Read the run at ``paths`` and write its report to ``out``; returns ``out``.

    Example:
        >>> import tempfile, pathlib, json
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "execgym_Toy-v0__oracle.jsonl").write_text(json.dumps({"env_id": "execgym/Toy-v0",
        ...     "task_id": "t", "outcome": 1.0, "steps": []}) + "\\n")
        >>> build_report([d], d / "report.html").stat().st_size > 1000
        True
    """
    run = load_run(paths)
    html = render_report(run, plots=_plots([Path(p) for p in paths]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def serve_report(path: str | Path, *, host: str = "127.0.0.1", port: int = 8765,
                 ready: Callable[[str], None] | None = None,
                 stop: threading.Event | None = None) -> None:
    """Serve the report file at ``http://host:port/`` until Ctrl-C (or until ``stop`` is set).

    Binds to loopback unless told otherwise; ``port=0`` picks a free port. ``ready(url)`` is called once
    the server listens.
    """
    body = Path(path).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/", "/index.html", "/report.html"):
                self.send_error(404, "the report is at /")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; "
                             "style-src 'unsafe-inline'; img-src data:; connect-src 'none'")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer((host, port), Handler) as server:
        server.daemon_threads = True
        url = f"http://{host}:{server.server_address[1]}/"
        if ready is not None:
            ready(url)
        if stop is None:
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
            return
        watcher = threading.Thread(target=lambda: (stop.wait(), server.shutdown()), daemon=True)
        watcher.start()
        server.serve_forever(poll_interval=0.1)

