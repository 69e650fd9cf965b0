"""Agents behind one ``make_agent``: oracle and random (bounds), and LLM policies: ``openai`` (any
OpenAI-compatible server) and ``hf`` (a local ``transformers`` model). The LLM agents import their heavy
dependencies (``openai``, ``torch``, ``transformers``; the ``agents`` extra) only when they are built."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym

from execgym.agents.base import Agent, BatchedAgent
from execgym.agents.oracle import OracleAgent
from execgym.agents.random_agent import RandomAgent

if TYPE_CHECKING:
    from execgym.agents.hf_policy import HFPolicyAgent
    from execgym.agents.openai_chat import OpenAIChatAgent

__all__ = ["AGENTS", "Agent", "BatchedAgent", "HFPolicyAgent", "OpenAIChatAgent", "OracleAgent", "RandomAgent",
           "make_agent"]

AGENTS = ("oracle", "random", "openai", "hf")


def make_agent(name: str, env: gym.Env[Any, Any], *, seed: int | None = None, **kwargs: Any) -> Agent:
    """Build an agent by name for ``env``; unknown names raise a ValueError listing the known ones.

    ``kwargs`` go to the agent's constructor: ``openai`` takes ``model``, ``base_url``, ``tool_mode``, ...
    (:class:`OpenAIChatAgent`); ``hf`` takes ``model`` (a folder or hub id), ``temperature``, ...
    (:class:`HFPolicyAgent`).

    Example:
        >>> import gymnasium as gym, execgym
        >>> make_agent("openai", None, model="m", base_url="http://127.0.0.1:8000/v1").name
        'openai'
    """
    if name == "oracle":
        return OracleAgent(env)
    if name == "random":
        return RandomAgent(seed=seed, **kwargs)
    if name == "openai":
        from execgym.agents.openai_chat import OpenAIChatAgent

        return OpenAIChatAgent(seed=seed, **kwargs)  # no model=...: the server's only one
    if name == "hf":
        from execgym.agents.hf_policy import HFPolicyAgent

        if "model" not in kwargs:
            raise ValueError("the hf agent needs model=<folder or hub id>")
        return HFPolicyAgent(seed=seed, **kwargs)
    raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(AGENTS)}")


def __getattr__(name: str) -> Any:
    # the LLM agents load lazily, so `import execgym.agents` needs neither openai nor torch
    if name == "OpenAIChatAgent":
        from execgym.agents.openai_chat import OpenAIChatAgent

        return OpenAIChatAgent
    if name == "HFPolicyAgent":
        from execgym.agents.hf_policy import HFPolicyAgent

        return HFPolicyAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
