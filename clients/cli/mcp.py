"""`ostinato mcp`: serve MCP to an agent host (Claude Code, Cursor, Claude Desktop) over
stdio, through the home's daemon, so that the agent sees the same runs as the command line
and the editors (docs/agents.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ostinato.protocol.home import resolve_home

from ..home import DaemonUnavailable, connect_home
from .common import EXIT_UNREACHABLE
from .failure import UNREACHABLE, fail

NAME = "ostinato mcp"


def serve_stdio(args: argparse.Namespace) -> int:
    """Entry of `ostinato mcp`: start the home's daemon when none runs, then hand it this
    process's stdin and stdout; the exit code of the session."""
    from ostinato.daemon import bridge

    home = resolve_home(args.home)
    try:
        connect_home(home).close()  # the daemon serves the home from now on
    except DaemonUnavailable as exc:
        return fail(NAME, f"cannot start a daemon for {home}: {exc}", EXIT_UNREACHABLE,
                    code=UNREACHABLE)
    sys.stdout.flush()
    return bridge.run(home)


def add_parsers(commands: Any) -> None:
    """The `mcp` subcommand."""
    mcp = commands.add_parser(
        "mcp", help="serve MCP to an agent host (stdio)",
        description="Serve the Model Context Protocol over stdio (newline-delimited JSON) "
                    "for an agent host such as Claude Code, Cursor or Claude Desktop. The "
                    "session is served by the home's daemon, started in the background "
                    "when none runs, so the agent shares runs with the command line and "
                    "editors. See docs/agents.md.")
    mcp.add_argument("--home", type=Path,
                     help="the home (default $OSTINATO_HOME or ./.ostinato)")
    mcp.set_defaults(func=serve_stdio)
