"""The rollout modules' docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import importlib.util

import pytest

MODULES = ["execgym.rollout.episode", "execgym.rollout.async_rollout", "execgym.rollout.bench",
           "execgym.rollout.vector", "execgym.agents.base"]
if importlib.util.find_spec("ray") is not None:
    MODULES.append("execgym.rollout.ray")


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
