"""ChecklistReward: weighted fraction of satisfied criteria, paid when each user turn ends or at the end."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from execgym.core import report as R
from execgym.core.report import TURN_CHECKLIST
from execgym.wrappers import ChecklistReward, ScriptedEnv
from execgym.wrappers.checklist import weighted_fraction
from tests.core.toy_env import GuessEnv
from tests.wrappers.chores_env import ChoresEnv, call
from tests.wrappers.helpers import assert_breakdown_sums, chores_episode, play


def by_turn(checklist):
    turns = {}
    for c in checklist:
        turns.setdefault(c["extra"]["turn"], []).append(c)
    return turns


def reported(info):
    """The criteria a step reports: a closed user turn's (under extra) and, at the end, the checklist."""
    return [*info.get(R.EXTRA, {}).get(TURN_CHECKLIST, []), *info.get(R.CHECKLIST, [])]


def turn_checklist(*criteria):
    """A ScriptedEnv action that reports ``criteria`` as a closed user turn's, as the tool-use env does."""
    return {R.EXTRA: {TURN_CHECKLIST: list(criteria)}}


def criterion(cid, turn, passed, **fields):
    return {"id": cid, "passed": passed, **fields, "extra": {"turn": turn}}


def test_turn_rewards_arrive_when_each_user_turn_ends_with_their_evidence():
    env = ChecklistReward(ChoresEnv())
    actions = [call("do", chore="dishes"), call("next_turn"), call("do", chore="scrub_oven"), call("finish")]
    ep = play(env, actions, task_id="house")
    assert ep.rewards == [0.0, 0.5, 0.0, pytest.approx(0.75)]  # turn 1: 1 of 2; turn 2: oven weighs 3 of 4
    paid = ep.steps[1].info["checklist_reward"]["paid"]
    assert [(c["id"], c["passed"], c["evidence"]) for c in paid] == [
        ("dishes", True, "dishes was done"), ("laundry", False, "laundry was not done")]
    assert ep.final["checklist_reward"]["fractions"] == {"2": 0.75}
    assert "outcome" not in ep.final["reward_breakdown"]  # the checklist replaces the outcome


@settings(max_examples=60, deadline=None, database=None)
@given(chores_episode())
def test_turn_return_is_the_sum_of_per_turn_fractions_and_each_criterion_is_paid_once(case):
    task_id, actions = case
    ep = play(ChecklistReward(ChoresEnv()), actions, task_id=task_id)
    assert_breakdown_sums(ep)
    seen = {}
    for step in ep.steps:  # the first report of each criterion is the one paid
        for c in reported(step.info):
            seen.setdefault((c["extra"]["turn"], c["id"]), c)
    expected = sum(weighted_fraction(cs) for cs in by_turn(seen.values()).values())
    assert ep.ret == pytest.approx(expected)
    paid_keys = [(c["turn"], c["id"]) for s in ep.steps for c in s.info["checklist_reward"]["paid"]]
    assert sorted(paid_keys) == sorted(seen)  # every criterion paid, none twice


@settings(max_examples=40, deadline=None, database=None)
@given(chores_episode())
def test_episode_assignment_pays_once_at_the_end(case):
    task_id, actions = case
    ep = play(ChecklistReward(ChoresEnv(), assign="episode"), actions, task_id=task_id)
    assert ep.rewards[:-1] == [0.0] * (len(ep.steps) - 1)
    assert ep.ret == pytest.approx(weighted_fraction(ep.final["checklist"]))
    assert 0.0 <= ep.ret <= 1.0


def test_episode_assignment_unions_criteria_reported_only_mid_episode():
    env = ChecklistReward(ScriptedEnv(), assign="episode")
    ep = play(env, [turn_checklist(criterion("a", 1, True)), {"outcome": 0.0, "checklist": [criterion("b", 2, False)]}])
    assert ep.ret == 0.5 and ep.final["checklist_reward"]["criteria"] == 2


def test_the_same_criterion_seen_again_is_not_paid_again():
    env = ChecklistReward(ScriptedEnv())
    crit = criterion("a", 1, True, evidence="yes")
    ep = play(env, [turn_checklist(crit), turn_checklist(crit), {"outcome": 1.0, "checklist": [crit]}])
    assert ep.rewards == [1.0, 0.0, 0.0]


def test_criteria_in_the_flat_shape_of_older_envs_are_read_alike():
    """An env that still puts ``turn`` beside ``id`` (not under ``extra``) is paid the same."""
    flat = [{"id": "a", "turn": 1, "passed": True}, {"id": "b", "turn": 1, "passed": False, "weight": 3.0}]
    nested = [criterion("a", 1, True), criterion("b", 1, False, weight=3.0)]
    rewards = [play(ChecklistReward(ScriptedEnv()), [turn_checklist(*c), {"outcome": 0.0, "checklist": c}]).rewards
               for c in (flat, nested)]
    assert rewards[0] == rewards[1] == [0.25, 0.0]


def test_without_a_checklist_the_outcome_is_kept_and_keep_outcome_adds_it():
    plain = play(ChecklistReward(GuessEnv()), [call("submit", word="apple")], task_id="word-0")
    assert plain.ret == 1.0 and plain.final["reward_breakdown"] == {"outcome": 1.0}
    env = ChecklistReward(ChoresEnv(), keep_outcome=True)
    actions = [call("do", chore=c) for c in ("dishes", "laundry", "trash", "scrub_oven")] + [call("finish")]
    ep = play(env, actions, task_id="house")
    assert ep.final["reward_breakdown"] == {"outcome": 1.0, "checklist": 2.0}  # two turns, both complete


def test_invalid_assign():
    with pytest.raises(ValueError, match="assign"):
        ChecklistReward(ScriptedEnv(), assign="step")  # type: ignore[arg-type]


def test_a_turn_reported_in_the_last_step_and_in_the_final_list_is_paid_once():
    turn2 = [criterion("x", 2, True), criterion("y", 2, False, weight=3.0)]
    ep = play(ChecklistReward(ScriptedEnv()), [turn_checklist(criterion("a", 1, True)),
                                                {**turn_checklist(*turn2), "outcome": 0.0,
                                                 "checklist": [criterion("a", 1, True), *turn2]}])
    assert ep.rewards == [1.0, 0.25]
    assert [c["id"] for c in ep.final["checklist_reward"]["paid"]] == ["x", "y"]
