"""Files in and out of a Docker sandbox: tar archives built on the host, symlink checks against the daemon's
stat, and the cache of first contents per repository state.

>>> import tarfile, io
>>> tarfile.open(fileobj=io.BytesIO(_tar_files({"a/b.txt": b"hi"}, ["a"]))).getnames()
['a', 'a/b.txt']
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cachetools

from execgym.executor.base import MiB, PathError, SandboxSpec, validate_relpath
from execgym.executor.docker.container import WORKDIR

__all__ = ["_check_link", "_initial_tar_cached", "_stat_path", "_tar_files"]


def _check_link(path: str, info: Mapping[str, Any]) -> str:
    """Docker reports a symlink's target fully resolved inside the container: it must stay in /work."""
    target = info.get("linkTarget") or ""
    if target and target != WORKDIR and not target.startswith(WORKDIR + "/"):
        raise PathError(f"path {path!r} goes through a symlink to {target!r}, outside the sandbox")
    return target


def _stat_path(api: Any, container_id: str, path: str) -> dict[str, Any]:
    """``HEAD /containers/{id}/archive``: the path's stat (name, size, mode, linkTarget) without content."""
    import base64

    # docker-py has no HEAD helper; its APIClient is a requests.Session, so .head() does the call.
    url = api._url("/containers/{0}/archive", container_id)
    res = api.head(url, params={"path": path})
    api._raise_for_status(res)
    header = res.headers.get("x-docker-container-path-stat")
    return json.loads(base64.b64decode(header)) if header else {}


def _tarinfo(name: str, size: int, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.uid = info.gid = 1000
    info.mtime = int(time.time())
    return info


def _tar_files(entries: Mapping[str, bytes], mkdirs: Sequence[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in mkdirs:  # Docker would create missing parents owned by root
            info = _tarinfo(d, 0, 0o755)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for rel, data in entries.items():
            tar.addfile(_tarinfo(rel, len(data)), io.BytesIO(data))
    return buf.getvalue()


_TAR_CACHE_BYTES = 256 * MiB
#: First contents by (repository state, files), bounded by their total size, least recently used out.
_tar_cache: cachetools.LRUCache[tuple[Any, ...], bytes] = cachetools.LRUCache(_TAR_CACHE_BYTES, getsizeof=len)
_tar_cache_lock = threading.Lock()


def _tree_state(root: Path) -> tuple[tuple[str, int, int, int, int], ...]:
    """What the tar of ``root`` depends on: every entry's path, inode, mode, size and mtime (lstat)."""
    state = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            st = os.lstat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            state.append((rel, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns))
    return tuple(state)


def _initial_tar_cached(spec: SandboxSpec) -> bytes:
    """:func:`_initial_tar`, cached per (repository state, files): a reset does not re-read the tree.

    The key holds every entry's lstat (so an edited, added or removed file makes a new archive) and a
    digest of ``spec.files``; the cache keeps at most 256 MiB of archives, least recently used first out.
    """
    digest = hashlib.sha256()
    for path, content in sorted(spec.files.items()):
        data = content.encode() if isinstance(content, str) else bytes(content)
        digest.update(b"%d:%s\0%d:" % (len(path.encode()), path.encode(), len(data)))
        digest.update(data)
    root = Path(spec.workdir_from) if spec.workdir_from is not None else None
    key = (os.path.realpath(root) if root is not None else None, _tree_state(root) if root else (), digest.digest())
    with _tar_cache_lock:
        data = _tar_cache.get(key)
    if data is not None:
        return data
    data = _initial_tar(spec)
    if len(data) <= _TAR_CACHE_BYTES:  # a larger one is built each time rather than flushing the cache
        with _tar_cache_lock:
            _tar_cache[key] = data
    return data


def _initial_tar(spec: SandboxSpec) -> bytes:
    """The work directory's first contents: ``spec.workdir_from`` then ``spec.files`` on top."""
    buf = io.BytesIO()
    root = Path(spec.workdir_from) if spec.workdir_from is not None else None

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 1000
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=buf, mode="w") as tar:
        if root is not None:
            for entry in sorted(root.iterdir()):
                tar.add(entry, arcname=entry.name, filter=owned)
        made: set[str] = set()
        for path, content in spec.files.items():
            rel = validate_relpath(path)
            if root is not None:
                real_root = os.path.realpath(root)
                real = os.path.realpath(root / rel)
                if real != real_root and not real.startswith(real_root + os.sep):
                    raise PathError(f"path {path!r} goes through a symlink outside the sandbox")
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in made and not (root is not None and (root / d).exists()):
                    made.add(d)
                    info = _tarinfo(d, 0, 0o755)
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
            data = content.encode() if isinstance(content, str) else bytes(content)
            tar.addfile(_tarinfo(rel, len(data)), io.BytesIO(data))
    return buf.getvalue()
