"""BFCL-format loading and AST checking, and the BFCL env, on a small folder written here in BFCL's layout."""

from __future__ import annotations

import filecmp
from pathlib import Path

import gymnasium as gym
import pytest

from execgym.envs.bfcl.env import SAMPLE_DIR, BFCLEnv
from execgym.envs.bfcl.grading import check_bfcl, standardize_string
from execgym.envs.bfcl.loading import load_bfcl
from execgym.envs.bfcl.tools import to_json_schema
from execgym.envs.tooluse.env import ToolUseEnv

from .entries import BOOK, CIRCLE, ENTRIES, write_bfcl


@pytest.fixture(scope="module")
def bfcl_dir(tmp_path_factory) -> Path:
    return write_bfcl(tmp_path_factory.mktemp("bfcl"))


def call(name, **arguments):
    return {"name": name, "arguments": arguments}


def verdict(category: str, index: int, *calls) -> dict:
    entry, gt = ENTRIES[category][index]
    return check_bfcl(category, entry["function"], list(calls), gt)


def test_loader_reads_each_category_with_ids_splits_and_prompts(bfcl_dir):
    tasks = load_bfcl(bfcl_dir, "simple")
    assert [t.id for t in tasks] == ["simple_python_0", "simple_python_1", "simple_python_2"]
    assert {t.split for t in tasks} == {"simple"} and tasks[2].prompt == "Weather in New York?"
    assert tasks[2].data["bfcl"]["system"] == "Be brief."
    assert tasks[0].oracle == ([call("calculate_triangle_area", base=10, height=5, unit="units")],)
    everything = load_bfcl(bfcl_dir, None)
    assert len(everything) == sum(len(rows) for rows in ENTRIES.values())
    assert load_bfcl(bfcl_dir / "BFCL_v4_parallel.json", None)[0].id == "parallel_0"
    with pytest.raises(ValueError, match="unsupported BFCL category 'java'"):
        load_bfcl(bfcl_dir, "java")
    with pytest.raises(FileNotFoundError, match="live_simple"):
        load_bfcl(bfcl_dir, "live_simple")


def test_v3_names_and_a_missing_answer_file(tmp_path):
    root = write_bfcl(tmp_path / "v3", "v3")
    assert load_bfcl(root, "simple")[0].id == "simple_python_0"
    (root / "possible_answer" / "BFCL_v3_multiple.json").unlink()
    with pytest.raises(FileNotFoundError, match="possible answers"):
        load_bfcl(root, "multiple")


def test_schemas_are_converted_to_json_schema():
    schema = to_json_schema(BOOK["parameters"], top=True)
    assert schema["type"] == "object" and schema["required"] == ["city", "nights"]
    assert schema["properties"]["guest"] == {"type": "object", "properties": {"name": {"type": "string"},
                                                                             "vip": {"type": "boolean"}}}
    assert schema["properties"]["note"] == {}
    circle = to_json_schema(CIRCLE["parameters"], top=True)["properties"]
    assert circle == {"radius": {"type": "number"}, "point": {"type": "array", "items": {"type": "integer"}}}


def test_simple_rules():
    assert verdict("simple_python", 0, call("calculate_triangle_area", base=10, height=5))["valid"]  # optional
    assert verdict("simple_python", 0, call("calculate_triangle_area", base=10, height=5, unit="units"))["valid"]
    assert verdict("simple_python", 1, call("math.circle_area", radius=5))["valid"]  # int for float
    assert verdict("simple_python", 1, call("math.circle_area", radius=5.0, point=(1, 2)))["valid"]  # tuple
    assert verdict("simple_python", 2, call("get_weather", city="new york ny"))["valid"]  # normalisation
    assert verdict("simple_python", 2, call("get_weather", city="N.Y.C"))["valid"]
    cases = {
        "type_error:simple": call("calculate_triangle_area", base=10.0, height=5),  # float for int
        "simple_function_checker:unexpected_param": call("calculate_triangle_area", base=10, height=5, color="red"),
        "simple_function_checker:missing_required": call("calculate_triangle_area", base=10),
        "simple_function_checker:wrong_func_name": call("triangle_area", base=10, height=5),
        "value_error:others": call("calculate_triangle_area", base=11, height=5),
    }
    for error_type, bad in cases.items():
        result = verdict("simple_python", 0, bad)
        assert not result["valid"] and result["error_type"] == error_type, (error_type, result)
    assert verdict("simple_python", 0, call("calculate_triangle_area", base=True, height=5))["error_type"] == \
        "type_error:simple"
    assert verdict("simple_python", 2, call("get_weather", city="Boston"))["error_type"] == "value_error:string"
    # As in BFCL, an optional ("") answer lets the nested type check pass; the value check then fails.
    assert verdict("simple_python", 1, call("math.circle_area", radius=5, point=[1.5, 2]))["error_type"] == \
        "value_error:list/tuple"
    strict = [{"math.circle_area": {"radius": [5.0], "point": [[1, 2]]}}]
    assert check_bfcl("simple", [CIRCLE], [call("math.circle_area", radius=5, point=[1.5, 2])], strict)[
        "error_type"] == "type_error:nested"
    two = verdict("simple_python", 0, call("calculate_triangle_area", base=10, height=5),
                  call("calculate_triangle_area", base=10, height=5))
    assert two["error_type"] == "simple_function_checker:wrong_count"


def test_missing_optional_that_is_not_marked_optional_fails():
    entry, _ = ENTRIES["parallel"][0]
    result = check_bfcl("simple", entry["function"], [call("get_weather", city="Paris")],
                        [{"get_weather": {"city": ["Paris"], "unit": ["c"]}}])
    assert result["error_type"] == "simple_function_checker:missing_optional"


def test_multiple_dicts_and_lists():
    good = call("book_hotel", city="rome", nights=2, guest={"name": "ann", "vip": True})
    assert verdict("multiple", 0, good)["valid"]
    assert verdict("multiple", 0, {**good, "arguments": {**good["arguments"], "extras": ["Breakfast"]}})["valid"]
    assert verdict("multiple", 0, {**good, "arguments": {**good["arguments"], "extras": ["dinner"]}})["error_type"] \
        == "value_error:list/tuple"
    bad_key = {**good, "arguments": {**good["arguments"], "guest": {"name": "ann", "vip": True, "age": 3}}}
    assert verdict("multiple", 0, bad_key)["error_type"] == "value_error:dict_key"
    missing_key = {**good, "arguments": {**good["arguments"], "guest": {"name": "ann"}}}
    assert verdict("multiple", 0, missing_key)["error_type"] == "value_error:dict_key"
    assert verdict("multiple", 0, call("get_weather", city="Rome"))["error_type"] == \
        "simple_function_checker:wrong_func_name"
    assert verdict("multiple", 0, good, call("get_weather", city="Rome"))["error_type"] == \
        "multiple_function_checker:wrong_count"


def test_parallel_calls_match_in_any_order_one_to_one():
    paris, oslo = call("get_weather", city="Paris", unit="c"), call("get_weather", city="oslo", unit="c")
    assert verdict("parallel", 0, paris, oslo)["valid"] and verdict("parallel", 0, oslo, paris)["valid"]
    twice = verdict("parallel", 0, paris, paris)
    assert not twice["valid"] and "expected call 1" in twice["error"][0]
    assert verdict("parallel", 0, paris)["error_type"] == "parallel_function_checker_no_order:wrong_count"
    hotel = call("book_hotel", city="Rome", nights=3)
    weather = call("get_weather", city="Rome")
    assert verdict("parallel_multiple", 0, hotel, weather)["valid"]
    assert not verdict("parallel_multiple", 0, hotel, call("get_weather", city="Rome", unit="f"))["valid"]


def test_irrelevance_passes_only_without_calls():
    entry, _ = ENTRIES["irrelevance"][0]
    assert check_bfcl("irrelevance", entry["function"], [], None)["valid"]
    assert not check_bfcl("irrelevance", entry["function"], [call("calculate_triangle_area", base=1, height=1)],
                          None)["valid"]
    assert not check_bfcl("irrelevance", entry["function"], [], None, answered=False)["valid"]


def test_standardize_string_follows_bfcl():
    assert standardize_string("April 1, 2024") == standardize_string("april 1 2024") == "april12024"
    assert standardize_string("It's") == 'it"s'


def test_env_episodes_are_one_step_and_graded_by_the_checker(bfcl_dir):
    env = BFCLEnv(dataset=f"bfcl:{bfcl_dir}", split="parallel")
    obs, info = env.reset(options={"task_id": "parallel_0"})
    assert obs == "Weather in Paris and in Oslo, in C?"
    assert info["tools"][0]["function"]["parameters"]["properties"]["unit"] == {"type": "string", "enum": ["c", "f"]}
    text = ('<tool_call>{"name": "get_weather", "arguments": {"city": "OSLO", "unit": "c"}}</tool_call>'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}</tool_call>')
    obs, reward, terminated, truncated, info = env.step(text)
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["units"][0]["passed"] and info["reward_components"]["calls"] == 2.0
    assert info["reward_components"]["tool_name"] == info["reward_components"]["param_values"] == 1.0

    env.reset(options={"task_id": "parallel_0"})
    _, reward, terminated, _, info = env.step([call("get_weather", city="Paris", unit="kelvin", extra=1)])
    assert reward == 0.0 and terminated and info["units"][0]["extra"]["error_type"].endswith("wrong_count")
    assert info["reward_components"]["tool_name"] == 0.5 and info["reward_components"]["param_names"] < 1

    env.reset(options={"task_id": "parallel_0"})
    _, reward, terminated, _, info = env.step('<tool_call>{"name": "nope"}</tool_call>')
    assert reward == 0.0 and terminated and info["units"][0]["extra"]["error_type"] == "format_error"


def test_env_oracle_and_text_answers_per_category(bfcl_dir):
    for category in ENTRIES:
        split = "simple" if category == "simple_python" else category
        env = BFCLEnv(dataset=f"bfcl:{bfcl_dir}", split=split)
        for task_id in env.tasks.ids():
            env.reset(options={"task_id": task_id})
            _, reward, terminated, _, info = env.step(env.task.oracle[0])
            assert reward == 1.0 and terminated, (task_id, info["units"])
            env.reset(options={"task_id": task_id})
            _, reward, terminated, _, _ = env.step("I can't help with that.")
            assert terminated and reward == float(category == "irrelevance"), task_id
    env = BFCLEnv(dataset=f"bfcl:{bfcl_dir}", split="irrelevance")
    env.reset()
    _, reward, terminated, _, info = env.step(call("calculate_triangle_area", base=1, height=2))
    assert reward == 0.0 and terminated and "no function call" in info["units"][0]["extra"]["error"][0]


def test_env_accepts_a_tuple_for_a_list_in_structured_calls(bfcl_dir):
    env = BFCLEnv(dataset=f"bfcl:{bfcl_dir}", split="simple")
    env.reset(options={"task_id": "simple_python_1"})
    _, reward, *_ = env.step(call("math.circle_area", radius=5, point=(1, 2)))
    assert reward == 1.0
    assert "Be brief." in env.reset(options={"task_id": "simple_python_2"})[1]["system_prompt"]


def test_underscore_names_for_apis_that_refuse_dots(bfcl_dir):
    env = BFCLEnv(dataset=f"bfcl:{bfcl_dir}", split="simple", bfcl_underscore_names=True)
    _, info = env.reset(options={"task_id": "simple_python_1"})
    assert [t["function"]["name"] for t in info["tools"]] == ["math_circle_area"]
    _, reward, _, _, info = env.step(call("math_circle_area", radius=5.0))
    assert reward == 1.0 and info["reward_components"]["tool_name"] == 1.0


def test_json_schema_type_lists_are_types_not_any():
    """ "type": ["string", "null"] read as "any" and was then checked as a string ("Expected type any, got list")."""
    fn = [{"name": "f", "parameters": {"type": "dict", "properties": {"x": {"type": ["string", "null"]},
                                                                     "n": {"type": ["integer", "string"]}},
                                       "required": ["x"]}}]
    assert to_json_schema(fn[0]["parameters"], top=True)["properties"] == {
        "x": {"type": ["string", "null"]}, "n": {"type": ["integer", "string"]}}
    gt = [{"f": {"x": ["hi", None], "n": [3, ""]}}]
    assert check_bfcl("simple", fn, [call("f", x="hi")], gt)["valid"]
    assert check_bfcl("simple", fn, [call("f", x=None)], gt)["valid"]
    assert check_bfcl("simple", fn, [call("f", x="hi", n=3)], gt)["valid"]
    wrong = check_bfcl("simple", fn, [call("f", x=[["hi"]])], gt)
    assert not wrong["valid"] and "Expected type string, got list" in wrong["error"][0], wrong
    assert not check_bfcl("simple", fn, [call("f", x="hi", n="3")], gt)["valid"]
    # a missing type compares values only
    untyped = [{"name": "f", "parameters": {"type": "dict", "properties": {"x": {}}, "required": ["x"]}}]
    assert check_bfcl("simple", untyped, [call("f", x=[1, 2])], [{"f": {"x": [[1, 2]]}}])["valid"]


def test_the_bundled_sample_is_the_entries_of_these_tests(tmp_path):
    written = write_bfcl(tmp_path)
    for folder in (Path("."), Path("possible_answer")):
        names = sorted(p.name for p in (written / folder).glob("*.json"))
        assert names == sorted(p.name for p in (SAMPLE_DIR / folder).glob("*.json"))
        assert filecmp.cmpfiles(written / folder, SAMPLE_DIR / folder, names, shallow=False)[0] == names


def test_the_env_is_registered_and_plays_its_sample_without_a_dataset():
    env = gym.make("execgym/BFCL-v0", split="irrelevance")
    obs, info = env.reset(seed=0)
    assert obs == "Who painted the Mona Lisa?" and info["task_id"] == "irrelevance_0"
    _, reward, terminated, _, info = env.step(env.unwrapped.task.oracle[0])
    assert (reward, terminated) == (1.0, True) and info["units"][0]["id"] == "ast"
    env.close()
    assert set(BFCLEnv().tasks.splits()) == {"simple", "multiple", "parallel", "parallel_multiple", "irrelevance"}


def test_tooluse_refuses_bfcl_naming_the_bfcl_env(bfcl_dir):
    with pytest.raises(ValueError, match=r"^ToolUseEnv does not read BFCL entries: use gym.make\("
                                         r"\"execgym/BFCL-v0\"") as caught:
        ToolUseEnv(dataset=f"bfcl:{bfcl_dir}", split="simple")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("module", ["grading", "tools", "env"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"execgym.envs.bfcl.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
