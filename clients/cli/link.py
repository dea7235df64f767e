"""A small blocking JSON-RPC 2.0 client for commands that must start fast: only the standard
library (socket, json, selectors), no asyncio and no pydantic. It speaks Content-Length
framing over a unix socket or TCP; notifications that arrive while it waits for an answer
are queued (or handed to a callback) and read with `next_notification`. `connect` and
`run_command` are what a command built on it calls."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ostinato.protocol.errors import RpcError

from .common import (
    EXIT_INTERRUPTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
    report_rpc_error,
)
from .failure import INTERRUPTED, TIMEOUT, UNREACHABLE, USAGE, fail

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: see docs/cli.md
if TYPE_CHECKING:
    from typing import Any

    NotificationHandler = Callable[[str, Any], None]

_HEADER_END = b"\r\n\r\n"
_CLOSE_WAIT_S = 5.0  # for the daemon's answer to `shutdown` when closing


class LinkError(ConnectionError):
    """The daemon could not be reached, or the connection ended before the answer."""


class Link:
    """One blocking connection to a daemon."""

    def __init__(self, sock: socket.socket, where: str) -> None:
        self.where = where
        self.initialize_result: dict[str, Any] | None = None
        # The token of the daemon's home (see connect_tcp), sent when initialize gets none.
        self.home_token: str | None = None
        self._sock = sock
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)
        self._buffer = b""
        self._ids = itertools.count(1)
        self._pending: set[int] = set()
        self._answers: dict[int, dict[str, Any]] = {}
        self._notifications: deque[tuple[str, Any]] = deque()
        self._handler: NotificationHandler | None = None
        self._closed = False

    # -- connecting -----------------------------------------------------------------------

    @classmethod
    def connect_unix(cls, path: str | Path) -> Link:
        """Connect to a daemon's unix socket."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(os.fspath(path))
        except OSError as exc:
            sock.close()
            raise LinkError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        return cls(sock, str(path))

    @classmethod
    def connect_tcp(cls, host: str, port: int, home: Path | None = None) -> Link:
        """Connect to a daemon's TCP port; `initialize` without a token then sends the one
        the daemon wrote in its home (`home`, else $OSTINATO_HOME or ./.ostinato)."""
        from ostinato.protocol.home import read_token, resolve_home

        try:
            sock = socket.create_connection((host, port))
        except OSError as exc:
            raise LinkError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        link = cls(sock, f"{host}:{port}")
        link.home_token = read_token(resolve_home(home))
        return link

    def initialize(self, client_name: str, token: str | None = None,
                   timeout: float | None = None) -> dict[str, Any]:
        """Open the session (and send `initialized`); the daemon's initialize result."""
        params: dict[str, Any] = {"processId": os.getpid(), "clientInfo": {"name": client_name}}
        token = token if token is not None else self.home_token
        if token is not None:
            params["initializationOptions"] = {"token": token}
        self.initialize_result = self.request("initialize", params, timeout)
        self.notify("initialized", {})
        return self.initialize_result

    # -- calls ----------------------------------------------------------------------------

    def request(self, method: str, params: dict[str, Any] | None = None,
                timeout: float | None = None) -> Any:
        """Send a request and return its result; raises RpcError on an error reply,
        TimeoutError (after sending `$/cancelRequest`) when none came within `timeout`
        seconds, LinkError when the connection ended. Notifications that arrive meanwhile
        are queued, or given to the callback."""
        msg_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._pending.add(msg_id)
        try:
            while msg_id not in self._answers:
                if not self._read(deadline):
                    raise TimeoutError(f"no answer to {method} within {timeout} s")
        except BaseException:  # a timeout or Ctrl-C: the daemon need not go on with it
            self.cancel(msg_id)
            raise
        finally:
            self._pending.discard(msg_id)
        answer = self._answers.pop(msg_id)
        if "error" in answer:
            raise RpcError.from_dict(answer["error"])
        return answer.get("result")

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    def cancel(self, msg_id: int) -> None:
        """Send `$/cancelRequest` for a request (nothing when the connection is gone)."""
        if not self._closed:
            with contextlib.suppress(LinkError):
                self.notify("$/cancelRequest", {"id": msg_id})

    def on_notification(self, handler: NotificationHandler | None) -> None:
        """Give every notification to `handler(method, params)` as it arrives, instead of
        queueing it; None queues again."""
        self._handler = handler

    def next_notification(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next queued notification (method, params), waiting up to `timeout` seconds
        (None: until one comes); None when none came in time. Raises LinkError when the
        connection ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._notifications:
            if not self._read(deadline):
                return None
        return self._notifications.popleft()

    # -- closing --------------------------------------------------------------------------

    def close(self, shutdown: bool = True) -> None:
        """Send `shutdown` and `exit` when the session was opened, and close."""
        if self._closed:
            return
        if shutdown and self.initialize_result is not None:
            try:
                self.request("shutdown", timeout=_CLOSE_WAIT_S)
                self.notify("exit")
            except (RpcError, LinkError, TimeoutError):
                pass  # the connection is closed anyway
        self._closed = True
        self._selector.close()
        self._sock.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- wire -----------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if self._closed:
            raise LinkError("the connection to the daemon is closed")
        body = json.dumps(message, separators=(",", ":")).encode()
        try:
            self._sock.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError as exc:
            self._closed = True
            raise LinkError(f"the connection to {self.where} broke: {exc}") from None

    def _read(self, deadline: float | None) -> bool:
        """Read what the daemon sent and file each message; False when the deadline passed
        with nothing new."""
        while True:
            frame = self._frame()
            if frame is not None:
                self._file(frame)
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if not self._selector.select(left):
                continue  # the deadline is checked on the next round
            try:
                data = self._sock.recv(1 << 16)
            except OSError as exc:
                data, reason = b"", f": {exc}"
            else:
                reason = ""
            if not data:
                self._closed = True
                raise LinkError(f"the daemon at {self.where} closed the connection{reason}")
            self._buffer += data

    def _frame(self) -> bytes | None:
        """One whole frame's body from the buffer, if there is one."""
        end = self._buffer.find(_HEADER_END)
        if end < 0:
            return None
        length = None
        for line in self._buffer[:end].split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise LinkError(f"the daemon at {self.where} sent a frame without Content-Length")
        start = end + len(_HEADER_END)
        if len(self._buffer) < start + length:
            return None
        body, self._buffer = self._buffer[start:start + length], self._buffer[start + length:]
        return body

    def _file(self, body: bytes) -> None:
        """An answer goes to its request, a notification to the queue or the callback."""
        payload = json.loads(body)
        for message in payload if isinstance(payload, list) else [payload]:
            if not isinstance(message, dict):
                continue
            if "method" not in message:
                if message.get("id") in self._pending:  # else a request given up on
                    self._answers[message["id"]] = message
            elif "id" not in message:
                if self._handler is not None:
                    self._handler(message["method"], message.get("params"))
                else:
                    self._notifications.append((message["method"], message.get("params")))


# -- for commands ---------------------------------------------------------------------------


def connect(args: argparse.Namespace, client_name: str = "ostinato-cli") -> Link:
    """An initialized link to the daemon the arguments name (common.add_connection_arguments):
    --socket, --tcp, else the home's daemon, started in the background when none runs."""
    from ostinato.protocol.home import parse_tcp

    if args.socket:
        link = Link.connect_unix(args.socket)
    elif args.tcp:
        try:
            host, port = parse_tcp(args.tcp)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        link = Link.connect_tcp(host, port, args.home)
    else:
        from ..home import DaemonUnavailable, connect_home

        try:
            sock = connect_home(args.home)
        except DaemonUnavailable as exc:
            raise LinkError(str(exc)) from None
        link = Link(sock, sock.getpeername())
    try:
        link.initialize(client_name, token=args.token)
    except BaseException:
        link.close(shutdown=False)
        raise
    return link


def run_command(args: argparse.Namespace, name: str, action: Callable[[Link], int]) -> int:
    """Connect, run `action` with the link and close it: its exit code, or a failure said
    as `name: …` on stderr (with `args.json`, also as a JSON error object on stdout) with
    its own: 1 an error reply (2 for invalid params), 2 usage, 3 unreachable or no answer
    in time, 130 interrupted."""
    json_mode = bool(getattr(args, "json", False))
    try:
        link = connect(args)
        try:
            code = action(link)
        except BaseException:
            link.close(shutdown=False)
            raise
        link.close()
        return code
    except UsageError as exc:
        return fail(name, str(exc), EXIT_USAGE, json_mode=json_mode, code=USAGE)
    except RpcError as exc:
        return report_rpc_error(name, exc, json_mode=json_mode)
    except TimeoutError as exc:  # before OSError, of which it is a subclass
        return fail(name, str(exc), EXIT_UNREACHABLE, json_mode=json_mode, code=TIMEOUT)
    except OSError as exc:  # LinkError too
        return fail(name, str(exc), EXIT_UNREACHABLE, json_mode=json_mode, code=UNREACHABLE)
    except KeyboardInterrupt:
        return fail(name, "interrupted", EXIT_INTERRUPTED, json_mode=json_mode,
                    code=INTERRUPTED)
