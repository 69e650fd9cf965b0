"""``execgym init-model``, ``execgym train --sft``, ``execgym train`` and ``execgym serve`` from the command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.request

import pytest

from execgym.cli import main
from tests.agents.conftest import GUESS_ID

# a tiny model trains in the session fixtures: generous on a loaded 2-core machine
pytestmark = pytest.mark.timeout(900)


def run(argv):
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


def test_init_model_then_sft_then_grpo(tmp_path, capsys):
    model = tmp_path / "tiny"
    assert run(["init-model", "--out", str(model), "--env", GUESS_ID, "--episodes", "4", "--vocab-size", "400",
                "--hidden-size", "32", "--layers", "1", "--heads", "2"])[0] == 0
    assert (model / "config.json").exists() and (model / "tokenizer.json").exists()
    assert "saved to" in capsys.readouterr().out
    sft = tmp_path / "sft"
    code, _ = run(["train", "--sft", "--env", GUESS_ID, "--dataset", "bundled", "--model", str(model), "--out",
                   str(sft), "--episodes", "4", "--epochs", "1", "--eval-episodes", "2", "--max-new-tokens", "4",
                   "--max-turns", "2", "--device", "cpu"])
    assert code == 0 and (sft / "final" / "config.json").exists() and (sft / "curves.png").exists()
    assert "SFT: greedy success" in capsys.readouterr().out
    grpo = tmp_path / "grpo"
    code, _ = run(["train", "--env", GUESS_ID, "--dataset", "bundled", "--model", str(sft / "final"), "--out",
                   str(grpo), "--iterations", "1", "--tasks-per-iteration", "1", "--group-size", "2",
                   "--max-new-tokens", "4", "--max-turns", "2", "--eval-every", "1", "--eval-episodes", "2",
                   "--wrapper", 'GatedReward:{"components": {"format": 0.1}}', "--wrapper", "HackPenalty",
                   "--device", "cpu"])
    assert code == 0
    records = [json.loads(line) for line in (grpo / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["eval", "train", "eval", "summary"]
    assert json.loads((grpo / "args.json").read_text())["wrappers"] == [
        'GatedReward:{"components": {"format": 0.1}}', "HackPenalty"]
    assert (grpo / "curves.png").exists() and (grpo / "final" / "config.json").exists()


def test_train_names_reward_wrappers_as_run_does_and_refuses_a_bad_one_in_one_line():
    with pytest.raises(SystemExit) as exc:
        run(["train", "--model", "m", "--wrapper", "HackPenalty", "--wrapper", "Nope"])
    assert str(exc.value).startswith("execgym train: --wrapper: unknown reward wrapper 'Nope'; known: ")
    assert "GatedReward" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(SystemExit, match="not JSON"):
        run(["train", "--model", "m", "--wrapper", "GatedReward:{oops"])
    with pytest.raises(SystemExit, match="--epochs do not apply"):  # --wrapper is GRPO's, accepted with it
        run(["train", "--model", "m", "--wrapper", "HackPenalty", "--epochs", "1"])


def test_train_rejects_options_of_the_other_mode():
    with pytest.raises(SystemExit, match="--epochs do not apply to GRPO"):
        run(["train", "--model", "m", "--epochs", "3"])
    with pytest.raises(SystemExit, match="--group-size do not apply to --sft"):
        run(["train", "--sft", "--model", "m", "--group-size", "3"])
    with pytest.raises(SystemExit, match="--model is required"):
        run(["train"])


def test_serve_command_answers_on_loopback(sft_dir):
    proc = subprocess.Popen([sys.executable, "-m", "execgym.cli", "serve", "--model", str(sft_dir), "--port", "0",
                             "--served-model-name", "tiny", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving tiny on http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[3]
        body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        request = urllib.request.Request(url + "/chat/completions", data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        deadline = time.monotonic() + 60
        with urllib.request.urlopen(request, timeout=max(1.0, deadline - time.monotonic())) as r:
            answer = json.load(r)
        assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] <= 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)
