"""BFCL (Berkeley Function-Calling Leaderboard) single-turn categories, graded by BFCL's AST rules.

Registered as ``execgym/BFCL-v0`` (entry point ``execgym.envs.bfcl.env:BFCLEnv``); its dataset is
``"bfcl:DIR"`` with ``split=<category>``.
"""

from typing import Any

__all__ = ["BFCLEnv"]


def __getattr__(name: str) -> Any:
    # Lazy, like the other env packages: importing a submodule does not build the env's imports.
    if name == "BFCLEnv":
        from execgym.envs.bfcl.env import BFCLEnv

        return BFCLEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
