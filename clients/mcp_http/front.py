"""The MCP endpoint's rules (Streamable HTTP, 2025-11-25 `basic/transports`): Origin, Host
and token checks, sessions minted at `initialize`, POST of one message (202 for notifications
and responses; a request is answered with one JSON body, or with an event stream when
progress comes before its response), GET for the session's stream, DELETE to end it. A
request of the stateless revision (2026-07-28) goes to stateless.py."""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from ostinato.protocol.bounds import MAX_INTEGER
from ostinato.protocol.mcp import MCP_VERSIONS

from . import stateless
from .replies import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    JSON,
    KEEPALIVE_S,
    PARSE_ERROR,
    SESSION_HEADER,
    SSE,
    VERSION_HEADER,
    accepts,
    refuse,
    relay,
)
from .server import ClientGone, Exchange, error_body
from .session import Session

log = logging.getLogger("ostinato.mcp_http")

ENDPOINT = "/mcp"
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_SESSIONS = 256  # each holds a connection (a file descriptor) of the daemon; so does
# each stateless request in flight, and as many of those are allowed
CORS_PREFLIGHT = [
    ("access-control-allow-methods", "GET, POST, DELETE"),
    ("access-control-allow-headers",
     "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, "
     "Mcp-Method, Mcp-Name"),
    ("access-control-max-age", "600")]


@dataclass
class Rules:
    """What the endpoint lets in."""

    home: Path
    token: str | None = None  # required as `Authorization: Bearer <token>` when set
    origins: frozenset[str] = field(default_factory=frozenset)  # beyond loopback origins
    idle_timeout: float = 3600.0  # seconds before an unused session is closed
    loopback: bool = True  # bound to loopback: the Host header must name this machine

    @property
    def origin_hosts(self) -> frozenset[str]:
        """The host names of the allowed origins."""
        return frozenset(urlsplit(origin).hostname or "" for origin in self.origins)


def loopback_origin(origin: str) -> bool:
    """Whether `origin` is a page served from this machine (http(s)://localhost:*, …)."""
    try:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.hostname in LOCAL_NAMES
    except ValueError:  # a malformed port or bracket
        return False


def valid_id(value: Any) -> bool:
    """Whether `value` is an id the daemon echoes: a string, or an integer within bounds
    (not a bool, a float or null, which MCP forbids)."""
    return type(value) is str or (type(value) is int and -MAX_INTEGER <= value <= MAX_INTEGER)


class Front:
    """The MCP endpoint: its sessions, and the answer to each exchange."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.sessions: dict[str, Session] = {}
        self.stateless = 0  # stateless requests in flight (each holds a daemon connection)
        self.opening = 0  # sessions whose initialize is under way

    async def handle(self, ex: Exchange) -> None:
        """Answer one HTTP request."""
        origin = ex.header("origin")
        if origin is not None and not (loopback_origin(origin)
                                       or origin.rstrip("/") in self.rules.origins):
            return await refuse(ex, 403, f"Forbidden: origin {origin} is not allowed")
        if self.rules.loopback and not self._local_host(ex.header("host") or ""):
            # DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own Host
            # (and no Origin on a same-origin GET).
            return await refuse(ex, 421, "Misdirected Request: this server answers to "
                                         "localhost only")
        if origin is not None:  # a page that may call us: let the browser read the answers
            ex.extra_headers = [("access-control-allow-origin", origin), ("vary", "Origin"),
                                ("access-control-expose-headers", "Mcp-Session-Id")]
            if ex.method == "OPTIONS":
                return await ex.respond(204, headers=CORS_PREFLIGHT)
        if self.rules.token is not None and not self._authorized(ex):
            return await refuse(ex, 401, "Unauthorized: a bearer token is required",
                                [("www-authenticate", 'Bearer realm="ostinato"')])
        if ex.path != ENDPOINT:
            return await refuse(ex, 404, f"Not Found: the MCP endpoint is {ENDPOINT}")
        if ex.method == "POST":
            return await self._post(ex)
        if ex.method in ("GET", "DELETE"):
            session = await self._session(ex)
            if session is not None:
                await (self._listen(ex, session) if ex.method == "GET"
                       else self._delete(ex, session))
            return None
        return await refuse(ex, 405, f"Method Not Allowed: {ex.method}",
                            [("allow", "GET, POST, DELETE")])

    def _local_host(self, host: str) -> bool:
        """Whether a Host header names this machine (or the host of an allowed origin)."""
        try:
            name = urlsplit(f"//{host}").hostname or ""
        except ValueError:
            return False
        return name in LOCAL_NAMES or name in self.rules.origin_hosts

    def _authorized(self, ex: Exchange) -> bool:
        scheme, _, given = (ex.header("authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.rules.token.encode())  # type: ignore[union-attr]

    async def _session(self, ex: Exchange) -> Session | None:
        """The exchange's session, after its header checks; None once refused."""
        session_id = ex.header(SESSION_HEADER)
        if session_id is None:
            await refuse(ex, 400, "Bad Request: no Mcp-Session-Id header (only `initialize` "
                                  "may come without one)")
            return None
        session = self.sessions.get(session_id)
        if session is None or session.closed:
            self.sessions.pop(session_id, None)
            await refuse(ex, 404, "Not Found: no such session (it ended); initialize again")
            return None
        version = ex.header(VERSION_HEADER)
        if version is not None and version != session.version:
            await refuse(ex, 400, f"Bad Request: MCP-Protocol-Version {version} is not the "
                                  f"session's ({session.version})")
            return None
        session.touch()
        return session

    async def _post(self, ex: Exchange) -> None:
        accept = ex.header("accept") or ""
        if not (accepts(accept, JSON) and accepts(accept, SSE)):
            return await refuse(ex, 406, f"Not Acceptable: Accept must list {JSON} and {SSE}")
        if (ex.header("content-type") or "").split(";")[0].strip().lower() != JSON:
            return await refuse(ex, 415, f"Unsupported Media Type: the body must be {JSON}")
        try:
            message = orjson.loads(ex.body)
        except orjson.JSONDecodeError as exc:
            return await refuse(ex, 400, f"Parse error: {exc}", code=PARSE_ERROR)
        if type(message) is not dict or message.get("jsonrpc") != "2.0" or not (
                "method" in message or "id" in message):
            return await refuse(ex, 400, "Invalid Request: the body must be one JSON-RPC 2.0 "
                                         "message (batches are not supported)")
        is_request = "method" in message and "id" in message
        if is_request and not valid_id(message["id"]):  # its answer could not find it
            return await refuse(ex, 400, "Invalid Request: an id is a string or an integer "
                                         f"of at most {MAX_INTEGER} in size")
        if is_request and message["method"] == "initialize" and (
                ex.header(SESSION_HEADER) is None):
            return await self._initialize(ex, message)
        if ex.header(SESSION_HEADER) is None and stateless.is_stateless(ex, message):
            return await self._stateless(ex, message)
        session = await self._session(ex)
        if session is None:
            return None
        session.busy += 1
        try:
            await self._deliver(ex, session, message, is_request)
        finally:
            session.busy -= 1
            session.touch()

    async def _stateless(self, ex: Exchange, message: dict[str, Any]) -> None:
        """A request of the stateless revision, on a daemon connection of its own."""
        if self.stateless >= MAX_SESSIONS:
            return await refuse(ex, 503, f"Too many requests in flight ({MAX_SESSIONS})",
                                code=INTERNAL_ERROR)
        self.stateless += 1
        try:
            await stateless.serve(ex, message, self.rules.home)
        finally:
            self.stateless -= 1

    async def _deliver(self, ex: Exchange, session: Session, message: dict[str, Any],
                       is_request: bool) -> None:
        """Pass a message of the session on, and answer its exchange."""
        if not is_request:  # a notification or a response: accepted, nothing comes back
            await self._send(session, message)
            if message.get("method") == "notifications/cancelled":
                params = message.get("params")
                if type(params) is dict:
                    session.cancelled(params.get("requestId"))
            return await ex.respond(202)
        pending = session.expect(message)
        if pending is None:
            return await ex.respond(409, error_body(
                message["id"], INVALID_REQUEST,
                "Invalid Request: a request with this id is in flight"), JSON)
        try:
            await self._send(session, message)
            await relay(ex, pending)
        except ClientGone:
            # Its answer can no longer reach the client (streams are not resumable here), so
            # the request is cancelled as when a stdio client goes away: a waiting run stops.
            await session.abandon(pending)
            raise
        finally:
            session.forget(pending)

    async def _send(self, session: Session, message: dict[str, Any]) -> None:
        """Pass a message to the daemon; a daemon connection that failed ends the session."""
        try:
            await session.send(message)
        except ConnectionError:
            session.close("the daemon connection failed")
            raise ClientGone from None  # nothing more can be said on this exchange

    async def _initialize(self, ex: Exchange, message: dict[str, Any]) -> None:
        """Open a daemon connection for a new session, and mint its id if the daemon agrees."""
        if len(self.sessions) + self.opening >= MAX_SESSIONS:
            return await ex.respond(503, error_body(
                message["id"], INTERNAL_ERROR, f"Too many sessions ({MAX_SESSIONS}): end "
                "some (DELETE) or wait for idle ones to close"), JSON)
        self.opening += 1  # counted until it is a session: initializes at once stay under
        try:
            await self._open_session(ex, message)
        finally:
            self.opening -= 1

    async def _open_session(self, ex: Exchange, message: dict[str, Any]) -> None:
        try:
            session = await Session.open(self.rules.home)
        except Exception as exc:
            log.warning("cannot reach the daemon of %s: %s", self.rules.home, exc)
            return await ex.respond(503, error_body(
                message["id"], INTERNAL_ERROR, f"The daemon of {self.rules.home} cannot be "
                f"reached: {exc}"), JSON)
        pending = session.expect(message)
        assert pending is not None
        try:
            await session.send(message)
            item = await ex.wait(pending.queue.get())
        except BaseException:
            session.close("the client left during initialize")
            raise
        reply = item[0] if item is not None else error_body(
            message["id"], INTERNAL_ERROR, "initialize was cancelled")
        result = orjson.loads(reply).get("result")
        if type(result) is not dict:  # refused: no session
            session.close("initialize failed")
            return await ex.respond(200, reply, JSON)
        if result.get("protocolVersion") not in MCP_VERSIONS:  # not an MCP client
            session.close("not an MCP initialize")
            return await refuse(ex, 400, "Bad Request: initialize must ask for an MCP "
                                         "protocolVersion (" + ", ".join(MCP_VERSIONS) + ")")
        session.version = result["protocolVersion"]
        self.sessions[session.id] = session
        log.info("session %s… opened (MCP %s)", session.id[:8], session.version)
        await ex.respond(200, reply, JSON, [("mcp-session-id", session.id)])

    async def _listen(self, ex: Exchange, session: Session) -> None:
        """The session's own stream: notifications not tied to a request."""
        if not accepts(ex.header("accept") or "", SSE):
            return await refuse(ex, 406, f"Not Acceptable: Accept must list {SSE}")
        if session.listener is not None:
            return await refuse(ex, 409, "Conflict: the session's stream is already open")
        queue = session.listener = asyncio.Queue()
        while session.backlog:  # what came while no stream was open
            queue.put_nowait(session.backlog.popleft())
        session.busy += 1
        try:
            await ex.open_stream()
            while True:
                try:
                    line = await ex.wait(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await ex.send(b"")
                    continue
                if line is None:
                    return await ex.end()
                await ex.send(line)
        finally:
            session.busy -= 1
            if session.listener is queue:
                session.listener = None

    async def _delete(self, ex: Exchange, session: Session) -> None:
        self.end(session, "the client ended it")
        await ex.respond(204)

    def end(self, session: Session, reason: str) -> None:
        """Close a session and forget its id."""
        self.sessions.pop(session.id, None)
        session.close(reason)

    def sweep(self) -> None:
        """Close the sessions unused for longer than the idle timeout."""
        now = asyncio.get_running_loop().time()
        for session in list(self.sessions.values()):
            if session.closed:
                self.sessions.pop(session.id, None)
            elif not session.busy and now - session.last_seen > self.rules.idle_timeout:
                self.end(session, f"idle for {self.rules.idle_timeout:g} s")
