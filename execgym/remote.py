"""RemoteEnv: a Gymnasium env whose episodes run on an execgym env server.

``RemoteEnv(url, env_id, **env_kwargs)`` opens one session (one env instance on the server, made with
``gym.make(env_id, **env_kwargs)`` and wrapped by ``wrappers``) over OpenEnv's WebSocket protocol, and its
``reset``/``step`` return what the server's env returns: the same observation, reward, flags and ``info``
(the typed report). Vector envs, rollouts and trainers use it as a local env.

When the machinery fails (the server dies, the connection drops, a step takes longer than ``timeout_s``, or
the server's env raises) ``step`` does not raise: it ends the episode with ``truncated=True``, reward 0 and an
``info`` whose final report has ``infra_error`` set, which rollouts and trainers count apart. The next ``reset``
opens a new session (reconnecting, retrying for ``connect_timeout_s``). A session the server refuses (unknown
env id, bad kwargs or wrappers, a full server) is a ``ValueError`` / ``ConnectionRefusedError`` naming the
problem.

There is no ``task`` attribute: the server does not send the task's oracle (the answer) to its clients.
``OracleAgent`` plays over a RemoteEnv when bound to a local env of the same id, which finds the task by the
reset ``info``'s ``task_id``.

Example:
    >>> env = RemoteEnv("http://127.0.0.1:8000", "execgym/TextToSQL-v0")   # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)                                      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from execgym.core import report as R
from execgym.core.spaces import UnicodeText

__all__ = ["RemoteEnv", "RemoteEnvError"]

_MAX_MESSAGE_BYTES = 256 * 2**20


class RemoteEnvError(RuntimeError):
    """The server answered with an error (its one-line message, and its code, e.g. ``CAPACITY_REACHED``)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def _ws_url(url: str, env_id: str, env_kwargs: Mapping[str, Any], wrappers: Sequence[Any]) -> str:
    base = url.rstrip("/")
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if base.startswith(http):
            base = ws + base[len(http):]
    if not base.startswith(("ws://", "wss://")):
        base = "ws://" + base
    query: list[tuple[str, str]] = []
    if env_kwargs:
        query.append(("kwargs", json.dumps(dict(env_kwargs))))
    for spec in wrappers:
        query.append(("wrapper", spec if isinstance(spec, str) else f"{spec[0]}:{json.dumps(dict(spec[1]))}"))
    path = "/".join(urllib.parse.quote(part, safe="") for part in env_id.split("/"))
    return f"{base}/{path}/ws" + (f"?{urllib.parse.urlencode(query)}" if query else "")


class RemoteEnv(gym.Env[str, Any]):
    """An env served by ``execgym env-server`` at ``url``, as a local ``gymnasium.Env``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, url: str, env_id: str, *, wrappers: Sequence[Any] = (), timeout_s: float = 300.0,
                 connect_timeout_s: float = 10.0, **env_kwargs: Any) -> None:
        self.url, self.env_id = url, env_id
        self.wrappers = list(wrappers)
        self.env_kwargs = dict(env_kwargs)
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self._ws_url = _ws_url(url, env_id, env_kwargs, self.wrappers)
        self._conn: ClientConnection | None = None
        self._task_id = ""
        self._turn = 0
        self._needs_reset = True
        state = self._connect()
        self.observation_space = UnicodeText(int(state.get("observation_max_chars") or 2**20))
        self.action_space = UnicodeText(int(state.get("action_max_chars") or 2**20))

    # ------------------------------------------------------------------------------ connection
    def _connect(self) -> dict[str, Any]:
        """Open a session (retrying refused connections for ``connect_timeout_s``); its state."""
        self._drop()
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                self._conn = connect(self._ws_url, open_timeout=self.connect_timeout_s, max_size=_MAX_MESSAGE_BYTES,
                                     close_timeout=1.0, legacy=True)  # held across calls, not in a with
                break
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise ConnectionError(f"cannot reach the env server at {self.url}: {one_line(exc)}") from None
                time.sleep(0.1)
            except InvalidURI as exc:
                raise ValueError(f"bad env server url {self.url!r}: {exc}") from None
        try:
            reply = self._request({"type": "state"}, self.connect_timeout_s)
        except RemoteEnvError as exc:  # the server refused the session: unknown id, bad kwargs, at capacity
            self._drop()
            error = ConnectionRefusedError if exc.code == "CAPACITY_REACHED" else ValueError
            raise error(str(exc)) from None
        return reply

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the connection is already gone; nothing to tell
                self._conn.close()
            self._conn = None

    def _request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send ``message`` and return the reply's ``data``; RemoteEnvError for an error reply."""
        if self._conn is None:
            raise ConnectionError("not connected")
        try:
            self._conn.send(json.dumps(message))
        except ConnectionClosed:
            # A server that refuses a session says why and closes at once; the reason is still to be read.
            timeout_s = 0.0
        reply = json.loads(self._conn.recv(timeout=timeout_s))
        if reply.get("type") == "error":
            data = reply.get("data") or {}
            raise RemoteEnvError(str(data.get("message", "unknown server error")), data.get("code"))
        return dict(reply.get("data") or {})

    # ------------------------------------------------------------------------------ gymnasium
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        data: dict[str, Any] = {"seed": seed, "options": options}
        try:
            payload = self._request({"type": "reset", "data": data}, self.timeout_s)
        except (ConnectionError, ConnectionClosed, OSError, TimeoutError):
            self._connect()  # the server restarted or the connection dropped: a new session
            payload = self._request({"type": "reset", "data": data}, self.timeout_s)
        observation = payload["observation"]
        info = dict(observation["metadata"])
        self._task_id, self._turn, self._needs_reset = str(info.get(R.TASK_ID, "")), 0, False
        return observation["text"], info

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise gym.error.ResetNeeded("call reset() before step() (the episode has ended or never began)")
        payload = {"text": action} if isinstance(action, str) else {"action": action}
        try:
            data = self._request({"type": "step", "data": payload}, self.timeout_s)
        except TimeoutError:
            return self._infra_failure(f"no reply from the env server within {self.timeout_s:g} s")
        except ConnectionClosed as exc:
            return self._infra_failure(f"connection to the env server lost ({one_line(exc)})")
        except (OSError, ValueError, RemoteEnvError) as exc:  # ValueError: a reply that is not JSON
            return self._infra_failure(f"env server failed: {one_line(exc)}")
        observation = data["observation"]
        self._turn += 1
        terminated, truncated = bool(observation["terminated"]), bool(observation["truncated"])
        self._needs_reset = terminated or truncated
        return observation["text"], float(data["reward"]), terminated, truncated, dict(observation["metadata"])

    def _infra_failure(self, message: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """End the episode as an infra failure: truncated, reward 0, the final report saying why."""
        self._drop()  # the session is unusable: the next reset opens a new one
        self._turn += 1
        self._needs_reset = True
        info: dict[str, Any] = {R.TASK_ID: self._task_id, R.TURN: self._turn, R.REWARD_COMPONENTS: {},
                                R.TOOL_CALLS: [], R.NEW_MESSAGES: []}
        info.update(R.FinalReport(outcome=0.0, infra_error=f"remote env: {message}", turns=self._turn).as_info())
        return f"[the env server failed: {message}]", 0.0, False, True, info

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                self._conn.send(json.dumps({"type": "close"}))
        self._drop()
        super().close()

    def __getstate__(self) -> dict[str, Any]:
        # A connection does not pickle: a copy (a vector env's worker) opens its own session.
        state = self.__dict__.copy()
        state["_conn"] = None
        return state


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: ``TypeError: ...`` (its message's whitespace collapsed); the server's errors too."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
