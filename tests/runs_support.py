"""Helpers of the run tests: inline pipelines, runs to their end, events, run directories.

Every helper talks to a real daemon through a `Wire`; nothing here imports the engine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import stat
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .support import REPO, WAIT, Wire

CUSTOM_EXTENSION = str(REPO / "tests" / "extensions" / "custom_handlers.py")
FAST: dict[str, Any] = {"retry": {"delay_scale": 0}}  # node retries without backoff
INVALID_PIPELINE = -32005
# Cursors a client may make up: base64 of JSON, but not the keys a page ended with.
NOT_A_LIST = base64.urlsafe_b64encode(b"1").decode()
ONE_KEY = base64.urlsafe_b64encode(b'["01a20146-70ba-7000-ae62-3334b6a3b3aa"]').decode()
TWO_KEYS = base64.urlsafe_b64encode(b'["2025-01-01T00:00:00Z", "x"]').decode()


def dot(source: str) -> dict[str, str]:
    """An inline DOT pipeline reference."""
    return {"source": textwrap.dedent(source), "format": "dot"}


def recipe(source: str) -> dict[str, str]:
    """An inline YAML recipe reference."""
    return {"source": textwrap.dedent(source), "format": "recipe"}


FAILING = dot("""\
    digraph failing {
        start [shape=Mdiamond]
        work [prompt="Try", scripted.status="fail", max_retries=0]
        done [shape=Msquare]
        start -> work -> done
    }""")  # every run of it fails


def blocking(fifo: Path, name: str = "blocking") -> dict[str, str]:
    """A pipeline whose tool node announces its pid in `fifo` (see make_fifo) and then
    blocks: a test awaits read_fifo(fifo) to know the run is in that node."""
    return dot(f"""\
        digraph {name} {{
            start [shape=Mdiamond]
            work [shape=parallelogram, tool_command="echo $$ > {fifo}; exec sleep 30"]
            done [shape=Msquare]
            start -> work -> done
        }}""")


async def run_to_end(wire: Wire, pipeline: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Start a run with `wait: true` and return its run.get detail."""
    params.setdefault("settings", FAST)
    summary = await wire.result("run.start", {"pipeline": pipeline, "wait": True, **params})
    assert summary["status"] not in ("running", "waiting", "pending"), summary
    detail = await wire.result("run.get", {"run_id": summary["run_id"]})
    assert detail["status"] == summary["status"]
    return detail


async def send_request(wire: Wire, method: str, params: Any) -> int:
    """Send a request without waiting for its answer; returns its id."""
    wire._next_id += 1
    await wire.send({"jsonrpc": "2.0", "id": wire._next_id, "method": method,
                     "params": params})
    return wire._next_id


async def response_to(wire: Wire, request_id: int) -> dict[str, Any]:
    """The response to `request_id`, keeping the notifications that arrive before it."""
    reply = await wire.response()
    assert reply.get("id") == request_id, reply
    return reply


async def next_event(wire: Wire, match: Callable[[dict[str, Any]], bool],
                     timeout: float = WAIT) -> dict[str, Any]:
    """The params of the first `run/event` (already received or still to come) that
    matches; consumes the events before it. Responses must not arrive meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        while wire.notifications:
            message = wire.notifications.pop(0)
            if message.get("method") == "run/event" and match(message["params"]):
                return message["params"]
        message = await wire.recv(max(0.0, deadline - loop.time()))
        assert "method" in message and "id" not in message, f"not a notification: {message}"
        wire.notifications.append(message)


def of_type(type_: str, **data: Any) -> Callable[[dict[str, Any]], bool]:
    """Match events of one type whose data has these values."""
    return lambda event: event["type"] == type_ and all(
        event["data"].get(key) == value for key, value in data.items())


def events(wire: Wire, run_id: str, type_: str | None = None) -> list[dict[str, Any]]:
    """The `run/event` params of one run received so far (optionally of one type)."""
    return [n["params"] for n in wire.notifications
            if n.get("method") == "run/event" and n["params"]["run_id"] == run_id
            and (type_ is None or n["params"]["type"] == type_)]


def where(source: str, text: str) -> tuple[int, int]:
    """1-based line and column of the first `text` in `source` (to check diagnostics)."""
    offset = source.index(text)
    return source.count("\n", 0, offset) + 1, offset - (source.rfind("\n", 0, offset) + 1) + 1


def visits(detail: dict[str, Any]) -> list[str]:
    """Node ids of the run's stages, in order (one entry per attempt)."""
    return [stage["node_id"] for stage in detail["stages"]]


def stages_of(detail: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    """The stages (attempts) of one node."""
    return [stage for stage in detail["stages"] if stage["node_id"] == node_id]


def run_file(detail: dict[str, Any], *parts: str) -> Path:
    """A path inside the run directory."""
    return Path(detail["run_dir"]).joinpath(*parts)


def read_json(detail: dict[str, Any], *parts: str) -> Any:
    return json.loads(run_file(detail, *parts).read_text())


def trace(detail: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's trace.jsonl, one dict per call."""
    path = run_file(detail, "trace.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def when(stamp: str) -> datetime:
    """An ISO 8601 UTC time from the daemon."""
    return datetime.fromisoformat(stamp)


def check_files_parse(root: Path) -> list[Path]:
    """Every *.json under `root` parses, and every line of every *.jsonl; returns the files
    checked."""
    checked = []
    for path in sorted(root.rglob("*")):
        if path.suffix == ".json":
            try:
                json.loads(path.read_bytes())
            except ValueError as exc:
                raise AssertionError(f"{path} is not JSON: {exc}") from None
            checked.append(path)
        elif path.suffix == ".jsonl":
            for number, line in enumerate(path.read_bytes().splitlines(), 1):
                try:
                    json.loads(line)
                except ValueError as exc:
                    raise AssertionError(f"{path}:{number} is not JSON: {exc}") from None
            checked.append(path)
    return checked


def listing(root: Path) -> set[str]:
    """Every path under `root`, relative to it."""
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def make_fifo(path: Path) -> Path:
    """A FIFO at `path`, made before the run starts: a tool that finds no FIFO there would
    write a plain file instead."""
    os.mkfifo(path)
    return path


async def read_fifo(path: Path, timeout: float = WAIT) -> str:
    """What one writer writes into the FIFO at `path` (see make_fifo): lets a test await a
    tool process that announces itself with `echo ... > fifo`."""
    assert stat.S_ISFIFO(path.stat().st_mode), f"{path} is not a FIFO"
    # Non-blocking: the open does not wait for a writer, and the loop watches the fd.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
        chunks = []
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(fd, 4096):
                chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def process_gone(pid: int) -> bool:
    """True when no process `pid` exists any more (or only as a zombie nobody reaped)."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return line.rsplit(")", 1)[1].split()[0] == "Z"  # the state field


class RecordingSink:
    """A run sink (engine/sink.py) that keeps the stages and calls an in-process executor
    reports, as the store would receive them."""

    def __init__(self) -> None:
        self.stages: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []

    def emit(self, event: Any) -> None:
        """Events play no part here."""

    def record_call(self, call: dict[str, Any]) -> None:
        """Keep the call."""
        self.calls.append(call)

    async def stage_done(self, stage: dict[str, Any]) -> None:
        """Keep the stage."""
        self.stages.append(stage)


async def runs_done_on_workers(wire: Wire) -> int:
    """How many runs the daemon's workers have executed (`daemon.status`)."""
    status = await wire.result("daemon.status")
    return sum(worker["runs_done"] for worker in status["executor"]["workers"])
