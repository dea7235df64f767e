"""The `ray` backend: each worker is an async Ray actor serving the same channel as a worker
process (decision 0007). Messages go down as `send` calls, one at a time and in order; the
records come up as one streaming generator per actor, in batches of lines. Imported only by
a daemon started with `--executor ray`, and by the Ray workers themselves.

The daemon's driver owns the actors (never detached), so they die with it. A local cluster
is started by the daemon when no address is given; `ray.init` runs on a thread, which leaves
the daemon's signal handlers alone, with its workers' output kept out of the daemon's stdout
(`--stdio` is the protocol there)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..engine.tools.processes import sweep
from .pool import CLOSE_SECONDS, Worker, WorkerLost
from .worker import serve

log = logging.getLogger("ostinato.workers")

# Batches leave at most once per INTERVAL (sooner once FULL bytes wait): each is an object
# and a report through Ray, costing both sides more CPU than a short run's own records, so
# under load records wait to share one (bench/scale.py); a record after a quiet spell
# leaves at once.
INTERVAL_SECONDS = 0.002
FULL = 1 << 18
START_SECONDS = 60.0  # an actor the cluster cannot place (no free CPU) is given up then
# A local cluster's object store: records travel as small byte batches, which Ray keeps in
# its workers' memory; the store's default (30% of RAM in /dev/shm) would be wasted.
LOCAL_OBJECT_STORE_BYTES = 200 << 20


class Outbox:
    """The channel's transport inside an actor: what `serve` writes, taken in batches."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.closed = False
        self.last = 0.0  # when the last batch was taken (the loop's clock)
        self.ready = asyncio.Event()  # something to take
        self.full = asyncio.Event()  # FULL bytes to take

    def write(self, data: bytes) -> None:
        """Keep `data` for the next batch."""
        self.chunks.append(data)
        self.size += len(data)
        self.ready.set()
        if self.size >= FULL:
            self.full.set()

    def is_closing(self) -> bool:
        """Whether `serve` has ended."""
        return self.closed

    def close(self) -> None:
        """No more writes: `take` returns what is left, then nothing."""
        self.closed = True
        self.ready.set()
        self.full.set()

    async def take(self) -> bytes:
        """Everything written since the last batch, once there is something and
        INTERVAL_SECONDS have passed since that batch (or FULL bytes wait); b"" at the end."""
        await self.ready.wait()
        loop = asyncio.get_running_loop()
        wait = self.last + INTERVAL_SECONDS - loop.time()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.full.wait(), wait)
        self.last = loop.time()
        if not self.closed:
            self.ready.clear()
            self.full.clear()
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return data


class WorkerActor:
    """A worker as a Ray actor: `serve` on the actor's event loop, fed by `send` and `close`,
    its records read through `stream`."""

    def __init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None

    def _input(self) -> asyncio.StreamReader:
        if self._reader is None:  # on the actor's event loop, where every method runs
            self._reader = asyncio.StreamReader(limit=1 << 28)
        return self._reader

    async def ready(self) -> tuple[int, str]:
        """Its process id and Ray node, once it is up."""
        return os.getpid(), ray.get_runtime_context().get_node_id()

    async def send(self, data: bytes) -> None:
        """Messages down."""
        self._input().feed_data(data)

    async def close(self) -> None:
        """The end of the messages down: its runs are cancelled and `stream` ends."""
        self._input().feed_eof()

    async def stream(self) -> AsyncIterator[bytes]:
        """Serve, yielding the messages up in batches of lines, until `close`."""
        outbox = Outbox()
        serving = asyncio.ensure_future(serve(self._input(), outbox))  # type: ignore[arg-type]
        serving.add_done_callback(lambda _: outbox.close())
        while chunk := await outbox.take():
            yield chunk
        await serving


class RayWorker(Worker):
    """The daemon's side of one worker actor."""

    def __init__(self, actor: Any, pid: int, node_id: str, ships_files: bool) -> None:
        self.actor = actor
        self.pid, self.node = pid, node_id
        self.ships_files = ships_files  # on another node than the daemon's
        self.name = f"ray worker {pid}"
        self._lost = False
        self._down: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._sending = asyncio.ensure_future(self._send())
        super().__init__()

    async def _send(self) -> None:
        """Each call awaited before the next: an async actor may start calls out of order."""
        with contextlib.suppress(RayActorError):  # dead: `lines` says so
            while (data := await self._down.get()) is not None:
                await self.actor.send.remote(data)
            await self.actor.close.remote()

    async def lines(self) -> AsyncIterator[bytes]:
        """The lines of the actor's stream, until it ends or the actor dies."""
        try:
            async for ref in self.actor.stream.remote():
                for raw in (await ref).splitlines():
                    yield raw
        except RayActorError:  # killed, or its node lost
            self._lost = True

    def died(self) -> bool:
        """Whether Ray said the actor died."""
        return self._lost

    def write(self, data: bytes) -> None:
        """To the actor, after what went before."""
        self._down.put_nowait(data)

    def kill(self) -> None:
        """ray.kill: its stream ends with ActorDiedError."""
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self.actor, no_restart=True)

    async def close(self) -> None:
        """The end of its messages (it cancels its runs), then the actor is killed."""
        self.flush()
        self._down.put_nowait(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.reading), CLOSE_SECONDS)
        self.kill()
        await asyncio.gather(self.reading, self._sending)

    async def sweep(self, run_ids: list[str]) -> None:
        """On the actor's node: the tools of a killed actor outlive it there."""
        on_node = NodeAffinitySchedulingStrategy(self.node, soft=False)
        try:
            await asyncio.wait_for(
                _sweeper().options(scheduling_strategy=on_node).remote(run_ids), START_SECONDS)
        except Exception as exc:  # the node is gone too: so are its processes
            log.warning("could not sweep the tools of runs %s on Ray node %s: %s",
                        run_ids, self.node, exc)


_remote: dict[str, Any] = {}  # the remote actor class and sweep task, made once


def _actor() -> Any:
    if "actor" not in _remote:
        _remote["actor"] = ray.remote(num_cpus=1, max_restarts=0)(WorkerActor)
    return _remote["actor"]


def _sweeper() -> Any:
    if "sweep" not in _remote:
        _remote["sweep"] = ray.remote(num_cpus=0)(sweep)
    return _remote["sweep"]


class RayCluster:
    """Worker actors on a Ray cluster: the one at `address`, or a local one the daemon starts
    with `cpus` CPUs (each worker takes one)."""

    def __init__(self, address: str | None, cpus: int = 0) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus = cpus or os.cpu_count() or 1
        self._connecting = asyncio.Lock()
        self._connected = False
        self._node = ""  # the daemon's Ray node

    async def _connect(self) -> None:
        async with self._connecting:
            if self._connected:
                return
            where = f"at {self.address}" if self.address else "(a local one)"
            try:
                await asyncio.to_thread(self._init)
            except Exception as exc:
                raise WorkerLost(f"could not start or join the Ray cluster {where}: "
                                 f"{type(exc).__name__}: {exc}") from exc
            self._connected = True
            self._node = ray.get_runtime_context().get_node_id()
            log.info("Ray cluster %s: %s CPUs", where, ray.cluster_resources().get("CPU"))

    def _init(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # No address: a cluster of the daemon's own ("local"), never one that happens to run
        # on the machine, which ray.init(address=None) would join.
        local: dict[str, Any] = {} if self.address else {
            "address": "local", "num_cpus": self.cpus, "include_dashboard": False,
            "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
        ray.init(**({"address": self.address} if self.address else local),
                 log_to_driver=False, configure_logging=False)

    async def capacity(self) -> int:
        """A worker per CPU of the cluster."""
        await self._connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    async def start(self) -> RayWorker:
        """A new worker actor, once it is up."""
        await self._connect()
        actor = _actor().remote()
        try:
            pid, node_id = await asyncio.wait_for(actor.ready.remote(), START_SECONDS)
        except Exception as exc:
            ray.kill(actor, no_restart=True)
            raise WorkerLost(f"no Ray worker started within {START_SECONDS:.0f} s (is a CPU "
                             f"free on the cluster?): {type(exc).__name__}: {exc}") from exc
        # A worker on another node cannot see the home (a shared filesystem aside, which
        # this does not try to detect): it sends the run's files with its records.
        return RayWorker(actor, pid, node_id, ships_files=node_id != self._node)

    async def close(self) -> None:
        """Leave the cluster (a local one stops)."""
        if self._connected:
            await asyncio.to_thread(ray.shutdown)
            self._connected = False
