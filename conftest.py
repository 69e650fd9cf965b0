"""Repository-wide pytest settings."""

import importlib.util
import os

import pytest

# CI installs every optional package (the server, the trainers the adapters are for, CadQuery, openenv-core):
# there a test that would skip for a missing one fails instead, so a broken install never passes as green.
REQUIRE_PACKAGES = os.environ.get("EXECGYM_REQUIRE_PACKAGES") == "1"
_MISSING_PACKAGE = ("could not import", "needs ")

# Bundled task repositories carry their own tests: they are task data, run inside sandboxes, never here.
collect_ignore_glob = ["execgym/assets/*"]
# An adapter module imports its trainer at the top: without that package, its doctests are not collected (its
# tests in tests/integrations skip with the reason).
collect_ignore = [] if REQUIRE_PACKAGES else [
    f"execgym/integrations/{name}.py" for name, package in
    {"verl": "verl", "skyrl": "skyrl_gym", "trl": "trl", "verifiers": "verifiers"}.items()
    if importlib.util.find_spec(package) is None]


def _missing_package(report: pytest.CollectReport | pytest.TestReport) -> bool:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    return report.skipped and reason.startswith(_MISSING_PACKAGE)


def _require(report: pytest.CollectReport | pytest.TestReport) -> None:
    if REQUIRE_PACKAGES and _missing_package(report):
        report.outcome = "failed"
        report.longrepr = f"EXECGYM_REQUIRE_PACKAGES=1 but a package is missing: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    _require(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    _require(outcome.get_result())
