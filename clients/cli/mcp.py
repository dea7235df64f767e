"""`ostinato mcp`: serve MCP to an agent host (Claude Code, Cursor, Claude Desktop) over
stdio, or over Streamable HTTP with `--http HOST:PORT`, through the home's daemon, so that
the agent sees the same runs as the command line and the editors (docs/agents.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ostinato.protocol.home import resolve_home

from ..home import DaemonUnavailable, connect_home
from .common import EXIT_UNREACHABLE, EXIT_USAGE
from .failure import UNREACHABLE, USAGE, fail

NAME = "ostinato mcp"
TOKEN_ENV = "OSTINATO_MCP_TOKEN"


def serve(args: argparse.Namespace) -> int:
    """Entry of `ostinato mcp`: over stdio, or over Streamable HTTP with `--http`."""
    return serve_stdio(args) if args.http is None else serve_http(args)


def serve_stdio(args: argparse.Namespace) -> int:
    """Start the home's daemon when none runs, then hand it this process's stdin and
    stdout; the exit code of the session."""
    from ostinato.daemon import bridge

    home = resolve_home(args.home)
    if (code := _start_daemon(home)) is not None:
        return code
    sys.stdout.flush()
    return bridge.run(home)


def serve_http(args: argparse.Namespace) -> int:
    """`ostinato mcp --http HOST:PORT`: the Streamable HTTP front, in the foreground."""
    from ..mcp_http.front import Rules
    from ..mcp_http.main import AddressError, is_loopback, parse_address, run

    try:
        host, port = parse_address(args.http)
    except AddressError as exc:
        return fail(NAME, str(exc), EXIT_USAGE, code=USAGE)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        return fail(NAME, f"{host} is reachable from other machines: give a token "
                          f"(${TOKEN_ENV} or --token) that clients must send as "
                          f"`Authorization: Bearer <token>`", EXIT_USAGE, code=USAGE)
    if args.idle_timeout <= 0:
        return fail(NAME, "--idle-timeout must be positive", EXIT_USAGE, code=USAGE)
    home = resolve_home(args.home)
    if (code := _start_daemon(home)) is not None:
        return code
    origins = frozenset(origin.rstrip("/") for origin in args.allow_origin)
    return run(host, port, Rules(home, token, origins, args.idle_timeout, is_loopback(host)))


def _start_daemon(home: Path) -> int | None:
    """Start the home's daemon when none runs; the exit code when it cannot be."""
    try:
        connect_home(home).close()  # the daemon serves the home from now on
    except DaemonUnavailable as exc:
        return fail(NAME, f"cannot start a daemon for {home}: {exc}", EXIT_UNREACHABLE,
                    code=UNREACHABLE)
    return None


def add_parsers(commands: Any) -> None:
    """The `mcp` subcommand."""
    mcp = commands.add_parser(
        "mcp", help="serve MCP to an agent host (stdio, or Streamable HTTP)",
        description="Serve the Model Context Protocol over stdio (newline-delimited JSON) "
                    "for an agent host such as Claude Code, Cursor or Claude Desktop, or "
                    "with --http over MCP's Streamable HTTP transport at /mcp. Sessions "
                    "are served by the home's daemon, started in the background when none "
                    "runs, so the agent shares runs with the command line and editors. "
                    "See docs/agents.md.")
    mcp.add_argument("--home", type=Path,
                     help="the home (default $OSTINATO_HOME or ./.ostinato)")
    mcp.add_argument("--http", metavar="HOST:PORT",
                     help="serve Streamable HTTP on HOST:PORT (port 0: any free port; the "
                          "URL is printed on stderr); a HOST other than loopback needs a "
                          "token")
    mcp.add_argument("--token", help=f"with --http, the bearer token clients must send "
                                     f"(default ${TOKEN_ENV}, which keeps it out of `ps`)")
    mcp.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                     help="with --http, a browser origin allowed besides loopback ones "
                          "(e.g. https://app.example.com); repeatable")
    mcp.add_argument("--idle-timeout", type=float, default=3600.0, metavar="SECONDS",
                     help="with --http, close sessions unused for this long (default 3600)")
    mcp.set_defaults(func=serve)
