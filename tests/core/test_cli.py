"""The execgym command line: list, play (by hand and with an agent), replay."""

from __future__ import annotations

import io
import subprocess
import sys

import gymnasium as gym
import pytest

from execgym.cli import main
from execgym.core.trajectory import RecordTrajectory

TEST_ID = "execgym-test/GuessCLI-v0"


@pytest.fixture(autouse=True)
def toy_registered():
    gym.register(TEST_ID, entry_point="tests.core.toy_env:GuessEnv")
    yield
    del gym.registry[TEST_ID]


def run(argv, stdin=""):
    out = io.StringIO()
    code = main(argv, out=out, inp=io.StringIO(stdin))
    return code, out.getvalue()


def test_play_by_hand_with_json_text_and_multiline_replies():
    stdin = ('{"name": "hint", "arguments": {"position": 0}}\n'
             "thinking... \\\n"
             '<tool_call>{"name": "hint", "arguments": {"position": 9}}</tool_call>\n'
             ':transcript\n'
             '{"name": "submit", "arguments": {"word": "apple"}}\n')
    code, out = run(["play", "--env", TEST_ID, "--task-id", "word-0"], stdin)
    assert code == 0
    assert "hint(position: integer): Reveal one letter of the word." in out
    assert "letter 0 is 'a'" in out and "Error: position 9 is outside 0..4" in out
    assert "--- assistant ---\nthinking... \n<tool_call>" in out  # the transcript, multi-line reply joined
    assert "episode over (terminated): outcome 1.0" in out


def test_play_stops_cleanly_on_eof_and_quit():
    assert "(stopped)" in run(["play", "--env", TEST_ID, "--seed", "1"], "")[1]
    assert "(stopped)" in run(["play", "--env", TEST_ID, "--seed", "1"], ":quit\n")[1]


def test_watch_an_agent_play():
    code, out = run(["play", "--env", TEST_ID, "--seed", "2", "--agent", "oracle"])
    assert code == 0 and "oracle> " in out and "episode over (terminated): outcome 1.0" in out
    code, out = run(["play", "--env", TEST_ID, "--seed", "2", "--agent", "random", "--max-turns", "3"])
    assert code == 0 and "random> " in out and "episode over" in out


def test_unknown_env_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown env 'Nope'"):
        run(["play", "--env", "Nope"])


def test_replay_command(tmp_path):
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(gym.make(TEST_ID), path)
    env.reset(seed=0)
    env.step({"name": "submit", "arguments": {"word": env.unwrapped.task.data["word"]}})
    code, out = run(["replay", str(path)])  # a test id outside execgym/: refused without the opt-in
    assert code == 1 and "refused" in out
    code, out = run(["replay", "--trust-entry-points", str(path)])
    assert code == 0 and "1/1 episodes reproduced" in out


def test_list_and_entry_point():
    code, out = run(["list"])
    assert code == 0
    proc = subprocess.run([sys.executable, "-m", "execgym.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("execgym ")


def test_run_prints_a_table_and_writes_outputs(tmp_path):
    import json

    code, out = run(["run", "--env", TEST_ID, "--agent", "oracle,random", "--episodes", "6",
                     "--out", str(tmp_path)])
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("execgym-test/GuessCLI-v0")]
    assert len(rows) == 2
    assert " 1.00 [0.61, 1.00]" in rows[0]  # oracle: 6/6 with its Wilson interval
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary[0]["success_rate"] == 1.0 and summary[1]["agent"] == "random"
    assert len((tmp_path / "execgym-test_GuessCLI-v0__oracle.jsonl").read_text().splitlines()) == 6


def test_play_png_says_when_an_env_draws_no_picture(tmp_path):
    code, out = run(["play", "--env", TEST_ID, "--seed", "0", "--agent", "oracle", "--png", str(tmp_path)])
    assert code == 0 and "GuessEnv draws no picture; no PNG will be written" in out
    assert out.index("draws no picture") < out.index("tools:")  # said at the start, not after every turn
    assert out.count("draws no picture") == 1 and not list(tmp_path.iterdir())


class NeedsExtra:
    def __init__(self, **kwargs):
        raise gym.error.DependencyNotInstalled("needs pip install execgym[cad]")


def test_envs_missing_an_extra_are_reported_not_fatal(monkeypatch):
    import execgym

    gym.register("execgym-test/NeedsExtra-v0", entry_point=NeedsExtra)
    try:
        monkeypatch.setattr(execgym, "registered_envs", lambda **kw: ["execgym-test/NeedsExtra-v0", TEST_ID])
        code, out = run(["list"])
        assert code == 0 and "needs pip install execgym[cad]" in out and TEST_ID in out
        code, out = run(["run", "--env", "all", "--agent", "oracle", "--episodes", "2"])
        assert code == 0 and "skipping execgym-test/NeedsExtra-v0: needs pip install execgym[cad]" in out
        assert "GuessCLI-v0" in out
    finally:
        del gym.registry["execgym-test/NeedsExtra-v0"]


def test_run_with_slots_wrappers_agent_args_and_plots(tmp_path):
    import json

    code, out = run(["run", "--env", TEST_ID, "--agent", "random", "--episodes", "6", "--num-envs", "2",
                     "--agent-arg", "max_tries=5", "--wrapper", "HackPenalty", "--wrapper",
                     'ComposeReward:{"weights": {"outcome": 2.0}}', "--max-turns", "3", "--out", str(tmp_path)])
    assert code == 0, out
    assert "tokens" in out.splitlines()[0]
    summary = json.loads((tmp_path / "summary.json").read_text())[0]
    assert summary["episodes"] == 6 and summary["mean_tokens"] == 0.0
    lines = (tmp_path / "execgym-test_GuessCLI-v0__random.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["seed"] for r in records) == list(range(6))  # both slots wrote to the one file
    assert records[0]["inner_wrappers"][:2] == ["ComposeReward", "HackPenalty"]
    assert list(tmp_path.glob("*__components.png"))
    with pytest.raises(SystemExit, match="not JSON"):
        run(["run", "--env", TEST_ID, "--wrapper", "HackPenalty:{oops"])
    with pytest.raises(SystemExit, match="unknown reward wrapper 'Nope'; known: .*GatedReward"):
        run(["run", "--env", TEST_ID, "--agent", "oracle", "--episodes", "1", "--wrapper", "Nope"])
