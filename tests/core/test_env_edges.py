"""AgentEnv's API edges: constructor arguments, reset options, restore without reset, checked components,
and a `format` component that pays for well-formed actions, not for repeating one."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
from gymnasium.error import ResetNeeded

import execgym  # noqa: F401  (registers the env ids)
from execgym.core.env import AgentEnv, Grade
from execgym.core.tasks import Task
from execgym.core.tools import Tool, ToolOutput
from execgym.wrappers import ComposeReward, GatedReward
from tests.core.toy_env import GuessEnv


def call(name, **arguments):
    return {"name": name, "arguments": arguments}


# ----------------------------------------------------------------------------------- constructor arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"max_turns": "eight"}, TypeError, "max_turns"),
        ({"max_turns": 0}, ValueError, "max_turns"),
        ({"max_turns": -3}, ValueError, "max_turns"),
        ({"max_turns": True}, TypeError, "max_turns"),
        ({"max_turns": 2.5}, TypeError, "max_turns"),
        ({"max_observation_chars": "big"}, TypeError, "max_observation_chars"),
        ({"max_observation_chars": 0}, ValueError, "max_observation_chars"),
        ({"max_action_chars": None}, TypeError, "max_action_chars"),
        ({"max_action_chars": float("inf")}, TypeError, "max_action_chars"),
        ({"dataset": 3}, TypeError, "dataset"),
        ({"split": ["train"]}, TypeError, "split"),
        ({"tasks": ["word-0"]}, TypeError, "tasks"),
        ({"render_mode": "human"}, ValueError, "render_mode"),
    ],
)
def test_every_constructor_argument_is_checked_with_a_one_line_error_naming_it(kwargs, error, named):
    with pytest.raises(error) as exc:
        GuessEnv(**kwargs)
    message = str(exc.value)
    assert named in message and "\n" not in message


def test_gym_make_names_the_bad_argument():
    with pytest.raises(TypeError, match="max_turns must be an int"):
        gym.make("execgym/TextToSQL-v0", max_turns="eight")
    assert gym.make("execgym/TextToSQL-v0", max_turns=8).unwrapped.max_turns == 8


# ----------------------------------------------------------------------------------- reset options
@pytest.mark.parametrize("options", [{"taskid": "word-0"}, {"task_id": "word-0", "seed": 3}, {1: 2}])
def test_unknown_reset_option_is_an_error_naming_the_known_keys(options):
    env = GuessEnv()
    with pytest.raises(ValueError, match="unknown reset option.*known: task_id"):
        env.reset(options=options)
    assert env.reset(options={"task_id": "word-0"})[1]["task_id"] == "word-0"


@pytest.mark.parametrize("options", ["task_id=word-0", ["task_id"], {"task_id": ["word-0"]}, {"task_id": True}])
def test_reset_options_of_the_wrong_type_are_a_type_error(options):
    with pytest.raises(TypeError):
        GuessEnv().reset(options=options)


def test_an_env_declares_its_own_reset_options():
    class WithLevel(GuessEnv):
        reset_options = frozenset({"task_id", "level"})

    assert WithLevel().reset(options={"level": 2})[1]["task_id"].startswith("word-")
    with pytest.raises(ValueError, match="known: level, task_id"):
        WithLevel().reset(options={"levle": 2})


# ----------------------------------------------------------------------------------- restore
def test_restore_into_a_fresh_gym_make_env_without_reset():
    first = gym.make("execgym/TextToSQL-v0")
    first.reset(seed=0)
    task = first.unwrapped.task
    first.step('<tool_call>{"name": "list_tables", "arguments": {}}</tool_call>')
    snap = first.unwrapped.snapshot()
    expected = first.step(task.oracle[0])

    other = gym.make("execgym/TextToSQL-v0")
    other.unwrapped.restore(snap)  # no reset() first, as the README shows
    got = other.step(task.oracle[0])
    assert got[1:4] == expected[1:4] == (1.0, True, False)
    assert got[4]["turn"] == expected[4]["turn"] == 2
    for env in (first, other):
        env.close()


def test_order_is_still_enforced_without_gymnasiums_wrapper():
    env = gym.make("execgym/TextToSQL-v0")
    with pytest.raises(ResetNeeded):
        env.step("anything")
    env.reset(seed=0)
    env.step(env.unwrapped.task.oracle[0])
    with pytest.raises(ResetNeeded):
        env.step("after the end")
    env.close()


def test_restore_refuses_what_is_not_a_snapshot():
    with pytest.raises(TypeError, match="EpisodeSnapshot"):
        GuessEnv().restore({"turn": 3})


# ----------------------------------------------------------------------------------- checked components
class OddEnv(AgentEnv):
    """Tools and grader report whatever the test sets on the instance."""

    step_components: list = []
    outcome: object = 0.0
    grade_components: dict = {}

    @classmethod
    def bundled_tasks(cls):
        return [Task(id="odd", prompt="p", data={})]

    def _tools(self, task):
        def report(i: int) -> ToolOutput:
            """Report components.

            Args:
                i: which set.
            """
            return ToolOutput(f"set {i}", components=self.step_components[i])

        return [Tool.from_function(report), Tool.from_function(lambda: "ok", name="submit", terminal=True)]

    def _grade(self, submitted):
        return Grade(outcome=self.outcome, components=self.grade_components)


BAD_VALUES = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, "1.0", None, [1.0], {"x": 1}, 1.5, -0.5]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_a_bad_tool_component_is_dropped_and_flagged_never_passed(bad):
    env = OddEnv()
    env.step_components = [{"good": 0.5, "bad": bad}]
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(call("report", i=0))
    assert info["reward_components"] == {"format": 1.0, "good": 0.5}
    assert any("'bad'" in issue and "dropped" in issue for issue in info["reward_issues"])
    assert obs == "set 0"


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_a_bad_grade_component_is_dropped_and_flagged(bad):
    env = OddEnv()
    env.outcome, env.grade_components = 1.0, {"score": 0.25, "bad": bad}
    env.reset(seed=0)
    *_, info = env.step(call("submit"))
    assert info["reward_components"] == {"format": 1.0, "score": 0.25}
    assert info["infra_error"] is None and info["outcome"] == 1.0
    assert any("grade component 'bad'" in issue for issue in info["reward_issues"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.5, -0.1, "1", None, 1e308], ids=repr)
def test_a_grader_outcome_that_is_not_a_number_in_0_1_is_an_infra_error(bad):
    env = OddEnv()
    env.outcome, env.grade_components = bad, {}
    env.reset(seed=0)
    _, reward, _, _, info = env.step(call("submit"))
    assert reward == 0.0 and info["outcome"] == 0.0
    assert info["infra_error"] and "outcome" in info["infra_error"]
    assert all(math.isfinite(v) for v in info["reward_components"].values())


def test_an_env_declares_a_range_for_a_count_component():
    class Counted(OddEnv):
        component_ranges = {"rows": (0.0, 1000.0)}

    env = Counted()
    env.step_components = [{"rows": 42.0, "other": 42.0}]
    env.reset(seed=0)
    *_, info = env.step(call("report", i=0))
    assert info["reward_components"]["rows"] == 42.0 and "other" not in info["reward_components"]
    assert "is outside [0, 1]" in info["reward_issues"][0]


# ----------------------------------------------------------------------------------- format
def test_format_pays_a_well_formed_action_once_not_each_repeat():
    env = GuessEnv(max_turns=6)
    env.reset(options={"task_id": "word-0"})
    formats = [env.step(a)[4]["reward_components"]["format"]
               for a in (call("hint", position=0), call("hint", position=0), call("hint", position=1),
                         [call("hint", position=0), call("hint", position=1)], "no tool call")]
    assert formats == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_a_repeated_call_whose_result_changed_still_earns_format():
    class Counter(OddEnv):
        def _tools(self, task):
            self.n = 0

            def tick() -> str:
                """Count."""
                self.n += 1
                return str(self.n)

            return [Tool.from_function(tick)]

    env = Counter(max_turns=3)
    env.reset(seed=0)
    assert [env.step(call("tick"))[4]["reward_components"]["format"] for _ in range(3)] == [1.0, 1.0, 1.0]


def test_format_memory_survives_snapshot_and_restore():
    env = GuessEnv()
    env.reset(options={"task_id": "word-0"})
    env.step(call("hint", position=0))
    snap = env.snapshot()
    other = GuessEnv()
    other.restore(snap)
    assert other.step(call("hint", position=0))[4]["reward_components"]["format"] == 0.0
    env.reset(options={"task_id": "word-0"})  # a new episode forgets
    assert env.step(call("hint", position=0))[4]["reward_components"]["format"] == 1.0


@pytest.mark.parametrize("scheme", ["compose", "gated"])
def test_a_dense_format_scheme_does_not_pay_a_policy_that_repeats_one_call(scheme):
    base = GuessEnv(max_turns=6)
    env = (ComposeReward(base, {"format": 0.1}) if scheme == "compose"
           else GatedReward(base, {"format": 0.1}, threshold=0.0))
    env.reset(options={"task_id": "word-0"})
    total = 0.0
    for _ in range(6):
        _, reward, terminated, truncated, _ = env.step(call("hint", position=0))
        total += reward
        if terminated or truncated:
            break
    assert math.isclose(total, 0.1)  # one well-formed call's worth, not six
