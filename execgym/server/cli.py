"""``execgym env-server``: the command line of the env server (also ``python -m execgym.server``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

__all__ = ["add_env_server_parser", "cmd_env_server", "main", "register"]


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The env server's options on ``parser``."""
    parser.add_argument("--env", required=True, metavar="ID[,ID...]",
                        help="env ids to serve, comma-separated (e.g. execgym/ToolUse-v0,execgym/TextToSQL-v0)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=_positive(int), default=8000, help="port (default 8000)")
    parser.add_argument("--max-sessions", type=_positive(int), default=256,
                        help="most concurrent sessions over all env ids; more are refused, never queued (default 256)")
    parser.add_argument("--idle-timeout", type=_positive(float), default=600.0, metavar="S",
                        help="close a session idle for S seconds (default 600)")
    parser.add_argument("--no-mcp", action="store_true", help="do not serve the MCP endpoint")


def add_env_server_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``env-server`` to ``execgym``'s subcommands."""
    parser = subparsers.add_parser(
        "env-server", help="serve envs over OpenEnv's wire protocol and MCP",
        description="Serve execgym envs to remote trainers: OpenEnv's HTTP/WebSocket protocol at "
                    "http://HOST:PORT/<env id>, MCP at http://HOST:PORT/mcp/<env id>.")
    add_arguments(parser)
    parser.set_defaults(func=cmd_env_server)
    return parser


def register(subparsers: Any) -> None:
    """Add ``env-server`` to the ``execgym`` command line (as the other parts' ``cli`` modules do)."""
    add_env_server_parser(subparsers)


def cmd_env_server(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the env server of ``args`` until interrupted."""
    import gymnasium as gym

    import execgym  # noqa: F401  (registers the env ids)

    try:
        from execgym.server import serve
    except ModuleNotFoundError as exc:
        print(f"error: execgym env-server needs {exc.name}: pip install 'execgym[server]'", file=sys.stderr)
        return 2

    env_ids = [i.strip() for i in args.env.split(",") if i.strip()]
    unknown = [i for i in env_ids if i not in gym.registry]
    if not env_ids or unknown:
        known = ", ".join(sorted(i for i in gym.registry if i.startswith("execgym/")))
        print(f"error: unknown env id {(unknown or [args.env])[0]!r}; known: {known}", file=sys.stderr)
        return 2
    print(f"execgym env server: {', '.join(env_ids)} at http://{args.host}:{args.port}/<env id> "
          f"(MCP: /mcp/<env id>), at most {args.max_sessions} sessions", file=out, flush=True)
    serve(env_ids, host=args.host, port=args.port, max_sessions=args.max_sessions,
          idle_timeout_s=args.idle_timeout, mcp=not args.no_mcp)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m execgym.server", description="the execgym env server")
    add_arguments(parser)
    return cmd_env_server(parser.parse_args(argv))
