"""The reference trainers' honesty: errored episodes are dropped and counted, a run without an optimizer step
says so, the curves tell train from eval and explain an empty loss panel; ``init-model`` and ``train`` take short
env names, bad input is one line, and ``--out`` never mixes two runs."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import gymnasium as gym
import pytest

from execgym.agents.base import BatchedAgent
from execgym.agents.hf_policy import load_policy
from execgym.agents.train.grpo import (
    EVAL_STYLE,
    TRAIN_STYLE,
    GRPOArgs,
    curves_figure,
    group_advantages,
    rollout,
    train,
    training_samples,
)
from execgym.agents.train.sft import collect_demonstrations
from execgym.cli import main
from execgym.core.errors import InfraError
from tests.core.toy_env import WORDS, GuessEnv

pytestmark = pytest.mark.timeout(900)

FLAKY_ID = "execgym-test/TrainFlaky-v0"
BROKEN_ID = "execgym-test/TrainBroken-v0"


class EveryOtherGradeFails(GuessEnv):
    """Grading fails on the machinery on every second episode (so groups hold both kinds)."""

    graded = 0

    def _grade(self, submitted: bool):
        EveryOtherGradeFails.graded += 1
        if EveryOtherGradeFails.graded % 2 == 0:
            raise InfraError("the grading worker died")
        return super()._grade(submitted)


class BrokenGrader(GuessEnv):
    def _grade(self, submitted: bool):
        raise InfraError("the grading worker died")


@pytest.fixture(autouse=True)
def registered():
    gym.register(FLAKY_ID, entry_point=EveryOtherGradeFails)
    gym.register(BROKEN_ID, entry_point=BrokenGrader)
    yield
    del gym.registry[FLAKY_ID]
    del gym.registry[BROKEN_ID]


def run(argv):
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


def records_of(folder):
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_group_advantages_leave_dropped_episodes_out():
    adv = group_advantages([1.0, 0.0, 7.0, 1.0, 1.0, 0.0], 3, scale=True, keep=[True, True, False, True, False, True])
    assert adv[2] == 0.0 and adv[4] == 0.0  # dropped: no advantage
    assert adv[0] == pytest.approx(1.0, abs=1e-4) and adv[1] == pytest.approx(-1.0, abs=1e-4)  # mean 0.5, std 0.5
    assert group_advantages([1.0, 0.0, 7.0], 3, keep=[True, False, False]).tolist() == [0.0, 0.0, 0.0]


class RightRightWrong(BatchedAgent):
    """Submits the task's word in slots 0 and 1 of every three and a wrong word in slot 2; its stream holds one
    token of its own per episode (so every episode could be a training sample)."""

    name = "right-right-wrong"

    def reset(self, info):
        self.word = WORDS[int(info["task_id"].removeprefix("word-"))]
        self.stream = SimpleNamespace(ids=[1, 2], mask=[0, 1])

    def act_batch(self, observations, infos, slots=None):
        slots = list(slots) if slots is not None else list(range(len(observations)))
        return [{"name": "submit", "arguments": {"word": self.slot(k).word if k % 3 != 2 else "wrong"}}
                for k in slots]


def test_an_episode_whose_grading_failed_on_infra_is_never_a_training_sample():
    EveryOtherGradeFails.graded = 0
    episodes = rollout([EveryOtherGradeFails() for _ in range(3)], RightRightWrong(), [0, 0, 0])
    assert [e.infra_error is not None for e in episodes] == [False, True, False]
    assert "the grading worker died" in episodes[1].infra_error
    assert [e.total_reward for e in episodes] == [1.0, 0.0, 0.0]
    advantages, chosen = training_samples(episodes, 3)
    assert chosen == [0, 2] and advantages[1] == 0.0  # the group's spread is over the policy's own episodes
    # the control: kept, the infra failure would be trained on as if it were the policy's 0
    assert group_advantages([e.total_reward for e in episodes], 3)[1] != 0.0


def test_grpo_drops_infra_error_episodes_and_says_when_no_step_ran(tiny_dir, tmp_path):
    EveryOtherGradeFails.graded = 0
    logged = []
    args = GRPOArgs(env_id=FLAKY_ID, dataset="bundled", model=str(tiny_dir), out=str(tmp_path / "grpo"),
                    max_turns=1, iterations=1, tasks_per_iteration=2, group_size=2, max_new_tokens=4,
                    eval_every=0, device="cpu")
    result = train(args, on_log=logged.append)
    (record,) = [r for r in records_of(tmp_path / "grpo") if r["phase"] == "train"]
    assert EveryOtherGradeFails.graded == 4
    assert record["infra_errors"] == 2 and record["episodes_dropped"] == 2 and record["episodes"] == 4
    # random weights and 4 new tokens never make a valid call: every kept episode scores 0, no spread, no step
    assert record["optimizer_steps"] == 0 and record["note"] == "no optimizer step: no group had any reward spread"
    summary = records_of(tmp_path / "grpo")[-1]
    assert summary["phase"] == "summary" and summary["trained"] is False and summary["episodes_dropped"] == 2
    assert "final/ is the starting model, unchanged" in summary["note"] and logged[-1] == summary
    assert result["trained"] is False and result["optimizer_steps"] == 0
    fig = curves_figure(records_of(tmp_path / "grpo"))
    assert any("no optimizer step ran" in t.get_text() and "reward spread" in t.get_text()
               for t in fig.axes[2].texts)
    assert "2 episode(s) dropped" in fig._suptitle.get_text()


def test_curves_tell_train_from_eval():
    records = [{"phase": "eval", "iteration": 0, "success_rate": 0.1, "mean_return": 0.1, "temperature": 0.0},
               {"phase": "train", "iteration": 1, "success_rate": 0.3, "mean_return": 0.3, "temperature": 1.0,
                "loss": 0.5, "kl": 0.0, "clip_fraction": 0.1, "episodes": 4, "episodes_dropped": 0},
               {"phase": "train", "iteration": 2, "success_rate": 0.4, "mean_return": 0.4, "temperature": 1.0,
                "loss": 0.4, "kl": 0.0, "clip_fraction": 0.1, "episodes": 4, "episodes_dropped": 0},
               {"phase": "eval", "iteration": 2, "success_rate": 0.5, "mean_return": 0.5, "temperature": 0.0}]
    fig = curves_figure(records)
    for ax in fig.axes[:2]:
        train_line, eval_line = ax.get_lines()
        assert train_line.get_label() == "train, sampled (T=1)"
        assert eval_line.get_label() == "eval, held-out seeds (greedy)"
        assert train_line.get_color() == TRAIN_STYLE["color"] != eval_line.get_color() == EVAL_STYLE["color"]
        assert train_line.get_linestyle() != eval_line.get_linestyle()
        assert ax.get_legend() is not None
    assert not fig.axes[2].texts and len(fig.axes[2].get_lines()) == 3  # a loss panel with data needs no note


def test_sft_drops_errored_demonstrations_and_counts_them(tiny_dir):
    _, tokenizer = load_policy(tiny_dir, device="cpu")
    demos = collect_demonstrations(BrokenGrader(), tokenizer, range(3), only_successful=False)
    assert list(demos) == [] and demos.dropped == {"infra_error": 3, "agent_error": 0, "unsuccessful": 0}

    class Crashes:
        def reset(self, info):
            pass

        def act(self, observation, info):
            raise ConnectionError("the model server is down")

    demos = collect_demonstrations(GuessEnv(), tokenizer, range(2), agent=Crashes(), only_successful=False)
    assert list(demos) == [] and demos.dropped["agent_error"] == 2
    demos = collect_demonstrations(GuessEnv(), tokenizer, range(2))
    assert len(demos) == 2 and sum(demos.dropped.values()) == 0


def test_train_sft_with_only_errored_demonstrations_is_one_line(tiny_dir, tmp_path):
    with pytest.raises(SystemExit, match=r"no successful demonstration to learn from \(dropped: 3 infra error\)"):
        run(["train", "--sft", "--env", BROKEN_ID, "--dataset", "bundled", "--model", str(tiny_dir),
             "--out", str(tmp_path / "sft"), "--episodes", "3", "--device", "cpu"])


def test_train_takes_short_env_names_and_refuses_a_used_out_folder(tiny_dir, tmp_path, capsys):
    out = tmp_path / "grpo"
    argv = ["train", "--env", "sql", "--model", str(tiny_dir), "--out", str(out), "--iterations", "0",
            "--tasks-per-iteration", "1", "--group-size", "1", "--eval-every", "0", "--device", "cpu"]
    assert run(argv)[0] == 0
    assert json.loads((out / "args.json").read_text())["env_id"] == "execgym/TextToSQL-v0"
    assert "GRPO: no optimizer step ran" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="is not empty .*--overwrite"):
        run(argv)
    (out / "checkpoint-9").mkdir()  # what an earlier, longer run left
    assert run([*argv, "--overwrite"])[0] == 0
    assert not (out / "checkpoint-9").exists() and (out / "final" / "config.json").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--env", "nope", "--model", "m"], "unknown env 'nope'"),
    (["train", "--env", "sql", "--dataset", "nope", "--model", "m"], "unknown dataset format 'nope'"),
    (["train", "--env", "sql", "--env-kwargs", '{"colour": 1}', "--model", "m"], "takes no keyword 'colour'"),
    (["init-model", "--out", "unused", "--env", "nope"], "unknown env 'nope'"),
    (["init-model", "--out", "unused", "--env", "sql", "--dataset", "nope"], "unknown dataset format 'nope'"),
])
def test_train_and_init_model_bad_input_is_one_line(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=message):
        run(argv)


def test_init_model_takes_a_short_env_name_and_refuses_a_used_out_folder(tmp_path, capsys):
    argv = ["init-model", "--out", str(tmp_path / "m"), "--env", "TextToSQL", "--episodes", "2", "--vocab-size",
            "300", "--hidden-size", "32", "--layers", "1", "--heads", "2"]
    assert run(argv)[0] == 0 and (tmp_path / "m" / "config.json").exists()
    with pytest.raises(SystemExit, match="is not empty .*--overwrite"):
        run(argv)
    (tmp_path / "m" / "notes.txt").write_text("mine")
    assert run([*argv, "--overwrite"])[0] == 0
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_a_model_that_does_not_load_is_one_line_and_leaves_out_unused(tmp_path):
    out = tmp_path / "grpo"
    for mode in ([], ["--sft"]):
        with pytest.raises(SystemExit, match="execgym train"):
            run(["train", *mode, "--env", "sql", "--model", str(tmp_path / "no-such-model"), "--out", str(out),
                 "--device", "cpu"])
        assert not out.exists() or not any(out.iterdir())  # a retry is not refused as a "used" folder
