"""CADModelEnv end to end: real CadQuery workers (local sandbox), one env shared by the package."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from execgym.envs.cad.families import DIFFICULTY_LEVELS, FAMILIES
from execgym.envs.cad.grading import Thresholds

from .conftest import box_mesh, needs_cadquery, write_stl

pytestmark = needs_cadquery

NAMES = list(FAMILIES)
CASES = [(name, level) for name in NAMES for level in range(3)]


def task_id(name: str, level: int) -> str:
    """The generated task of this family and level (the generator picks family ``seed % 9``)."""
    return f"gen-{DIFFICULTY_LEVELS[level]}-{NAMES.index(name) + 9 * level}"


def submit(env, tid: str, code: str) -> tuple[float, dict]:
    env.reset(options={"task_id": tid})
    _, reward, terminated, truncated, info = env.step({"name": "submit", "arguments": {"code": code}})
    assert terminated and not truncated and info["infra_error"] is None
    return float(reward), info


@pytest.mark.parametrize(("name", "level"), CASES, ids=[f"{n}-{lv}" for n, lv in CASES])
def test_reference_passes_and_a_10pct_change_fails(cad_env, name: str, level: int) -> None:
    env = cad_env
    tid = task_id(name, level)
    env.reset(options={"task_id": tid})
    task = env.task
    assert task.data["family"] == name and task.difficulty == DIFFICULTY_LEVELS[level]
    reward, info = submit(env, tid, task.data["code"])
    rc = info["reward_components"]
    assert reward == 1.0 and info["outcome"] == 1.0, info.get("grade_details")
    assert rc["iou"] == pytest.approx(1.0, abs=1e-9) and rc["executable"] == 1.0 and rc["valid_solid"] == 1.0
    assert rc["dims"] == 1.0 and rc["bbox_error"] < 1e-9 and rc["chamfer_score"] == pytest.approx(1.0)
    assert all(u["passed"] for u in info["units"]) and info["hack_flags"] == []
    # one key dimension, 10% larger (a different one per level, so the suite covers many)
    family = FAMILIES[name]
    params = dict(task.data["params"])
    keys = family.key_params(params)
    key = keys[(level * 3 + NAMES.index(name)) % len(keys)]
    params[key] = round(params[key] * 1.1, 6)
    reward, info = submit(env, tid, family.build(params).code)
    assert info["reward_components"]["executable"] == 1.0, f"{key}: {info.get('grade_details')}"
    assert reward == 0.0, f"changing {key} by 10% still passes: {info['reward_components']}"


@pytest.mark.parametrize("name", NAMES)
def test_broken_code_is_not_executable(cad_env, name: str) -> None:
    env = cad_env
    env.reset(options={"task_id": task_id(name, 0)})
    broken = env.task.data["code"].replace("cq.Workplane(", "cq.Workplan(", 1)
    obs, reward, terminated, truncated, info = env.step({"name": "run_cadquery", "arguments": {"code": broken}})
    assert "ERROR" in obs and "AttributeError" in obs and "<cadquery program>" in obs
    assert info["reward_components"]["executed"] == 0.0 and not terminated
    _, reward, terminated, _, info = env.step({"name": "submit", "arguments": {"code": broken}})
    assert terminated and reward == 0.0 and info["reward_components"]["executable"] == 0.0
    assert info["reward_components"]["iou"] == 0.0 and info["checklist"][0] == {
        "id": "executable",
        "passed": False,
        "evidence": "the program did not produce a part",
        "weight": 1.0,
        "description": "",
        "extra": {},
    }


def run(env, code: str) -> tuple[str, dict, float]:
    start = time.monotonic()
    obs, _, terminated, truncated, info = env.step({"name": "run_cadquery", "arguments": {"code": code}})
    assert not terminated and info.get("infra_error") is None
    return obs, info, time.monotonic() - start


BOX = "import cadquery as cq\nresult = cq.Workplane('XY').box(10, 10, 10)\n"


def test_error_observations(cad_env) -> None:
    env = cad_env
    env.reset(options={"task_id": task_id("plate_holes", 0)})
    obs, info, _ = run(env, "def broken(:\n    pass\n")
    assert "syntax error" in obs and "SyntaxError" in obs
    obs, _, _ = run(env, "import cadquery as cq\npart = cq.Workplane().box(1, 1, 1)\n")
    assert "no part" in obs and "`result`" in obs
    obs, _, _ = run(env, "import cadquery as cq\nresult = cq.Workplane().rect(4, 4)\n")
    assert "not a 3D shape" in obs
    obs, _, _ = run(env, "import cadquery as cq\nprint('making it')\nresult = cq.Workplane().box(1, 2, 3)\n")
    assert obs.startswith("OK") and "making it" in obs and "size 1 x 2 x 3 mm" in obs and "volume: 6 mm^3" in obs
    obs, _, _ = run(env, "import cadquery as cq\nresult = cq.Workplane().box(1, 1, 1).faces('>Z').shell(0.1)\n")
    assert "valid closed solid" in obs
    obs, _, _ = run(env, "```python\n" + BOX + "```")  # a fence inside the argument is taken off
    assert obs.startswith("OK") and "volume: 1000 mm^3" in obs
    obs, _, _, _, info = env.step("Let me try a cube.\n```python\n" + BOX + "```")  # a raw reply's fenced block
    assert obs.startswith("OK") and info["tool_calls"][0]["name"] == "run_cadquery"


def test_limits_stop_runaway_programs(cad_env) -> None:
    env = cad_env
    env.reset(options={"task_id": task_id("plate_holes", 0)})
    obs, info, _ = run(env, "while True:\n    pass\n")
    assert "ran out of time" in obs
    obs, _, _ = run(env, "blob = bytearray(8 * 1024**3)\n")
    assert "ran out of memory" in obs
    huge = (
        "import cadquery as cq\n"
        "pins = cq.Workplane('XY').rarray(0.5, 0.5, 120, 120).circle(0.2).extrude(5)\n"
        "result = cq.Workplane('XY').box(70, 70, 5).cut(pins)\n"
    )
    obs, _, _ = run(env, huge)
    assert "ran out of time" in obs or "ran out of memory" in obs, obs
    obs, _, _ = run(env, BOX)  # the worker still works after both limits
    assert obs.startswith("OK")


def test_a_program_killing_its_worker_is_an_error_not_a_crash(cad_env) -> None:
    env = cad_env
    env.reset(options={"task_id": task_id("plate_holes", 0)})
    obs, info, _ = run(env, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    assert obs.startswith("ERROR")
    obs, _, _ = run(env, BOX)
    assert obs.startswith("OK")
    assert "process, network" in " ".join(env._grade_part(None, "import os\nos.kill(1, 9)", error={}).hack_flags)


def test_check_env_and_rendering(cad_env, tmp_path: Path) -> None:
    from gymnasium.utils.env_checker import check_env

    env = cad_env
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(options={"task_id": task_id("flange", 1)})
    before = env.render()
    assert before.shape == (2 * (96 + 18), 3 * 96, 3) and before.dtype == np.uint8
    run(env, env.task.data["code"])
    after = env.render()
    assert after.shape == before.shape and not np.array_equal(after, before)
    half = after.shape[0] // 2
    assert np.abs(after[:half].astype(int).mean() - after[half:].astype(int).mean()) < 40  # both rows hold a part
    path = env.save_render(tmp_path / "flange.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    env.render_mode = "ansi"
    try:
        assert "run_cadquery" in env.render()
    finally:
        env.render_mode = "rgb_array"


def test_truncation_grades_the_last_part_and_judge_sees_pictures(cad_env) -> None:
    env = cad_env
    seen = {}

    def judge(images, description):
        seen.update(images=images, description=description)
        return 0.25

    old_turns, env.max_turns, env.external_judge = env.max_turns, 1, judge
    try:
        env.reset(options={"task_id": task_id("bushing", 0)})
        code = env.task.data["code"]
        _, reward, terminated, truncated, info = env.step({"name": "run_cadquery", "arguments": {"code": code}})
    finally:
        env.max_turns, env.external_judge = old_turns, None
    assert truncated and not terminated and reward == 1.0
    assert info["reward_components"]["external"] == 0.25 and "last part" in info["grade_details"]["graded"]
    assert set(seen["images"]) == {"part", "target", "comparison"} and "bushing" in seen["description"]
    assert seen["images"]["comparison"].ndim == 3


def test_prompt_variants_and_cadqueryeval_rule(cad_env) -> None:
    from execgym.envs.cad.env import CADModelEnv

    env = cad_env
    obs, info = env.reset(options={"task_id": task_id("stepped_shaft", 1)})
    assert obs == env.task.data["prompt_detailed"] and info["tools"][0]["function"]["name"] == "run_cadquery"
    env.prompt_variant = "abstract"
    try:
        obs, _ = env.reset(options={"task_id": task_id("stepped_shaft", 1)})
        assert obs == env.task.data["prompt_abstract"]
    finally:
        env.prompt_variant = "detailed"
    old = env.thresholds
    env.thresholds = Thresholds(rule="cadqueryeval")
    try:
        reward, info = submit(env, task_id("stepped_shaft", 1), env.task.data["code"])
    finally:
        env.thresholds = old
    assert reward == 1.0 and {c["id"] for c in info["checklist"]} >= {"solids", "volume", "hausdorff"}
    with pytest.raises(ValueError, match="prompt"):
        CADModelEnv(prompt="verbose")


def test_loaded_datasets_orientation_free_and_meshes(cad_env, tmp_path: Path) -> None:
    from execgym.core.tasks import TaskSet
    from execgym.envs.cad.env import CADModelEnv
    from execgym.envs.cad.tasks import EXAMPLES, load_cadprompt, load_jsonl

    block = "import cadquery as cq\nresult = cq.Workplane('XY').box(30, 20, 10, centered=(True, True, False))\n"
    turned = (
        "import cadquery as cq\n"
        "result = cq.Workplane('XY').box(10, 30, 20).translate((100, 5, 7))\n"
    )  # same block, turned and moved
    rows = [
        {"id": "fixed", "prompt": "A block.", "code": block},
        {"id": "free", "prompt": "A block, any orientation.", "code": block, "orientation": "free"},
    ]
    (tmp_path / "blocks.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cp = tmp_path / "cadprompt" / "00000099"
    cp.mkdir(parents=True)
    write_stl(cp / "Ground_Truth.stl", *box_mesh((30, 20, 10), origin=(-15, -10, 0)))
    (cp / "Natural_Language_Descriptions_Prompt.txt").write_text("A rectangular block.")
    (cp / "Natural_Language_Descriptions_Prompt_with_specific_measurements.txt").write_text("A 30 x 20 x 10 block.")
    examples = load_jsonl(EXAMPLES, None)
    tasks = TaskSet(
        [*load_jsonl(tmp_path / "blocks.jsonl", None), *load_cadprompt(tmp_path / "cadprompt", None), *examples]
    )
    env = CADModelEnv(tasks=tasks, grader=cad_env.grader, run_timeout_s=10)
    try:
        assert submit(env, "fixed", block)[0] == 1.0
        assert submit(env, "fixed", turned)[0] == 0.0
        reward, info = submit(env, "free", turned)
        assert reward == 1.0 and info["grade_details"]["aligned"] and info["reward_components"]["iou"] > 0.999
        obs, _ = env.reset(options={"task_id": "00000099"})
        assert obs == "A 30 x 20 x 10 block."
        reward, info = submit(env, "00000099", turned)
        details = info["grade_details"]
        assert details["iou_method"] == "voxel" and info["reward_components"]["iou"] > 0.97, details
        assert reward == 1.0
        for task in examples:  # the bundled hand-written examples: each reference passes against itself
            reward, info = submit(env, task.id, task.data["code"])
            assert reward == 1.0 and info["reward_components"]["dims"] == 1.0, (task.id, info["grade_details"])
    finally:
        env.close()
