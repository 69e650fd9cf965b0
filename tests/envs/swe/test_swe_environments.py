"""Project environments: static requirement reading, and real wheelhouses, venvs and images (real pip,
real PyPI downloads, real dockerd for the image)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from execgym.envs.swe.environments import (
    IMAGE_REPOSITORY,
    KEY_LABEL,
    MARKER_FILE,
    EnvironmentBuildError,
    Requirements,
    build_image,
    build_venv,
    environment_key,
    prepare_environment,
    read_requirements,
    resolve_wheels,
)
from execgym.envs.swe.repos import cache_root
from execgym.executor import LocalExecutor
from execgym.executor.docker.container import DEFAULT_IMAGES

# A small pure-Python package the host does not have (checked by the fixture below).
EXTRA_PACKAGE = "pyjokes"

SETUP_PY_THAT_WRITES = "open('setup_py_ran.txt', 'w').write('ran')\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# --- reading requirements (no network) -------------------------------------------------------------------


def test_pyproject_extras_groups_markers_and_own_name(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": """
[project]
name = "My_Proj"
dependencies = [
    "attrs>=22",
    "colorama; sys_platform == 'win32'",
    "tomli; python_version < '3.11'",
    "typing-extensions; python_version >= '3.8' and platform_system == 'Linux'",
]
[project.optional-dependencies]
test = ["hypothesis>=6", "my.proj[cli]"]
cli = ["click>=8"]
docs = ["sphinx"]
dev = ["attrs<24", "my-proj"]
[dependency-groups]
test = ["coverage[toml]", {include-group = "lint"}]
lint = ["ruff"]
docs = ["furo"]
""",
            "setup.py": SETUP_PY_THAT_WRITES,
            "requirements-test.txt": (
                "-e .\n-r other.txt\n--index-url https://example.invalid/simple\n"
                "git+https://example.invalid/x.git#egg=x\nthing @ https://example.invalid/thing.whl\n"
                "pyjokes==0.8.3  # a comment\n# only a comment\n\n"
            ),
        },
    )
    reqs = read_requirements(tmp_path)
    assert reqs.packages == (
        "attrs<24,>=22",
        "click>=8",
        "coverage[toml]",
        "hypothesis>=6",
        "pyjokes==0.8.3",
        "pytest",
        "ruff",
        "typing-extensions",
    )
    assert reqs.project == "my-proj"
    assert reqs.source == "pyproject.toml [project] + extras [cli, dev, test] + groups [test] + requirements-test.txt"
    assert not (tmp_path / "setup_py_ran.txt").exists()


def test_pkg_info_when_pyproject_dependencies_are_dynamic(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "pkgdemo"\ndynamic = ["dependencies", "optional-dependencies"]\n',
            "setup.py": SETUP_PY_THAT_WRITES,
            "PKG-INFO": (
                "Metadata-Version: 2.1\nName: pkgdemo\nVersion: 1.0\n"
                "Requires-Dist: requests>=2\n"
                "Requires-Dist: pywin32; sys_platform == 'win32'\n"
                "Provides-Extra: test\nRequires-Dist: pytest-cov; extra == 'test'\n"
                "Provides-Extra: docs\nRequires-Dist: sphinx; extra == 'docs'\n"
                "Provides-Extra: testing\nRequires-Dist: pkgdemo[yaml]; extra == 'testing'\n"
                "Provides-Extra: yaml\nRequires-Dist: pyyaml>=6; extra == 'yaml'\n"
                "Requires-Dist: pytest>=7; extra == 'test'\n"
                "\nlong description\n"
            ),
        },
    )
    reqs = read_requirements(tmp_path)
    assert reqs.packages == ("pytest-cov", "pytest>=7", "pyyaml>=6", "requests>=2")
    assert reqs.source == "PKG-INFO + extras [test, testing, yaml]"
    assert reqs.project == "pkgdemo"
    assert not (tmp_path / "setup_py_ran.txt").exists()


def test_setup_cfg_and_requirement_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "setup.py": SETUP_PY_THAT_WRITES,
            "setup.cfg": (
                "[metadata]\nname = cfgdemo\n\n[options]\ninstall_requires =\n    six>=1.16\n"
                "    cfgdemo-plugins ; python_version < '3'\n\n"
                "[options.extras_require]\ntest = file: requirements/test.txt\ndocs = sphinx\n"
            ),
            "requirements/test.txt": "mock>=5 ; python_version >= '3.6'\nfreezegun \\\n  >=1.2\n",
            "tests/requirements.txt": ".[test]\ncfgdemo\nsortedcontainers --hash=sha256:abc\n",
        },
    )
    reqs = read_requirements(tmp_path)
    assert reqs.packages == ("freezegun>=1.2", "mock>=5", "pytest", "six>=1.16", "sortedcontainers")
    assert reqs.source == "setup.cfg + extras [test] + requirements/test.txt + tests/requirements.txt"
    assert not (tmp_path / "setup_py_ran.txt").exists()
    # An explicit project name wins over the declared one (a renamed distribution).
    assert "six>=1.16" not in read_requirements(tmp_path, project_name="Six").packages


def test_nothing_declared_means_pytest_only(tmp_path: Path) -> None:
    reqs = read_requirements(tmp_path)
    assert reqs == Requirements(("pytest",), "none (pytest only)", None)


def test_setup_py_only_checkout_reads_requirements_txt(tmp_path: Path) -> None:
    write(tmp_path, {"setup.py": SETUP_PY_THAT_WRITES, "requirements.txt": "six\nidna>=3 ; os_name == 'nt'\n"})
    reqs = read_requirements(tmp_path, project_name="legacy")
    assert reqs == Requirements(("pytest", "six"), "requirements.txt", "legacy")
    assert not (tmp_path / "setup_py_ran.txt").exists()
    # With metadata, requirements.txt is not read (it may pin a deployment, not the tests' needs).
    write(tmp_path, {"setup.cfg": "[options]\ninstall_requires =\n    attrs\n"})
    assert read_requirements(tmp_path).packages == ("attrs", "pytest")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"pyproject.toml": "[project\nname = 1"}, "read requirements failed: pyproject.toml: "),
        (
            {"pyproject.toml": '[project]\nname = "x"\ndependencies = ["ok", "not a requirement!"]'},
            "invalid requirement",
        ),
        ({"pyproject.toml": '[project]\nname = "x"\ndependencies = "attrs"'}, "must be a list of strings"),
        ({"pyproject.toml": '[dependency-groups]\ntest = [{include-group = "nope"}]'}, "has no group 'nope'"),
        ({"setup.cfg": "[options.extras_require]\ntest = file: ../outside.txt\n"}, "no file '../outside.txt'"),
    ],
)
def test_bad_metadata_is_one_clear_error(tmp_path: Path, files: dict[str, str], message: str) -> None:
    write(tmp_path, files)
    with pytest.raises(EnvironmentBuildError) as info:
        read_requirements(tmp_path)
    assert info.value.step == "read requirements"
    assert message in str(info.value) and "\n" not in str(info.value)


def test_environment_key() -> None:
    a = Requirements(("attrs", "pytest"), "pyproject.toml [project]", "demo")
    key = environment_key(a)
    assert len(key) == 16 and int(key, 16) >= 0
    assert environment_key(Requirements(("pytest", "attrs"), "setup.cfg", "demo")) == key
    assert environment_key(Requirements(("attrs>=2", "pytest"), "x", "demo")) != key
    assert environment_key(Requirements(("attrs", "pytest"), "x", "other")) != key
    with pytest.raises(ValueError, match="unknown environment build step"):
        EnvironmentBuildError("compile", "x")


# --- real wheelhouses and venvs (PyPI downloads) ---------------------------------------------------------


@pytest.fixture(scope="module")
def env_cache() -> Iterator[Path]:
    """A fresh cache folder under the real cache root (not /tmp: a local sandbox has its own /tmp)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="test-environments-", dir=cache_root()))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def jokes_reqs(tmp_path_factory: pytest.TempPathFactory) -> Requirements:
    if subprocess.run([sys.executable, "-c", f"import {EXTRA_PACKAGE}"], capture_output=True).returncode == 0:
        pytest.skip(f"{EXTRA_PACKAGE} is installed on the host, so a venv that imports it proves nothing")
    root = tmp_path_factory.mktemp("jokes-project")
    write(root, {"pyproject.toml": f'[project]\nname = "demo-jokes"\ndependencies = ["{EXTRA_PACKAGE}"]\n'})
    return read_requirements(root)


@pytest.mark.slow
def test_build_venv_installs_the_dependencies_and_is_reused(env_cache: Path, jokes_reqs: Requirements) -> None:
    venv = build_venv(jokes_reqs, cache=env_cache)
    key = environment_key(jokes_reqs)
    assert venv == env_cache / "envs" / key
    python = venv / "bin" / "python"
    code = f"import {EXTRA_PACKAGE}, importlib.metadata as m, sys; print(sys.prefix); print(m.version('pytest'))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert Path(out[0]) == venv and out[1][0].isdigit()
    marker = venv / MARKER_FILE
    assert json.loads(marker.read_text())["key"] == key
    before = (marker.stat().st_mtime_ns, (env_cache / "wheels" / key).stat().st_mtime_ns)
    assert build_venv(jokes_reqs, cache=env_cache) == venv
    env = prepare_environment(jokes_reqs, "local", cache=env_cache)
    assert (env.key, env.venv, env.image, env.python) == (key, venv, None, python)
    assert (marker.stat().st_mtime_ns, (env_cache / "wheels" / key).stat().st_mtime_ns) == before


@pytest.mark.slow
def test_local_sandbox_runs_with_the_venv(env_cache: Path, jokes_reqs: Requirements) -> None:
    venv = build_venv(jokes_reqs, cache=env_cache)
    executor = LocalExecutor(python=str(venv / "bin" / "python"))
    try:
        with executor.sandbox() as sb:
            r = sb.run(f"python -c 'import {EXTRA_PACKAGE}, sys; print(sys.prefix)'", timeout=60)
    finally:
        executor.close()
    assert r.exit_code == 0, r.stderr
    assert Path(r.stdout.strip()) == venv


@pytest.mark.slow
def test_the_project_itself_never_enters_the_wheelhouse(env_cache: Path) -> None:
    # pytest depends on iniconfig: a project named iniconfig must test its working copy, not the release.
    wheelhouse = resolve_wheels(Requirements(("pytest",), "test", "iniconfig"), cache=env_cache)
    names = {w.name.split("-")[0].lower() for w in wheelhouse.glob("*.whl")}
    assert {"pytest", "pluggy"} <= names and "iniconfig" not in names


@pytest.mark.slow
def test_unresolvable_requirement_names_the_step(env_cache: Path) -> None:
    reqs = Requirements(("execgym-no-such-distribution-7f3a", "pytest"), "test")
    with pytest.raises(EnvironmentBuildError) as info:
        build_venv(reqs, cache=env_cache)
    message = str(info.value)
    assert info.value.step == "resolve dependencies"
    assert message.startswith("resolve dependencies failed: ") and "\n" not in message
    assert "execgym-no-such-distribution-7f3a" in message and "Traceback" not in message
    assert not (env_cache / "wheels" / environment_key(reqs)).exists()
    assert not (env_cache / "envs" / environment_key(reqs)).exists()


# --- the image (real dockerd) ----------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_build_image_installs_the_dependencies_offline(env_cache: Path, jokes_reqs: Requirements) -> None:
    from tests.executor.conftest import require_docker

    require_docker("python")
    from execgym.executor.docker.container import _client

    client = _client(timeout=600)
    key = environment_key(jokes_reqs)
    tag = build_image(jokes_reqs, client=client, cache=env_cache)
    try:
        assert tag == f"{IMAGE_REPOSITORY}:{key}"
        image = client.images.get(tag)
        assert image.labels[KEY_LABEL] == key
        code = (
            f"import {EXTRA_PACKAGE}, pytest, glob; print({EXTRA_PACKAGE}.__file__, glob.glob('/opt/execgym/wheels*'))"
        )
        out = client.containers.run(tag, ["python", "-c", code], network_mode="none", remove=True).decode()
        assert out.startswith("/opt/venv/") and out.strip().endswith("[]")  # no wheels left in the image
        assert prepare_environment(jokes_reqs, "docker", client=client, cache=env_cache).image == tag
        assert client.images.get(tag).id == image.id  # reused, not rebuilt
    finally:
        client.images.remove(tag, force=True)
        client.close()


@pytest.mark.docker
def test_build_image_without_the_python_image_says_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch, env_cache: Path
) -> None:
    from tests.executor.conftest import require_docker

    require_docker("python")
    monkeypatch.setitem(DEFAULT_IMAGES, "python", "execgym-test/no-such-python-image:0")
    reqs = Requirements(("pytest",), "test", "never-downloaded")
    with pytest.raises(EnvironmentBuildError) as info:
        build_image(reqs, cache=env_cache)
    assert info.value.step == "build image"
    assert "execgym-test/no-such-python-image:0 is missing" in str(info.value)
    assert "`execgym images build python`" in str(info.value)
    assert not (
        env_cache / "wheels" / environment_key(reqs)
    ).exists()  # nothing was downloaded for an image that cannot be built


def test_requirement_file_includes_are_followed_inside_the_project(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("raise SystemExit('never run')\n")
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.txt").write_text("attrs>=20\n-r base.txt\n")  # a loop is followed once
    (tmp_path / "requirements-test.txt").write_text(
        "-r requirements/base.txt\n--requirement=../outside.txt\n-r /etc/hostname\nhypothesis\n"
    )
    (tmp_path.parent / "outside.txt").write_text("numpy\n")
    reqs = read_requirements(tmp_path, "proj")
    assert reqs.packages == ("attrs>=20", "hypothesis", "pytest")
