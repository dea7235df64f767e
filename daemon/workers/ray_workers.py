"""The `ray` backend: each worker is an async Ray actor serving the same channel as a worker
process (decision 0007). Ray places the actors, owns their lives and says when one dies;
the channel itself is a TCP stream between the daemon and the actor, the same JSON lines
as a worker process's pipes (each Ray call costs both sides about a millisecond of CPU: a
call per message would cost more than a short run's own work, bench/scale.py). Imported
only by a daemon started with `--executor ray`, and by the Ray workers themselves.

The actor listens on its node's address for one connection, which must first send the
token the daemon gave it. The daemon's driver owns the actors (never detached), so they
die with it. A local cluster is started by the daemon when no address is given;
`ray.init` runs on a thread, which leaves the daemon's signal handlers alone, with its
workers' output kept out of the daemon's stdout (`--stdio` is the protocol there)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..engine.tools.processes import sweep
from .pool import CLOSE_SECONDS, Worker, WorkerLost
from .worker import serve

log = logging.getLogger("ostinato.workers")

START_SECONDS = 60.0  # an actor the cluster cannot place (no free CPU) is given up then
LINE_LIMIT = 1 << 28  # the longest message, as on a worker process's pipes
# A local cluster's object store: records travel as small byte batches, which Ray keeps in
# its workers' memory; the store's default (30% of RAM in /dev/shm) would be wasted.
LOCAL_OBJECT_STORE_BYTES = 200 << 20


class WorkerActor:
    """A worker as a Ray actor: `serve` on the actor's event loop, over the one connection
    the daemon opens to it."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._token = b""
        self._ended: asyncio.Future[None] | None = None

    async def listen(self, token: str) -> tuple[int, str, str, int]:
        """Listen for the daemon: (process id, Ray node id, host, port)."""
        self._token = token.encode()
        self._ended = asyncio.get_running_loop().create_future()
        host = ray.util.get_node_ip_address()
        self._server = await asyncio.start_server(self._connected, host, 0, limit=LINE_LIMIT)
        port = self._server.sockets[0].getsockname()[1]
        return os.getpid(), ray.get_runtime_context().get_node_id(), host, port

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        token = await reader.readline()
        if self._server is None or not hmac.compare_digest(token.rstrip(b"\n"), self._token):
            writer.close()  # not the daemon, or a second connection
            return
        self._server.close()
        self._server = None
        try:
            await serve(reader, writer.transport)  # type: ignore[arg-type]
        finally:
            writer.close()
            assert self._ended is not None
            self._ended.set_result(None)

    async def served(self) -> None:
        """Return once the channel has ended; the daemon's watch on the actor's life."""
        assert self._ended is not None
        await asyncio.shield(self._ended)


class RayWorker(Worker):
    """The daemon's side of one worker actor: its connection, and a watch on its life."""

    def __init__(self, actor: Any, pid: int, node_id: str, ships_files: bool,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.actor = actor
        self.pid, self.node = pid, node_id
        self.ships_files = ships_files  # on another node than the daemon's
        self.name = f"ray worker {pid}"
        self.reader, self.writer = reader, writer
        self._lost = False
        # A node that vanishes closes no connection: Ray's word on the actor ends it too.
        self._watching = asyncio.ensure_future(self._watch())
        super().__init__()

    async def _watch(self) -> None:
        try:
            await self.actor.served.remote()
        except RayActorError:  # killed, or its node lost
            self._lost = True
            self.reader.feed_eof()

    async def lines(self) -> AsyncIterator[bytes]:
        """The connection's lines, until it ends; a last line cut short by the actor's
        death is no message."""
        with contextlib.suppress(ConnectionError):
            while (raw := await self.reader.readline()).endswith(b"\n"):
                yield raw

    def died(self) -> bool:
        """Whether Ray said the actor died."""
        return self._lost

    def write(self, data: bytes) -> None:
        """To the actor's connection."""
        if not self.writer.is_closing():
            self.writer.write(data)

    def kill(self) -> None:
        """ray.kill: its connection closes."""
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self.actor, no_restart=True)

    async def close(self) -> None:
        """The end of its messages (it cancels its runs and closes the connection), then
        the actor is killed."""
        self.flush()
        with contextlib.suppress(OSError):
            if self.writer.can_write_eof() and not self.writer.is_closing():
                self.writer.write_eof()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.reading), CLOSE_SECONDS)
        self.kill()
        self.writer.close()
        await asyncio.gather(self.reading, self._watching)

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
        """A new worker actor, once it is up and connected."""
        await self._connect()
        actor = _actor().remote()
        token = secrets.token_hex(16)
        try:
            pid, node_id, host, port = await asyncio.wait_for(actor.listen.remote(token),
                                                              START_SECONDS)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=LINE_LIMIT), START_SECONDS)
        except Exception as exc:
            ray.kill(actor, no_restart=True)
            raise WorkerLost(f"no Ray worker started within {START_SECONDS:.0f} s (is a CPU "
                             f"free on the cluster?): {type(exc).__name__}: {exc}") from exc
        writer.write(token.encode() + b"\n")
        # A worker on another node cannot see the home (a shared filesystem aside, which
        # this does not try to detect): it sends the run's files with its records.
        return RayWorker(actor, pid, node_id, node_id != self._node, reader, writer)

    async def close(self) -> None:
        """Leave the cluster (a local one stops)."""
        if self._connected:
            await asyncio.to_thread(ray.shutdown)
            self._connected = False
