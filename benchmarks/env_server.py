"""Sessions held, step latency and memory of the env server, beside OpenEnv's echo env on OpenEnv's server.

Run: ``python benchmarks/env_server.py [--levels 1,16,64,256] [--steps 10]``. For each env and each level N it
opens N concurrent WebSocket sessions on loopback (connect and reset), then every session takes ``--steps``
steps, all sessions at once, and the table gives the sessions held, the step latency p50/p99 as a client sees
it (send to reply) and the server's resident memory per held session. Each level runs twice: back to back
(every session steps again as soon as it has its reply: the server's throughput bound, where p99 is about the
time to serve one step of every session) and paced (a session thinks 0..2 ``--think`` seconds before each
step, as an agent waiting on its model does; the setting of OpenEnv's published anchor). A ToolUse step is one
``list_directory`` call, a TextToSQL step one ``list_tables`` call; an episode that ends is reset, untimed.
The anchor is OpenEnv's echo env (the env of OpenEnv's template, which echoes a message) served by OpenEnv's
own ``create_app`` in the same run. The client (one asyncio process) shares the machine's cores with the
server, so the latencies are an upper bound. Bounded: at most ``2 * max(levels) * steps`` steps per env, and every
reply waits at most 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from execgym.server import ServerProcess, free_port
from execgym.server.launch import wait_until_healthy

REPLY_TIMEOUT_S = 60.0
EXECGYM_ACTIONS: dict[str, dict[str, Any]] = {
    "execgym/ToolUse-v0": {"name": "list_directory", "arguments": {"path": "/"}},
    "execgym/TextToSQL-v0": {"name": "list_tables", "arguments": {}},
}
ECHO_ACTION = {"message": "hello"}


# ---------------------------------------------------------------------------------- OpenEnv's echo env
def serve_echo(port: int, max_sessions: int) -> None:
    """OpenEnv's echo env (its template's env) on OpenEnv's own server, in this process."""
    from uuid import uuid4

    import uvicorn
    from openenv.core.env_server.http_server import create_app
    from openenv.core.env_server.interfaces import Environment
    from openenv.core.env_server.types import Action, Observation, State

    class EchoAction(Action):
        message: str

    class EchoObservation(Observation):
        echoed_message: str = ""
        message_length: int = 0

    class EchoEnvironment(Environment):
        SUPPORTS_CONCURRENT_SESSIONS = True

        def __init__(self) -> None:
            super().__init__()
            self._state = State(episode_id=str(uuid4()), step_count=0)

        def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> EchoObservation:
            self._state = State(episode_id=str(uuid4()), step_count=0)
            return EchoObservation(echoed_message="ready", done=False, reward=0.0)

        def step(self, action: EchoAction, timeout_s: float | None = None, **kwargs: Any) -> EchoObservation:
            self._state.step_count += 1
            return EchoObservation(echoed_message=action.message, message_length=len(action.message),
                                   reward=len(action.message) * 0.1)

        @property
        def state(self) -> State:
            return self._state

    app = create_app(EchoEnvironment, EchoAction, EchoObservation, env_name="echo_env",
                     max_concurrent_envs=max_sessions)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=4096)


class EchoProcess:
    """``serve_echo`` in a child process."""

    def __init__(self, max_sessions: int) -> None:
        self.port = free_port()
        self.max_sessions = max_sessions
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EchoProcess:
        self.process = subprocess.Popen([sys.executable, __file__, "--serve-echo", str(self.port),
                                         "--max-sessions", str(self.max_sessions)], stderr=subprocess.DEVNULL)
        wait_until_healthy(self.url, self.process, 120.0)  # importing openenv's server takes a while
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


# ---------------------------------------------------------------------------------- load
def _rss_mib(pid: int) -> float:
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child that just exited
            total += child.memory_info().rss
    return total / 2**20


async def _exchange(ws: Any, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    reply = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
    if reply.get("type") == "error":
        raise RuntimeError(reply["data"].get("message"))
    return dict(reply["data"])


async def _level(ws_url: str, action: dict[str, Any], sessions: int, steps: int, pid: int,
                 think_s: float = 0.0) -> dict[str, Any]:
    """Open ``sessions`` sessions at once, then step each ``steps`` times, all at once; before each step a session
    waits a think time drawn uniformly from 0..2 ``think_s`` (the agent's turn; 0: steps back to back)."""
    rss_before = _rss_mib(pid)
    held: list[Any] = []

    async def open_one() -> None:
        ws = await connect(ws_url, open_timeout=REPLY_TIMEOUT_S, max_size=2**26, ping_interval=None)
        try:
            await _exchange(ws, {"type": "reset", "data": {"seed": len(held)}})
        except Exception:
            await ws.close()
            raise
        held.append(ws)

    results = await asyncio.gather(*(open_one() for _ in range(sessions)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    rss_held = _rss_mib(pid)
    latencies: list[float] = []

    async def play(ws: Any, rng: random.Random) -> None:
        for _ in range(steps):
            if think_s:
                await asyncio.sleep(rng.uniform(0, 2 * think_s))
            start = time.perf_counter()
            data = await _exchange(ws, {"type": "step", "data": action})
            latencies.append(time.perf_counter() - start)
            if data.get("done"):
                await _exchange(ws, {"type": "reset", "data": {}})

    started = time.perf_counter()
    await asyncio.gather(*(play(ws, random.Random(i)) for i, ws in enumerate(held)))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
    latencies.sort()
    return {
        "held": len(held),
        "refused": len(refused),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "steps": len(latencies),
        "steps_per_s": len(latencies) / elapsed if elapsed > 0 else float("nan"),
        "mib_per_session": (rss_held - rss_before) / max(1, len(held)),
        "rss_mib": rss_held,
        "error": f"{type(refused[0]).__name__}: {refused[0]}" if refused else "",
    }


def _measure(ws_url: str, action: dict[str, Any], levels: list[int], steps: int, think_s: float, pid: int,
             active: Callable[[], int] | None) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """Per level: the back-to-back run and the paced run (think time ``think_s``)."""
    # One untimed session first: the env's modules and data load once per process, not per session.
    asyncio.run(_level(ws_url, action, 1, 1, pid))
    rows = []
    for n in levels:
        _settle(active)
        burst = asyncio.run(_level(ws_url, action, n, steps, pid))
        _settle(active)
        paced = asyncio.run(_level(ws_url, action, n, steps, pid, think_s))
        rows.append((n, burst, paced))
        print(f"  {ws_url} x{n}: done", file=sys.stderr, flush=True)
    return rows


def _settle(active: Callable[[], int] | None) -> None:
    """Wait until the previous run's sessions are gone (their memory is then reused, not double-counted)."""
    deadline = time.monotonic() + 30
    while active is not None and active() > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="1,16,64,256", help="concurrent sessions, comma-separated")
    parser.add_argument("--steps", type=int, default=10, help="steps per session per run")
    parser.add_argument("--think", type=float, default=1.0, metavar="S",
                        help="paced runs: mean think time before each step (uniform in 0..2S)")
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--max-sessions", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    max_sessions = max(levels) + 8
    if args.serve_echo:
        serve_echo(args.serve_echo, args.max_sessions or max_sessions)
        return

    table: list[tuple[str, int, dict[str, Any], dict[str, Any]]] = []
    with ServerProcess(list(EXECGYM_ACTIONS), max_sessions=max_sessions) as server:
        pid = server.pid()
        assert pid is not None

        def active() -> int:
            with urllib.request.urlopen(f"{server.url}/envs", timeout=10) as response:
                return int(json.load(response)["active_sessions"])

        base = server.url.replace("http://", "ws://")
        for env_id, action in EXECGYM_ACTIONS.items():
            for n, burst, paced in _measure(f"{base}/{env_id}/ws", action, levels, args.steps, args.think, pid,
                                            active):
                table.append((env_id, n, burst, paced))
    with EchoProcess(max_sessions) as echo:
        assert echo.process is not None
        ws_url = echo.url.replace("http://", "ws://") + "/ws"
        for n, burst, paced in _measure(ws_url, ECHO_ACTION, levels, args.steps, args.think, echo.process.pid, None):
            table.append(("OpenEnv echo (OpenEnv's server)", n, burst, paced))

    print(f"\nenv server on loopback, {os.cpu_count()} cores, {args.steps} steps per session; back to back: every "
          f"session steps again as soon as it has its reply; paced: {args.think:g} s mean think time per step\n")
    print("| env | sessions | held | back to back p50 / p99 ms | steps/s | paced p50 / p99 ms | server RSS MiB "
          "| MiB per session |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for env_id, n, burst, paced in table:
        errors = "; ".join(r["error"] for r in (burst, paced) if r["error"])
        print(f"| {env_id} | {n} | {min(burst['held'], paced['held'])} | {burst['p50_ms']:.1f} / "
              f"{burst['p99_ms']:.1f} | {burst['steps_per_s']:.0f} | {paced['p50_ms']:.1f} / {paced['p99_ms']:.1f} "
              f"| {burst['rss_mib']:.0f} | {burst['mib_per_session']:.2f} |"
              + (f" refused: {errors}" if errors else ""))


if __name__ == "__main__":
    main()
