"""``execgym view`` without a browser: bad input is one line, --serve serves on loopback, train folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from execgym.view import ViewError, build_report, load_run, serve_report
from execgym.view.cli import run as view
from tests.signals import sigint_default


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "execgym.view", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _record(**extra: object) -> dict[str, object]:
    return {"env_id": "execgym/ToolUse-v0", "task_id": "t", "seed": 0, "steps": [], "outcome": 0.0, **extra}


@pytest.mark.parametrize("case", ["missing", "empty_folder", "corrupt_line", "not_an_object", "trainer_log_only"])
def test_bad_input_is_one_line_without_a_traceback(case: str, tmp_path: Path) -> None:
    target = tmp_path / "run"
    if case != "missing":
        target.mkdir()
    if case == "corrupt_line":
        (target / "execgym_ToolUse-v0__oracle.jsonl").write_text(json.dumps(_record()) + "\n{not json\n")
    if case == "not_an_object":
        (target / "x.jsonl").write_text("[1, 2]\n")
    if case == "trainer_log_only":  # a log.jsonl given as a trajectory file is named as such
        target = target / "log.jsonl"
        target.write_text(json.dumps({"phase": "train", "iteration": 1}) + "\n")
    result = _cli(str(target))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("execgym view: ")
    expected = {"missing": "no such file or folder", "empty_folder": "no trajectory files",
                "corrupt_line": "execgym_ToolUse-v0__oracle.jsonl:2: corrupt JSON line",
                "not_an_object": "x.jsonl:1: a trajectory line must be a JSON object",
                "trainer_log_only": "log.jsonl:1: not a trajectory record"}[case]
    assert expected in lines[0]


def test_partial_last_line_is_skipped_like_read_trajectories(tmp_path: Path) -> None:
    path = tmp_path / "a__oracle.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(_record())[:30])
    run = load_run([path])
    assert len(run.episodes) == 1 and run.episodes[0].agent == "oracle"


def test_summary_without_summary_json_uses_the_wilson_interval(tmp_path: Path) -> None:
    path = tmp_path / "execgym_ToolUse-v0__oracle.jsonl"
    path.write_text("".join(json.dumps(_record(outcome=float(i < 3))) + "\n" for i in range(10)))
    (row,) = load_run([path]).summary
    assert row["success_rate"] == 0.3 and row["episodes"] == 10
    assert [round(x, 3) for x in row["success_ci95"]] == [0.108, 0.603]


def test_serve_binds_loopback_and_serves_the_report(tmp_path: Path) -> None:
    (tmp_path / "a__oracle.jsonl").write_text(json.dumps(_record()) + "\n")
    report = build_report([tmp_path], tmp_path / "r.html")
    urls: list[str] = []
    ready, stop = threading.Event(), threading.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    thread = threading.Thread(target=serve_report, args=(report,), kwargs={"port": 0, "ready": on_ready,
                                                                          "stop": stop}, daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        assert urls[0].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(urls[0], timeout=30) as response:
            assert response.status == 200 and response.read() == report.read_bytes()
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urls[0] + "etc/passwd", timeout=30)
        assert err.value.code == 404
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def test_cli_serve_until_interrupted(tmp_path: Path) -> None:
    (tmp_path / "a__oracle.jsonl").write_text(json.dumps(_record()) + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "execgym.view", str(tmp_path), "--serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=sigint_default)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("report written to ")
        line = proc.stdout.readline()
        assert line.startswith("serving r") and " at http://127.0.0.1:" in line, line
        url = line.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b"execgym run" in response.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert (tmp_path / "report.html").is_file()


def test_trainer_folder_shows_its_log(tmp_path: Path) -> None:
    """``execgym train --out DIR`` writes args.json, log.jsonl and curves.png, no trajectories: the report
    shows the log and says why there are no episodes."""
    from execgym.agents.train.grpo import plot_log

    log = [{"iteration": 0, "phase": "eval", "success_rate": 0.0, "mean_return": 0.0, "infra_errors": 0},
           {"iteration": 1, "phase": "train", "success_rate": 0.25, "mean_return": 0.25, "episodes": 8,
            "episodes_dropped": 0, "optimizer_steps": 2, "loss": 0.125, "components": {}},
           {"phase": "summary", "optimizer_steps": 2, "episodes_dropped": 0, "trained": True}]
    (tmp_path / "args.json").write_text("{}")
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    pytest.importorskip("matplotlib")
    plot_log(tmp_path / "log.jsonl", tmp_path / "curves.png")
    assert view([str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert 'id="train-table"' in html and "0.125" in html and "curves.png" in html
    assert "the trainer records no episodes" in html


def test_view_error_is_a_value_error() -> None:
    with pytest.raises(ViewError, match="give a run folder"):
        load_run([])


def test_register_adds_a_view_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What ``execgym/cli.py`` does with a module that contributes commands: ``register(sub)``, then ``func``."""
    import argparse

    from execgym.view import cli

    parser = argparse.ArgumentParser(prog="execgym")
    cli.register(parser.add_subparsers(dest="command", required=True))
    (tmp_path / "a__oracle.jsonl").write_text(json.dumps(_record()) + "\n")
    args = parser.parse_args(["view", str(tmp_path), "--out", str(tmp_path / "x.html")])
    assert args.func(args) == 0 and (tmp_path / "x.html").is_file()
    assert "report written to" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["view", str(tmp_path), "--port", "99999"])


def test_episodes_missing_from_the_trajectories_are_said(tmp_path: Path) -> None:
    """An agent-errored episode is in summary.json's counts but never in a trajectory file: the report says so."""
    (tmp_path / "execgym_ToolUse-v0__openai.jsonl").write_text(json.dumps(_record()) + "\n")
    (tmp_path / "summary.json").write_text(json.dumps([{"env_id": "execgym/ToolUse-v0", "agent": "openai",
                                                        "episodes": 3, "agent_errors": 2, "scored": 1,
                                                        "success_rate": 0.0, "success_ci95": [0.0, 0.79]}]))
    run = load_run([tmp_path])
    assert any("counts 3 episodes and 1 were recorded" in n for n in run.notes)
    html = build_report([tmp_path], tmp_path / "r.html").read_text()
    assert "0.00 [0.00, 0.79]" in html and "0 / 2" in html
