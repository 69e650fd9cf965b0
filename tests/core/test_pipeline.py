"""The fixed step pipeline: hooks, the typed report, and what it does with graders and callers that misbehave."""

from __future__ import annotations

from typing import Any

import pytest

from execgym.core import report as R
from execgym.core.actions import parse_action
from execgym.core.report import Criterion, FinalReport, Grade, StepReport, Unit
from execgym.core.tools import Tool
from tests.core.toy_env import GuessEnv


class GraderEnv(GuessEnv):
    """GuessEnv whose grade is whatever ``self.grade_with`` returns (or raises)."""

    grade_with: Any = None

    def _grade(self, submitted: bool) -> Grade:
        if isinstance(self.grade_with, Exception):
            raise self.grade_with
        return self.grade_with or super()._grade(submitted)


def submit(env: GuessEnv) -> tuple[Any, ...]:
    env.reset(seed=0)
    return env.step({"name": "submit", "arguments": {"word": env.task.data["word"]}})


@pytest.mark.parametrize("failure", [KeyError("metrics"), ValueError("bad mesh"), ZeroDivisionError("x")])
def test_a_grader_that_raises_is_an_infra_error_never_an_exception(failure):
    env = GraderEnv()
    env.grade_with = failure
    obs, reward, terminated, truncated, info = submit(env)
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert info[R.INFRA_ERROR].startswith("the grader failed: ") and type(failure).__name__ in info[R.INFRA_ERROR]


@pytest.mark.parametrize("units", [[{"id": "u", "passed": "false"}], [{"id": "u", "passed": True, "extra": [1]}],
                                   ["not a unit"]])
def test_a_grade_whose_entries_cannot_be_read_is_an_infra_error(units):
    env = GraderEnv()
    env.grade_with = Grade(outcome=1.0, units=units)
    *_, reward, terminated, truncated, info = submit(env)
    assert reward == 0.0 and truncated and info[R.INFRA_ERROR].startswith("the grader's report is unusable")
    assert info[R.UNITS] == []


def test_a_criterion_weight_must_be_a_number():
    env = GraderEnv()
    env.grade_with = Grade(outcome=1.0, checklist=[{"id": "c", "passed": True, "weight": "heavy"}])
    assert submit(env)[-1][R.INFRA_ERROR]


class ClosingEnv(GuessEnv):
    """Adds the grade to the last observation, as CAD adds its IoU line to submit's reply."""

    def _final_observation(self, observation: str, final: FinalReport) -> str:
        return f"{observation}\nOutcome: {final.outcome:.0f}"

    def _step_components(self, step: StepReport) -> dict[str, float]:
        return {"calls_seen": float(len(step.tool_calls) > 0)} if step.format_ok else {}

    def _step_extra(self, step: StepReport) -> dict[str, Any]:
        return {"ended": step.ended}


def test_the_final_observation_is_also_the_transcripts_and_hooks_fill_the_report():
    env = ClosingEnv()
    obs, info = env.reset(seed=0)
    obs, _, _, _, info = env.step({"name": "hint", "arguments": {"position": 0}})
    assert info[R.EXTRA] == {"ended": False} and info[R.REWARD_COMPONENTS]["calls_seen"] == 1.0
    obs, reward, terminated, _, info = env.step({"name": "submit", "arguments": {"word": env.task.data["word"]}})
    assert obs.endswith("Outcome: 1") and terminated and info[R.EXTRA] == {"ended": True}
    assert env.messages[-1]["content"] == obs == info[R.NEW_MESSAGES][-1]["content"]
    obs, *_, info = env.step("no call") if not terminated else (None, None, None, None, info)
    assert R.final_of(info).outcome == 1.0


def test_out_of_range_step_components_from_a_hook_are_dropped_and_named():
    class Bad(GuessEnv):
        def _step_components(self, step: StepReport) -> dict[str, float]:
            return {"huge": 5.0, "nan": float("nan")}

    env = Bad()
    env.reset(seed=0)
    *_, info = env.step({"name": "hint", "arguments": {"position": 0}})
    assert "huge" not in info[R.REWARD_COMPONENTS] and "nan" not in info[R.REWARD_COMPONENTS]
    assert len(info[R.REWARD_ISSUES]) == 2


def test_caller_ids_are_kept_and_made_ids_never_collide_with_them():
    echo = Tool("echo", "", {"type": "object", "properties": {"t": {"type": "string"}}, "required": ["t"],
                             "additionalProperties": False}, lambda t: t)
    calls = [{"id": "call_1_2", "name": "echo", "arguments": {"t": "a"}}, {"name": "echo", "arguments": {"t": "b"}},
             {"id": "call_1_2", "name": "echo", "arguments": {"t": "c"}}, {"id": "x\ny", "name": "echo",
                                                                           "arguments": {"t": "d"}}]
    ids = [c.id for c in parse_action(calls, {"echo": echo}, call_id_prefix="call_1").calls]
    assert ids[0] == "call_1_2" and len(set(ids)) == 4 and "x\ny" not in ids


def test_the_env_answers_each_call_under_the_callers_id():
    env = GuessEnv()
    env.reset(seed=0)
    action = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "abc", "type": "function", "function": {"name": "hint", "arguments": '{"position": 0}'}}]}
    *_, info = env.step(action)
    assert info[R.TOOL_CALLS][0]["id"] == "abc" and info[R.NEW_MESSAGES][1]["tool_call_id"] == "abc"


def test_a_list_typed_property_is_checked_by_jsonschema():
    tool = Tool("w", "", {"type": "object", "properties": {"city": {"type": ["string", "null"]}},
                          "additionalProperties": False}, lambda city=None: city)
    assert tool._flat is None and tool.validate({"city": None}) is None and tool.validate({"city": 1})


def test_readers_skip_entries_that_do_not_read_as_units():
    info = FinalReport(outcome=1.0, units=[Unit("a", True)], checklist=[Criterion("c", False)]).as_info()
    info[R.UNITS].append({"id": "b", "passed": "yes"})
    final = R.final_of(info)
    assert [u.id for u in final.units] == ["a"] and final.checklist[0].id == "c"
