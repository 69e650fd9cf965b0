"""MCP for the env server: each MCP client plays one episode of an env through its tools.

The endpoint is ``/mcp/<env id>`` (streamable HTTP, the official ``mcp`` SDK). The first request of an MCP
session opens an env session (counted against ``--max-sessions``) and resets it from the URL's query:
``seed``, ``task_id``, ``kwargs`` (a JSON object of env kwargs) and ``wrapper`` (repeatable). Then:

* ``tools/list`` returns the episode's tools with their JSON schemas;
* ``tools/call`` steps the env with that one call (the same step a structured tool call makes over
  WebSocket, so the grading is the same); the result's text is the env's observation and its structured
  content is ``{"reward", "terminated", "truncated", "info"}``: the last call's ``info`` carries the outcome.
  A call of the env's submit tool ends the episode; envs whose episodes end with a plain reply (ToolUse, whose
  user is answered in words) get one more tool, :data:`REPLY_TOOL`, that sends its ``text`` as that reply;
* ``prompts/get`` of :data:`TASK_PROMPT` returns the system prompt and the task statement.

MCP sessions are the SDK's (the ``mcp-session-id`` header). A client on the session-less 2026 protocol names
its episode with a ``session`` query parameter instead. An MCP session's env is closed when the client ends the
session (``DELETE``), or when it idles past the server's idle timeout, like any other session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import urllib.parse
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from execgym.core import report as R
from execgym.server.app import session_params
from execgym.server.sessions import Session, SessionPool, SessionRefused, jsonable, one_line

__all__ = ["REPLY_TOOL", "TASK_PROMPT", "MCPEndpoint"]

REPLY_TOOL = "execgym_reply"
"""The extra MCP tool that sends a plain-text reply (no tool call) to the env."""
TASK_PROMPT = "task"
"""The MCP prompt that holds the episode's system prompt and task statement."""

_INVALID_PARAMS = -32602
_INTERNAL_ERROR = -32603
_REPLY_SCHEMA = {"type": "object", "properties": {"text": {"type": "string", "description": "the reply"}},
                 "required": ["text"], "additionalProperties": False}


@dataclasses.dataclass(eq=False)
class _Episode:
    session: Session
    observation: str
    info: dict[str, Any]
    calls: int = 0


class MCPEndpoint:
    """The MCP server of an env server; ``handle`` is its ASGI app, ``run()`` its lifetime."""

    def __init__(self, pool: SessionPool, host: str = "127.0.0.1") -> None:
        self.pool = pool
        self.episodes: dict[str, _Episode] = {}
        self.server: Server[Any] = Server(
            "execgym", instructions="Play one episode of an execgym env: read the 'task' prompt, call its tools.",
            on_list_tools=self._list_tools, on_call_tool=self._call_tool,
            on_list_prompts=self._list_prompts, on_get_prompt=self._get_prompt)
        security = None
        if host in ("127.0.0.1", "localhost", "::1"):
            # As the SDK's own streamable_http_app does on loopback: refuse other Host/Origin headers, so a web
            # page cannot reach a local server through DNS rebinding.
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True, allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
        self.manager = StreamableHTTPSessionManager(app=self.server, security_settings=security)

    def run(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.manager.run()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)
        if scope["type"] == "http" and scope["method"] == "DELETE":
            # The client ended its MCP session: its env goes now, not at the idle timeout.
            key = Headers(scope=scope).get("mcp-session-id")
            episode = self.episodes.pop(key, None) if key else None
            if episode is not None:
                await self.pool.close(episode.session)

    # ------------------------------------------------------------------------------ episodes
    async def _episode(self, ctx: Any) -> _Episode:
        """The episode of the MCP session ``ctx`` belongs to, opened (and reset) by its first request."""
        request = ctx.request
        if request is None:
            raise MCPError(_INVALID_PARAMS, "execgym's MCP endpoint is served over HTTP only")
        query = request.query_params
        key = request.headers.get("mcp-session-id") or query.get("session")
        if not key:
            raise MCPError(_INVALID_PARAMS,
                           "no MCP session: use a session-ful MCP client, or add ?session=KEY to the URL")
        episode = self.episodes.get(key)
        if episode is not None and self.pool.get(episode.session.id) is episode.session:
            return episode
        if episode is not None:
            raise MCPError(_INVALID_PARAMS, "this MCP session's env was closed (idle timeout); open a new MCP session")
        root = request.scope.get("root_path", "")
        env_id = urllib.parse.unquote(request.url.path[len(root):] if root else request.url.path).strip("/")
        env_id = env_id.removeprefix("mcp/")
        try:
            env_kwargs, wrappers = session_params(query.get("kwargs"), query.getlist("wrapper"))
            seed = query.get("seed")
            options = {"task_id": query["task_id"]} if query.get("task_id") else None
            session = await self.pool.create(env_id, env_kwargs, wrappers)
        except (SessionRefused, ValueError) as exc:
            raise MCPError(_INVALID_PARAMS, str(exc)) from None

        async def forget() -> None:
            self.episodes.pop(key, None)

        session.on_reap = forget
        try:
            observation, info = await session.reset(seed=int(seed) if seed is not None else None, options=options)
        except Exception as exc:
            await self.pool.close(session)
            raise MCPError(_INTERNAL_ERROR, f"reset failed: {one_line(exc)}") from None
        episode = _Episode(session, observation, info)
        self.episodes[key] = episode
        return episode

    @staticmethod
    def _reply_tool_needed(episode: _Episode) -> bool:
        # An env with a submit tool ends on it; only envs without one are answered in words.
        return not any("submit" in str(t.get("function", {}).get("name", "")) for t in episode.info.get(R.TOOLS, []))

    # ------------------------------------------------------------------------------ handlers
    async def _list_tools(self, ctx: Any, _params: Any) -> types.ListToolsResult:
        episode = await self._episode(ctx)
        tools = [types.Tool(name=f["name"], description=f.get("description", ""),
                            input_schema=f.get("parameters") or {"type": "object"})
                 for f in (t.get("function", t) for t in episode.info.get(R.TOOLS, []))]
        if self._reply_tool_needed(episode):
            tools.append(types.Tool(name=REPLY_TOOL, description="Reply to the user in words (no tool call).",
                                    input_schema=_REPLY_SCHEMA))
        return types.ListToolsResult(tools=tools)

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        episode = await self._episode(ctx)
        if episode.session.ended:
            return _text_result("the episode has ended; open a new MCP session for a new one", error=True)
        arguments = dict(params.arguments or {})
        if params.name == REPLY_TOOL and self._reply_tool_needed(episode):
            action: Any = str(arguments.get("text", ""))
        else:
            episode.calls += 1
            action = {"role": "assistant", "content": None,
                      "tool_calls": [{"id": f"mcp_{episode.calls}", "type": "function",
                                      "function": {"name": params.name, "arguments": json.dumps(arguments)}}]}
        try:
            observation, reward, terminated, truncated, info = await episode.session.step(action)
        except Exception as exc:
            return _text_result(f"the env failed: {one_line(exc)}", error=True)
        calls = info.get(R.TOOL_CALLS) or []
        # No call recorded means the env could not use the call (unknown tool, bad arguments): an error too.
        error = not isinstance(action, str) and (not calls or any(call.get("error") for call in calls))
        structured = {"reward": reward, "terminated": terminated, "truncated": truncated, "info": jsonable(info)}
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(observation))],
                                    structured_content=structured, is_error=error)

    async def _list_prompts(self, ctx: Any, _params: Any) -> types.ListPromptsResult:
        await self._episode(ctx)
        return types.ListPromptsResult(prompts=[types.Prompt(name=TASK_PROMPT, description="the episode's task")])

    async def _get_prompt(self, ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        episode = await self._episode(ctx)
        if params.name != TASK_PROMPT:
            raise MCPError(_INVALID_PARAMS, f"unknown prompt {params.name!r}; the one prompt is {TASK_PROMPT!r}")
        # MCP prompts have no system role: the system prompt comes first, as a user message, as MCP hosts do.
        texts = [str(episode.info.get(R.SYSTEM_PROMPT, "")), str(episode.observation)]
        return types.GetPromptResult(
            description=f"{episode.session.env_id} task {episode.info.get(R.TASK_ID)}",
            messages=[types.PromptMessage(role="user", content=types.TextContent(type="text", text=t))
                      for t in texts if t])


def _text_result(text: str, *, error: bool) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)

