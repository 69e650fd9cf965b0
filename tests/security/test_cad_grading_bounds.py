"""The grader's work per part is bounded: a cheap part with thousands of solids or faces is refused before
any expensive measurement, and a part that runs the grader out of time is the agent's 0 with a clear
message, never an infra error."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.envs.cad.conftest import needs_cadquery


def _boxes(n: int) -> str:
    return (
        "import cadquery as cq\n"
        "b = cq.Solid.makeBox(0.5, 0.5, 0.5)\n"
        "result = cq.Compound.makeCompound([b.translate(cq.Vector((i % 40) * 0.7, (i // 40 % 40) * 0.7,"
        f" (i // 1600) * 0.7)) for i in range({n})])\n"
    )


@needs_cadquery
def test_the_limits_count_solids_and_faces_and_scale_with_the_reference() -> None:
    from execgym.envs.cad import kernel

    part = kernel.exec_program(_boxes(12))
    one = SimpleNamespace(summary={"solids": 1, "faces": 6})
    assert kernel.grading_limits_exceeded(one, part, {}) is None  # far under the defaults
    why = kernel.grading_limits_exceeded(one, part, {"max_solids": 10})
    assert why and "too complex to grade" in why and "more than 10 solids" in why
    why = kernel.grading_limits_exceeded(one, part, {"max_faces": 50})
    assert why and "more than 50 faces" in why
    # A reference with many solids allows four times as many.
    many = SimpleNamespace(summary={"solids": kernel.MAX_GRADE_SOLIDS, "faces": 6 * kernel.MAX_GRADE_SOLIDS})
    big = kernel.exec_program(_boxes(kernel.MAX_GRADE_SOLIDS + 1))
    assert kernel.grading_limits_exceeded(one, big, {}) is not None
    assert kernel.grading_limits_exceeded(many, big, {}) is None


def test_a_grading_timeout_is_the_parts_failure_with_a_clear_message() -> None:
    from execgym.envs.cad.kernel import GraderWorker

    calls: list[dict[str, Any]] = []

    class Zygote:
        def run(self, job: str, args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            calls.append(args["options"])
            return {"ok": False, "kind": "timeout", "error": "TimeoutError: stopped after 7 s"}

    worker = GraderWorker.__new__(GraderWorker)
    worker.refs = OrderedDict(k=object())  # type: ignore[assignment]
    worker.zygote = Zygote()  # type: ignore[assignment]
    worker.memory_bytes = None
    reply = worker.op_grade({"key": "k", "brep": "", "options": {}, "timeout": 7})
    assert reply["ok"] is False and reply["kind"] == "part"
    assert "too complex to grade" in reply["error"] and "7 s" in reply["error"]
    assert [o.get("iou_method") for o in calls] == [None, "voxel"]  # exact, then the mesh fallback, then no more


@pytest.fixture(scope="module")
def env() -> Iterator:
    pytest.importorskip("cadquery")
    from execgym.envs.cad.env import CADModelEnv

    e = CADModelEnv(dataset="bundled", executor="local", run_timeout_s=20.0, memory_mb=1024, max_turns=4)
    yield e
    e.close()


@needs_cadquery
def test_a_compound_of_many_boxes_is_refused_by_the_grader_not_graded(env) -> None:
    from execgym.envs.cad import kernel

    env.reset(options={"task_id": "plate_holes-easy-1000"})
    code = _boxes(kernel.MAX_GRADE_SOLIDS + 20)
    _, reward, terminated, _, info = env.step({"name": "submit", "arguments": {"code": code}})
    assert terminated and reward == 0.0 and not info.get("infra_error")
    assert info["reward_components"]["executable"] == 1.0
    assert "too complex to grade" in info["grade_details"]["grading_error"]
