"""Records and replay: no odd text loses an episode, and replay never runs code a file names unless trusted."""

from __future__ import annotations

import io
import json
import sys

import gymnasium as gym
import numpy as np
import pytest

from execgym.cli import main as cli_main
from execgym.core.trajectory import RecordTrajectory, append_jsonl, read_trajectories, replay_file
from tests.core.toy_env import GuessEnv

SURROGATE_ACTIONS = [
    # a tool call whose JSON holds a lone surrogate (structured and as raw <tool_call> text)
    {"name": "submit", "arguments": {"word": "ab\ud800cd"}},
    '<tool_call>{"name": "submit", "arguments": {"word": "\\ud800"}}</tool_call>',
    # raw replies with lone surrogates, alone, paired the wrong way round, next to NUL and real emoji
    "\ud800",
    "reply \udfff\ud800 then \x00 and 🙂 \ud83d",
    {"role": "assistant", "content": "\udc80", "tool_calls": [
        {"type": "function", "function": {"name": "submit", "arguments": '{"word": "\\udbff"}'}}]},
    [{"name": "hint", "arguments": {"position": 0, "\ud800key": 1}}],
]


@pytest.mark.parametrize("action", SURROGATE_ACTIONS, ids=range(len(SURROGATE_ACTIONS)))
def test_lone_surrogates_never_lose_the_episode_and_read_back_exactly(tmp_path, action):
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(GuessEnv(max_turns=1), path)
    env.reset(seed=0)
    *_, terminated, truncated, _ = env.step(action)
    assert terminated or truncated
    assert env.episodes_written == 1
    (record,) = read_trajectories(path)
    assert record["steps"][0]["action"] == action  # the very same str, surrogates included
    path.read_bytes().decode("utf-8")  # the file stays valid UTF-8


def test_a_record_with_odd_values_of_every_kind_is_still_written(tmp_path):
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    deep: list = []
    for _ in range(20_000):
        deep = [deep]
    record = {
        "nested": deep,
        "broken": Broken(),
        "keys": {(1, 2): "tuple key", None: "none key", 3: "int key", "\ud800": "surrogate key"},
        "numpy": {"f": np.float32(0.5), "i": np.int64(3), "a": np.arange(3), "nan": np.float64("nan")},
        "bytes": b"\xff\xfe",
    }
    append_jsonl(path := tmp_path / "odd.jsonl", record)
    (back,) = read_trajectories(path)
    assert back["broken"] == "<unrepresentable Broken>"
    assert back["keys"]["\ud800"] == "surrogate key" and back["keys"]["3"] == "int key"
    assert back["numpy"]["i"] == 3 and back["numpy"]["a"] == [0, 1, 2]
    depth, node = 0, back["nested"]
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert "nested deeper than" in node and depth < 200


def test_a_deeply_nested_action_the_env_accepts_is_recorded(tmp_path):
    deep: list = [{"name": "hint", "arguments": {"position": 0}}]
    for _ in range(20_000):
        deep = [deep]
    env = RecordTrajectory(GuessEnv(max_turns=1), tmp_path / "t.jsonl")
    env.reset(seed=0)
    env.step(deep)
    assert env.episodes_written == 1 and len(list(read_trajectories(tmp_path / "t.jsonl"))) == 1


def test_a_reward_that_is_not_a_number_is_kept_as_data_not_a_crash(tmp_path):
    class StrReward(gym.Wrapper):
        def step(self, action):
            obs, _, terminated, truncated, info = self.env.step(action)
            return obs, "one", terminated, truncated, info

    env = RecordTrajectory(StrReward(GuessEnv(max_turns=1)), tmp_path / "t.jsonl")
    env.reset(seed=0)
    env.step("x")
    (record,) = read_trajectories(tmp_path / "t.jsonl")
    assert record["steps"][0]["reward"] is None and record["return"] == 0.0


# ----------------------------------------------------------------------------------- replay
@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A module that leaves a marker file when it is imported: running it is what replay must not do."""
    marker = tmp_path / "ran"
    (tmp_path / "planted_env_mod.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
        "class Env:\n    def __init__(self, **kw):\n        raise RuntimeError('constructed')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("planted_env_mod", None)


def _record(tmp_path, **identity):
    path = tmp_path / "evil.jsonl"
    record = {"format": "execgym.trajectory/1", "task_id": "t", "seed": 0, "steps": [{"action": "x", "reward": 0.0}],
              **identity}
    path.write_text(json.dumps(record) + "\n")
    return path


@pytest.mark.parametrize(
    "identity",
    [
        {"env_id": None, "env_entry_point": "planted_env_mod:Env"},
        {"env_id": "execgym/NotRegistered-v0", "env_entry_point": "planted_env_mod:Env"},
        {"env_entry_point": "planted_env_mod:Env"},
        {"env_id": "CartPole-v1", "env_entry_point": "planted_env_mod:Env"},
        {"env_id": "planted/Env-v0", "env_entry_point": "os:system", "env_kwargs": {"command": "true"}},
    ],
    ids=["no-id", "unregistered-execgym-id", "entry-point-only", "foreign-registered-id", "os-system"],
)
def test_replay_refuses_a_file_naming_a_non_execgym_env_without_running_it(tmp_path, planted, identity):
    path = _record(tmp_path, **identity)
    (result,) = replay_file(path)
    assert not result.reproduced and result.message.startswith("refused")
    assert "trust_entry_points" in result.message
    assert not planted.exists() and "planted_env_mod" not in sys.modules


def test_the_cli_refuses_too_and_the_opt_in_is_explicit(tmp_path, planted):
    path = _record(tmp_path, env_id=None, env_entry_point="planted_env_mod:Env")
    out = io.StringIO()
    assert cli_main(["replay", str(path)], out=out, inp=io.StringIO()) == 1
    assert "refused" in out.getvalue() and not planted.exists()
    out = io.StringIO()
    assert cli_main(["replay", "--trust-entry-points", str(path)], out=out, inp=io.StringIO()) == 1
    assert planted.exists()  # told to trust the file, replay imported what it names


def test_replay_of_a_registered_execgym_env_needs_no_opt_in(tmp_path):
    path = tmp_path / "sql.jsonl"
    env = RecordTrajectory(gym.make("execgym/TextToSQL-v0", max_turns=2), path)
    env.reset(seed=0)
    env.step(env.unwrapped.task.oracle[0])
    env.close()
    record = next(read_trajectories(path))
    record["env_entry_point"] = "planted_env_mod:Env"  # ignored: the registered id decides what is built
    path.write_text(json.dumps(record) + "\n")
    (result,) = replay_file(path)
    assert result.reproduced, result.message


def test_replay_refuses_env_kwargs_that_widen_what_the_env_may_read(tmp_path):
    """A record may not switch off dataset-path confinement (or any ``allow_*`` / ``trust_*`` option)."""
    import json

    from execgym.core.trajectory import replay_file

    record = {"env_id": "execgym/TextToSQL-v0", "task_id": None, "seed": 0, "steps": [],
              "env_kwargs": {"dataset": "bundled", "allow_paths_outside_dataset": True}}
    path = tmp_path / "widening.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (result,) = replay_file(path)
    assert not result.reproduced and "allow_paths_outside_dataset" in result.message
    assert "refused" in result.message
    record["env_kwargs"]["allow_paths_outside_dataset"] = False  # the default is fine
    path.write_text(json.dumps(record) + "\n")
    (result,) = replay_file(path)
    assert "refused" not in result.message
