"""The env server's FastAPI app: OpenEnv's wire protocol for every env id it serves, and MCP.

Routes, for an env id such as ``execgym/ToolUse-v0`` (its OpenEnv base URL is ``http://HOST:PORT/<env id>``):

* ``WS /<env id>/ws``: OpenEnv's session endpoint. One connection is one session with its own env, made at
  connect from the query parameters ``kwargs`` (a JSON object of env kwargs) and ``wrapper`` (a reward wrapper
  spec, repeatable); refused at connect, in one line, for an unknown id, bad kwargs or a full server. Messages
  are OpenEnv's ``{"type": "reset" | "step" | "state" | "close", "data": ...}``.
* ``POST /<env id>/reset``, ``POST /<env id>/step``, ``GET /<env id>/state``: the same over plain HTTP. A reset
  without ``session_id`` opens a session (its id is in the observation); steps name it.
* ``GET /<env id>/schema``, ``GET /<env id>/metadata``, ``GET /health``, ``GET /envs``.
* ``/mcp/<env id>``: a streamable-HTTP MCP endpoint (see :mod:`execgym.server.mcp`).

OpenEnv's own server package is not used: it hosts one env class per app, makes its envs with a zero-argument
factory (so env kwargs and wrappers cannot be given, nor refused, when a session is created) and makes a fresh
env for every HTTP request. The message shapes are its own (restated in :mod:`execgym.server.wire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from execgym.core.actions import decode_json
from execgym.server.sessions import Session, SessionPool, SessionRefused, one_line
from execgym.server.wire import (
    ErrorCode,
    HealthResponse,
    ResetRequest,
    StepRequest,
    WSError,
    WSObservation,
    WSReset,
    WSState,
    WSStep,
    action_from_payload,
    reset_payload,
    step_payload,
)

__all__ = ["create_app", "session_params"]

_RESET_FIELDS = ("seed", "options", "episode_id")


def session_params(kwargs: str | None, wrappers: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """The env kwargs (a JSON object in text) and wrapper specs a session is made with; ValueError in one line."""
    env_kwargs: Any = {}
    if kwargs:
        env_kwargs, problem = decode_json(kwargs)
        if problem:
            raise ValueError(f"kwargs is {problem}")
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"kwargs must be a JSON object, got {type(env_kwargs).__name__}")
    return env_kwargs, list(wrappers)


def _validation_line(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic's error list as one line: ``body.action: Field required; ...``."""
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def _reset_args(data: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(_RESET_FIELDS))
    if unknown:
        raise ValueError(f"unknown reset field(s) {', '.join(unknown)}; reset takes {', '.join(_RESET_FIELDS)}")
    seed, options = data.get("seed"), data.get("options")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"options must be a JSON object, got {type(options).__name__}")
    return {"seed": seed, "options": options, "episode_id": data.get("episode_id")}


def _ws_error(message: str, code: str) -> str:
    return WSError(data={"message": message, "code": code}).model_dump_json()


async def _ws_reply(session: Session, raw: str) -> str | None:
    """The reply to one WebSocket message of ``session`` (None: the client closed the session)."""
    message, problem = decode_json(raw)  # never raises: 5,000-digit integers and 10,000-deep nesting are refused
    if problem:
        return _ws_error(f"invalid message: {problem}", ErrorCode.INVALID_JSON)
    kind = message.get("type") if isinstance(message, dict) else None
    try:
        if kind == "reset":
            args = _reset_args(WSReset(**message).data)
            obs, info = await session.reset(**args)
            return WSObservation(data=reset_payload(obs, info)).model_dump_json()
        if kind == "step":
            action = action_from_payload(WSStep(**message).data)
            return WSObservation(data=step_payload(*await session.step(action))).model_dump_json()
        if kind == "state":
            return WSState(data=session.state()).model_dump_json()
        if kind == "close":
            return None
    except ValidationError as exc:
        return _ws_error(f"invalid {kind} message: {_validation_line(exc.errors())}", ErrorCode.VALIDATION_ERROR)
    except ValueError as exc:
        return _ws_error(str(exc), ErrorCode.VALIDATION_ERROR)
    except Exception as exc:  # the env failed: the client reports it as an infra error, the session lives on
        return _ws_error(one_line(exc), ErrorCode.EXECUTION_ERROR)
    return _ws_error(f"unknown message type {kind!r}; one of reset, step, state, close", ErrorCode.UNKNOWN_TYPE)


async def _refuse(websocket: WebSocket, error: str, grace_s: float = 10.0) -> None:
    """Tell a refused WebSocket client why: now, and in answer to each message it sends within ``grace_s``.

    Closing at once would race the client's first message (it would see a bare close, not the reason).
    """
    with contextlib.suppress(Exception):
        await websocket.send_text(error)
        async with asyncio.timeout(grace_s):
            while True:
                with contextlib.suppress(json.JSONDecodeError):
                    if json.loads(await websocket.receive_text()).get("type") == "close":
                        break
                await websocket.send_text(error)
    with contextlib.suppress(Exception):
        await websocket.close(code=1008)


def create_app(env_ids: Iterable[str], *, max_sessions: int = 256, idle_timeout_s: float | None = 600.0,
               mcp: bool = True, host: str = "127.0.0.1") -> FastAPI:
    """The env server's app for ``env_ids`` (each session ``gym.make(env_id, **kwargs)``).

    ``max_sessions`` bounds the sessions over all ids (WebSocket, HTTP and MCP together); a session idle for
    ``idle_timeout_s`` seconds is closed (None: never). ``host`` is the address served: on loopback the MCP
    endpoint accepts only loopback Host and Origin headers.
    """
    pool = SessionPool(env_ids, max_sessions=max_sessions, idle_timeout_s=idle_timeout_s)
    mcp_endpoint = None
    if mcp:
        from execgym.server.mcp import MCPEndpoint

        mcp_endpoint = MCPEndpoint(pool, host)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(pool.reap_forever())
        async with contextlib.AsyncExitStack() as stack:
            if mcp_endpoint is not None:
                await stack.enter_async_context(mcp_endpoint.run())
            try:
                yield
            finally:
                reaper.cancel()
                await pool.close_all()

    app = FastAPI(title="execgym env server", lifespan=lifespan)
    app.state.pool = pool
    if mcp_endpoint is not None:
        app.mount("/mcp", app=mcp_endpoint.handle)

    @app.exception_handler(RequestValidationError)
    async def _one_line_422(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_line(exc.errors())})

    def _known(env_id: str) -> None:
        if env_id not in pool.env_ids:
            raise HTTPException(404, f"unknown env id {env_id!r}; this server serves: {', '.join(pool.env_ids)}")

    def _session(env_id: str, session_id: Any) -> Session:
        _known(env_id)
        if not isinstance(session_id, str) or not session_id:
            raise HTTPException(400, "missing session_id: send the session_id that /reset returned")
        session = pool.get(session_id)
        if session is None or session.env_id != env_id:
            raise HTTPException(404, f"no session {session_id!r} for {env_id} "
                                     "(closed, reaped when idle, or never opened)")
        return session

    @app.get("/health")
    async def health() -> HealthResponse:
        return HealthResponse()

    @app.get("/envs")
    async def envs() -> dict[str, Any]:
        return {"envs": pool.env_ids, "active_sessions": pool.active, "max_sessions": pool.max_sessions}

    @app.websocket("/{env_id:path}/ws")
    async def ws_session(websocket: WebSocket, env_id: str) -> None:
        await websocket.accept()
        try:
            kwargs, wrappers = session_params(websocket.query_params.get("kwargs"),
                                              websocket.query_params.getlist("wrapper"))
            session = await pool.create(env_id, kwargs, wrappers)
        except (SessionRefused, ValueError) as exc:
            code = exc.code if isinstance(exc, SessionRefused) else ErrorCode.FACTORY_ERROR
            await _refuse(websocket, _ws_error(str(exc), code))
            return

        async def reaped() -> None:
            await websocket.close(code=1001, reason="session idle timeout")

        session.on_reap = reaped
        try:
            while True:
                reply = await _ws_reply(session, await websocket.receive_text())
                if reply is None:
                    break
                await websocket.send_text(reply)
        except (WebSocketDisconnect, RuntimeError):  # the client went away, or the reaper closed the socket
            pass
        finally:
            await pool.close(session)
            with contextlib.suppress(Exception):
                await websocket.close()

    @app.post("/{env_id:path}/reset")
    async def http_reset(env_id: str,
                         request: Annotated[ResetRequest, Body(default_factory=ResetRequest)]) -> dict[str, Any]:
        _known(env_id)
        fields = request.model_dump(exclude_unset=True)
        session_id = fields.pop("session_id", None)
        env_kwargs, wrappers = fields.pop("kwargs", {}), fields.pop("wrappers", [])
        try:
            args = _reset_args(fields)
            if session_id is not None:
                session = _session(env_id, session_id)
            else:
                if not isinstance(wrappers, list):
                    raise ValueError(f"wrappers must be a list of specs, got {type(wrappers).__name__}")
                session = await pool.create(env_id, env_kwargs, wrappers)
        except SessionRefused as exc:
            raise HTTPException(503 if exc.code == "CAPACITY_REACHED" else 400, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            obs, info = await session.reset(**args)
        except Exception as exc:
            raise HTTPException(500, one_line(exc)) from None
        return reset_payload(obs, info, session_id=session.id)

    @app.post("/{env_id:path}/step")
    async def http_step(env_id: str, request: StepRequest) -> dict[str, Any]:
        session = _session(env_id, (request.model_extra or {}).get("session_id"))
        try:
            action = action_from_payload(request.action)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            return step_payload(*await session.step(action))
        except Exception as exc:
            raise HTTPException(500, one_line(exc)) from None

    @app.get("/{env_id:path}/state")
    async def http_state(env_id: str, session_id: str | None = Query(default=None)) -> dict[str, Any]:
        return _session(env_id, session_id).state()

    @app.post("/{env_id:path}/close")
    async def http_close(env_id: str, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        await pool.close(_session(env_id, body.get("session_id")))
        return {"closed": True}

    @app.get("/{env_id:path}/metadata")
    async def metadata(env_id: str) -> dict[str, Any]:
        _known(env_id)
        return {"name": env_id, "description": f"execgym env {env_id} (one env per session)", "version": None}

    @app.get("/{env_id:path}/schema")
    async def schema(env_id: str) -> dict[str, Any]:
        _known(env_id)
        return {"action": _ACTION_SCHEMA, "observation": _OBSERVATION_SCHEMA, "state": _STATE_SCHEMA}

    return app


_ACTION_SCHEMA: dict[str, Any] = {
    "description": "The model's reply: {'text': raw reply}, an OpenAI assistant message with tool_calls, one "
                   "{'name', 'arguments'} call, or {'action': any action the env takes}.",
    "type": "object",
    "properties": {"text": {"type": "string"}, "content": {"type": ["string", "null"]},
                   "tool_calls": {"type": "array"}, "name": {"type": "string"}, "arguments": {"type": "object"},
                   "action": {}},
}
_OBSERVATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "terminated": {"type": "boolean"}, "truncated": {"type": "boolean"},
                   "metadata": {"type": "object", "description": "the env's info: the typed report"}},
}
_STATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"episode_id": {"type": ["string", "null"]}, "step_count": {"type": "integer"},
                   "session_id": {"type": "string"}, "env_id": {"type": "string"}},
}
