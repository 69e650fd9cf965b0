"""Sandboxed code execution for execgym environments; knows no env.

Pick a backend with :func:`get_executor` (``"local"`` or ``"docker"``; ``None`` reads the
``EXECGYM_EXECUTOR`` environment variable and falls back to ``"local"``).

>>> from execgym.executor import SandboxSpec, get_executor
>>> ex = get_executor("local")
>>> with ex.sandbox(SandboxSpec(files={"t.py": "print(sum(range(10)))"})) as sb:
...     print(sb.run(["python", "t.py"]).stdout.strip())
45
"""

from __future__ import annotations

import os
from typing import Any

from execgym.executor import base
from execgym.executor.base import *  # noqa: F403 - the package's API is the base's, plus the backends
from execgym.executor.base import Executor
from execgym.executor.local import LocalExecutor

__all__ = [*base.__all__, "BACKENDS", "ENV_VAR", "LocalExecutor", "get_executor"]

ENV_VAR = "EXECGYM_EXECUTOR"
BACKENDS = ("local", "docker")


def get_executor(name: str | Executor | None = None, **kw: Any) -> Executor:
    """Resolve an executor: an instance is returned as is; a name builds that backend with ``**kw``.

    ``None`` means ``$EXECGYM_EXECUTOR``, or ``"local"`` when that is unset or empty.

    >>> get_executor("local").name
    'local'
    >>> get_executor("podman")
    Traceback (most recent call last):
    ...
    ValueError: unknown executor 'podman': choose one of 'local', 'docker' (argument or $EXECGYM_EXECUTOR)
    """
    if isinstance(name, Executor):
        if kw:
            raise TypeError("keyword arguments are only accepted with an executor name")
        return name
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or "local"
    if not isinstance(name, str):
        raise TypeError(f"executor must be a name or an Executor, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "local":
        return LocalExecutor(**kw)
    if key == "docker":
        from execgym.executor.docker import DockerExecutor

        return DockerExecutor(**kw)
    choices = ", ".join(repr(b) for b in BACKENDS)
    raise ValueError(f"unknown executor {name!r}: choose one of {choices} (argument or ${ENV_VAR})")
