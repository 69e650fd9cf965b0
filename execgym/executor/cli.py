"""The executor's command-line verbs, plugged into the main ``execgym`` CLI.

``register(subparsers)`` adds ``images build [NAME...] [--offline|--online] [--force]`` and
``sandbox gc [--all]``. Each parsed namespace carries ``func``; call ``args.func(args)`` (returns an
exit code).

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="execgym")
>>> register(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["images", "build", "python", "--offline"])
>>> (args.names, args.offline, args.func.__name__)
(['python'], True, 'cmd_images_build')
>>> parser.parse_args(["sandbox", "gc", "--all"]).all
True
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["cmd_images_build", "cmd_sandbox_gc", "register"]


def cmd_images_build(args: argparse.Namespace) -> int:
    """``execgym images build``: build sandbox images (all by default)."""
    from execgym.executor.base import InfraError
    from execgym.executor.images import build_images

    try:
        built = build_images(args.names or None, offline=args.offline, force=args.force)
    except (InfraError, RuntimeError, ValueError) as e:
        print(f"execgym images build: {e}", file=sys.stderr)
        return 1
    for name, tag in built.items():
        print(f"{name}\t{tag}")
    return 0


def cmd_sandbox_gc(args: argparse.Namespace) -> int:
    """``execgym sandbox gc``: remove sandbox containers left by dead runs (or all with ``--all``)."""
    from execgym.executor.base import InfraError

    try:
        import docker
    except ImportError:
        print("execgym sandbox gc: the docker SDK is not installed: pip install 'execgym[docker]'", file=sys.stderr)
        return 1
    from execgym.executor.docker import gc_sandboxes

    try:
        n = gc_sandboxes(all=args.all)
    except (InfraError, docker.errors.DockerException) as e:
        print(f"execgym sandbox gc: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    print(f"removed {n} sandbox container(s)")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``images`` and ``sandbox`` commands to an argparse subparsers action."""
    images = subparsers.add_parser("images", help="build the Docker images sandboxes run in")
    images_sub = images.add_subparsers(dest="images_command", required=True)
    build = images_sub.add_parser("build", help="build sandbox images (default: all)")
    build.add_argument("names", nargs="*", metavar="NAME", help="image names: python, cad (default: all)")
    mode = build.add_mutually_exclusive_group()
    mode.add_argument(
        "--offline",
        dest="offline",
        action="store_const",
        const=True,
        default=None,
        help="bootstrap the base with mmdebstrap instead of pulling it",
    )
    mode.add_argument(
        "--online", dest="offline", action="store_const", const=False, help="pull the python:3.11-slim-bookworm base"
    )
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.set_defaults(func=cmd_images_build)

    sandbox = subparsers.add_parser("sandbox", help="manage sandbox containers")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    gc = sandbox_sub.add_parser("gc", help="remove sandbox containers whose owner process is gone")
    gc.add_argument("--all", action="store_true", help="remove every execgym sandbox container, live or not")
    gc.set_defaults(func=cmd_sandbox_gc)
