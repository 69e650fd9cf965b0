"""Fixtures of the SWE env tests: a shared local executor, and the Docker skip/require logic."""


import pytest

from execgym.executor import LocalExecutor
from tests.executor.conftest import require_docker


@pytest.fixture(scope="session")
def local_executor():
    executor = LocalExecutor()
    yield executor
    executor.close()


@pytest.fixture(scope="session")
def docker_executor():
    """A Docker executor with the python image, or a skip (a failure when EXECGYM_REQUIRE_DOCKER=1)."""
    from execgym.executor.docker import DockerExecutor

    require_docker("python")
    executor = DockerExecutor(pool_size=1)
    yield executor
    executor.close()
