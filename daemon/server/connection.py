"""One client connection: framing, lifecycle state, dispatch, cancellation and writes.

The reading side is an asyncio protocol (not a StreamReader): every complete frame of a
chunk is handled inside `data_received`, synchronous handlers answer inline, and all the
replies a chunk produces go out in one write. Async handlers run as tasks so that
`$/cancelRequest` can cancel them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from ostinato.protocol.codec import FrameDecoder, FrameError, Framing, framer
from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.messages import (
    InvalidMessage,
    Request,
    RequestId,
    Response,
    dumps_id,
    notification_message,
    parse_message,
)

from ..disk import DamagedFile, disk_full
from ..host import NO_PROGRESS, Progress
from ..services.base import RequestContext
from .dispatch import Deferred, RawJson, Route
from .mcp.era import VERSION_KEY, modern_meta, stateless_refusal

if TYPE_CHECKING:
    from .app import Daemon
    from .mcp.updates import ResourceWatch

log = logging.getLogger("ostinato.connection")

_ids = itertools.count(1)
_NO_ID = object()
_EMPTY: dict[str, Any] = {}
_CANCELLED_MESSAGE = "Request cancelled"
_BEFORE_INITIALIZE = frozenset({"exit", "ping", "notifications/cancelled"})
_Outcome = bytes | None | asyncio.Task


def _error_frame(msg_id: RequestId, code: int, message: str, data: Any = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return b'{"jsonrpc":"2.0","id":%s,"error":%s}' % (
        dumps_id(msg_id), orjson.dumps(error, default=str))


def storage_full(exc: BaseException) -> RpcError:
    """-32006: a request that needed to write, refused because the disk is full."""
    return RpcError(ErrorCode.STORAGE_FULL, "storage full: the disk holding the daemon's home "
                    "has no space left; free some and try again", {"error": str(exc)})


def _rpc_error_frame(msg_id: RequestId, error: RpcError) -> bytes:
    return _error_frame(msg_id, error.code, error.message, error.data)


class Connection(asyncio.Protocol):
    """A client of the daemon; on sockets it is also the transport's protocol."""

    def __init__(self, daemon: Daemon, kind: str, peer: str = "") -> None:
        self.daemon = daemon
        self.id = next(_ids)
        self.kind = kind
        self.peer = peer
        # Whom failed initialize attempts are counted against: the peer's IP over TCP, the
        # transport otherwise (a unix socket's clients are all this machine's, stdio's one).
        self.address = kind
        # Over stdio (our own, or one a bridge handed over), the end of input is how a
        # scripted session says it is done: finish what it asked. On a socket, or from an
        # MCP client, it means the client is gone: cancel its work.
        self.finish_on_eof = kind in ("stdio", "bridged")
        self.decoder = FrameDecoder(daemon.options.max_frame_bytes)
        self.subscriptions: set[str] = set()
        self.watch: ResourceWatch | None = None  # an MCP client's resource subscriptions
        self.pending: dict[RequestId, asyncio.Task] = {}
        self.reader: asyncio.BaseTransport | None = None
        self._initialized = False
        self.mcp_version: str | None = None  # an MCP client's negotiated revision
        self._shutdown_requested = False
        self._ready = False  # initialized and not shut down: the hot path checks only this
        self._ending = False  # exit or a refused token: serve nothing more
        self._closed = False
        self._routes = daemon.dispatcher.finder
        assert daemon.services is not None, "transports open once the services have started"
        self._services = daemon.services  # what every request's handler gets
        self._strict = daemon.options.strict_results
        # The context of a request without params that a sync handler answers inline: one per
        # connection, its request id set per request (a context costs as much as a quarter of
        # what the daemon adds to a request). A sync handler must not keep its context
        # beyond its call; strict mode (the test suite's) checks that.
        self._new_inline_ctx()
        self._background: set[asyncio.Task] = set()
        self._writer: asyncio.WriteTransport | None = None
        self._out: list[bytes] = []
        self._encode: Callable[[bytes], bytes] | None = None  # set once the framing is known
        self._receiving = False
        self._flush_scheduled = False
        self._eof = False
        self._held = 0  # bytes of an unfinished frame counted in daemon.buffered_input
        self._progress_at = 0.0  # loop time of the last bytes of an unfinished frame
        self._stall_timer: asyncio.TimerHandle | None = None
        # Resolved when the writing transport is gone, i.e. every reply has left the process.
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- session state, as services see it ------------------------------------------------

    @property
    def initialized(self) -> bool:
        """Whether `initialize` succeeded."""
        return self._initialized

    @property
    def shutdown_requested(self) -> bool:
        """Whether `shutdown` was received."""
        return self._shutdown_requested

    @property
    def exit_code(self) -> int:
        """A stdio process's exit code when this session ends: 0 after `shutdown` (LSP) or
        for an MCP session, which ends by closing stdin; else 1."""
        return 0 if self._shutdown_requested or self.mcp_version is not None else 1

    def open_session(self, client_name: str | None, mcp_version: str | None = None) -> None:
        """`initialize` succeeded: serve every method from now on (`mcp_version`: the MCP
        revision negotiated with an MCP client)."""
        self._initialized = True
        self._ready = not self._shutdown_requested
        self.mcp_version = mcp_version
        log.info("connection %d initialized%s%s", self.id,
                 f" by {client_name}" if client_name else "",
                 f" (MCP {mcp_version})" if mcp_version else "")

    def request_shutdown(self) -> None:
        """`shutdown`: only `exit` is served from now on."""
        self._shutdown_requested = True
        self._ready = False

    def end(self) -> None:
        """Close once the replies already produced are written; serve nothing more."""
        self._ending = True
        asyncio.get_running_loop().call_soon(self.close)

    # -- transport side -------------------------------------------------------------------

    def attach(self, writer: asyncio.WriteTransport,
               reader: asyncio.BaseTransport | None = None) -> None:
        """Bind the transports (one object for sockets; for stdio the reader comes later)."""
        self._writer = writer
        self.reader = reader
        self.daemon.connections.add(self)
        log.info("connection %d opened (%s%s)", self.id, self.kind,
                 f" from {self.peer}" if self.peer else "")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """A socket client connected."""
        peer = transport.get_extra_info("peername")
        if peer and not self.peer:
            self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if isinstance(peer, tuple):
            self.address = str(peer[0])
        self.attach(transport, transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        """Decode and handle every complete frame in `data`; reply in one write."""
        if self._ending:
            return
        self._receiving = True
        try:
            frames = self.decoder.feed(data)
            if (self._held or self.decoder.buffered) and self._hold_input():
                return
            if not frames:
                return
            encode = self._encode
            if encode is None:
                encode = self._encode = framer(self.decoder.framing)  # type: ignore[arg-type]
            out = self._out
            dispatch = self._dispatch
            for frame in frames:  # the hot loop: one iteration per message
                if self._ending:
                    break
                try:
                    # What a frame gets, inline: this loop runs once per message.
                    if type(frame) is FrameError:
                        outcome = _error_frame(None, frame.code, frame.message, frame.data)
                    else:
                        try:
                            obj = orjson.loads(frame)
                        except orjson.JSONDecodeError as exc:
                            obj = exc
                        outcome = (dispatch(obj) if type(obj) is dict
                                   else self._not_one_request(obj))
                except Exception as exc:  # a bug of ours must not cost the connection
                    outcome = self._failure(None, "a frame", exc)
                if type(outcome) is bytes:
                    out.append(encode(outcome))
        finally:
            self._receiving = False
            self._flush()

    def eof_received(self) -> bool:
        """The client closed its sending side."""
        self._eof = True
        if self.decoder.buffered:
            log.info("connection %d: input ended inside a frame (%d bytes dropped)",
                     self.id, self.decoder.buffered)
        # MCP's stdio ends a session by closing the server's input: what it asked is
        # abandoned (a waiting `run` call cancels its run), as when a socket client leaves.
        if self.finish_on_eof and self.mcp_version is None:
            self._idle_check()
        else:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        """The writing transport is gone: nothing more can be written, so cancel everything."""
        self.close()
        if not self.finished.done():
            self.finished.set_result(None)

    def pause_writing(self) -> None:
        """The client reads slower than we answer: stop reading its requests."""
        if self.reader is not None and hasattr(self.reader, "pause_reading"):
            self.reader.pause_reading()

    def resume_writing(self) -> None:
        """The client caught up."""
        if self.reader is not None and hasattr(self.reader, "resume_reading"):
            self.reader.resume_reading()

    # -- unfinished frames: a daemon-wide budget, and a time limit on sockets ---------------

    def _hold_input(self) -> bool:
        """Count this connection's unfinished frame in the daemon-wide budget; True if it
        takes the total past the budget, and then the connection ends."""
        held, daemon = self.decoder.buffered, self.daemon
        grew = held > self._held
        daemon.buffered_input += held - self._held
        self._held = held
        if grew and daemon.buffered_input > daemon.options.max_buffered_bytes:
            budget = daemon.options.max_buffered_bytes
            log.warning("connection %d closed: its unfinished frame (%d bytes) took the "
                        "buffered input of all connections past the %d-byte budget",
                        self.id, held, budget)
            self._release_input()
            self._send(_error_frame(None, ErrorCode.OVERLOADED, "Server busy: buffered input "
                                    "budget exceeded", {"budget": budget}))
            self.end()
            return True
        if held and self.kind != "stdio":  # stdio's one client is the daemon's owner
            loop = asyncio.get_running_loop()
            self._progress_at = loop.time()
            if self._stall_timer is None:
                self._stall_timer = loop.call_later(daemon.options.frame_timeout,
                                                    self._frame_stalled)
        return False

    def _frame_stalled(self) -> None:
        """The timer of an unfinished frame: close the connection if it made no progress."""
        self._stall_timer = None
        if self._closed or not self._held:
            return
        timeout = self.daemon.options.frame_timeout
        idle = asyncio.get_running_loop().time() - self._progress_at
        if idle < timeout:  # bytes came since the timer was set: wait the rest
            self._stall_timer = asyncio.get_running_loop().call_later(
                timeout - idle, self._frame_stalled)
            return
        log.warning("connection %d closed: no bytes of its unfinished frame (%d buffered) "
                    "for %g s", self.id, self._held, timeout)
        self._send(_error_frame(None, ErrorCode.INVALID_REQUEST, f"Invalid Request: frame "
                                f"not finished, no bytes for {timeout:g} s; closing",
                                {"frame_timeout": timeout}))
        self.end()

    def _release_input(self) -> None:
        """Drop the unfinished frame and its share of the budget."""
        self.daemon.buffered_input -= self._held
        self._held = 0
        if self.decoder.buffered:
            self.decoder = FrameDecoder(self.daemon.options.max_frame_bytes,
                                        self.decoder.framing)
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    # -- messages -------------------------------------------------------------------------

    def _not_one_request(self, obj: Any) -> _Outcome:
        """What a frame that is not one JSON object gets: a batch's replies, a parse error,
        or (any other JSON value) what _dispatch says of it."""
        if isinstance(obj, orjson.JSONDecodeError):
            return _error_frame(None, ErrorCode.PARSE_ERROR, f"Parse error: {obj}")
        if type(obj) is list:
            return self._handle_batch(obj)
        return self._dispatch(obj)

    def _handle_batch(self, items: list[Any]) -> bytes | None:
        if not items:
            return _error_frame(None, ErrorCode.INVALID_REQUEST, "Invalid Request: empty batch")
        outcomes: list[_Outcome] = []
        for item in items:
            outcomes.append(self._dispatch(item, in_batch=True))
            if self._ending:  # exit, or a refused token: nothing after it is served
                break
        if any(isinstance(o, asyncio.Task) for o in outcomes):
            self._track(asyncio.ensure_future(self._gather_batch(outcomes)))
            return None
        frames = [o for o in outcomes if o is not None]
        return b"[" + b",".join(frames) + b"]" if frames else None  # type: ignore[arg-type]

    async def _gather_batch(self, outcomes: list[_Outcome]) -> bytes | None:
        tasks = [o for o in outcomes if isinstance(o, asyncio.Task)]
        await asyncio.wait(tasks)  # raises only if this batch itself is cancelled
        frames = []
        for outcome in outcomes:
            if isinstance(outcome, asyncio.Task):
                outcome = self._task_reply(outcome)
            if outcome is not None:
                frames.append(outcome)
        return b"[" + b",".join(frames) + b"]" if frames else None

    def _dispatch(self, obj: Any, in_batch: bool = False) -> _Outcome:
        """Handle one message: a reply frame, None, or the task that will produce the reply."""
        # The common, well-formed case is checked inline (this runs once per message);
        # anything unusual goes through parse_message, which knows every rule and error.
        if type(obj) is dict and obj.get("jsonrpc") == "2.0" and type(
                method := obj.get("method")) is str and type(
                raw := obj.get("params", _EMPTY)) is dict and ((
                msg_id := obj.get("id", _NO_ID)) is _NO_ID or type(msg_id) is int or type(
                msg_id) is str):
            is_request = msg_id is not _NO_ID
        else:
            parsed = self._parse_unusual(obj)
            if type(parsed) is not tuple:
                return parsed  # type: ignore[return-value]
            method, msg_id, raw = parsed
            is_request = msg_id is not _NO_ID
        if not is_request:
            msg_id = None
        if not self._ready:
            refusal = self._lifecycle_refusal(method, is_request, raw)
            if refusal is not None:
                return _rpc_error_frame(msg_id, refusal) if is_request else None
        route = self._routes(method)
        if route is None:
            if not is_request:
                log.debug("connection %d: notification %s ignored", self.id, method)
                return None
            return _error_frame(msg_id, ErrorCode.METHOD_NOT_FOUND,
                                f"Method not found: {method}")
        if self.pending and is_request and msg_id in self.pending:
            return _error_frame(msg_id, ErrorCode.INVALID_REQUEST,
                                f"Invalid Request: id {orjson.dumps(msg_id).decode()} is "
                                "already in flight")
        if not raw and route.empty_params is not None:  # no params: one shared instance
            params = route.empty_params
            if route.is_async:
                ctx = RequestContext(self._services, self, msg_id, NO_PROGRESS)
            else:
                ctx = self._inline_ctx
                ctx.request_id = msg_id
            token = None
        else:
            try:
                params = route.parse_params(raw)
            except (ValidationError, TypeError) as exc:
                if not is_request:  # never answered, not even with an error
                    log.info("connection %d: bad params for %s dropped", self.id, method)
                    return None
                if type(exc) is TypeError:
                    return _error_frame(msg_id, ErrorCode.INVALID_PARAMS, "Invalid params: "
                                        "params must be an object (by name), [] or [null]")
                # Without the offending input: it may be huge, or a secret in the wrong field.
                return _error_frame(msg_id, ErrorCode.INVALID_PARAMS, "Invalid params",
                                    exc.errors(include_url=False, include_input=False))
            token = None if route.passes_raw else getattr(params, "workDoneToken", None)
            ctx = RequestContext(self._services, self, msg_id,
                                 NO_PROGRESS if token is None else Progress(self, token))
        if route.is_async:
            return self._start_task(route, route.handler(params, ctx), ctx, is_request,
                                    in_batch)
        shared = ctx is self._inline_ctx
        # Strict mode counts the shared context's references around the call.
        refs = sys.getrefcount(ctx) if shared and self._strict else 0
        try:
            result = route.handler(params, ctx)
            if shared and (type(result) is Deferred or (refs and sys.getrefcount(ctx) > refs)):
                # A Deferred's work keeps the context, as may (strict mode catches it) a handler
                # that must not: that one is theirs, the connection takes a new one.
                self._new_inline_ctx()
                if type(result) is not Deferred:
                    raise RuntimeError(f"the handler of {method} kept its request context; a "
                                       "sync handler answered inline must not (see Connection)")
            if not is_request:
                if type(result) is Deferred:
                    result.awaitable.close()
                return None
            if type(result) is dict and not self._strict:  # the hot path, see _result_frame
                return orjson.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result})
            if type(result) is Deferred:
                return self._start_task(route, result.awaitable, ctx, is_request, in_batch)
            return self._result_frame(msg_id, route, result)
        except Exception as exc:  # every failure becomes an error reply
            if shared:  # its traceback (a log record may keep it) holds the context
                self._new_inline_ctx()
            reply = self._failure(msg_id, method, exc)
            return reply if is_request else None
        finally:
            if token is not None:
                ctx.progress.end()

    def _new_inline_ctx(self) -> None:
        """Give the shared context of inline answers up to whoever keeps it; use a new one."""
        self._inline_ctx = RequestContext(self._services, self, None, NO_PROGRESS)

    def _parse_unusual(self, obj: Any) -> tuple[str, Any, Any] | bytes | None:
        """`(method, id or _NO_ID, params)` of a message off the hot path, or what it gets
        instead of being served: an error frame, or None (a response, a dropped message)."""
        try:
            message = parse_message(obj)
        except InvalidMessage as exc:
            if exc.notification is None:
                return _rpc_error_frame(exc.id, exc)
            # A notification whose params are neither object nor array: never answered, and
            # `exit` still ends the connection (a goodbye is never refused).
            if exc.notification == "exit":
                return exc.notification, _NO_ID, None
            log.info("connection %d: notification %s with bad params dropped", self.id,
                     exc.notification)
            return None
        if type(message) is Response:
            log.debug("connection %d: unsolicited response %r ignored", self.id, message.id)
            return None
        if type(message) is Request:
            return message.method, message.id, message.params
        return message.method, _NO_ID, message.params  # type: ignore[union-attr]

    def _start_task(self, route: Route, work: Coroutine[Any, Any, Any], ctx: RequestContext,
                    is_request: bool, in_batch: bool) -> asyncio.Task | None:
        task = asyncio.ensure_future(self._run_async(route, work, ctx, is_request))
        task.request_id = ctx.request_id  # type: ignore[attr-defined]
        if not is_request:
            self._track(task)
            return None
        self.pending[ctx.request_id] = task
        task.add_done_callback(self._batch_item_done if in_batch else self._request_done)
        return task

    async def _run_async(self, route: Route, work: Coroutine[Any, Any, Any],
                         ctx: RequestContext, is_request: bool) -> bytes | None:
        try:
            result = await work
            return self._result_frame(ctx.request_id, route, result) if is_request else None
        except Exception as exc:
            reply = self._failure(ctx.request_id, route.spec.name, exc)
            return reply if is_request else None
        finally:
            ctx.progress.end()

    def _task_reply(self, task: asyncio.Task) -> bytes | None:
        """The reply a finished request task owes its client."""
        if task.cancelled():  # also when cancelled before it ever ran
            if self.mcp_version is not None:  # MCP: a cancelled request is not answered
                return None
            return _error_frame(task.request_id,  # type: ignore[attr-defined]
                                ErrorCode.REQUEST_CANCELLED, _CANCELLED_MESSAGE)
        return task.result()

    def _request_done(self, task: asyncio.Task) -> None:
        self.pending.pop(task.request_id, None)  # type: ignore[attr-defined]
        if not self._closed:
            reply = self._task_reply(task)
            if reply is not None:
                self._send(reply)
        self._idle_check()

    def _batch_item_done(self, task: asyncio.Task) -> None:
        self.pending.pop(task.request_id, None)  # type: ignore[attr-defined]

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not self._closed and not task.cancelled():
            error = task.exception()
            if error is not None:
                self._failure(None, "a background task", error)  # logged only
            elif task.result() is not None:
                self._send(task.result())
        self._idle_check()

    def _result_frame(self, msg_id: RequestId, route: Route, result: Any) -> bytes:
        model = route.result_model
        if type(result) is RawJson:
            if self._strict and model is not None:
                model.model_validate_json(result.json)
            return b'{"jsonrpc":"2.0","id":%s,"result":%s}' % (dumps_id(msg_id), result.json)
        if type(result) is dict:
            # Handlers on hot paths return plain dicts; strict mode (the test suite's) holds
            # them to the method's result model.
            if self._strict and model is not None:
                model.model_validate(result)
            return orjson.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result})
        if model is not None:
            if type(result) is not model:
                result = model.model_validate(result)
            body = model.__pydantic_serializer__.to_json(result)
        else:
            body = orjson.dumps(result)
        return b'{"jsonrpc":"2.0","id":%s,"result":%s}' % (dumps_id(msg_id), body)

    def _failure(self, msg_id: RequestId, method: str, exc: BaseException) -> bytes:
        """The error reply for `exc`; anything unexpected is logged under an error id."""
        if isinstance(exc, RpcError):
            return _rpc_error_frame(msg_id, exc)
        if isinstance(exc, DamagedFile):  # a run's data, not a bug: the run is damaged
            return _rpc_error_frame(msg_id, RpcError(ErrorCode.CONFLICT,
                                                     f"a file of the run is damaged: {exc}"))
        if disk_full(exc):  # the client's to know, and not a bug: no error id
            log.error("%s refused on connection %d: the disk is full (%s)", method, self.id, exc)
            self._services.db.note_failure(exc)  # the WAL is truncated once writes succeed
            return _rpc_error_frame(msg_id, storage_full(exc))
        if isinstance(exc, ValidationError):  # a handler built a result that breaks its model
            exc = RuntimeError(f"invalid result: {exc}")
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s in %s (connection %d)", error_id, method, self.id,
                  exc_info=exc)
        return _error_frame(msg_id, ErrorCode.INTERNAL_ERROR,
                            f"Internal error (error id {error_id}; see the daemon log)",
                            {"error_id": error_id})

    def _lifecycle_refusal(self, method: str, is_request: bool, raw: Any) -> RpcError | None:
        if not self._initialized:
            # MCP: "the client SHOULD NOT send requests other than pings" before it; a
            # stateless client's cancellations carry no envelope (and cancel only its own).
            if (method == "initialize" and is_request) or method in _BEFORE_INITIALIZE:
                return None
            meta = modern_meta(raw)
            if meta is not None:  # MCP's stateless revision: no initialize, ever
                refusal = stateless_refusal(meta, self.daemon.token_for(self.kind) is not None)
                if refusal is None:  # an MCP session: it ends with its input, code 0
                    self.mcp_version = meta[VERSION_KEY]
                return refusal
            return RpcError(ErrorCode.SERVER_NOT_INITIALIZED,
                            f"Server not initialized: send initialize before {method}")
        if self._shutdown_requested and method != "exit":
            return RpcError(ErrorCode.INVALID_REQUEST,
                            "Invalid Request: shutdown was requested; only exit is accepted")
        return None

    # -- requests in flight ---------------------------------------------------------------

    def cancel(self, request_id: RequestId) -> bool:
        """Cancel the request `request_id` if it is still running."""
        task = self.pending.get(request_id)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    def _track(self, task: asyncio.Task) -> None:
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _idle_check(self) -> None:
        if self._eof and not self.pending and not self._background:
            self.close()

    # -- writing --------------------------------------------------------------------------

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification to this client."""
        self._send(orjson.dumps(notification_message(method, params), default=str))

    def _send(self, payload: bytes) -> None:
        if self._encode is None:  # nothing received yet, e.g. an error about the first bytes
            self._encode = framer(self.decoder.framing or Framing.CONTENT_LENGTH)
        self._out.append(self._encode(payload))
        if not self._receiving and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        writer = self._writer
        if writer is not None and not writer.is_closing():
            writer.write(data)

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel everything in flight and close the transports; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._ending = True
        self._release_input()
        self._flush()
        for task in [*self.pending.values(), *self._background]:
            task.cancel()
        for transport in {self._writer, self.reader}:
            if transport is not None and not transport.is_closing():
                transport.close()
        self.daemon.connections.discard(self)
        self.daemon.connection_closed(self)
        log.info("connection %d closed", self.id)
