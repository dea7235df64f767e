"""Run the HTTP front in the foreground until SIGINT or SIGTERM: listen, say where on
stderr, close idle sessions now and then."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys

from .front import ENDPOINT, Front, Rules
from .server import Listener

MAX_BODY = 4 * 1024 * 1024  # one JSON-RPC message; pipelines travel by path, not by value
STOP_PATIENCE_S = 2.0  # for answers under way to reach their clients when stopping


class AddressError(ValueError):
    """A HOST:PORT that cannot be served."""


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) of `HOST:PORT` (`[::1]:PORT` for IPv6; port 0 picks a free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise AddressError(f"expected HOST:PORT (e.g. 127.0.0.1:8765), got {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (a name other than localhost is not
    resolved: it counts as reachable from elsewhere)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(host: str, port: int, rules: Rules) -> int:
    """Serve until interrupted; the exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(host, port, rules))
    return uvloop.run(_serve(host, port, rules))


async def _serve(host: str, port: int, rules: Rules) -> int:
    front = Front(rules)
    listener = Listener(front.handle, MAX_BODY)
    try:
        bound = await listener.start(host, port)
    except OSError as exc:
        print(f"ostinato mcp: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    # One line that scripts (and the tests) read to learn the port.
    print(f"ostinato mcp: listening on http://{shown}:{bound[1]}{ENDPOINT}", file=sys.stderr,
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sweep_every = max(0.05, min(rules.idle_timeout / 4, 60.0))
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), sweep_every)
        front.sweep()
    for session in list(front.sessions.values()):
        front.end(session, "the HTTP front is stopping")
    await listener.close(STOP_PATIENCE_S)
    return 0
