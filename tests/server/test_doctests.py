"""The server modules' docstring examples run."""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.server.conftest import require_server_packages

require_server_packages()


MODULES = ["execgym.server", "execgym.server.sessions", "execgym.server.wire"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
