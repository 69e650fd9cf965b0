"""What travels over the env server: OpenEnv's message shapes, filled with execgym's observation and report.

OpenEnv answers ``reset`` and ``step`` with ``{"observation": {...}, "reward": float | None, "done": bool}``.
Here ``observation`` holds the env's text, Gymnasium's two end flags, and the whole ``info`` (the typed report)
under ``metadata``, the name OpenEnv's ``Observation`` gives it; ``done`` is ``terminated or truncated``.

An action is an object, as OpenEnv's clients send it: ``{"text": "<raw model reply>"}``, an OpenAI assistant
message (``{"content": ..., "tool_calls": [...]}``), one ``{"name", "arguments"}`` call, or
``{"action": <any action the env takes>}``. Whatever the env cannot use is its own format error, never a
protocol error.

Example:
    >>> step_payload("ok", 1.0, True, False, {"outcome": 1.0})["done"]
    True
    >>> action_from_payload({"text": "hi"}), action_from_payload({"action": [{"name": "f", "arguments": {}}]})
    ('hi', [{'name': 'f', 'arguments': {}}])
    >>> action_from_payload("hi")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: an action must be a JSON object ({"text": ...}, ...), got str
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from execgym.server.sessions import jsonable

__all__ = ["ErrorCode", "HealthResponse", "ResetRequest", "StepRequest", "WSError", "WSObservation", "WSReset",
           "WSState", "WSStep", "action_from_payload", "reset_payload", "step_payload"]


# OpenEnv's message models (openenv.core.env_server.types), field for field. They are restated, not imported:
# importing openenv's server package imports its web UI (gradio), some 15 s of start-up for every env server.
# tests/server checks them against OpenEnv's own, and OpenEnv's client drives the server in the tests.
class ErrorCode:
    """OpenEnv's WebSocket error codes (``WSErrorCode``)."""

    INVALID_JSON = "INVALID_JSON"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    EXECUTION_ERROR = "EXECUTION_ERROR"
    CAPACITY_REACHED = "CAPACITY_REACHED"
    FACTORY_ERROR = "FACTORY_ERROR"
    SESSION_ERROR = "SESSION_ERROR"


class ResetRequest(BaseModel):
    """``POST /reset``'s body; here also ``options``, and ``session_id``, ``kwargs``, ``wrappers`` (extra fields)."""

    model_config = ConfigDict(extra="allow")
    seed: int | None = Field(default=None, ge=0)
    episode_id: str | None = Field(default=None, max_length=255)


class StepRequest(BaseModel):
    """``POST /step``'s body; here also ``session_id`` (an extra field)."""

    model_config = ConfigDict(extra="allow")
    action: dict[str, Any]
    timeout_s: float | None = Field(default=None, gt=0)
    request_id: str | None = Field(default=None, max_length=255)


class HealthResponse(BaseModel):
    status: str = "healthy"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WSReset(_Message):
    type: Literal["reset"] = "reset"
    data: dict[str, Any] = Field(default_factory=dict)


class _WithData(_Message):
    data: dict[str, Any]


class WSStep(_WithData):
    type: Literal["step"] = "step"


class WSObservation(_WithData):
    type: Literal["observation"] = "observation"


class WSState(_WithData):
    type: Literal["state"] = "state"


class WSError(_WithData):
    type: Literal["error"] = "error"


def _observation(obs: Any, terminated: bool, truncated: bool, info: Mapping[str, Any]) -> dict[str, Any]:
    return {"text": obs, "terminated": terminated, "truncated": truncated, "metadata": jsonable(info)}


def reset_payload(obs: Any, info: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    """OpenEnv's reset response for ``env.reset``'s result (``fields`` join the observation: a session id)."""
    return {"observation": {**_observation(obs, False, False, info), **fields}, "reward": None, "done": False}


def step_payload(obs: Any, reward: float, terminated: bool, truncated: bool, info: Mapping[str, Any]) -> dict[str, Any]:
    """OpenEnv's step response for ``env.step``'s result."""
    return {"observation": _observation(obs, terminated, truncated, info), "reward": float(reward),
            "done": bool(terminated or truncated)}


def action_from_payload(data: Any) -> Any:
    """The env action an OpenEnv action object carries (see the module docstring)."""
    if not isinstance(data, Mapping):
        raise ValueError('an action must be a JSON object ({"text": ...}, {"tool_calls": [...]}, '
                         f'{{"name", "arguments"}} or {{"action": ...}}), got {type(data).__name__}')
    data = {k: v for k, v in data.items() if k != "metadata"}  # OpenEnv's Action always has a metadata field
    if set(data) == {"text"}:
        return data["text"]
    if set(data) == {"action"}:
        return data["action"]
    return data
