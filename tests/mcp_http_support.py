"""The `ostinato mcp --http` process of the tests, and raw HTTP helpers: a request on a
connection of its own, a response stream read event by event, a run's settled status."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ostinato.clients.home import home_socket_path
from ostinato.clients.python.sync import Client as SyncClient
from ostinato.protocol.mcp import MCP_VERSIONS, MODERN_VERSIONS

from .mcp_conversation import pipelines
from .support import WAIT

LISTENING = re.compile(r"^ostinato mcp: listening on (http://\S+)$")
ACCEPT = "application/json, text/event-stream"
CHUNK = 1 << 16


class Front:
    """An `ostinato mcp --http` subprocess, and what it said on stderr."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ostinato.clients.cli", "mcp", "--http", "127.0.0.1:0",
             "--home", str(home), *args], stderr=subprocess.PIPE, text=True, env=env)
        self.log: list[str] = []
        self._said = threading.Condition()
        assert self.process.stderr is not None
        for line in self.process.stderr:  # until it says where it listens
            self.log.append(line.rstrip("\n"))
            if match := LISTENING.search(self.log[-1]):
                break
        else:
            raise AssertionError("the front exited: " + "\n".join(self.log))
        self.url = match.group(1)
        self.host, self.port = urlsplit(self.url).hostname, urlsplit(self.url).port
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        """Keep reading stderr (the front logs each session) into `log`."""
        for line in self.process.stderr:  # type: ignore[union-attr]
            with self._said:
                self.log.append(line.rstrip("\n"))
                self._said.notify_all()

    def wait_for(self, text: str) -> None:
        """Until the front logs `text`."""
        with self._said:
            assert self._said.wait_for(lambda: any(text in line for line in self.log), WAIT)

    def request(self, method: str, body: bytes | dict[str, Any] | None = None,
                **headers: str) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP request on its own connection: status, headers, body."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=WAIT)
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        fields = {"Accept": ACCEPT, "Content-Type": "application/json"}
        fields.update({name.replace("_", "-"): value for name, value in headers.items()})
        connection.request(method, "/mcp", body=body, headers=fields)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def initialize(self, version: str = MCP_VERSIONS[0], **headers: str) -> str:
        """A new session's id."""
        status, fields, body = self.request("POST", {
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"}}}, **headers)
        assert status == 200, body
        assert json.loads(body)["result"]["protocolVersion"] == version
        return fields["mcp-session-id"]

    def stop(self) -> int:
        """SIGTERM; the exit code, once all it said is in `log`."""
        self.process.terminate()
        code = self.process.wait(WAIT)
        self._drainer.join(WAIT)
        return code


def raw_exchange(front: Front, data: bytes) -> bytes:
    """What the front answers to `data` on a new connection, until it closes it."""
    with socket.create_connection((front.host, front.port), WAIT) as raw:
        raw.sendall(data)
        answer = b""
        while chunk := raw.recv(CHUNK):
            answer += chunk
    return answer


class Stream:
    """A request answered with an event stream, read event by event."""

    def __init__(self, front: Front, message: dict[str, Any], **headers: str) -> None:
        self.connection = http.client.HTTPConnection(front.host, front.port, timeout=WAIT)
        fields = {"Accept": ACCEPT, "Content-Type": "application/json"}
        fields.update({name.replace("_", "-"): value for name, value in headers.items()})
        self.connection.request("GET" if message is None else "POST", "/mcp",
                                body=None if message is None else json.dumps(message),
                                headers=fields)
        self.response = self.connection.getresponse()

    def close(self) -> None:
        """Close the connection (the response holds the socket open too)."""
        self.response.close()
        self.connection.close()

    def next(self) -> dict[str, Any] | None:
        """The next message of the stream (keep-alive comments skipped); None at its end."""
        while line := self.response.readline():
            if line.startswith(b"data: "):
                return json.loads(line[6:])
        return None


def slow_run(directory: Path, request_id: int, token: str) -> dict[str, Any]:
    """A tool call that waits on a run of two minutes: it lasts until cancelled."""
    path = pipelines(directory)["slow"]
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {
        "name": "run", "arguments": {"action": "start", "pipeline": {"path": str(path)},
                                     "wait": True}, "_meta": {"progressToken": token}}}


def call(front: Front, session: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool call's result, answered as one JSON body."""
    status, fields, body = front.request("POST", {
        "jsonrpc": "2.0", "id": 99, "method": "tools/call",
        "params": {"name": name, "arguments": arguments}}, Mcp_Session_Id=session)
    assert (status, fields["content-type"]) == (200, "application/json"), body
    return json.loads(body)["result"]


def settled_status(home: Path, run_id: str) -> str:
    """The run's status once it no longer runs or waits, as the home's daemon tells it."""
    news = threading.Event()
    with SyncClient.connect_unix(home_socket_path(home), timeout=WAIT) as client:
        client.initialize()
        client.on_notification("run/event", lambda method, params: news.set())
        client.call("run.subscribe", {"run_id": run_id})
        while True:
            news.clear()  # before looking: an event that comes after is not missed
            status = client.call("run.get", {"run_id": run_id}).status
            if status not in ("running", "waiting"):
                return status
            assert news.wait(WAIT), f"run {run_id} is still {status}"


def modern(method: str, request_id: int | None = 1, version: str = MODERN_VERSIONS[0],
           **params: Any) -> dict[str, Any]:
    """A message of the stateless revision: its revision and capabilities in `_meta`."""
    message = {"jsonrpc": "2.0", "method": method, "params": {**params, "_meta": {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {}}}}
    if request_id is not None:
        message["id"] = request_id
    return message
