"""A small fake of the OpenAI and Anthropic HTTP APIs on 127.0.0.1, for driving the official
SDKs in tests.

It speaks plain HTTP/1.1 with keep-alive on asyncio streams and answers
`POST /v1/chat/completions` with a `chat.completion` object and `POST /v1/messages` with an
Anthropic `message`, or with each vendor's error body. Tests queue `Reply` behaviours, consumed
one per request in arrival order (then `default` applies), and read back every request seen.

    async with FakeLLMServer() as server:
        server.queue(Reply(status=429, headers={"retry-after": "1"}), Reply())
        ...  # point a client at server.url
        assert len(server.requests) == 2
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"

_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                       404: "invalid_request_error", 429: "rate_limit_exceeded"}
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                          403: "permission_error", 404: "not_found_error",
                          429: "rate_limit_error", 529: "overloaded_error"}


@dataclass
class Reply:
    """How to answer one request."""

    status: int = 200
    # Success: the reply text (default: an echo of the last user message).
    text: str | None = None
    # Success: (input, output) tokens (default: a character-based count).
    usage: tuple[int, int] | None = None
    finish: str | None = None
    # Errors: the message inside the vendor's error body.
    message: str = "scripted failure"
    # A complete body to send instead of the generated one.
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Hold the answer this long, or until the client hangs up, whichever is first.
    delay_s: float = 0.0


@dataclass
class SeenRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any


class FakeLLMServer:
    """The fake API server; use `async with` so that it is always closed."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.requests: list[SeenRequest] = []
        self._queue: list[Reply] = []
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._arrived = asyncio.Condition()
        self.port = 0

    @property
    def url(self) -> str:
        """http://127.0.0.1:port, with no path."""
        return f"http://127.0.0.1:{self.port}"

    def queue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order."""
        self._queue.extend(replies)

    async def wait_for_requests(self, count: int) -> None:
        """Return once `count` requests have arrived."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    async def start(self) -> FakeLLMServer:
        """Listen on an ephemeral loopback port."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.close()
        # Aborting the transports ends each handler's pending read, so the handlers return
        # on their own instead of being cancelled.
        for writer in self._connections.values():
            writer.transport.abort()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeLLMServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while await self._exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up, e.g. after its timeout
        finally:
            del self._connections[task]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection should end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            await _respond(writer, 411, {"error": {"message": "length required"}}, {})
            return False
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        async with self._arrived:
            self.requests.append(SeenRequest(method, path, headers, body))
            self._arrived.notify_all()
        reply = self._queue.pop(0) if self._queue else self.default
        if reply.delay_s and await _client_left(reader, reply.delay_s):
            return False
        status, payload, extra = _answer(method, path, headers, body, reply)
        await _respond(writer, status, payload, extra)
        return headers.get("connection", "").lower() != "close"


async def _client_left(reader: asyncio.StreamReader, delay_s: float) -> bool:
    """Wait up to delay_s; True if the client closed the connection meanwhile."""
    try:
        data = await asyncio.wait_for(reader.read(1), timeout=delay_s)
    except TimeoutError:
        return False
    return data == b""


async def _respond(writer: asyncio.StreamWriter, status: int, payload: Any,
                   headers: dict[str, str]) -> None:
    data = json.dumps(payload).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
             "content-type: application/json", f"content-length: {len(data)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
    await writer.drain()


def _answer(method: str, path: str, headers: dict[str, str], body: Any,
            reply: Reply) -> tuple[int, Any, dict[str, str]]:
    """Status, JSON payload and extra headers for one request."""
    if method != "POST" or path not in (OPENAI_PATH, ANTHROPIC_PATH):
        return 404, {"error": {"message": f"no route for {method} {path}"}}, {}
    anthropic = path == ANTHROPIC_PATH
    extra = {"request-id" if anthropic else "x-request-id": f"req_{id(reply):x}",
             **reply.headers}
    if reply.body is not None:
        return reply.status, reply.body, extra
    if reply.status >= 400:
        return reply.status, _error(anthropic, reply.status, reply.message), extra
    problem = _check_anthropic(headers, body) if anthropic else _check_openai(body)
    if problem:
        return 400, _error(anthropic, 400, problem), extra
    text = reply.text if reply.text is not None else "fake: " + _last_user(body["messages"])
    prompt = json.dumps(body["messages"]) + str(body.get("system", ""))
    usage = reply.usage or (math.ceil(len(prompt) / 4), math.ceil(len(text) / 4))
    build = _anthropic_message if anthropic else _openai_completion
    return 200, build(body["model"], text, usage, reply.finish), extra


def _check_openai(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "model is required"
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "messages must be a non-empty array"
    return None


def _check_anthropic(headers: dict[str, str], body: Any) -> str | None:
    if "anthropic-version" not in headers:
        return "anthropic-version header is required"
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if any(m.get("role") not in ("user", "assistant") for m in messages):
        return "messages: roles must be 'user' or 'assistant'; use the system parameter"
    return None


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _error(anthropic: bool, status: int, message: str) -> dict[str, Any]:
    if anthropic:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _openai_completion(model: str, text: str, usage: tuple[int, int],
                       finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake0001",
        "object": "chat.completion",
        "created": 1_790_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish or "stop",
        }],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                  "total_tokens": usage[0] + usage[1]},
    }


def _anthropic_message(model: str, text: str, usage: tuple[int, int],
                       finish: str | None) -> dict[str, Any]:
    return {
        "id": "msg_fake0001",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": finish or "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    }
