"""RecordTrajectory: one line per finished episode, crash-safe appends, and replay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym

from execgym.core.trajectory import RecordTrajectory, append_jsonl, read_trajectories, replay_file
from tests.core.toy_env import GuessEnv

ROOT = Path(__file__).resolve().parents[2]


def play(env, seed, actions):
    env.reset(seed=seed)
    for action in actions:
        *_, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return info
    return None


def test_one_line_per_finished_episode_with_everything(tmp_path):
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(GuessEnv(), path)
    env.reset(seed=0)
    word = env.unwrapped.task.data["word"]
    env.step({"name": "hint", "arguments": {"position": 0}})
    env.step(f'<tool_call>{{"name": "submit", "arguments": {{"word": "{word}"}}}}</tool_call>')
    env.reset(seed=1)  # unfinished episode: not written
    env.step("no call")
    records = list(read_trajectories(path))
    assert len(records) == 1 and env.episodes_written == 1
    rec = records[0]
    assert rec["task_id"] == "word-4" or rec["task_id"].startswith("word-")
    assert rec["seed"] == 0 and rec["outcome"] == 1.0 and rec["return"] == 1.0
    assert rec["env_entry_point"] == "tests.core.toy_env:GuessEnv"
    assert [s["reward"] for s in rec["steps"]] == [0.0, 1.0]
    assert rec["steps"][0]["action"] == {"name": "hint", "arguments": {"position": 0}}
    assert rec["steps"][0]["reward_components"] == {"format": 1.0, "hint": 1.0}
    assert rec["steps"][0]["step_time_s"] >= 0 and rec["episode_time_s"] >= rec["steps"][0]["step_time_s"]
    assert rec["messages"][0]["role"] == "system" and rec["tools"][0]["function"]["name"] == "hint"


def test_a_sink_takes_the_records_a_file_would_get(tmp_path):
    taken: list[dict] = []
    sunk = RecordTrajectory(GuessEnv(), sink=taken.append)
    filed = RecordTrajectory(GuessEnv(), tmp_path / "t.jsonl")
    for env in (sunk, filed):
        env.reset(seed=0)
        word = env.unwrapped.task.data["word"]
        env.step({"name": "submit", "arguments": {"word": word}})
    [written] = list(read_trajectories(tmp_path / "t.jsonl"))
    assert len(taken) == 1 and sunk.episodes_written == 1 and sunk.path is None
    for key in ("task_id", "outcome", "submitted", "tools"):
        assert taken[0][key] == written[key], key
    timeless = [[{k: v for k, v in step.items() if k != "step_time_s"} for step in r["steps"]]
                for r in (taken[0], written)]
    assert timeless[0] == timeless[1]
    for bad in ({}, {"path": tmp_path / "u.jsonl", "sink": taken.append}):
        try:
            RecordTrajectory(GuessEnv(), **bad)
        except ValueError as exc:
            assert "a path or a sink" in str(exc)
        else:
            raise AssertionError(f"RecordTrajectory accepted {bad}")


def test_replay_reproduces_and_detects_a_changed_env(tmp_path):
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(GuessEnv(), path)
    for seed in range(4):
        env.reset(seed=seed)
        word = env.unwrapped.task.data["word"]
        guess = word if seed % 2 == 0 else "wrong"
        env.step({"name": "hint", "arguments": {"position": 1}})
        env.step({"name": "submit", "arguments": {"word": guess}})
    results = replay_file(path, trust_entry_points=True)
    assert [r.reproduced for r in results] == [True] * 4
    assert [r.recorded_return for r in results] == [1.0, 0.0, 1.0, 0.0]
    # Tamper with one recorded reward: replay must notice.
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["steps"][-1]["reward"] = 1.0
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    results = replay_file(path, trust_entry_points=True)
    assert [r.reproduced for r in results] == [True, False, True, True]
    assert "rewards differ" in results[1].message


WRITER = """
import sys
sys.path.insert(0, {root!r})
from execgym.core.trajectory import RecordTrajectory
from tests.core.toy_env import GuessEnv
env = RecordTrajectory(GuessEnv(), {path!r})
i = 0
while True:
    env.reset(seed=i)
    env.step({{"name": "hint", "arguments": {{"position": 0}}}})
    # a long answer makes each line span many pages, so a kill can land inside the write
    env.step({{"name": "submit", "arguments": {{"word": "x" * 300_000}}}})
    i += 1
    if i == 3:
        print("ready", flush=True)
"""


def test_kill_9_never_leaves_a_corrupt_file(tmp_path):
    path = tmp_path / "t.jsonl"
    script = WRITER.format(root=str(ROOT), path=str(path))
    for delay in (0.05, 0.13, 0.21, 0.37, 0.5):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Every complete line parses; only a last, partial line may be skipped by the reader.
        records = list(read_trajectories(path))
        assert all(r["steps"][1]["action"]["arguments"]["word"] == "x" * 300_000 for r in records)
    before = len(list(read_trajectories(path)))
    append_jsonl(path, {"after": "crash"})  # the next append removes any partial tail first
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.decode("utf-8").splitlines()
    assert all(json.loads(line) for line in lines)  # strictly valid JSONL now
    assert len(lines) == before + 1 and before >= 15


def test_record_through_gym_make_keeps_env_id_and_kwargs(tmp_path):
    gym.register("execgym-test/Guess-v0", entry_point="tests.core.toy_env:GuessEnv")
    try:
        path = tmp_path / "t.jsonl"
        env = RecordTrajectory(gym.make("execgym-test/Guess-v0", max_turns=3), path)
        play(env, 7, ["a", "b", "c"])
        rec = next(read_trajectories(path))
        assert rec["env_id"] == "execgym-test/Guess-v0" and rec["env_kwargs"] == {"max_turns": 3}
        assert rec["steps"][-1]["truncated"] is True
        assert replay_file(path, trust_entry_points=True)[0].reproduced
    finally:
        del gym.registry["execgym-test/Guess-v0"]


def test_partial_tail_from_a_dead_writer_is_skipped_then_repaired(tmp_path):
    path = tmp_path / "t.jsonl"
    append_jsonl(path, {"n": 1})
    with open(path, "ab") as fh:  # what a writer killed inside write() leaves behind
        fh.write(b'{"n": 2, "steps": [1, 2')
    assert list(read_trajectories(path)) == [{"n": 1}]
    append_jsonl(path, {"n": 3})
    assert path.read_text() == '{"n": 1}\n{"n": 3}\n'


def test_a_steps_turn_tokens_are_recorded_and_replay_ignores_them(tmp_path):
    from execgym.core.trajectory import TurnTokens, record_agent_turn

    class Agent:
        last_turn: TurnTokens | None = None

    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(GuessEnv(), path)
    agent = Agent()
    env.reset(seed=0)
    word = env.unwrapped.task.data["word"]
    agent.last_turn = TurnTokens([1, 2], [3, 4], [-0.5, -0.25])
    assert record_agent_turn(env, agent)
    env.step({"name": "hint", "arguments": {"position": 0}})
    agent.last_turn = None  # an action with no tokens (a scripted turn): its step has none
    assert not record_agent_turn(env, agent)
    env.step({"name": "submit", "arguments": {"word": word}})
    [rec] = list(read_trajectories(path))
    assert rec["steps"][0]["tokens"] == {"prompt_ids": [1, 2], "completion_ids": [3, 4], "logprobs": [-0.5, -0.25],
                                         "loss_mask": [0, 0, 1, 1]}
    assert "tokens" not in rec["steps"][1]
    assert replay_file(path, trust_entry_points=True)[0].reproduced
    for bad in ({"prompt_ids": [1], "completion_ids": [2], "loss_mask": [1]},
                {"prompt_ids": [1], "completion_ids": [2], "logprobs": [-1.0, -2.0]}):
        try:
            env.add_turn(bad)
        except ValueError as exc:
            assert "TurnTokens" in str(exc)
        else:
            raise AssertionError(f"add_turn accepted {bad}")
