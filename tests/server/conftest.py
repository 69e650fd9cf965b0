"""Env servers for the server tests: on loopback, on free ports, stopped by the tests' end."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from execgym.server import ServerProcess

SQL = "execgym/TextToSQL-v0"
TOOLUSE = "execgym/ToolUse-v0"
MAX_SESSIONS = 12
SERVER_PACKAGES = {"fastapi": "server", "uvicorn": "server", "websockets": "server", "mcp": "server", "httpx": "dev"}


def require_server_packages() -> None:
    """Skip the calling test module (at its import) when a package the server or its tests need is missing."""
    for name, extra in SERVER_PACKAGES.items():
        pytest.importorskip(name, reason=f"needs {name}: pip install 'execgym[{extra}]'")


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One env server for the tests that do not stop it: TextToSQL and ToolUse, at most 12 sessions."""
    from execgym.server import ServerProcess

    with ServerProcess([SQL, TOOLUSE], max_sessions=MAX_SESSIONS) as process:
        yield process


def active_sessions(server: ServerProcess) -> int:
    """How many sessions ``server`` holds now (its ``/envs`` figure)."""
    import httpx

    return int(httpx.get(f"{server.url}/envs", timeout=10).json()["active_sessions"])


def wait_for(condition: Callable[[], bool], limit_s: float = 15.0) -> bool:
    """Whether ``condition()`` came true within ``limit_s`` seconds (a bound, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
