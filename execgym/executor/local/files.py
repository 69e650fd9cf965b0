"""Confined file access for the local backend: paths resolved component by component, never leaving the sandbox.

>>> import os, tempfile
>>> with tempfile.TemporaryDirectory() as root:
...     os.symlink("/etc", os.path.join(root, "out"))
...     try:
...         open_inside(root, "out/passwd", os.O_RDONLY, create_parents=False)
...     except PathError as e:
...         print(e)
path 'out/passwd' goes through a symlink to '/etc', outside the sandbox
"""

from __future__ import annotations

import errno
import os
import stat

from execgym.executor.base import PathError

__all__ = ["chown_tree", "open_inside"]


def open_inside(root: str, rel: str, flags: int, *, create_parents: bool, owner: tuple[int, int] | None = None) -> int:
    """Open ``rel`` under ``root`` following symlinks only while they stay inside ``root``.

    ``owner``: uid/gid given to the file and the directories this call creates (the sandbox user's).

    Every component is opened relative to its parent's descriptor with ``O_NOFOLLOW``; a symlink is
    read and its target spliced into the remaining path, so nothing can redirect the walk outside.
    Only regular files are returned (a FIFO would block the host).
    """
    root_real = os.path.realpath(root)
    pending = rel.split("/")
    stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    hops = 0
    try:
        while pending:
            name = pending.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) == 1:
                    raise PathError(f"path {rel!r} resolves outside the sandbox")
                os.close(stack.pop())
                continue
            cur = stack[-1]
            if not pending:
                try:
                    fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644, dir_fd=cur)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                        raise
                    if e.errno != errno.ELOOP:
                        raise PathError(f"path {rel!r} is not a regular file") from e
                else:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        os.close(fd)
                        raise PathError(f"path {rel!r} is not a regular file")
                    os.set_blocking(fd, True)
                    if owner is not None and flags & os.O_CREAT:
                        os.fchown(fd, *owner)
                    return fd
            else:
                try:
                    stack.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur))
                    continue
                except FileNotFoundError:
                    if not create_parents:
                        raise
                    os.mkdir(name, 0o755, dir_fd=cur)
                    if owner is not None:
                        os.chown(name, *owner, dir_fd=cur, follow_symlinks=False)
                    pending.insert(0, name)
                    continue
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
            try:
                target = os.readlink(name, dir_fd=cur)
            except OSError as e:
                raise NotADirectoryError(errno.ENOTDIR, f"not a directory in sandbox path {rel!r}", name) from e
            hops += 1
            if hops > 40:
                raise PathError(f"path {rel!r}: too many levels of symbolic links")
            if target.startswith("/"):
                real_target = os.path.normpath(target)
                if real_target != root_real and not real_target.startswith(root_real + "/"):
                    raise PathError(f"path {rel!r} goes through a symlink to {target!r}, outside the sandbox")
                while len(stack) > 1:
                    os.close(stack.pop())
                target = os.path.relpath(real_target, root_real)
            pending = [p for p in target.split("/") if p] + pending
        raise PathError(f"path {rel!r} names a directory")
    finally:
        for fd in stack:
            os.close(fd)


def chown_tree(top: str, uid: int, gid: int) -> None:
    """Give a freshly made work directory (and everything copied into it) to the sandbox user."""
    os.lchown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)
