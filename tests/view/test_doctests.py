"""The report's and the run plots' docstring examples run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["execgym.view", "execgym.view.loader", "execgym.view.report", "execgym.rollout.plots"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    if name == "execgym.rollout.plots":
        pytest.importorskip("matplotlib")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
