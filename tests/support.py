"""Test support: real daemon processes, and a raw wire client that parses frames on its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

REPO = Path(__file__).resolve().parent.parent
TEST_EXTENSION = str(REPO / "tests" / "extensions" / "testing_methods.py")
WAIT = 15.0  # seconds before a test gives up on an answer that should come at once


def daemon_argv(*args: str) -> list[str]:
    """Command line of a daemon subprocess."""
    return [sys.executable, "-m", "ostinato.daemon", *args]


def published(method: str, result: Any) -> Any:
    """`result`, checked against the method's schema in schemas/ (what clients rely on)."""
    schema = json.loads((REPO / "schemas" / "methods" / f"{method}.json").read_text())
    jsonschema.validate(result, {**schema["properties"]["result"], "$defs": schema["$defs"]})
    return result


class Wire:
    """A client that speaks raw bytes; it parses frames itself rather than with our codec,
    so that tests check the bytes the daemon writes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 framing: str = "content-length") -> None:
        self.reader = reader
        self.writer = writer
        self.framing = framing
        self._next_id = 0
        self.notifications: list[dict[str, Any]] = []
        self.token: str | None = None  # sent by initialize() unless it is given options

    @classmethod
    async def unix(cls, path: str | Path, framing: str = "content-length") -> Wire:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
        return cls(reader, writer, framing)

    @classmethod
    async def tcp(cls, host: str, port: int, framing: str = "content-length",
                  token: str | None = None) -> Wire:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 24)
        wire = cls(reader, writer, framing)
        wire.token = token
        return wire

    def frame(self, payload: bytes) -> bytes:
        if self.framing == "ndjson":
            return payload + b"\n"
        return b"Content-Length: %d\r\n\r\n" % len(payload) + payload

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, message: Any) -> None:
        await self.send_raw(self.frame(json.dumps(message).encode()))

    async def recv(self, timeout: float = WAIT) -> Any:
        """The next message, whatever it is."""
        return await asyncio.wait_for(self._recv(), timeout)

    async def _recv(self) -> Any:
        if self.framing == "ndjson":
            line = await self.reader.readline()
            if not line:
                raise EOFError("daemon closed the connection")
            return json.loads(line)
        header = await self.reader.readuntil(b"\r\n\r\n")
        match = re.fullmatch(rb"Content-Length: (\d+)\r\n\r\n", header)
        assert match, f"unexpected header {header!r}"
        return json.loads(await self.reader.readexactly(int(match.group(1))))

    async def response(self, timeout: float = WAIT) -> Any:
        """The next response (or batch), keeping notifications that arrive before it."""
        while True:
            message = await self.recv(timeout)
            if isinstance(message, dict) and "method" in message and "id" not in message:
                self.notifications.append(message)
                continue
            return message

    async def request(self, method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
        """Send a request with a fresh id and return its response."""
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        message.update(extra)
        await self.send(message)
        reply = await self.response()
        assert reply.get("id") == self._next_id, reply
        return reply

    async def result(self, method: str, params: Any = None) -> Any:
        reply = await self.request(method, params)
        assert "result" in reply, reply
        return reply["result"]

    async def initialize(self, **params: Any) -> dict[str, Any]:
        if self.token is not None:
            params.setdefault("initializationOptions", {"token": self.token})
        result = await self.result("initialize", {"processId": os.getpid(), **params})
        await self.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        return result

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@dataclass
class DaemonProcess:
    """A daemon subprocess listening on a socket (and TCP when asked)."""

    process: asyncio.subprocess.Process
    home: Path
    endpoints: list[str]
    log: list[str] = field(default_factory=list)
    _drain: asyncio.Task | None = None

    @property
    def socket(self) -> str:
        return next(e[5:] for e in self.endpoints if e.startswith("unix:"))

    @property
    def tcp(self) -> tuple[str, int]:
        endpoint = next(e for e in self.endpoints if e.startswith("tcp://"))
        host, _, port = endpoint[6:].rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def token(self) -> str:
        """The token the daemon generated for TCP (it had no --token), from its home."""
        return (self.home / "token").read_text().strip()

    async def connect(self, framing: str = "content-length", initialize: bool = True) -> Wire:
        wire = await Wire.unix(self.socket, framing)
        if initialize:
            await wire.initialize()
        return wire

    async def connect_tcp(self, framing: str = "content-length") -> Wire:
        """A wire to the daemon's TCP port that initializes with the home's token."""
        return await Wire.tcp(*self.tcp, framing, token=self.token)

    async def stop(self) -> int:
        if self.process.returncode is None:
            # os.kill, not Process.send_signal: that polls the child first, and a poll that
            # reaps a daemon which has just died (a test killed it) leaves asyncio's child
            # watcher nothing to wait for: it then reports 255 instead of the real status.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), WAIT)
        if self._drain is not None:
            await self._drain
        return code


async def start_daemon(home: Path, *args: str, expect_ready: bool = True,
                       environment: dict[str, str] | None = None) -> DaemonProcess:
    """Start `ostinato.daemon` with `args` (and `environment` added to ours); returns once
    it logged where it listens."""
    process = await asyncio.create_subprocess_exec(
        *daemon_argv("--home", str(home), *args),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **environment} if environment else None)
    daemon = DaemonProcess(process, home, [])
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), WAIT)).decode()
        if not line:
            break
        daemon.log.append(line)
        if found := re.search(r"listening on (\S+)", line):
            daemon.endpoints.append(found.group(1))
        if "daemon ready" in line:
            break
    if expect_ready:
        assert daemon.endpoints, "".join(daemon.log)

    async def drain() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            daemon.log.append(line.decode())

    daemon._drain = asyncio.ensure_future(drain())
    return daemon


@contextlib.asynccontextmanager
async def daemon_with_environment(tmp: Path,
                                  environment: dict[str, str]) -> AsyncIterator[DaemonProcess]:
    """A daemon (home and socket under `tmp`) whose environment also holds `environment`,
    e.g. a canary's secrets; stopped at the end unless the test stopped it, and it must
    exit 0."""
    daemon = await start_daemon(tmp / "home", "--socket", str(tmp / "d.sock"),
                                environment=environment)
    yield daemon
    if daemon.process.returncode is None:
        assert await daemon.stop() == 0


async def spawn_stdio(home: Path, *args: str) -> tuple[asyncio.subprocess.Process, Wire]:
    """A daemon over stdio; its stderr goes to a file in `home`'s parent."""
    home.mkdir(parents=True, exist_ok=True)
    stderr = open(home.parent / "stderr.log", "ab")  # noqa: SIM115 - kept open for the child
    process = await asyncio.create_subprocess_exec(
        *daemon_argv("--stdio", "--home", str(home), *args),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        limit=1 << 24)
    stderr.close()
    assert process.stdout is not None and process.stdin is not None
    return process, Wire(process.stdout, process.stdin)  # type: ignore[arg-type]
