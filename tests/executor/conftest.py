"""Fixtures for the executor tests, reusable by env test suites (``from tests.executor.conftest import ...``).

Docker tests carry ``@pytest.mark.docker``. Without a daemon (or without the image) they are skipped
with a reason saying how to enable them; with ``EXECGYM_REQUIRE_DOCKER=1`` they fail instead.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from execgym.executor import Executor, LocalExecutor
from execgym.executor.docker import docker_available, image_available
from execgym.executor.local import LocalSandbox

REQUIRE_DOCKER_ENV = "EXECGYM_REQUIRE_DOCKER"
HOW_TO_ENABLE = "start dockerd, then `execgym images build python` (or run .ci/docker.sh)"


def require_docker(image: str = "python", *, optional_image: bool = False) -> None:
    """Skip (or fail under EXECGYM_REQUIRE_DOCKER=1) unless a daemon answers and ``image`` is built.

    ``optional_image``: a missing image (not a missing daemon) always skips, for images CI may not build
    (the large ``cad`` one).
    """
    ok, why = docker_available()
    daemon_ok = ok
    if ok:
        ok, why = image_available(image)
    if ok:
        return
    how = HOW_TO_ENABLE.replace("build python", f"build {image}")
    message = f"docker backend unavailable: {why}; to enable: {how}"
    if os.environ.get(REQUIRE_DOCKER_ENV) == "1" and not (daemon_ok and optional_image):
        pytest.fail(f"{message} ({REQUIRE_DOCKER_ENV}=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def _docker_executor_session() -> Iterator[Executor]:
    require_docker()
    from execgym.executor.docker import DockerExecutor

    ex = DockerExecutor(pool_size=1)
    yield ex
    ex.close()


@pytest.fixture
def docker_executor(_docker_executor_session: Executor) -> Executor:
    """A shared DockerExecutor (warm pool of 1 per limits); skips or fails as described above."""
    return _docker_executor_session


@pytest.fixture
def local_executor() -> Executor:
    return LocalExecutor()


def bwrap_local(note: str = "") -> LocalExecutor:
    """A LocalExecutor confined by bubblewrap; skips (saying ``note``) where bubblewrap is unusable."""
    ex = LocalExecutor()
    if not ex.use_bwrap:
        pytest.skip(f"bubblewrap unusable here ({ex.bwrap_reason}){note}")
    return ex


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def confined(request: pytest.FixtureRequest) -> Executor:
    """The backends that promise containment: local with bubblewrap, and Docker."""
    if request.param == "local":
        return bwrap_local(": LocalExecutor() refuses to run unconfined")
    return request.getfixturevalue("docker_executor")


@pytest.fixture(params=["local", "local-plain", pytest.param("docker", marks=pytest.mark.docker)])
def executor(request: pytest.FixtureRequest) -> Executor:
    """Each backend in turn: the behaviour suite runs against both (local with and without bwrap)."""
    if request.param == "local":
        return bwrap_local("; covered by local-plain")
    if request.param == "local-plain":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "network cannot be disabled": expected
            return _QuietLocal(use_bwrap=False)
    return request.getfixturevalue("docker_executor")


class _QuietLocal(LocalExecutor):
    """A LocalExecutor without bwrap that does not warn about the network on every sandbox."""

    def sandbox(self, spec=None):  # type: ignore[no-untyped-def]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return super().sandbox(spec)


def local_sandbox_pids(sb: LocalSandbox) -> list[int]:
    """Host pids of every process of a local sandbox (they carry its EXECGYM_SANDBOX marker)."""
    marker = f"EXECGYM_SANDBOX={sb.id}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return pids
