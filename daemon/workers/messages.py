"""What travels between the daemon and a worker: one JSON object per line (orjson), in
order: on a worker process's stdin (down) and stdout (up); through a Ray actor's `send` and
`stream` (ray_workers.py).

Down: `start` (a `Job`), `cancel` (a run id), `budget` (a run's shared budget is spent: what
it has spent, for the worker's copy), `grant` (a permit `acquire` asked for), `done` (a
`commit` asked for is done).

Up, per run and in order: `event`, `call`, `stage`, `checkpoint` (redacted by the worker
before they leave it), then `ended`. A worker without the home sends the run's files too
(`file`: a path in the run directory, the bytes, whether appended). A run whose provider
limits are shared with other runs (a trial set's) sends `acquire` (a permit of a provider's
limit, before a call) and `release` (after it, or when the call no longer waits). Before a
tool process starts, a run sends `commit` and waits for `done`: the tool's effects are never
ahead of the record of the nodes before it, as inline. And, of no run, `log`: a record of the
worker's `ostinato` loggers (level, logger, text), which the daemon logs as its own.

A line the other side cannot read ends the channel: it is a bug, not input.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

START, CANCEL, BUDGET, GRANT, DONE = "start", "cancel", "budget", "grant", "done"
EVENT, CALL, STAGE, CHECKPOINT, ENDED = "event", "call", "stage", "checkpoint", "ended"
ACQUIRE, RELEASE, FILE, COMMIT, LOG = "acquire", "release", "file", "commit", "log"
LINE_LIMIT = 1 << 28  # the longest message


@dataclass(frozen=True, slots=True)
class Job:
    """One run for a worker to execute: everything it needs besides its environment (provider
    keys come from there, never down the channel)."""

    run_id: str
    trace_id: str
    run_dir: str  # absolute: the worker writes the run's files into the home itself
    source: str  # the pipeline, loaded again by the worker (the daemon validated it)
    source_format: str
    variables: dict[str, str]  # what the pipeline was loaded with (inputs that are strings too)
    inputs: dict[str, Any]
    settings: dict[str, Any]  # RunSettings, dumped
    record: str
    trial_index: int | None
    pipeline_dir: str | None
    allowed_key_env: list[str]
    max_pipeline_bytes: int
    replay_mode: str | None = None  # a replay: its mode, and (not live) the calls it serves
    cassette: list[dict[str, Any]] | None = None
    consumed: list[dict[str, Any]] | None = None  # a resumed replay's calls already made
    # A resume: the checkpoint it continues from, the inputs given again, the stages the
    # store already holds (the worker reads the journal from the run directory itself).
    checkpoint: dict[str, Any] | None = None
    resume_inputs: dict[str, Any] | None = None
    recorded_stages: int = 0
    # A cost budget the run shares with others (a test run's): the worker checks a copy,
    # which the daemon tells once the budget is spent (Budget.to_dict).
    budget: dict[str, float] | None = None
    # The run's provider pool is shared with other runs (a trial set's): its concurrency
    # limits are the daemon's, and each call waits for a permit (`acquire`).
    shared_limits: bool = False
    # The worker cannot see the home (a Ray node of another machine): it writes the run's
    # files to a copy of the run directory, started from `seed` (a resume's files, encoded),
    # and sends every write up.
    ship_files: bool = False
    seed: dict[str, str] | None = None

    def to_line(self) -> bytes:
        """The `start` message."""
        return line(START, job=self)  # orjson writes a dataclass as its fields

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Job:
        """The job of a `start` message."""
        return cls(**message["job"])


def line(op: str, **fields: Any) -> bytes:
    """One message, newline-terminated."""
    return orjson.dumps({"op": op, **fields}, default=str) + b"\n"


async def line_batches(reader: asyncio.StreamReader) -> AsyncIterator[list[bytes]]:
    """The whole lines `reader` brings, as many at a time as have come: one read for a
    turn's messages rather than a call per line. A last line cut short by the end is no
    message; a line past LINE_LIMIT is a ValueError."""
    pieces: list[bytes] = []  # of a line not whole yet
    size = 0
    while chunk := await reader.read(1 << 16):
        if b"\n" not in chunk:
            pieces.append(chunk)
            size += len(chunk)
            if size > LINE_LIMIT:
                raise ValueError(f"a message longer than {LINE_LIMIT} bytes")
            continue
        if pieces:
            chunk = b"".join((*pieces, chunk))
            pieces.clear()
        lines = chunk.split(b"\n")
        rest = lines.pop()
        size = len(rest)
        if rest:
            pieces.append(rest)
        yield lines
