"""`ostinato call METHOD [PARAMS_JSON]`: one request, its JSON result on stdout."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from ostinato.protocol.errors import RpcError

from ..python import DaemonConnectionError
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
    add_connection_arguments,
    connect,
    print_json,
)


async def _call(args: argparse.Namespace, params: dict[str, Any] | None) -> Any:
    client = await connect(args, "ostinato-cli")
    try:
        return await client.request(args.method, params)
    finally:
        await client.close()


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato call`."""
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
    try:
        result = asyncio.run(asyncio.wait_for(_call(args, params), args.timeout))
    except UsageError as exc:
        print(f"ostinato call: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RpcError as exc:
        print_json({"error": exc.to_dict()}, sys.stderr)
        return EXIT_FAILED
    except (DaemonConnectionError, OSError) as exc:
        print(f"ostinato call: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except TimeoutError:
        print(f"ostinato call: no answer within {args.timeout} s", file=sys.stderr)
        return EXIT_UNREACHABLE
    print_json(result)
    return EXIT_OK


def add_parser(commands: Any) -> None:
    """The `call` subcommand."""
    call = commands.add_parser(
        "call", help="send one request and print its JSON result",
        description="Send one request through --socket/--tcp, or through a daemon spawned "
                    "over stdio. Exit codes: 0 result, 1 error reply, 2 usage, 3 unreachable.")
    call.add_argument("method")
    call.add_argument("params", nargs="?", metavar="PARAMS_JSON", help="a JSON object")
    add_connection_arguments(call)
    call.add_argument("--timeout", type=float, default=None,
                      help="seconds to wait for the whole exchange")
    call.set_defaults(func=run)
