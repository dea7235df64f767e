"""What every `ostinato` subcommand that talks to a daemon shares: where, and how to fail."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from ostinato.daemon.main import parse_tcp

from ..python import AsyncClient

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--socket / --tcp to reach a running daemon, else a daemon spawned over stdio."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, metavar="PATH", help="a running daemon's socket")
    where.add_argument("--tcp", metavar="HOST:PORT", help="a running daemon's TCP address")
    parser.add_argument("--home", type=Path, help="home of the spawned daemon")
    parser.add_argument("--token", default=os.environ.get("OSTINATO_TOKEN"),
                        help="token for initialize (default $OSTINATO_TOKEN)")
    parser.add_argument("--quiet", action="store_true", help="hide the spawned daemon's log")


async def connect(args: argparse.Namespace, client_name: str) -> AsyncClient:
    """An initialized client for the daemon the arguments name."""
    if args.socket:
        client = await AsyncClient.connect_unix(args.socket)
    elif args.tcp:
        try:
            host, port = parse_tcp(args.tcp)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        client = await AsyncClient.connect_tcp(host, port)
    else:
        daemon_args = ["--log-level", "WARNING"]
        if args.home:
            daemon_args += ["--home", str(args.home)]
        client = await AsyncClient.spawn(
            args=daemon_args, stderr=subprocess.DEVNULL if args.quiet else None)
    try:
        await client.initialize(client_name, token=args.token)
    except BaseException:
        await client.close(shutdown=False)
        raise
    return client


def print_json(value: Any, stream: Any = None) -> None:
    """Indented JSON on stdout (or `stream`)."""
    (stream or sys.stdout).write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def pipeline_ref(path: str) -> dict[str, Any]:
    """A pipeline reference the daemon can open whatever its working directory."""
    if path == "-":
        source = sys.stdin.read()
        return {"source": source, "format": "dot" if source.lstrip().startswith(
            ("digraph", "//", "/*")) else "recipe"}
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise UsageError(f"no such pipeline file: {path}")
    return {"path": str(resolved)}


def key_values(pairs: list[str], option: str) -> dict[str, str]:
    """`k=v` arguments as a dict."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} expects KEY=VALUE, got {pair!r}")
        result[key] = value
    return result


def report_rpc_error(name: str, message: str, code: int, data: Any) -> int:
    """Print a daemon's error; invalid params list which field and why. The exit code."""
    print(f"{name}: {message}", file=sys.stderr)
    if code == -32602 and isinstance(data, list):  # pydantic's errors, one per field
        for error in data:
            where = ".".join(str(part) for part in error.get("loc", []))
            print(f"  {where}: {error.get('msg')}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_FAILED
