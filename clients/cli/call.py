"""`ostinato call METHOD [PARAMS_JSON]`: one request, its JSON result on stdout."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ostinato.protocol.errors import RpcError

from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_connection_arguments,
    print_json,
    report_rpc_error,
    run_client,
)
from .failure import USAGE, fail

if TYPE_CHECKING:  # the command line starts light: see common.py
    from ..python import AsyncClient

NAME = "ostinato call"


def _error_reply(error: RpcError) -> int:
    """Any error reply exits 1, invalid params too: its JSON-RPC code is in the JSON."""
    report_rpc_error(NAME, error, json_mode=True)
    return EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato call`."""
    import orjson

    # Its result is JSON whatever the flags: so is its error, on stdout (`--json` or not).
    args.json = True
    params = None
    if args.params is not None:
        try:
            params = orjson.loads(args.params)
        except orjson.JSONDecodeError as exc:
            return fail(NAME, f"PARAMS_JSON is not JSON: {exc}", EXIT_USAGE, json_mode=True,
                        code=USAGE)
        if not isinstance(params, dict):
            return fail(NAME, "PARAMS_JSON must be a JSON object", EXIT_USAGE,
                        json_mode=True, code=USAGE)
        try:
            orjson.dumps(params)  # what the client will send: orjson stops at 255 levels
        except orjson.JSONEncodeError as exc:
            return fail(NAME, f"PARAMS_JSON is nested too deeply to send ({exc})", EXIT_USAGE,
                        json_mode=True, code=USAGE)

    async def call(client: AsyncClient) -> int:
        print_json(await client.request(args.method, params))
        return EXIT_OK

    return run_client(args, NAME, call, on_rpc_error=_error_reply, timeout=args.timeout)


def add_parsers(commands: Any) -> None:
    """The `call` subcommand."""
    call = commands.add_parser(
        "call", help="send one request and print its JSON result",
        description="Send one request through --socket/--tcp, or through a daemon spawned "
                    "over stdio; print its result as JSON on stdout. Any failure is a JSON "
                    "object {\"error\": {code, message, data}} on stdout too (the JSON-RPC "
                    "code of an error reply, else usage, unreachable, timeout or "
                    "interrupted) and a line on stderr. Exit codes: 0 result, 1 error reply, "
                    "2 usage, 3 unreachable or no answer in time.")
    call.add_argument("method")
    call.add_argument("params", nargs="?", metavar="PARAMS_JSON", help="a JSON object")
    add_connection_arguments(call)
    call.add_argument("--timeout", type=float, default=None,
                      help="seconds to wait for the whole exchange")
    call.add_argument("--json", action="store_true",
                      help="accepted for uniformity: the result and any error are JSON anyway")
    call.set_defaults(func=run)
