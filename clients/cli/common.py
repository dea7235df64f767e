"""What every `ostinato` subcommand that talks to a daemon shares: where, and how to fail."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from ostinato.protocol.errors import RpcError
from ostinato.protocol.home import parse_tcp

from ..python import AsyncClient, DaemonConnectionError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--socket / --tcp to reach a daemon, else the home's daemon (started when none runs)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, metavar="PATH", help="a running daemon's socket")
    where.add_argument("--tcp", metavar="HOST:PORT", help="a running daemon's TCP address")
    parser.add_argument("--home", type=Path,
                        help="the home whose daemon to use, started in the background when "
                             "none runs; with --tcp, the home whose token file to send when "
                             "there is no --token (default $OSTINATO_HOME or ./.ostinato)")
    parser.add_argument("--token", default=os.environ.get("OSTINATO_TOKEN"),
                        help="token for initialize (default $OSTINATO_TOKEN)")


async def connect(args: argparse.Namespace, client_name: str) -> AsyncClient:
    """An initialized client for the daemon the arguments name."""
    if args.socket:
        client = await AsyncClient.connect_unix(args.socket)
    elif args.tcp:
        try:
            host, port = parse_tcp(args.tcp)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        client = await AsyncClient.connect_tcp(host, port, home=args.home)
    else:
        from ..home import DaemonUnavailable, daemon_socket

        try:
            path = daemon_socket(args.home)
        except DaemonUnavailable as exc:
            raise DaemonConnectionError(str(exc)) from None
        client = await AsyncClient.connect_unix(path)
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


def report_rpc_error(name: str, error: RpcError, refused: int = EXIT_FAILED) -> int:
    """Print a daemon's error; invalid params list which field and why. The exit code: 2 for
    invalid params, else `refused`."""
    print(f"{name}: {error.message}", file=sys.stderr)
    if error.code == -32602 and isinstance(error.data, list):  # pydantic's, one per field
        for entry in error.data:
            where = ".".join(str(part) for part in entry.get("loc", []))
            print(f"  {where}: {entry.get('msg')}", file=sys.stderr)
        return EXIT_USAGE
    return refused


def run_client(args: argparse.Namespace, name: str,
               action: Callable[[AsyncClient], Awaitable[int]], *,
               on_rpc_error: Callable[[RpcError], int] | None = None,
               timeout: float | None = None) -> int:
    """Connect as the arguments say, run `action` with the client and close it; its exit
    code, or a failure said on stderr as `name: …` with its own: usage 2, an error reply
    (`on_rpc_error`, else report_rpc_error) 1 or 2, unreachable or no answer within
    `timeout` seconds 3, interrupted 130."""
    async def main() -> int:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        client = await asyncio.wait_for(connect(args, "ostinato-cli"), timeout)
        try:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            code = await asyncio.wait_for(action(client), left)
        except TimeoutError:
            # Without the polite shutdown, which a daemon that did not answer in time would
            # not answer either.
            await client.close(shutdown=False, timeout=ABANDON_GRACE_S)
            raise
        except BaseException:
            await client.close()
            raise
        await client.close()
        return code

    try:
        return asyncio.run(main())
    except UsageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RpcError as exc:
        return on_rpc_error(exc) if on_rpc_error else report_rpc_error(name, exc)
    except TimeoutError:  # before OSError, of which it is a subclass
        print(f"{name}: no answer within {timeout} s", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (DaemonConnectionError, OSError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


ABANDON_GRACE_S = 2.0  # to close a connection whose daemon did not answer in time


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _inline_or_file(text: str, option: str, starts: tuple[str, ...], what: str) -> str:
    """An option's value given inline (it starts with one of `starts`), else the content of
    the file it names."""
    if text.lstrip().startswith(starts):
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"{option}: no such file, and not {what}: {text}")
    return path.read_text()


def json_object_option(text: str, option: str) -> dict[str, Any]:
    """A JSON object given inline or in a file."""
    text = _inline_or_file(text, option, ("{",), "a JSON object")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{option} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object")
    return value


def load_invariants(text: str, option: str = "--invariants") -> list[Any]:
    """A list of invariants, JSON or YAML (or `{invariants: [...]}`), inline or in a file."""
    text = _inline_or_file(text, option, ("[", "{"), "a JSON list")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"{option} is neither JSON nor YAML: {exc}") from None
    if isinstance(value, dict) and "invariants" in value:
        value = value["invariants"]
    if not isinstance(value, list):
        raise UsageError(f"{option} must be a list of invariants")
    return value
