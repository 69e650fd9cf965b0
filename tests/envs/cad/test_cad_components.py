"""Every CAD reward component pays only for what it claims: the cheapest degenerate parts, on every family."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import needs_cadquery

pytestmark = needs_cadquery

UNIT_CUBE = "import cadquery as cq\nresult = cq.Workplane().box(1, 1, 1)\n"


def _box(lo, hi) -> str:
    size = [h - low for low, h in zip(lo, hi)]
    centre = [(low + h) / 2 for low, h in zip(lo, hi)]
    return (
        "import cadquery as cq\n"
        f"result = cq.Workplane().box({size[0]!r}, {size[1]!r}, {size[2]!r}).translate({tuple(centre)!r})\n"
    )


@pytest.fixture(scope="module")
def env() -> Iterator:
    from execgym.envs.cad.env import CADModelEnv

    e = CADModelEnv(dataset="bundled", executor="local", run_timeout_s=8.0, memory_mb=768, max_turns=4)
    yield e
    e.close()


def _tasks() -> list[str]:
    from execgym.envs.cad.tasks import bundled_tasks

    seen: dict[str, str] = {}
    for task in bundled_tasks():
        seen.setdefault(task.data["family"], task.id)
    return list(seen.values())


@pytest.mark.parametrize("task_id", _tasks())
def test_degenerate_parts_earn_only_what_they_are(env, task_id: str) -> None:
    env.reset(options={"task_id": task_id})
    ref = env.grader.summary(env._ref_key)
    lo, hi, volume = ref["bbox_min"], ref["bbox_max"], ref["volume"]

    # A unit cube is a valid closed solid, but not an attempt at this part: no valid_solid, on any task.
    _, _, _, _, info = env.step({"name": "run_cadquery", "arguments": {"code": UNIT_CUBE}})
    assert info["reward_components"] == {"format": 1.0, "executed": 1.0, "valid_solid": 0.0}

    # A solid block filling the target's bounding box is a valid solid of the target's size and place.
    _, _, _, _, info = env.step({"name": "run_cadquery", "arguments": {"code": _box(lo, hi)}})
    assert info["reward_components"]["valid_solid"] == 1.0

    # A cube of exactly the target's volume, centred on it: volume_error pays only if it overlaps the target.
    side = volume ** (1 / 3)
    centre = [(a + b) / 2 for a, b in zip(lo, hi)]
    cube = _box([c - side / 2 for c in centre], [c + side / 2 for c in centre])
    _, _, _, _, info = env.step({"name": "submit", "arguments": {"code": cube}})
    c = info["reward_components"]
    assert info["outcome"] == 0.0 and c["executable"] == 1.0
    assert all(0.0 <= v <= 1.0 for v in c.values()), c
    if c["iou"] < env.thresholds.on_target_iou:
        assert c["volume_error"] == 1.0 and c["dims"] == 0.0 and c["bbox_error"] == 1.0, c
    else:  # it really is half the part: its volume is the target's
        assert c["volume_error"] < 1e-3


@pytest.mark.parametrize("task_id", _tasks())
def test_unit_cube_submitted_earns_only_executable(env, task_id: str) -> None:
    env.reset(options={"task_id": task_id})
    _, reward, terminated, _, info = env.step({"name": "submit", "arguments": {"code": UNIT_CUBE}})
    c = info["reward_components"]
    assert terminated and reward == 0.0
    assert c["executable"] == 1.0 and c["valid_solid"] == 0.0 and c["dims"] == 0.0
    assert c["bbox_error"] == 1.0 and c["volume_error"] == 1.0
    assert c["iou"] < 0.01 and c["chamfer_score"] < 0.5


def test_the_plate_farm_of_volume_error_is_closed(env) -> None:
    env.reset(options={"task_id": next(t for t in _tasks() if t.startswith("plate_holes"))})
    ref = env.grader.summary(env._ref_key)
    side = ref["volume"] ** (1 / 3)
    cube = f"import cadquery as cq\nresult = cq.Workplane().box({side!r}, {side!r}, {side!r})\n"
    _, _, _, _, info = env.step({"name": "submit", "arguments": {"code": cube}})
    # Its volume is the plate's to 1e-9, but it is not the plate.
    assert info["reward_components"]["volume_error"] == 1.0


@pytest.mark.parametrize("task_id", _tasks())
def test_oracle_is_one_and_doing_nothing_is_zero(env, task_id: str) -> None:
    env.reset(options={"task_id": task_id})
    for _ in range(env.max_turns):
        _, reward, terminated, truncated, info = env.step("I would rather not write any code.")
    assert truncated and not terminated and reward == 0.0 and not info.get("infra_error")
    env.reset(options={"task_id": task_id})
    _, reward, terminated, _, info = env.step({"name": "submit", "arguments": {"code": env.task.data["code"]}})
    assert terminated and reward == 1.0 and not info.get("infra_error")
