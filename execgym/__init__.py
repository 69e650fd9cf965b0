"""execgym: Gymnasium-native multi-turn, execution-grounded environments for LLM agents.

Importing the package registers every env id with gymnasium under the ``execgym/`` namespace. An env whose
extra is not installed is registered too, so that ``gym.make`` fails with the command that installs it,
and listed apart by :func:`unavailable_envs`:

    >>> import gymnasium as gym, execgym
    >>> set(registered_envs()) <= set(registered_envs(include_unavailable=True))
    True
    >>> install_command("cad")
    'pip install "execgym[cad]"'
"""

from __future__ import annotations

import importlib.util

import gymnasium as gym

__version__ = "0.1.0"

# id -> (entry point, the extra it needs or None, the modules that extra provides)
ENVS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "execgym/TextToSQL-v0": ("execgym.envs.sql.env:TextToSQLEnv", None, ()),
    "execgym/SWERepair-v0": ("execgym.envs.swe.env:SWERepairEnv", None, ()),
    "execgym/CADModel-v0": ("execgym.envs.cad.env:CADModelEnv", "cad", ("cadquery",)),
    "execgym/ToolUse-v0": ("execgym.envs.tooluse.env:ToolUseEnv", None, ()),
    "execgym/BFCL-v0": ("execgym.envs.bfcl.env:BFCLEnv", None, ()),
}


def install_command(extra: str) -> str:
    """The command that installs an extra of execgym."""
    return f'pip install "execgym[{extra}]"'


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(env_id: str) -> str | None:
    """The extra ``env_id`` needs and that is not installed here, or None (unknown ids: None)."""
    _entry, extra, modules = ENVS.get(env_id, ("", None, ()))
    if extra is None or all(_module_exists(m) for m in modules):
        return None
    return extra


def _register_all() -> None:
    for env_id, (entry_point, _extra, _modules) in ENVS.items():
        if env_id in gym.registry:
            continue
        # Registered even when its extra is missing: the env's constructor then raises DependencyNotInstalled
        # with the install command (CADModel-v0 only needs CadQuery here when one of its workers runs here).
        # No max_episode_steps: AgentEnv truncates at its own max_turns, and grades when it does. No
        # OrderEnforcing or passive checker: AgentEnv raises ResetNeeded itself, restore(snapshot) starts an
        # episode without reset() (which both wrappers refuse), and tests run gymnasium's check_env on every id.
        gym.register(
            id=env_id,
            entry_point=entry_point,
            order_enforce=False,
            disable_env_checker=True,
        )


_register_all()

REMOTE_ENV_ID = "execgym/Remote-v0"
"""An env served by ``execgym env-server``: ``gym.make(REMOTE_ENV_ID, url=..., env_id=..., **env_kwargs)``."""

if REMOTE_ENV_ID not in gym.registry:
    # Not in ENVS: it needs a server's url and an env id, so it is never made by listing ids.
    gym.register(id=REMOTE_ENV_ID, entry_point="execgym.remote:RemoteEnv", order_enforce=False,
                 disable_env_checker=True)


def registered_envs(*, include_unavailable: bool = False) -> list[str]:
    """The execgym env ids registered with gymnasium that can be made here (``include_unavailable``: all of them,
    also those whose extra is missing and whose ``gym.make`` raises ``DependencyNotInstalled``)."""
    ids = sorted(i for i in gym.registry if i.startswith("execgym/") and i != REMOTE_ENV_ID)
    return ids if include_unavailable else [i for i in ids if missing_extra(i) is None]


def unavailable_envs() -> dict[str, str]:
    """Registered env ids whose extra is missing here -> the command that installs it."""
    return {i: install_command(e) for i in registered_envs(include_unavailable=True) if (e := missing_extra(i))}


__all__ = ["REMOTE_ENV_ID", "__version__", "install_command", "missing_extra", "registered_envs", "unavailable_envs"]
