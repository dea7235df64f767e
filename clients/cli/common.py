"""What every `ostinato` subcommand that talks to a daemon shares: where, and how to fail."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from ostinato.protocol.errors import RpcError
from ostinato.protocol.home import parse_tcp

from .failure import INTERRUPTED, TIMEOUT, UNREACHABLE, USAGE, fail

# The command line starts light (docs/cli.md): asyncio, orjson, yaml and the async client
# are imported by the functions that use them.
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: see docs/cli.md
if TYPE_CHECKING:
    from typing import Any

    from ..python import AsyncClient

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
    from ..python import AsyncClient, DaemonConnectionError

    if args.socket:
        client = await AsyncClient.connect_unix(args.socket)
    elif args.tcp:
        try:
            host, port = parse_tcp(args.tcp)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        client = await AsyncClient.connect_tcp(host, port, home=args.home)
    else:
        from ..home import DaemonUnavailable, connect_home

        try:
            sock = connect_home(args.home)
        except DaemonUnavailable as exc:
            raise DaemonConnectionError(str(exc)) from None
        client = await AsyncClient.connect_unix(sock.getpeername(), sock=sock)
    try:
        await client.initialize(client_name, token=args.token)
    except BaseException:
        await client.close(shutdown=False)
        raise
    return client


def print_json(value: Any, stream: Any = None) -> None:
    """Indented JSON on stdout (or `stream`), flushed: a script may read it while the command
    goes on. The standard library's json: orjson would add ~14 ms to a command's start."""
    import json

    out = stream or sys.stdout
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    out.flush()


def text_table(rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Rows as plain aligned columns (no rich: the light commands print these); the columns
    in `right` right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(width) if i in right else cell.ljust(width)
                      for i, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in rows]


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


def report_rpc_error(name: str, error: RpcError, refused: int = EXIT_FAILED, *,
                     json_mode: bool = False) -> int:
    """Say a daemon's error (with `json_mode`, also as a JSON object on stdout, its JSON-RPC
    code kept); invalid params list which field and why. The exit code: 2 for invalid
    params, else `refused`."""
    details: tuple[str, ...] = ()
    exit_code = refused
    if error.code == -32602:
        exit_code = EXIT_USAGE
        if isinstance(error.data, list):  # pydantic's, one per field
            details = tuple(f"{'.'.join(str(part) for part in entry.get('loc', []))}: "
                            f"{entry.get('msg')}" for entry in error.data
                            if isinstance(entry, dict))
    return fail(name, error.message, exit_code, json_mode=json_mode, code=error.code,
                data=error.data, details=details)


def run_client(args: argparse.Namespace, name: str,
               action: Callable[[AsyncClient], Awaitable[int]], *,
               on_rpc_error: Callable[[RpcError], int] | None = None,
               timeout: float | None = None) -> int:
    """Connect as the arguments say, run `action` with the client and close it; its exit
    code, or a failure said on stderr as `name: …` (with `args.json`, also as a JSON error
    object on stdout: failure.fail) with its own: usage 2, an error reply (`on_rpc_error`,
    else report_rpc_error) 1 or 2, unreachable or no answer within `timeout` seconds 3,
    interrupted 130."""
    import asyncio

    from ..python import DaemonConnectionError

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

    json_mode = bool(getattr(args, "json", False))
    try:
        return asyncio.run(main())
    except UsageError as exc:
        return fail(name, str(exc), EXIT_USAGE, json_mode=json_mode, code=USAGE)
    except RpcError as exc:
        return (on_rpc_error(exc) if on_rpc_error
                else report_rpc_error(name, exc, json_mode=json_mode))
    except TimeoutError:  # before OSError, of which it is a subclass
        return fail(name, f"no answer within {timeout} s", EXIT_UNREACHABLE,
                    json_mode=json_mode, code=TIMEOUT)
    except (DaemonConnectionError, OSError) as exc:
        return fail(name, str(exc), EXIT_UNREACHABLE, json_mode=json_mode, code=UNREACHABLE)
    except KeyboardInterrupt:
        return fail(name, "interrupted", EXIT_INTERRUPTED, json_mode=json_mode,
                    code=INTERRUPTED)


ABANDON_GRACE_S = 2.0  # to close a connection whose daemon did not answer in time


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def structured_option(text: str, option: str) -> Any:
    """An option's JSON or YAML value, given inline or as the path of a file holding it."""
    # Inline when it cannot be a path: a flow collection, several lines, or a `key: value`.
    if not (text.lstrip().startswith(("{", "[")) or "\n" in text or ": " in text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise UsageError(f"{option}: no such file, and not inline JSON or YAML: {text}")
        text = path.read_text()
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    import yaml  # only for what is not JSON: yaml costs ~20 ms to import

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{option} is neither JSON nor YAML: {exc}") from None


def json_object_option(text: str, option: str) -> dict[str, Any]:
    """An object (a mapping), JSON or YAML, inline or in a file."""
    value = structured_option(text, option)
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be an object (a JSON object or a YAML mapping)")
    return value


def input_values(args: argparse.Namespace) -> dict[str, Any]:
    """A command's inputs: `--inputs` (an object, JSON or YAML), then each `--input K=V`
    over it."""
    inputs = json_object_option(args.inputs, "--inputs") if args.inputs else {}
    return {**inputs, **key_values(args.input, "--input")}


def add_input_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """`--input KEY=VALUE` (repeatable) and `--inputs FILE_OR_OBJECT`."""
    parser.add_argument("--input", action="append", default=[], metavar="KEY=VALUE",
                        help=f"{what}; repeatable, over --inputs")
    parser.add_argument("--inputs", metavar="FILE_OR_OBJECT",
                        help="inputs as a JSON or YAML object (any JSON values), inline "
                             "or in a file")


def load_invariants(text: str, option: str = "--invariants") -> list[Any]:
    """A list of invariants, JSON or YAML (or `{invariants: [...]}`), inline or in a file."""
    value = structured_option(text, option)
    if isinstance(value, dict) and "invariants" in value:
        value = value["invariants"]
    if not isinstance(value, list):
        raise UsageError(f"{option} must be a list of invariants")
    return value
