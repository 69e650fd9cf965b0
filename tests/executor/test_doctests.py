"""The docstring examples of the executor modules run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import execgym.executor

# Every module of the executor, the backends' packages included.
MODULES = [
    "execgym.executor",
    *sorted(m.name for m in pkgutil.walk_packages(execgym.executor.__path__, "execgym.executor.")),
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
