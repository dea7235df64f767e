"""The `ostinato` command: `serve` a daemon, or `call` one method on a daemon."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from ostinato.daemon.main import add_serve_arguments, parse_tcp, serve
from ostinato.protocol.errors import RpcError

from .python import AsyncClient, DaemonConnectionError

EXIT_OK, EXIT_RPC_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _print_json(value: Any, stream: Any = sys.stdout) -> None:
    stream.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


async def _connect(args: argparse.Namespace) -> AsyncClient:
    if args.socket:
        return await AsyncClient.connect_unix(args.socket)
    if args.tcp:
        return await AsyncClient.connect_tcp(*args.tcp)
    daemon_args = ["--log-level", "WARNING"]
    if args.home:
        daemon_args += ["--home", str(args.home)]
    return await AsyncClient.spawn(args=daemon_args, stderr=subprocess.DEVNULL
                                   if args.quiet else None)


async def _call(args: argparse.Namespace, params: dict[str, Any] | None) -> Any:
    client = await _connect(args)
    try:
        await client.initialize("ostinato-cli", token=args.token)
        return await client.request(args.method, params)
    finally:
        await client.close()


def _run_call(args: argparse.Namespace, params: dict[str, Any] | None) -> int:
    try:
        result = asyncio.run(asyncio.wait_for(_call(args, params), args.timeout))
    except RpcError as exc:
        _print_json({"error": exc.to_dict()}, sys.stderr)
        return EXIT_RPC_ERROR
    except (DaemonConnectionError, OSError) as exc:
        print(f"ostinato call: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except TimeoutError:
        print(f"ostinato call: no answer within {args.timeout} s", file=sys.stderr)
        return EXIT_UNREACHABLE
    _print_json(result)
    return EXIT_OK


def _cmd_call(args: argparse.Namespace) -> int:
    params = None
    if args.params is not None:
        try:
            params = orjson.loads(args.params)
        except orjson.JSONDecodeError as exc:
            print(f"ostinato call: PARAMS_JSON is not JSON: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not isinstance(params, dict):
            print("ostinato call: PARAMS_JSON must be a JSON object", file=sys.stderr)
            return EXIT_USAGE
    if args.tcp:
        try:
            args.tcp = parse_tcp(args.tcp)
        except ValueError as exc:
            print(f"ostinato call: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return _run_call(args, params)


def _cmd_serve(args: argparse.Namespace) -> int:
    return serve(args)


def build_parser() -> argparse.ArgumentParser:
    """The `ostinato` argument parser."""
    parser = argparse.ArgumentParser(
        prog="ostinato", description="Run LLM pipelines, record every run, test changes.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the daemon")
    add_serve_arguments(serve)
    serve.set_defaults(func=_cmd_serve)

    call = commands.add_parser(
        "call", help="send one request and print its JSON result",
        description="Send one request through --socket/--tcp, or through a daemon spawned "
                    "over stdio. Exit codes: 0 result, 1 error reply, 2 usage, 3 unreachable.")
    call.add_argument("method")
    call.add_argument("params", nargs="?", metavar="PARAMS_JSON", help="a JSON object")
    where = call.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, metavar="PATH", help="a running daemon's socket")
    where.add_argument("--tcp", metavar="HOST:PORT", help="a running daemon's TCP address")
    call.add_argument("--home", type=Path, help="home of the spawned daemon")
    call.add_argument("--token", default=os.environ.get("OSTINATO_TOKEN"),
                      help="token for initialize (default $OSTINATO_TOKEN)")
    call.add_argument("--timeout", type=float, default=None, help="seconds to wait")
    call.add_argument("--quiet", action="store_true", help="hide the spawned daemon's log")
    call.set_defaults(func=_cmd_call)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ostinato` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
