"""`ostinato call METHOD [PARAMS_JSON]`: one request, its JSON result on stdout."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ostinato.protocol.errors import RpcError

from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_connection_arguments,
    print_json,
    run_client,
)

if TYPE_CHECKING:  # the command line starts light: see common.py
    from ..python import AsyncClient

NAME = "ostinato call"


def _error_reply(error: RpcError) -> int:
    """The daemon's error as JSON on stderr, whatever it is: scripts read it."""
    print_json({"error": error.to_dict()}, sys.stderr)
    return EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato call`."""
    import orjson

    params = None
    if args.params is not None:
        try:
            params = orjson.loads(args.params)
        except orjson.JSONDecodeError as exc:
            print(f"{NAME}: PARAMS_JSON is not JSON: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not isinstance(params, dict):
            print(f"{NAME}: PARAMS_JSON must be a JSON object", file=sys.stderr)
            return EXIT_USAGE
        try:
            orjson.dumps(params)  # what the client will send: orjson stops at 255 levels
        except orjson.JSONEncodeError as exc:
            print(f"{NAME}: PARAMS_JSON is nested too deeply to send ({exc})", file=sys.stderr)
            return EXIT_USAGE

    async def call(client: AsyncClient) -> int:
        print_json(await client.request(args.method, params))
        return EXIT_OK

    return run_client(args, NAME, call, on_rpc_error=_error_reply, timeout=args.timeout)


def add_parsers(commands: Any) -> None:
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
