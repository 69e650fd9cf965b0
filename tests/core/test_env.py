"""AgentEnv behaviour on the core's toy env: spaces, seeding, steps, truncation, info contract, render."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

from execgym.core.env import AgentEnv, truncate_middle
from execgym.core.errors import InfraError
from execgym.core.spaces import UnicodeText
from execgym.core.tasks import TaskSet
from tests.core.toy_env import GuessEnv


def call(name, **arguments):
    return {"name": name, "arguments": arguments}


def test_check_env_passes():
    check_env(GuessEnv(render_mode="ansi"), skip_render_check=False)


def test_spaces_accept_any_unicode_up_to_the_limit():
    env = GuessEnv(max_observation_chars=100, max_action_chars=50)
    assert isinstance(env.observation_space, UnicodeText)
    assert env.observation_space.contains("ünïcödé 中文 🙂")
    assert not env.observation_space.contains("x" * 101)
    assert env.action_space.contains(env.action_space.sample())


def test_seeded_reset_is_reproducible_and_task_id_option_picks():
    env = GuessEnv()
    ids = [env.reset(seed=s)[1]["task_id"] for s in range(10)]
    assert ids == [env.reset(seed=s)[1]["task_id"] for s in range(10)]
    assert len(set(ids)) > 1
    obs, info = env.reset(options={"task_id": "word-3"})
    assert info["task_id"] == "word-3" and obs == "Find the secret 5-letter word."
    with pytest.raises(KeyError, match="unknown task_id"):
        env.reset(options={"task_id": "nope"})


def test_reset_info_contract():
    _, info = GuessEnv().reset(seed=0)
    assert {"task_id", "tools", "system_prompt", "messages"} <= set(info)
    assert [t["function"]["name"] for t in info["tools"]] == ["hint", "crash", "submit"]
    assert info["tools"][0]["function"]["parameters"]["required"] == ["position"]
    assert [m["role"] for m in info["messages"]] == ["system", "user"]


def test_oracle_wins_and_final_info_contract():
    env = GuessEnv()
    _, info = env.reset(seed=3)
    obs, reward, terminated, truncated, info = env.step(env.task.oracle[0])
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["outcome"] == 1.0 and info["units"] == [{"id": "word", "passed": True, "evidence": "", "extra": {}}]
    assert info["hack_flags"] == [] and info["infra_error"] is None and info["checklist"] == []
    assert info["reward_components"]["format"] == 1.0 and "hints" in info["reward_components"]


def test_sparse_reward_and_tool_components_and_tool_errors():
    env = GuessEnv()
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(call("hint", position=0))
    assert reward == 0.0 and not terminated and info["reward_components"] == {"format": 1.0, "hint": 1.0}
    obs, *_ , info = env.step(call("hint", position=99))
    assert obs.startswith("Error: position 99") and info["tool_calls"][0]["error"] is True
    obs, *_ , info = env.step(call("crash"))
    assert "ZeroDivisionError" in obs  # a tool bug becomes an observation, not an exception


@pytest.mark.parametrize(
    ("action", "says"),
    [
        ("", "the reply is empty"),
        ("   \n ", "the reply is empty"),
        ("just chatting", "No tool call found"),
        ("x" * 1_000_001, "over the limit"),
        ('<tool_call>{"name": "hint", "arguments": {"position": "a"}}</tool_call>', "is not of type 'integer'"),
        ({"name": "hint", "arguments": {"position": 1, "extra": True}}, "'extra' was unexpected"),
        ({"name": "fly", "arguments": {}}, "unknown tool 'fly'"),
        ('<tool_call>{"name": "hint", "arguments": </tool_call>', "not valid JSON"),
        ("\ud800\udfff\x00 bad text", "No tool call found"),
        (None, "unsupported action type NoneType"),
    ],
)
def test_malformed_actions_never_raise(action, says):
    env = GuessEnv(max_action_chars=1_000_000)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert says in obs
    assert info["reward_components"]["format"] == 0.0
    assert env.observation_space.contains(obs)
    obs.encode("utf-8")
    for message in env.messages:
        (message.get("content") or "").encode("utf-8")


def test_truncation_grades_and_step_after_end_raises():
    env = GuessEnv(max_turns=2)
    env.reset(seed=0)
    assert env.step(call("hint", position=0))[3] is False
    obs, reward, terminated, truncated, info = env.step("no tool")
    assert (terminated, truncated, reward) == (False, True, 0.0)
    assert info["outcome"] == 0.0 and info["submitted"] is False
    with pytest.raises(ResetNeeded):
        env.step(call("hint", position=0))
    with pytest.raises(ResetNeeded):
        GuessEnv().step("hi")


def test_parallel_calls_stop_at_a_terminal_call():
    env = GuessEnv()
    env.reset(options={"task_id": "word-0"})
    obs, reward, terminated, _, info = env.step(
        [call("hint", position=0), call("submit", word="apple"), call("hint", position=1)])
    assert terminated and reward == 1.0
    assert [c["name"] for c in info["tool_calls"]] == ["hint", "submit"]
    assert "1 later call(s) were not run" in obs


def test_observations_are_truncated_to_the_space():
    env = GuessEnv(max_observation_chars=60)
    env.reset(seed=0)
    obs, *_ = env.step("z" * 500)
    assert len(obs) <= 60 and env.observation_space.contains(obs)
    assert len(truncate_middle("a" * 10_000, 200)) <= 200


class FlakyEnv(GuessEnv):
    def hint(self, position: int) -> str:
        """Reveal a letter.

        Args:
            position: index.
        """
        raise InfraError("sandbox vanished")


def test_infra_error_truncates_with_infra_error_set_and_reset_recovers():
    env = FlakyEnv()
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(call("hint", position=0))
    assert truncated and not terminated and reward == 0.0
    assert "InfraError: sandbox vanished" in info["infra_error"]
    assert "not your fault" in obs
    obs, info = env.reset(seed=1)
    assert info["task_id"]


def test_render_ansi_is_a_transcript():
    env = GuessEnv(render_mode="ansi")
    env.reset(options={"task_id": "word-1"})
    env.step(call("hint", position=0))
    env.step(call("submit", word="river"))
    text = env.render()
    assert "--- user ---" in text and 'hint({"position": 0})' in text
    assert "letter 0 is 'r'" in text and "outcome 1.0 after 2 turn(s)" in text
    assert GuessEnv().render() is None


def test_messages_follow_openai_format():
    env = GuessEnv()
    env.reset(seed=0)
    _, _, _, _, info = env.step(call("hint", position=1))
    assistant, tool = info["new_messages"]
    assert assistant["tool_calls"][0]["function"]["name"] == "hint"
    assert tool == {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "name": "hint",
                    "content": tool["content"]}
    assert env.messages[-2:] == info["new_messages"]


def test_generated_tasks_by_seed_and_id():
    env = GuessEnv(dataset="generated:hard")
    _, info = env.reset(seed=5)
    task_id = info["task_id"]
    assert task_id.startswith("gen-hard-")
    word = env.task.data["word"]
    env.reset(options={"task_id": task_id})
    assert env.task.data["word"] == word


def test_dataset_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset format 'spider'.*known formats"):
        GuessEnv(dataset="spider:/nowhere")
    with pytest.raises(ValueError, match="no split 'dev'"):
        GuessEnv(split="dev")
    assert GuessEnv(split="train").tasks.splits() == {"train": 3}
    with pytest.raises(ValueError, match="unknown difficulty"):
        GuessEnv(dataset="generated:impossible")
    assert isinstance(GuessEnv(tasks=TaskSet(GuessEnv().bundled_tasks()[:1])).tasks, TaskSet)


def test_registered_envs_pass_check_env():
    import execgym

    for env_id in execgym.registered_envs():
        env = gym.make(env_id)
        try:
            assert isinstance(env.unwrapped, AgentEnv)
            check_env(env.unwrapped, skip_render_check=True)
        finally:
            env.close()


def test_snapshot_branches_evolve_independently_and_grade_as_if_played_from_the_start():
    env = GuessEnv()
    env.reset(options={"task_id": "word-2"})
    env.step(call("hint", position=0))
    snap = env.snapshot()
    other = GuessEnv()  # another instance of the same env
    other.restore(snap)
    # Branch A (this env) wins; branch B (the other instance) loses after one more hint.
    *_, info_a = env.step(call("submit", word="stone"))
    other.step(call("hint", position=1))
    *_, info_b = other.step(call("submit", word="wrong"))
    assert info_a["outcome"] == 1.0 and info_a["reward_components"]["hints"] == 1.0
    assert info_b["outcome"] == 0.0 and info_b["reward_components"]["hints"] == 2.0
    # Replaying branch B from the start gives the same grade and transcript.
    fresh = GuessEnv()
    fresh.reset(options={"task_id": "word-2"})
    for action in (call("hint", position=0), call("hint", position=1), call("submit", word="wrong")):
        *_, info_c = fresh.step(action)
    assert info_c["outcome"] == info_b["outcome"] and info_c["reward_components"] == info_b["reward_components"]
    assert [m["content"] for m in fresh.messages] == [m["content"] for m in other.messages]
    # The snapshot itself is untouched by either branch: restoring it again resumes at turn 1.
    env.restore(snap)
    assert env.turn == 1 and len(env.messages) == 4


def test_snapshot_is_refused_by_envs_without_the_hooks_and_across_classes():
    class NoSnap(AgentEnv):
        bundled_tasks = GuessEnv.bundled_tasks

        def _tools(self, task):
            return []

        def _grade(self, submitted):
            return None

    env = NoSnap()
    env.reset(seed=0)
    with pytest.raises(NotImplementedError, match="does not support snapshot"):
        env.snapshot()
    g = GuessEnv()
    g.reset(seed=0)
    with pytest.raises(ValueError, match="cannot be restored into"):
        FlakyEnv().restore(g.snapshot())


def test_an_env_with_only_a_generator_defaults_to_generated():
    class GenOnly(GuessEnv):
        bundled_tasks = AgentEnv.bundled_tasks

    env = GenOnly()
    assert env.tasks.unlimited
    assert env.reset(seed=0)[1]["task_id"].startswith("gen-")
