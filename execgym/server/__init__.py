"""Serve execgym envs to a remote trainer: OpenEnv's wire protocol (HTTP and WebSocket sessions) and MCP.

``execgym env-server --env execgym/ToolUse-v0`` (or :func:`serve`) runs one process that hosts many
concurrent sessions, each its own env instance (and sandbox), made on connect and closed on close, idle timeout
or client death. OpenEnv's own clients drive it at ``http://HOST:PORT/<env id>``;
:class:`execgym.remote.RemoteEnv` is the Gymnasium env over it; MCP clients use ``http://HOST:PORT/mcp/<env id>``.

Example:
    >>> app = create_app(["execgym/TextToSQL-v0"], max_sessions=4)
    >>> sorted({r.path for r in app.routes} & {"/health", "/{env_id:path}/ws", "/{env_id:path}/step"})
    ['/health', '/{env_id:path}/step', '/{env_id:path}/ws']
"""

from __future__ import annotations

from collections.abc import Iterable

from execgym.server.app import create_app
from execgym.server.launch import ServerProcess, free_port

__all__ = ["ServerProcess", "create_app", "free_port", "serve"]


def serve(env_ids: Iterable[str], host: str = "127.0.0.1", port: int = 8000, max_sessions: int = 256,
          idle_timeout_s: float | None = 600.0, *, mcp: bool = True, log_level: str = "warning") -> None:
    """Serve ``env_ids`` on ``host:port`` until interrupted (uvicorn, one process, one event loop)."""
    import uvicorn

    app = create_app(env_ids, max_sessions=max_sessions, idle_timeout_s=idle_timeout_s, mcp=mcp, host=host)
    # A WebSocket ping every 20 s finds clients that died without closing, so their sessions are reaped.
    uvicorn.run(app, host=host, port=port, log_level=log_level, ws_ping_interval=20.0, ws_ping_timeout=20.0,
                backlog=max(2048, max_sessions * 2))
