"""A through hole must go through: a shallow dimple of the right diameter is not one (nor a blind slot)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .conftest import needs_cadquery

pytestmark = needs_cadquery


def _dimpled(code: str) -> str:
    """Every ``.hole(d)`` of an oracle turned into a 0.02 mm deep dimple of the same diameter."""
    return re.sub(r"\.hole\(([^(),]*)\)", r".hole(\1, 0.02)", code)


def _one_task_per_family_and_level() -> list:
    from execgym.envs.cad.tasks import bundled_tasks

    seen: dict[tuple[str, int], object] = {}
    for task in bundled_tasks():
        seen.setdefault((task.data["family"], int(task.data["params"]["level"])), task)
    return [seen[k] for k in sorted(seen)]


def _check(task, code: str) -> list[dict]:
    from execgym.envs.cad import kernel

    shape = kernel.exec_program(code)
    return kernel.check_key_dims(
        task.data["key_dims"], kernel.features(shape), kernel.shape_bbox(shape), 0.0, shape=shape
    )


@pytest.mark.parametrize("task", _one_task_per_family_and_level(), ids=lambda t: t.id)
def test_oracle_holes_are_through_and_dimples_are_not(task) -> None:
    results = _check(task, task.data["code"])
    assert all(r["passed"] for r in results), [r for r in results if not r["passed"]]
    dimpled = _dimpled(task.data["code"])
    if dimpled == task.data["code"]:
        return
    holes = [r for r in _check(task, dimpled) if r["kind"] == "hole"]
    assert not all(r["passed"] for r in holes), holes
    assert any("not through" in str(r["found"]) for r in holes), holes


def test_a_blind_slot_is_not_a_through_slot() -> None:
    task = next(
        t
        for t in _one_task_per_family_and_level()
        if t.data["family"] == "slotted_link" and "slot_w" in t.data["params"]
    )
    blind = task.data["code"].replace(".extrude(thickness))", ".extrude(0.02))")
    assert blind != task.data["code"]
    (slot,) = [r for r in _check(task, blind) if r["kind"] == "arc" and "slot" in r["label"]]
    assert not slot["passed"] and "not through" in slot["found"]


def test_the_standoffs_blind_bore_is_checked_as_blind() -> None:
    task = next(t for t in _one_task_per_family_and_level() if "stud_d" in t.data["params"])
    (bore,) = [d for d in task.data["key_dims"] if d["kind"] == "hole" and d["label"].startswith("bore")]
    assert bore["through"] is False
    assert any(d["kind"] == "level" and "blind bore" in d["label"] for d in task.data["key_dims"])


@pytest.fixture(scope="module")
def env() -> Iterator:
    from execgym.envs.cad.env import CADModelEnv

    e = CADModelEnv(dataset="bundled", executor="local", run_timeout_s=8.0, memory_mb=768, max_turns=4)
    yield e
    e.close()


@pytest.mark.parametrize("level", [0, 1, 2])
def test_dimpled_or_holeless_plates_earn_no_outcome(env, level: int) -> None:
    task = next(
        t
        for t in _one_task_per_family_and_level()
        if t.data["family"] == "plate_holes" and t.data["params"]["level"] == level
    )
    env.reset(options={"task_id": task.id})
    _, reward, _, _, info = env.step({"name": "submit", "arguments": {"code": _dimpled(task.data["code"])}})
    assert reward == 0.0 and not info.get("infra_error")
    assert info["reward_components"]["dims"] < 1.0
    head, sep, _ = task.data["code"].partition('    .faces(">Z").workplane()')
    assert sep
    holeless = head + ")\n"  # the same plate (and fillets), without its holes
    env.reset(options={"task_id": task.id})
    _, reward, _, _, info = env.step({"name": "submit", "arguments": {"code": holeless}})
    assert reward == 0.0 and not info.get("infra_error"), info.get("observation")
    assert info["reward_components"]["dims"] < 1.0
