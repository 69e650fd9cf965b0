"""The server's restatement of OpenEnv's message models matches OpenEnv's own."""

from __future__ import annotations

import pytest

from tests.server.conftest import require_server_packages

require_server_packages()

from execgym.server import wire  # noqa: E402

openenv_types = pytest.importorskip("openenv.core.env_server.types", reason="needs openenv-core (a test dependency)")

PAIRS = [
    (wire.ResetRequest, openenv_types.ResetRequest),
    (wire.StepRequest, openenv_types.StepRequest),
    (wire.WSReset, openenv_types.WSResetMessage),
    (wire.WSStep, openenv_types.WSStepMessage),
    (wire.WSObservation, openenv_types.WSObservationResponse),
    (wire.WSState, openenv_types.WSStateResponse),
    (wire.WSError, openenv_types.WSErrorResponse),
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=lambda c: c.__name__)
def test_models_have_openenvs_fields_and_constraints(ours: type, theirs: type) -> None:
    def shape(model: type) -> dict[str, object]:
        schema = model.model_json_schema()
        props = {name: {k: v for k, v in prop.items() if k not in ("title", "description", "examples")}
                 for name, prop in schema.get("properties", {}).items()}
        return {"properties": props, "required": sorted(schema.get("required", [])),
                "extra": model.model_config.get("extra")}

    assert shape(ours) == shape(theirs)


def test_health_is_openenvs() -> None:
    assert wire.HealthResponse().model_dump() == openenv_types.HealthResponse().model_dump(mode="json")


def test_error_codes_are_openenvs() -> None:
    codes = {name: value for name, value in vars(wire.ErrorCode).items() if name.isupper()}
    assert codes == {code.name: code.value for code in openenv_types.WSErrorCode}


def test_payloads_fit_openenvs_responses() -> None:
    reset = wire.reset_payload("task", {"task_id": "t"}, session_id="s")
    assert openenv_types.ResetResponse(**reset).observation["metadata"] == {"task_id": "t"}
    step = wire.step_payload("obs", 1.0, False, True, {"outcome": 0.0})
    assert openenv_types.StepResponse(**step).done is True
