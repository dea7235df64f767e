"""The floor for `bench/rpc.py`: the least a Python JSON-RPC server on stdio has to do.

asyncio (uvloop when importable, exactly as the daemon picks its loop) + orjson, one
`asyncio.Protocol` on stdin, Content-Length framing. Every complete frame of a chunk is
`orjson.loads`-ed, every request gets `{"jsonrpc":"2.0","id":…,"result":…}` built as a dict
and `orjson.dumps`-ed, and the replies of one chunk leave in one write (as the daemon does).
`daemon.status` is answered with a dict of the same fields and size as the daemon's real
`daemon.status` result (its transports too: the daemon on a home it owns listens on the
home's socket as well as stdio), built afresh per request; any other request gets `{}`.
The `exit` notification (or EOF) ends the process with code 0. No validation, no lifecycle
rules, no error handling: this is the floor, not a server.

Run by `bench/rpc.py` as `python bench/floor_echo.py [HOME] [--no-uvloop]`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from ostinato.protocol.home import socket_path

_HEADER_END = b"\r\n\r\n"
_HEADER_LEN = len(b"Content-Length: ")


class Echo(asyncio.Protocol):
    """Reads Content-Length frames from stdin and answers every request on stdout."""

    def __init__(self, home: str, done: asyncio.Future[None]) -> None:
        self.buf = bytearray()
        self.done = done
        self.out: asyncio.WriteTransport | None = None
        self.home = home
        self.transports = ["stdio", f"unix:{socket_path(Path(home))}"]
        self.pid = os.getpid()
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")

    def data_received(self, data: bytes) -> None:
        """Answer every complete frame of the buffer; one write per chunk."""
        buf = self.buf
        buf += data
        pos = 0
        end = len(buf)
        replies = []
        while True:
            header_end = buf.find(_HEADER_END, pos)
            if header_end < 0:
                break
            start = header_end + 4
            stop = start + int(buf[pos + _HEADER_LEN:header_end])
            if stop > end:
                break
            message = orjson.loads(buf[start:stop])
            pos = stop
            if "id" not in message:
                if message.get("method") == "exit" and not self.done.done():
                    self.done.set_result(None)
                continue
            if message.get("method") == "daemon.status":
                result = {
                    "version": "0.1.0",
                    "protocol_version": "0.1",
                    "pid": self.pid,
                    "home": self.home,
                    "started_at": self.started_at,
                    "uptime_seconds": round(time.monotonic() - self.started, 3),
                    "connections": 1,
                    "active_runs": 0,
                    "transports": self.transports,
                    "executor": {"backend": "inline", "size": 0, "workers": []},
                }
            else:
                result = {}
            body = orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
            replies.append(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        del buf[:pos]
        if replies and self.out is not None:
            self.out.write(b"".join(replies))

    def eof_received(self) -> bool:
        """The client closed stdin: stop."""
        if not self.done.done():
            self.done.set_result(None)
        return False


async def serve(home: str) -> None:
    """Serve stdin/stdout until `exit` or EOF."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    echo = Echo(home, done)
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout.buffer)
    echo.out = out  # type: ignore[assignment]
    reader, _ = await loop.connect_read_pipe(lambda: echo, sys.stdin.buffer)
    await done
    reader.close()
    out.close()
    await asyncio.sleep(0)


def main() -> int:
    """Pick the loop the way the daemon does (uvloop unless told not to) and serve."""
    args = [a for a in sys.argv[1:] if a != "--no-uvloop"]
    home = args[0] if args else os.getcwd()
    if "--no-uvloop" not in sys.argv:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(serve(home))
            return 0
    asyncio.run(serve(home))
    return 0


if __name__ == "__main__":
    sys.exit(main())
