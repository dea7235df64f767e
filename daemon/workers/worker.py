"""A worker process: executes the runs the daemon sends it, and sends their records back
(decision 0007). Run as `python -m ostinato.daemon.workers` by the daemon's pool, never by
hand: its stdin and stdout are the channel (`messages.py`), its stderr the daemon's.

A run executes here exactly as in the daemon (`Runner._drive`): the real engine, handlers,
providers and run directory; only its sink differs. Events, calls and stages are redacted
and sent as they happen; checkpoints are sent instead of written, for the daemon writes each
after the commit that holds its stage. When stdin ends (the daemon is gone, or closes the
pool) every run is cancelled and the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings

from ..disk import disk_full, full_reason
from ..engine.budget import Budget
from ..engine.dot import build_parser
from ..engine.events import Event
from ..engine.executor import Executor
from ..engine.handlers.base import Question, preset_answer
from ..engine.handlers.registry import default_handlers
from ..engine.load import load_pipeline_async
from ..engine.providers.connections import SharedConnections
from ..engine.providers.runtime import ProviderPool, open_pool
from ..engine.redact import Redactor, environment_secrets, run_secrets
from ..engine.replay import Cassette, Journal, Replayer, ReplayProviders
from ..engine.run_state import RunResult
from ..engine.rundir import TRACE, RunDirectory
from ..engine.tools.runtime import AgentRuntime
from .files import LocalCopy, encode
from .messages import (
    ACQUIRE,
    BUDGET,
    CALL,
    CANCEL,
    CHECKPOINT,
    COMMIT,
    DONE,
    ENDED,
    EVENT,
    FILE,
    GRANT,
    LOG,
    RELEASE,
    STAGE,
    START,
    Job,
    line,
)
from .worker_logs import forwarded_logs

log = logging.getLogger("ostinato.worker")


class Channel:
    """The worker's side of the channel: messages leave in one write per turn of the loop,
    or sooner when FLUSH_BYTES are waiting (a run whose calls never wait, a scripted model,
    would otherwise send nothing until it ends, and the daemon would start on its records
    only then)."""

    FLUSH_BYTES = 1 << 16

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport
        self.pending: list[bytes] = []
        self.size = 0

    def send(self, op: str, **fields: Any) -> None:
        """Queue one message; the queue is written once the loop's current turn ends."""
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        data = line(op, **fields)
        self.pending.append(data)
        self.size += len(data)
        if self.size >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is queued."""
        if self.pending and not self.transport.is_closing():
            self.transport.write(b"".join(self.pending))
        self.pending.clear()
        self.size = 0


class ShippingSink:
    """The executor's sink on a worker: every record goes to the daemon, redacted."""

    def __init__(self, channel: Channel, run_id: str, redactor: Redactor,
                 copy: LocalCopy | None = None) -> None:
        self.channel = channel
        self.run_id = run_id
        self.redactor = redactor
        self.copy = copy  # without the home: the workspace is sent before each stage

    def emit(self, event: Event) -> None:
        """Send the event (the daemon numbers and publishes it)."""
        self.channel.send(EVENT, run=self.run_id, type=event.type, time=event.time,
                          data=self.redactor.values(event.data))

    def record_call(self, call: dict[str, Any]) -> None:
        """Send the call."""
        self.channel.send(CALL, run=self.run_id, call=self.redactor.values(call))

    async def stage_done(self, stage: dict[str, Any]) -> None:
        """Send the stage; the daemon commits it with the calls and events before it."""
        if self.copy is not None:
            self.copy.sync_workspace()
        self.channel.send(STAGE, run=self.run_id, stage=self.redactor.values(stage))

    def checkpoint(self, data: dict[str, Any]) -> None:
        """Send the checkpoint: the daemon writes it once its stage is committed."""
        self.channel.send(CHECKPOINT, run=self.run_id, data=self.redactor.values(data))


class Requests:
    """A run's requests to the daemon, each answered by the message that names its id."""

    def __init__(self, channel: Channel, run_id: str) -> None:
        self.channel = channel
        self.run_id = run_id
        self.waiting: dict[int, asyncio.Future[None]] = {}
        self.ids = itertools.count(1)

    async def ask(self, op: str, request: int | None = None, **fields: Any) -> int:
        """Send `op` and wait for its answer; its id (given, or the next one)."""
        request = next(self.ids) if request is None else request
        answered = self.waiting[request] = asyncio.get_running_loop().create_future()
        self.channel.send(op, run=self.run_id, id=request, **fields)
        try:
            await answered
        finally:
            self.waiting.pop(request, None)
        return request

    def answered(self, request: int) -> None:
        """The daemon's answer to `request`."""
        future = self.waiting.get(request)
        if future is not None and not future.done():
            future.set_result(None)

    async def commit(self) -> None:
        """The run's records so far are committed (Executor.commit_records)."""
        await self.ask(COMMIT)

    @contextlib.asynccontextmanager
    async def hold(self, provider: str) -> AsyncIterator[None]:
        """A permit of `provider`'s limit when it is the daemon's (a trial set's shared
        pool), for one call; given back after it, or when no longer wanted."""
        permit = next(self.ids)
        try:
            await self.ask(ACQUIRE, permit, provider=provider)
            yield
        finally:
            self.channel.send(RELEASE, run=self.run_id, id=permit)


@dataclass
class Shared:
    """What a run on this worker asks of the daemon, or shares with runs elsewhere through
    it: its requests, a copy of a cost budget the daemon keeps up to date."""

    requests: Requests
    budget: Budget | None = None

    @classmethod
    def of(cls, job: Job, channel: Channel) -> Shared:
        """What `job` shares."""
        return cls(Requests(channel, job.run_id),
                   None if job.budget is None else Budget.from_dict(job.budget))


class SettingsInterviewer:
    """A worker's human gates: answered by the run's settings (a run whose gates may need a
    person executes in the daemon, see pool.py::on_worker)."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self.executor: Executor | None = None  # set once the executor exists

    async def ask(self, question: Question) -> str | None:
        """The settings' answer."""
        assert self.executor is not None
        answer = preset_answer(self.settings, self.executor.state.context, question)
        if answer is None:  # on_worker keeps such runs in the daemon: a bug if it happens
            raise RuntimeError(f"human gate {question.node_id} needs a person on a worker")
        self.executor.emit("InterviewCompleted", question_id=question.id,
                           stage=question.node_id, answer=answer)
        return answer


@functools.cache
def _working_directory() -> Path:
    """Where this worker runs, which it never changes: asked once, not for every run."""
    return Path.cwd()


@functools.cache
def _environment_secrets() -> tuple[str, ...]:
    """The secret-looking variables of this process's environment, which a worker never
    changes: read once, not for every run."""
    return tuple(environment_secrets(dict(os.environ)))


async def _executor(job: Job, channel: Channel, shared: Shared, copy: LocalCopy | None,
                    connections: SharedConnections) -> tuple[Executor, ProviderPool]:
    """The run's executor, as the daemon's runner builds it, with a sink that ships."""
    settings = RunSettings.model_validate(job.settings)
    handlers = default_handlers()
    loaded = await load_pipeline_async(
        PipelineRef(source=job.source, format=job.source_format),  # type: ignore[arg-type]
        _working_directory(), job.variables, known_types=handlers.known_types(),
        max_bytes=job.max_pipeline_bytes)
    if loaded.graph is None or not loaded.valid:  # the daemon's load found it valid
        raise RuntimeError(f"the pipeline does not load here as in the daemon: "
                           f"{[d.message for d in loaded.diagnostics]}")
    allowed = frozenset(job.allowed_key_env)
    pool = await open_pool({"default": settings.default_provider,
                            "providers": settings.providers, "pricing": settings.pricing},
                           allowed_key_env=allowed, connections=connections)
    if job.shared_limits:
        pool.share_limits(shared.requests.hold)
    keys = [*pool.secrets(), *(os.environ[name] for name in sorted(allowed)
                               if os.environ.get(name))]
    redactor = Redactor(run_secrets({**job.inputs, **job.variables}, keys,
                                    _environment_secrets()))
    run_dir = RunDirectory(Path(job.run_dir) if copy is None else copy.root, redactor,
                           content=job.record == "full")
    if copy is not None:
        run_dir.tee_to(copy.tee)
    cassette = None if job.cassette is None else Cassette.from_calls(job.cassette,
                                                                     redactor=redactor)
    if cassette is not None and job.consumed:  # as Runner._consume_made did
        cassette.consume(job.consumed)
    replayer = None if job.replay_mode is None else Replayer(
        job.replay_mode, cassette)  # type: ignore[arg-type]
    # A resume: what the node the interruption cut short had finished is served, as in
    # the daemon (Runner.resume reads the same trace the same way).
    journal = None if job.checkpoint is None or job.record != "full" else Journal.from_trace(
        run_dir.root / TRACE, job.checkpoint, redactor=redactor)
    sink = ShippingSink(channel, job.run_id, redactor, copy)
    interviewer = SettingsInterviewer(settings)
    executor = Executor(run_id=job.run_id, trace_id=job.trace_id, graph=loaded.graph,
                        run_dir=run_dir, handlers=handlers,
                        providers=pool if replayer is None and journal is None
                        else ReplayProviders(pool, replayer, journal),
                        interviewer=interviewer, sink=sink, settings=settings,
                        record=job.record, replayer=replayer,  # type: ignore[arg-type]
                        trial_index=job.trial_index, recorded_stages=job.recorded_stages,
                        budget=shared.budget,
                        agent=AgentRuntime(run_dir.root, job.run_id, settings=settings,
                                           allowed_secrets=allowed,
                                           pipeline_dir=job.pipeline_dir))
    interviewer.executor = executor
    executor.commit_records = shared.requests.commit
    executor.journal = journal
    executor.write_checkpoint = sink.checkpoint
    return executor, pool


async def execute(job: Job, channel: Channel, shared: Shared,
                  connections: SharedConnections) -> dict[str, Any]:
    """Execute one run, sending its records; what its `ended` message says. `shared`: what
    it asks of the daemon and shares through it (see Shared); `connections`: this worker's
    HTTP connections, which its runs' SDK providers share."""
    copy = None if not job.ship_files else LocalCopy(
        lambda data, append, path: channel.send(FILE, run=job.run_id, path=path,
                                                data=encode(data), append=append),
        job.seed or {})
    try:
        executor, pool = await _executor(job, channel, shared, copy, connections)
    except BaseException:
        if copy is not None:
            copy.close()
        raise
    status, outcome, reason, result = "failed", "fail", "", None
    try:
        result = await (executor.run(job.inputs) if job.checkpoint is None else
                        executor.resume(job.checkpoint, job.resume_inputs, job.inputs))
        status, outcome, reason = result.status, result.outcome.value, result.failure_reason
    except asyncio.CancelledError:  # the daemon's event says why (Runner._drive)
        status, outcome, reason = "cancelled", None, "cancelled"
    except Exception as exc:
        if disk_full(exc):
            status, outcome, reason = "interrupted", None, full_reason(exc)
        else:
            log.exception("run %s crashed", job.run_id)
            reason = f"internal error: {type(exc).__name__}: {exc}"
        executor.emit("PipelineFailed", error=reason)
    finally:
        if status == "failed":
            executor.end_failed_trace(reason)
        await executor.agent.aclose()
        executor.run_dir.close()
        await pool.aclose()
        if copy is not None:
            copy.close()
    return {"status": status, "outcome": outcome, "reason": reason,
            "processes_started": executor.agent.processes_started,
            "result": None if result is None else
            _result(result, executor.run_dir.redactor)}


def ended(task: asyncio.Task[dict[str, Any]]) -> dict[str, Any]:
    """What a finished run's `ended` says, however its task ended: a task cancelled before
    it began (a cancel right behind its start) never ran a line of `execute`."""
    if task.cancelled():
        return {"status": "cancelled", "outcome": None, "reason": "cancelled",
                "processes_started": 0, "result": None}
    error = task.exception()
    if error is not None:  # before the run began: loading it again, building its providers
        log.error("a run could not start on this worker", exc_info=error)
        return {"status": "failed", "outcome": "fail", "processes_started": 0, "result": None,
                "reason": f"internal error: {type(error).__name__}: {error}"}
    return task.result()


def _result(result: RunResult, redactor: Redactor) -> dict[str, Any]:
    return {"status": result.status, "outcome": result.outcome.value,
            "failure_reason": result.failure_reason,
            "completed_nodes": result.completed_nodes,
            "context": redactor.values(result.context)}


def _keep_from_children() -> None:
    """No process a run starts inherits a descriptor of ours beyond its own 0-2: uvloop's
    pipe transports hold inheritable copies of stdin and stdout, and a tool that kept our
    stdout open would hide our death from the daemon."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(int(name), False)


async def serve_stdio() -> None:
    """A worker process: the channel is its stdin and stdout (`python -m
    ostinato.daemon.workers`)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 28)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    _keep_from_children()
    await serve(reader, transport)  # type: ignore[arg-type]


async def serve(reader: asyncio.StreamReader, transport: asyncio.WriteTransport) -> None:
    """Read jobs and cancels from `reader` until it ends, then cancel what still runs; the
    records go out through `transport`."""
    channel = Channel(transport)
    runs: dict[str, asyncio.Task[dict[str, Any]]] = {}
    shared: dict[str, Shared] = {}
    connections = SharedConnections()
    build_parser()  # while no job waits for it yet

    def report(task: asyncio.Task[dict[str, Any]], run_id: str) -> None:
        runs.pop(run_id, None)
        shared.pop(run_id, None)
        channel.send(ENDED, run=run_id, **ended(task))

    with forwarded_logs(lambda **fields: channel.send(LOG, **fields)):
        while message_line := await reader.readline():
            message = orjson.loads(message_line)
            op, run = message["op"], message.get("run")
            if op == START:
                job = Job.from_message(message)
                shares = shared[job.run_id] = Shared.of(job, channel)
                task = runs[job.run_id] = asyncio.ensure_future(
                    execute(job, channel, shares, connections))
                task.add_done_callback(lambda done, run_id=job.run_id: report(done, run_id))
            elif op == CANCEL and run in runs:
                runs[run].cancel()
            elif op == BUDGET and run in shared and (budget := shared[run].budget) is not None:
                budget.spent_elsewhere(message["spent_usd"])
            elif op in (GRANT, DONE) and run in shared:
                shared[run].requests.answered(message["id"])
        for task in runs.values():  # the daemon is gone, or closing the pool
            task.cancel()
        await asyncio.gather(*runs.values(), return_exceptions=True)
        await connections.aclose()
        channel.flush()
