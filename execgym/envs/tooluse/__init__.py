"""Tool use: multi-turn conversations over stateful services (shop, calendar + mail, files).

Registered as ``execgym/ToolUse-v0`` (entry point ``execgym.envs.tooluse.env:ToolUseEnv``).
"""

from typing import Any

__all__ = ["ToolUseEnv"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m execgym.envs.tooluse.tasks` does not import its own module twice.
    if name == "ToolUseEnv":
        from execgym.envs.tooluse.env import ToolUseEnv

        return ToolUseEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
