"""Builds the sandbox images from ``execgym/assets/docker/<name>/``, offline when no registry answers.

Each image directory holds ``requirements.txt`` (Python packages) and ``apt-packages.txt`` (extra Debian
packages); the images share one ``Dockerfile`` (``ARG BASE``) in ``execgym/assets/docker/``, which an image
directory may override with its own. The build never lets a container reach a package index:

1. Python packages are downloaded on the host as wheels (``pip download --only-binary=:all:`` for
   CPython 3.11 on this machine's architecture) into the build context and installed with
   ``pip install --no-index --find-links``.
2. The base is ``python:3.11-slim-bookworm`` when it is present or can be pulled. Otherwise (offline)
   a Debian bookworm root file system is made with ``mmdebstrap --variant=minbase`` including
   ``python3``, ``python3-venv`` and the image's apt packages (bookworm ships Python 3.11, so the
   host-made wheels fit), and imported with ``docker import`` as ``execgym/base-<name>:bookworm``.

Images are tagged ``execgym/<name>:<IMAGE_VERSION>`` and labelled with a hash of their directory, so a
rebuild with unchanged inputs is skipped.

>>> sorted(IMAGES)
['cad', 'python']
>>> IMAGES["python"]
'execgym/python:0.1'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from execgym.executor.docker.container import DEFAULT_IMAGES, IMAGE_VERSION, _client

if TYPE_CHECKING:
    import docker as docker_sdk

__all__ = ["ASSETS", "IMAGES", "ONLINE_BASE", "build_images", "context_files", "context_hash", "registry_reachable"]

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "docker"
IMAGES = dict(DEFAULT_IMAGES)
ONLINE_BASE = "python:3.11-slim-bookworm"
HASH_LABEL = "org.execgym.context-hash"
DEBIAN_MIRROR_ENV = "EXECGYM_DEBIAN_MIRROR"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
PYTHON_VERSION = "3.11"


def context_files(name: str) -> dict[str, Path]:
    """The files of the image's build context by name: the shared Dockerfile, then the image directory's own.

    >>> sorted(context_files("python"))
    ['Dockerfile', 'apt-packages.txt', 'requirements.txt']
    """
    files = {"Dockerfile": ASSETS / "Dockerfile"}
    files.update({item.name: item for item in sorted((ASSETS / name).iterdir()) if item.is_file()})
    return files


def context_hash(name: str) -> str:
    """A hash of everything in the image's build context (plus the image version).

    >>> len(context_hash("python"))
    16
    """
    h = hashlib.sha256(IMAGE_VERSION.encode())
    for file_name, path in sorted(context_files(name).items()):
        h.update(file_name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def registry_reachable(client: docker_sdk.DockerClient, timeout: float = 30.0) -> bool:
    """True when the online base image is present or can be pulled within ``timeout`` seconds."""
    import docker

    try:
        client.images.get(ONLINE_BASE)
        return True
    except docker.errors.ImageNotFound:
        pass
    result: list[bool] = []

    def pull() -> None:
        try:
            client.images.pull(ONLINE_BASE)
            result.append(True)
        except Exception:
            result.append(False)

    t = threading.Thread(target=pull, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def _apt_packages(name: str) -> list[str]:
    lines = (ASSETS / name / "apt-packages.txt").read_text().splitlines()
    return [w for line in lines if not line.lstrip().startswith("#") for w in line.split()]


def _pip_platforms() -> list[str]:
    arch = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    tags = [
        "manylinux2014",
        "manylinux_2_17",
        "manylinux_2_24",
        "manylinux_2_27",
        "manylinux_2_28",
        "manylinux_2_31",
        "manylinux_2_34",
        "manylinux_2_35",
        "manylinux_2_36",
    ]  # bookworm: glibc 2.36
    return [f"{t}_{arch}" for t in tags] + [f"linux_{arch}"]


def download_wheels(name: str, dest: Path, log: Callable[[str], None] = print) -> None:
    """Wheels for the image's requirements, for CPython 3.11 on Linux (no sdists: nothing is built)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
        "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
        "--abi", f"cp{PYTHON_VERSION.replace('.', '')}", "--abi", "abi3", "--abi", "none",
        *[arg for p in _pip_platforms() for arg in ("--platform", p)], "--platform", "any",
        "-r", str(ASSETS / name / "requirements.txt"), "-d", str(dest),
    ]  # fmt: skip
    log(f"[images] {name}: downloading wheels")
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)


def bootstrap_base(name: str, client: docker_sdk.DockerClient, log: Callable[[str], None] = print) -> str:
    """Make ``execgym/base-<name>:bookworm`` with mmdebstrap + ``docker import``; returns the tag."""
    import docker

    tag = f"execgym/base-{name}:bookworm"
    packages = ["python3", "python3-venv", *_apt_packages(name)]
    wanted = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:16]
    try:
        if client.images.get(tag).labels.get(HASH_LABEL) == wanted:
            return tag
    except docker.errors.ImageNotFound:
        pass
    exe = shutil.which("mmdebstrap")
    if exe is None:
        raise RuntimeError("offline image build needs mmdebstrap (apt-get install -y mmdebstrap)")
    mirror = os.environ.get(DEBIAN_MIRROR_ENV, DEFAULT_DEBIAN_MIRROR)
    log(f"[images] {name}: bootstrapping Debian bookworm with mmdebstrap ({', '.join(packages)})")
    with tempfile.TemporaryDirectory(prefix="execgym-rootfs-") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(
            [exe, "--variant=minbase", f"--include={','.join(packages)}", "--quiet", "bookworm", str(tar), mirror],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        client.api.import_image_from_file(
            str(tar),
            repository=tag.split(":")[0],
            tag="bookworm",
            changes=[
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                f"LABEL {HASH_LABEL}={wanted}",
                'CMD ["/bin/sh"]',
            ],
        )
    return tag


def build_image(
    name: str,
    *,
    offline: bool | None = None,
    force: bool = False,
    client: docker_sdk.DockerClient | None = None,
    log: Callable[[str], None] = print,
) -> str:
    """Build one image (``"python"`` or ``"cad"``); returns its tag. See :func:`build_images`."""
    import docker

    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r}: choose from {sorted(IMAGES)}")
    client = client or _client(timeout=600)
    tag = IMAGES[name]
    digest = context_hash(name)
    if not force:
        try:
            if client.images.get(tag).labels.get(HASH_LABEL) == digest:
                log(f"[images] {tag} is up to date")
                return tag
        except docker.errors.ImageNotFound:
            pass
    if offline is None:
        offline = not registry_reachable(client)
        log(f"[images] registry {'unreachable: building offline' if offline else 'reachable'}")
    base = bootstrap_base(name, client, log) if offline else ONLINE_BASE
    with tempfile.TemporaryDirectory(prefix=f"execgym-build-{name}-") as tmp:
        ctx = Path(tmp)
        for file_name, path in context_files(name).items():
            shutil.copy2(path, ctx / file_name)
        download_wheels(name, ctx / "wheels", log)
        log(f"[images] building {tag} from {base}")
        stream = client.api.build(
            path=str(ctx),
            tag=tag,
            buildargs={"BASE": base},
            labels={HASH_LABEL: digest},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            network_mode="none" if offline else None,
        )
        for chunk in stream:
            if "error" in chunk:
                raise RuntimeError(f"building {tag} failed: {chunk['error'].strip()}")
            text = chunk.get("stream", "").rstrip()
            if text.startswith("Step "):
                log(f"[images] {text}")
    with contextlib.suppress(docker.errors.APIError):  # the wheel-installing stage is left dangling
        client.images.prune(filters={"dangling": True, "label": "org.execgym.build-stage=1"})
    log(f"[images] built {tag}")
    return tag


def build_images(
    names: Iterable[str] | None = None,
    offline: bool | None = None,
    *,
    force: bool = False,
    client: docker_sdk.DockerClient | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Build the named images (default: all) and return ``{name: tag}``.

    ``offline=None`` decides by trying the registry (present or pullable ``python:3.11-slim-bookworm``);
    ``True`` forces the mmdebstrap base, ``False`` the registry base. Unchanged images are skipped
    unless ``force``.

    >>> build_images(["nope"])
    Traceback (most recent call last):
    ...
    ValueError: unknown image 'nope': choose from ['cad', 'python']
    """
    names = list(names) if names else sorted(IMAGES, key=lambda n: n != "python")
    for n in names:
        if n not in IMAGES:
            raise ValueError(f"unknown image {n!r}: choose from {sorted(IMAGES)}")
    client = client or _client(timeout=600)
    if (offline is None and any(not _up_to_date(client, n) for n in names)) or (force and offline is None):
        offline = not registry_reachable(client)
        log(f"[images] registry {'unreachable: building offline' if offline else 'reachable'}")
    return {n: build_image(n, offline=offline, force=force, client=client, log=log) for n in names}


def _up_to_date(client: docker_sdk.DockerClient, name: str) -> bool:
    import docker

    try:
        return client.images.get(IMAGES[name]).labels.get(HASH_LABEL) == context_hash(name)
    except docker.errors.ImageNotFound:
        return False
