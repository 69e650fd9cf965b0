"""Fixtures for the report tests: a real ``execgym run --out`` folder and a headless Chromium driven by Selenium."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def chromium_options(profile: str) -> Any:
    from selenium.webdriver.chrome.options import Options

    options = Options()
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary:
        options.binary_location = binary
    # as root, headless, on a machine without network: no sandbox, no background connections, a fresh profile
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1500,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Debian's chromium and chromium-driver, through Selenium)."""
    # CI sets EXECGYM_REQUIRE_BROWSER=1: a missing browser or driver fails these tests instead of skipping them
    missing = pytest.fail if os.environ.get("EXECGYM_REQUIRE_BROWSER") == "1" else pytest.skip
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("needs selenium: pip install -e '.[dev]'")
    driver_path = shutil.which("chromedriver")
    if driver_path is None or not (shutil.which("chromium") or shutil.which("google-chrome")):
        missing("needs chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="execgym-view-chromium-")
    driver = webdriver.Chrome(service=Service(driver_path), options=chromium_options(profile))
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``execgym run --out DIR`` on a few episodes of ToolUse, TextToSQL and SWERepair (oracle, random)."""
    from execgym.cli import main

    out = tmp_path_factory.mktemp("run") / "out"
    buf = io.StringIO()
    rc = main(["run", "--env", "ToolUse,TextToSQL,SWERepair", "--agent", "oracle,random", "--episodes", "2",
               "--out", str(out)], out=buf)
    assert rc == 0, buf.getvalue()
    return out
