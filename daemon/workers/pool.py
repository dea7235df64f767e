"""The daemon's pool of worker processes (decision 0007): which runs execute on one, and
the daemon's side of such a run, which applies the records a worker sends, in order, to the
run's store sink, writing each checkpoint once the stage before it is committed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from ostinato.protocol.runs import RunSettings

from ..engine.events import Event
from ..engine.executor import Executor
from ..engine.graph import Graph
from ..engine.outcome import Status
from ..engine.run_state import RunResult
from ..engine.tools.processes import sweep
from .files import decode, snapshot
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
    Job,
    line,
)

log = logging.getLogger("ostinato.workers")


class RecordSink(Protocol):
    """What the daemon's store sink (runs/sink.py::StoreSink) does with a worker's records:
    it commits them in batches, each checkpoint after the commit of its stage."""

    def emit(self, event: Event) -> None:
        """Keep an event for the next commit; publish it now, or once the checkpoint it
        follows is written."""
        ...

    def record_call(self, call: dict[str, Any]) -> None:
        """Keep a call."""
        ...

    async def stage_done(self, stage: dict[str, Any]) -> None:
        """Keep a stage, committed soon with everything kept before it."""
        ...

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Write a checkpoint once everything kept before it is committed."""
        ...

    async def commit(self) -> None:
        """Commit what is kept now (and write its checkpoint)."""
        ...


class Hosted(Protocol):
    """The daemon's side of a run (runs/active.py::ActiveRun), as far as a pool uses it."""

    sink: RecordSink
    executor: Executor  # never executed here: its run directory, agent counts and state


# Node types whose runs need the daemon itself: a manager starts child runs through it.
_DAEMON_ONLY_TYPES = frozenset({"stack.manager_loop"})
CLOSE_SECONDS = 5.0  # a worker whose stdin closed and is still there then is killed


class WorkerLost(Exception):
    """The worker executing a run ended before the run did (killed, or crashed)."""


def on_worker(graph: Graph, settings: RunSettings) -> bool:
    """Whether a new run of `graph` can execute on a worker: not when it may need a person
    (a human gate the settings do not answer) or the daemon's runner (a manager node)."""
    types = {node.type for node in graph.nodes.values()}
    if types & _DAEMON_ONLY_TYPES:
        return False
    return "wait.human" not in types or settings.human.auto_approve


class Grants:
    """The daemon's side of a worker run's shared provider limits: permits of the shared
    pool's semaphores, granted in the order they are asked for, given back when the worker
    says or the run ends."""

    def __init__(self, limit: Callable[[str], asyncio.Semaphore],
                 grant: Callable[[int], None]) -> None:
        self.limit = limit  # the shared pool's semaphore of a provider
        self.grant = grant  # tells the worker
        self.waiting: dict[int, asyncio.Task[None]] = {}
        self.held: dict[int, asyncio.Semaphore] = {}

    def acquire(self, permit: int, provider: str) -> None:
        """Grant `permit` once `provider`'s limit has room."""
        self.waiting[permit] = asyncio.ensure_future(self._acquire(permit, self.limit(provider)))

    async def _acquire(self, permit: int, semaphore: asyncio.Semaphore) -> None:
        await semaphore.acquire()
        del self.waiting[permit]
        self.held[permit] = semaphore
        self.grant(permit)

    def release(self, permit: int) -> None:
        """The worker gives `permit` back, or no longer waits for it."""
        if (task := self.waiting.pop(permit, None)) is not None:
            task.cancel()
        elif (semaphore := self.held.pop(permit, None)) is not None:
            semaphore.release()

    def close(self) -> None:
        """The run ended: every permit goes back."""
        for permit in [*self.waiting, *self.held]:
            self.release(permit)


@dataclass
class Ended:
    """How a worker says a run ended."""

    status: str
    outcome: str | None
    reason: str
    result: RunResult | None


class RemoteRun:
    """The daemon's side of one run on a worker: its records, applied in order; what it
    shares through the daemon (permits of shared provider limits, a shared budget, which
    this charges with the run's calls and whose end it tells the worker)."""

    def __init__(self, active: Hosted, job: Job, send: Callable[[bytes], None]) -> None:
        self.active = active
        self.job = job
        self.send = send  # down to the worker
        self.grants = None if not job.shared_limits else Grants(
            active.executor.providers.semaphore, lambda permit: self.tell(GRANT, id=permit))
        self.budget = active.executor.budget
        if self.budget is not None:
            self.budget.on_exceeded.append(self._spent)
        # Records, as many as came at once; None: the worker is gone.
        self.inbox: asyncio.Queue[deque[dict[str, Any]] | None] = asyncio.Queue()
        self.batch: deque[dict[str, Any]] = deque()  # the records being applied
        self.ended = False  # the worker's `ended` came

    def tell(self, op: str, **fields: Any) -> None:
        """A message down to the run."""
        self.send(line(op, run=self.job.run_id, **fields))

    def start(self) -> None:
        """Send the job (and the budget's end, if it came since the job was made)."""
        self.send(self.job.to_line())
        if self.budget is not None and self.budget.exceeded:
            self._spent(self.budget.spent_usd)

    def _spent(self, spent_usd: float) -> None:
        self.tell(BUDGET, spent_usd=spent_usd)

    def close(self) -> None:
        """The run is over here: no more budget news; its permits go back."""
        if self.budget is not None:
            self.budget.on_exceeded.remove(self._spent)
        if self.grants is not None:
            self.grants.close()

    async def apply(self) -> Ended:
        """Apply every record until `ended`; WorkerLost if the worker went first.

        The run's sink batches them as it does an inline run's (runs/sink.py::StoreSink):
        the worker never waits for a commit, each checkpoint is written after the commit
        holding its stage, and a CheckpointSaved, and what follows it, is published once
        that checkpoint is written (decision 0007)."""
        while True:
            batch = await self.inbox.get()
            if batch is None:
                await self.active.sink.commit()
                raise WorkerLost("its worker process ended while the run executed")
            self.batch = batch
            while batch:
                ended = await self._apply(batch.popleft())
                if ended is not None:
                    return ended

    async def _apply(self, message: dict[str, Any]) -> Ended | None:
        """Apply one record; what `ended` says, once it comes."""
        sink, op = self.active.sink, message["op"]
        if op == EVENT:
            sink.emit(Event(message["type"], message["data"], time=message["time"]))
        elif op == CALL:
            sink.record_call(message["call"])
            if self.budget is not None:  # the shared one: as inline
                self.budget.charge(message["call"]["cost_usd"])
        elif op == STAGE:
            await sink.stage_done(message["stage"])
        elif op == CHECKPOINT:
            sink.save_checkpoint(message["data"])
        elif op == FILE:  # a worker without the home: in order with the records
            self.active.executor.run_dir.receive(message["path"], decode(message["data"]),
                                                 message["append"])
        elif op == COMMIT:  # before a tool process starts: as inline
            await sink.commit()
            self.tell(DONE, id=message["id"])
        elif op == ACQUIRE and self.grants is not None:
            self.grants.acquire(message["id"], message["provider"])
        elif op == RELEASE and self.grants is not None:
            self.grants.release(message["id"])
        elif op == ENDED:
            self.ended = True
            await sink.commit()
            return self._ended(message)
        return None

    async def drain(self) -> None:
        """Take the worker's records without applying them, until its `ended` (or its end):
        for a run the daemon stopped applying (see WorkerPool.execute)."""
        batch: deque[dict[str, Any]] | None = self.batch  # what apply left of its last
        while batch is not None:
            while batch:
                if batch.popleft()["op"] == ENDED:
                    self.ended = True
                    return
            batch = await self.inbox.get()

    def _ended(self, message: dict[str, Any]) -> Ended:
        self.active.executor.agent.processes_started = message["processes_started"]
        data = message["result"]
        result = None if data is None else RunResult(
            data["status"], Status(data["outcome"]), data["failure_reason"],
            data["completed_nodes"], data["context"])
        if result is not None:
            self.active.executor.state.completed_nodes = list(result.completed_nodes)
        return Ended(message["status"], message["outcome"], message["reason"], result)


class Worker:
    """One worker and the runs it executes. How messages reach it and how it dies is its
    backend's (processes.py, ray_workers.py): a subclass sets itself up, then calls this
    `__init__`, which starts reading."""

    name: str  # for the daemon's log
    pid: int  # its process (on its node)
    node: str | None = None  # a Ray node id
    ships_files = False  # it cannot see the home: the run's files travel with its records

    def __init__(self) -> None:
        self.runs: dict[str, RemoteRun] = {}
        self.runs_done = 0  # runs it executed to their end
        self._pending: list[bytes] = []  # messages down, written once per turn of the loop
        self.reading = asyncio.ensure_future(self._read())

    def batches(self) -> AsyncIterator[list[bytes]]:
        """Its messages up (line_batches), until it ends."""
        raise NotImplementedError

    def died(self) -> bool:
        """Whether it is known dead (a message it cut off is then no bug)."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Messages down, in order."""
        raise NotImplementedError

    def kill(self) -> None:
        """Kill it: its runs are lost (WorkerLost)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Let it cancel what runs and end, killing it if it lingers; then stop reading."""
        raise NotImplementedError

    async def sweep(self, run_ids: list[str]) -> None:
        """Kill the tool processes of runs it was executing when it was lost (they outlive
        it: each has a session of its own)."""
        await asyncio.to_thread(sweep, run_ids)

    @property
    def alive(self) -> bool:
        """Whether it still reads and writes."""
        return not self.reading.done()

    def send(self, data: bytes) -> None:
        """One message down (the messages of one turn of the loop leave in one write)."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Write the messages waiting to go down."""
        if self._pending:
            self.write(b"".join(self._pending))
        self._pending.clear()

    async def _read(self) -> None:
        """Hand every record to its run; when the worker ends, its runs are lost."""
        try:
            async for lines in self.batches():
                batches: dict[str, deque[dict[str, Any]]] = {}
                try:
                    for raw in lines:
                        message = orjson.loads(raw)
                        if message["op"] == LOG:  # of no run: the worker's own log
                            log.log(message["level"], "%s: %s: %s", self.name,
                                    message["logger"], message["text"])
                            continue
                        batch = batches.get(message["run"])
                        if batch is None:
                            batch = batches[message["run"]] = deque()
                        batch.append(message)
                finally:  # those before a line it cannot read are applied all the same
                    for run_id, batch in batches.items():
                        run = self.runs.get(run_id)
                        if run is not None:
                            run.inbox.put_nowait(batch)
        except Exception:  # a message we cannot read: a bug, so the worker goes
            if not self.died():  # not the cut-off line of a killed worker
                log.exception("%s: unreadable message; stopping it", self.name)
            self.kill()
        finally:
            for run in self.runs.values():
                run.inbox.put_nowait(None)


class Backend(Protocol):
    """Where a pool's workers run: local processes, or a Ray cluster's actors."""

    # Whether the pool starts a worker as the daemon starts, so that the first run does not
    # wait for one: a local process costs nothing to keep; an actor holds a cluster's CPU.
    starts_ahead: bool

    async def capacity(self) -> int:
        """How many workers to keep when the daemon did not say."""
        ...

    async def start(self) -> Worker:
        """A new worker, reading."""
        ...

    def warm(self) -> None:
        """The daemon starts: get ready for the first run (join a cluster)."""
        ...

    async def close(self) -> None:
        """Once its workers are closed: let go of what it holds (a cluster)."""
        ...


class WorkerPool:
    """A backend's workers, started when needed: a run goes to an idle worker, else to a
    new one while the pool is below its size, else to the one that executes the fewest."""

    def __init__(self, backend: Backend, size: int = 0) -> None:
        self.backend = backend
        self.size = size  # 0: the backend's capacity, asked when the first run comes
        self.workers: list[Worker] = []
        self._starting = asyncio.Lock()
        self._warming: asyncio.Task[Worker] | None = None

    def warm(self) -> None:
        """The daemon starts: the backend gets ready for the first run, and a worker starts
        now where that costs only a local process (a first run on a worker waited 0.3 s
        for its process)."""
        self.backend.warm()
        if self.backend.starts_ahead:
            self._warming = asyncio.ensure_future(self._worker())
            self._warming.add_done_callback(_warmed)

    async def _worker(self) -> Worker:
        async with self._starting:
            self.size = self.size or await self.backend.capacity()
            self.workers = [worker for worker in self.workers if worker.alive]
            if len(self.workers) < self.size and all(worker.runs for worker in self.workers):
                self.workers.append(await self.backend.start())
            # Again: one may have died while another started.
            self.workers = [worker for worker in self.workers if worker.alive]
            return min(self.workers, key=lambda worker: len(worker.runs))

    async def execute(self, active: Hosted, job: Job) -> Ended:
        """Execute `job` on a worker, applying its records to `active`.

        Cancelled (once or more), the worker is told to cancel the run, and its last records
        are applied before CancelledError goes on; a worker that has not ended the run
        CLOSE_SECONDS later is killed. A lost worker's run has its tool processes swept
        (WorkerLost). If the daemon cannot apply a record (a full disk), the worker stops
        the run before the error goes on."""
        worker = await self._worker()
        if worker.ships_files:  # a resume's files read off the event loop
            seed = None if job.checkpoint is None else await asyncio.to_thread(
                snapshot, Path(job.run_dir))
            job = dataclasses.replace(job, ship_files=True, seed=seed)
        remote = worker.runs[job.run_id] = RemoteRun(active, job, worker.send)
        loop = asyncio.get_running_loop()
        killer: asyncio.TimerHandle | None = None
        try:
            if not worker.alive:  # died since it was chosen: nothing would say so
                raise WorkerLost("its worker process ended before the run began")
            applying = asyncio.ensure_future(remote.apply())
            remote.start()
            while True:
                try:
                    ended = await asyncio.shield(applying)
                    break
                except asyncio.CancelledError:
                    if applying.done():
                        raise
                    if killer is None:
                        remote.tell(CANCEL)
                        killer = loop.call_later(CLOSE_SECONDS, worker.kill)
        except WorkerLost:
            await worker.sweep([job.run_id])
            if killer is not None:
                raise asyncio.CancelledError from None
            raise
        except BaseException:
            if worker.alive and not remote.ended:
                remote.tell(CANCEL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(remote.drain(), CLOSE_SECONDS)
                if not remote.ended:
                    worker.kill()
            raise
        finally:
            if killer is not None:
                killer.cancel()
            remote.close()
            worker.runs.pop(job.run_id, None)
        worker.runs_done += 1
        if killer is not None and ended.status == "cancelled":  # its records applied
            raise asyncio.CancelledError
        return ended  # a cancel the worker read only once the run had ended changes nothing

    async def close(self) -> None:
        """Stop every worker (one still starting too), then the backend."""
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)
        await asyncio.gather(*(worker.close() for worker in self.workers))
        self.workers = []
        await self.backend.close()


def _warmed(task: asyncio.Task[Worker]) -> None:
    """A worker started ahead failed to: said once here; the first run tries again."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("a worker could not start ahead of the first run: %s", task.exception())
