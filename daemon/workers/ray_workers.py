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
import re
import secrets
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..engine.tools.processes import sweep
from .messages import LINE_LIMIT, line_batches
from .pool import CLOSE_SECONDS, Worker, WorkerLost
from .worker import serve

log = logging.getLogger("ostinato.workers")

START_SECONDS = 60.0  # an actor the cluster cannot place (no free CPU) is given up then
JOIN_SECONDS = 60.0  # a run waits this long for the cluster, then is interrupted
_HOST_PORT = re.compile(r"(?P<host>[\w.-]+|\[[0-9a-fA-F:]+\]):(?P<port>\d+)")
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

    async def batches(self) -> AsyncIterator[list[bytes]]:
        """The connection's lines, until it ends (or breaks: the actor died)."""
        with contextlib.suppress(ConnectionError):
            async for batch in line_batches(self.reader):
                yield batch

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
        """On the actor's node: the tools of a killed actor outlive it there (the daemon's
        own node, as a worker process's; another, through a Ray task there)."""
        if not self.ships_files:
            return await super().sweep(run_ids)
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


def _own_sigterm() -> None:
    """SIGTERM to the daemon's own handler again (on the loop's thread, the main one). The
    Ray driver's native failure handler, which `ray.init` installs, prints a stack dump for
    every SIGTERM before handing it on: the daemon stops cleanly on SIGTERM, and keeps Ray's
    handler for the signals of a real crash."""
    handler = signal.getsignal(signal.SIGTERM)
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


class _NotMainThread(logging.Filter):
    """Drops Ray's warning that `ray.init` off the main thread sets no SIGTERM handler: the
    daemon joins on a thread on purpose (_Membership) and handles SIGTERM itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "current thread is not the main thread" not in record.getMessage()


logging.getLogger("ray._private.worker").addFilter(_NotMainThread())


class _Membership:
    """The daemon in a Ray cluster: one thread joins it (`ray.init`) and stays until it
    leaves (`ray.shutdown`); Ray's driver stops answering once the thread that started it
    has ended (measured: actor creation hangs). A daemon thread, so that a join that hangs
    never holds up the daemon's exit."""

    def __init__(self, init: Callable[[], str], where: str) -> None:
        loop = asyncio.get_running_loop()
        self.joined: asyncio.Future[str] = loop.create_future()  # the daemon's Ray node
        self.left: asyncio.Future[None] = loop.create_future()
        self._leave = threading.Event()

        def life() -> None:
            try:
                node = init()
            except Exception as exc:
                error = WorkerLost(f"could not start or join the Ray cluster {where}: "
                                   f"{type(exc).__name__}: {exc}")
                log.error("%s", error)
                loop.call_soon_threadsafe(self._settle, self.joined, error)
                return
            loop.call_soon_threadsafe(_own_sigterm)
            loop.call_soon_threadsafe(self._settle, self.joined, node)
            self._leave.wait()
            try:
                ray.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(self._settle, self.left, None)

        threading.Thread(target=life, name="ray", daemon=True).start()

    @staticmethod
    def _settle(future: asyncio.Future[Any], value: Any) -> None:
        if isinstance(value, BaseException):
            future.set_exception(value)
            future.exception()  # retrieved: each run waiting for it raises it
        else:
            future.set_result(value)

    @property
    def failed(self) -> bool:
        """Whether the join failed."""
        return self.joined.done() and self.joined.exception() is not None

    async def leave(self) -> None:
        """Leave the cluster (a local one stops), if in it."""
        if self.joined.done() and not self.failed:
            self._leave.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.left, JOIN_SECONDS)


class RayCluster:
    """Worker actors on a Ray cluster: the one at `address`, or a local one the daemon starts
    with `cpus` CPUs (each worker takes one).

    The cluster is joined once at a time (_Membership), and each run waits for it at most
    JOIN_SECONDS; a join that failed, or a cluster that stopped answering (no actor starts),
    is tried afresh by the next run."""

    starts_ahead = False  # an actor holds a CPU of a cluster others may share

    def __init__(self, address: str | None, cpus: int = 0) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus = cpus or os.cpu_count() or 1
        self.where = f"at {self.address}" if self.address else "(a local one)"
        self._membership: _Membership | None = None

    def warm(self) -> None:
        """Start joining the cluster now (the daemon starts): the first run need not wait
        the seconds a local cluster takes to start."""
        if self._membership is None or self._membership.failed:
            self._membership = _Membership(self._init, self.where)

    async def _connect(self) -> str:
        """The daemon's Ray node, once it has joined (or started) the cluster."""
        self.warm()
        assert self._membership is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._membership.joined),
                                          JOIN_SECONDS)
        except TimeoutError:
            raise WorkerLost(f"the Ray cluster {self.where} did not answer within "
                             f"{JOIN_SECONDS:.0f} s (still trying)") from None

    def _init(self) -> str:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.address is not None and (found := _HOST_PORT.fullmatch(self.address)):
            # Nothing listening there: say so now (ray.init would retry for minutes).
            socket.create_connection((found["host"].strip("[]"), int(found["port"])),
                                     timeout=5).close()
        # No address: a cluster of the daemon's own ("local"), never one that happens to run
        # on the machine, which ray.init(address=None) would join.
        local: dict[str, Any] = {} if self.address else {
            "address": "local", "num_cpus": self.cpus, "include_dashboard": False,
            "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
        ray.init(**({"address": self.address} if self.address else local),
                 log_to_driver=False, configure_logging=False)
        log.info("Ray cluster %s: %s CPUs", self.where, ray.cluster_resources().get("CPU"))
        return ray.get_runtime_context().get_node_id()

    async def capacity(self) -> int:
        """A worker per CPU of the cluster."""
        await self._connect()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    async def start(self) -> RayWorker:
        """A new worker actor, once it is up and connected."""
        node = await self._connect()
        actor = _actor().remote()
        token = secrets.token_hex(16)
        try:
            pid, node_id, host, port = await asyncio.wait_for(actor.listen.remote(token),
                                                              START_SECONDS)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=LINE_LIMIT), START_SECONDS)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
            if not isinstance(exc, Exception):  # cancelled
                raise
            await self._leave()  # the cluster may be gone: the next run starts afresh
            raise WorkerLost(f"no Ray worker started within {START_SECONDS:.0f} s (no CPU free "
                             f"on the cluster, or the cluster is down; the next run joins it "
                             f"afresh): {type(exc).__name__}: {exc}") from exc
        writer.write(token.encode() + b"\n")
        # A worker on another node cannot see the home (a shared filesystem aside, which
        # this does not try to detect): it sends the run's files with its records.
        elsewhere = node_id != node
        log.info("Ray worker %d on node %s%s", pid, node_id[:12],
                 ": another node than the daemon's, so it sends the run files with its "
                 "records" if elsewhere else ", the daemon's")
        return RayWorker(actor, pid, node_id, elsewhere, reader, writer)

    async def _leave(self) -> None:
        membership, self._membership = self._membership, None
        if membership is not None:
            await membership.leave()

    async def close(self) -> None:
        """Leave the cluster (a local one stops); a join still under way is left to die
        with the process."""
        await self._leave()
