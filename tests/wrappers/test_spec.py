"""One way to name a reward wrapper: parse_wrapper_spec / apply_wrappers, and their one-line errors."""

from __future__ import annotations

import pytest

import execgym.wrappers as wrappers
from execgym.wrappers import (
    GatedReward,
    HackPenalty,
    RewardScheme,
    ScriptedEnv,
    apply_wrappers,
    known_wrappers,
    parse_wrapper_spec,
)
from tests.wrappers.helpers import play


def test_the_three_spellings_name_the_same_wrapper():
    text = parse_wrapper_spec('GatedReward:{"components": {"executed": 0.1}, "threshold": 0.5}')
    pair = parse_wrapper_spec(("GatedReward", {"components": {"executed": 0.1}, "threshold": 0.5}))
    assert text == pair == (GatedReward, {"components": {"executed": 0.1}, "threshold": 0.5})
    assert parse_wrapper_spec("HackPenalty") == parse_wrapper_spec("HackPenalty:") == (HackPenalty, {})


def test_apply_wrappers_stacks_innermost_first_and_the_stack_pays():
    env = apply_wrappers(ScriptedEnv(), ['GatedReward:{"components": {"executed": 0.5}}', ("HackPenalty", {})])
    assert isinstance(env, HackPenalty) and isinstance(env.env, GatedReward)
    ep = play(env, [{"reward_components": {"executed": 1.0}}, {"outcome": 1.0}])
    assert ep.final["reward_breakdown"] == {"outcome": 1.0, "gated": 0.5}
    assert isinstance(apply_wrappers(ScriptedEnv(), "HackPenalty"), HackPenalty)  # a lone spec is one spec
    assert type(apply_wrappers(env_ := ScriptedEnv(), [])) is type(env_)


def test_every_exported_scheme_is_known_and_the_abstract_base_is_not():
    exported = {n for n in wrappers.__all__ if isinstance(getattr(wrappers, n), type)
                and issubclass(getattr(wrappers, n), RewardScheme)}
    assert set(known_wrappers()) == exported - {"RewardScheme"}


@pytest.mark.parametrize(("spec", "message"), [
    ("Nope", "unknown reward wrapper 'Nope'"),
    ("RewardScheme", "unknown reward wrapper 'RewardScheme'"),
    ("HackPenalty:{oops", "the kwargs after ':' are not JSON"),
    ("HackPenalty:[1, 2]", "the kwargs after ':' must be a JSON object"),
    ('HackPenalty:{"penalty": ' + "9" * 5000 + "}", "the kwargs after ':' are not usable JSON"),
    (("HackPenalty", [1]), "kwargs must be a mapping"),
    (42, "a reward wrapper spec is 'NAME'"),
])
def test_a_bad_spec_is_a_one_line_error_naming_the_known_wrappers(spec, message):
    with pytest.raises(ValueError) as exc:
        parse_wrapper_spec(spec)
    text = str(exc.value)
    assert message in text and "known: ChecklistReward, " in text and "\n" not in text and len(text) < 600


def test_kwargs_the_wrapper_does_not_take_are_refused_before_any_env_is_made():
    with pytest.raises(ValueError, match=r"'HackPenalty': got an unexpected keyword argument 'nope'; it takes: pen"):
        parse_wrapper_spec('HackPenalty:{"nope": 1}')
    with pytest.raises(ValueError, match=r"'GatedReward': missing a required argument: 'components'"):
        apply_wrappers(ScriptedEnv(), ["HackPenalty", "GatedReward"])  # nothing applied: the second spec is bad
