"""MCP resources: `ostinato://` URIs for runs, their files, traces, test runs, their
reports and snapshots; `resources/read`, `resources/subscribe`, `resources/unsubscribe`.

A resource is what the method of its family answers (run.get, trace.get, tests.get,
tests.report, snapshot.get), served by that method's handler: the MCP face computes
nothing of its own but a run file's bytes. The listing is in listing.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
from pydantic import ValidationError

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.mcp import RESOURCE_NOT_FOUND, ResourceParams

from ...services.base import HandlerTable, RequestContext
from ...store.traces import TraceStore
from ..connection import Connection
from .era import COMPLETE, UNCACHED, is_modern
from .tools import as_json
from .updates import ResourceWatch

table = HandlerTable()

SCHEME = "ostinato://"
MAX_BYTES = 8 * 1024 * 1024  # a resource's content at most: a model reads it whole
MAX_SUBSCRIPTIONS = 256  # a session's: each event of a run announces all of its URIs
TEMPLATES = {  # uriTemplate -> (name, title, mimeType, description)
    "ostinato://runs/{run_id}": (
        "run", "A run", "application/json",
        "A run as run.get answers: status, stages, context, the question it waits on."),
    "ostinato://runs/{run_id}/files/{+path}": (
        "run-file", "A file of a run's directory", None,
        "manifest.json, checkpoint.json, trace.jsonl, journal.jsonl, config/…, and each "
        "node's <node>/prompt.md, response.md, status.json. Text, or base64 for other "
        "bytes; at most 8 MiB."),
    "ostinato://traces/{trace_id}": (
        "trace", "A trace", "application/json",
        "Every model and tool call of a run, with totals (trace.get)."),
    "ostinato://tests/{test_run_id}": (
        "test-run", "A test run", "application/json",
        "A test run with each snapshot's verdict, metrics and failures (tests.get)."),
    "ostinato://tests/{test_run_id}/report.{format}": (
        "test-report", "A test run's report", None,
        "The test run's report: report.md (Markdown), report.html (one page), report.xml "
        "(JUnit XML)."),
    "ostinato://snapshots/{snapshot}": (
        "snapshot", "A snapshot", "application/json",
        "A snapshot by id, name (its latest version) or name@version (snapshot.get)."),
}
REPORTS = {"md": "markdown", "html": "html", "xml": "junit"}
_SUFFIX_TYPES = {".json": "application/json", ".jsonl": "application/jsonl",
                 ".md": "text/markdown", ".dot": "text/vnd.graphviz",
                 ".yaml": "application/yaml", ".yml": "application/yaml",
                 ".txt": "text/plain", ".log": "text/plain", ".html": "text/html",
                 ".xml": "application/xml", ".py": "text/x-python"}


@dataclass(frozen=True, slots=True)
class Target:
    """What a URI names: its kind, the id, and a run file's path or a report's format."""

    kind: str  # run, file, trace, test_run, report, snapshot
    key: str
    part: str = ""


def not_found(uri: str, why: str) -> RpcError:
    """MCP's resource-not-found error, saying why and what exists."""
    return RpcError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}: {why}.", {"uri": uri})


def parse(uri: str) -> Target:
    """The target of an `ostinato://` URI; not_found when it matches no template."""
    from urllib.parse import unquote  # 2.6 ms of the daemon's start, for a first read

    if not uri.startswith(SCHEME) or "?" in uri or "#" in uri:
        raise not_found(uri, "Ostinato's resources are ostinato:// URIs without query or "
                        "fragment (resources/templates/list has their templates)")
    family, _, rest = uri[len(SCHEME):].partition("/")
    raw_key, _, tail = rest.partition("/")
    key = unquote(raw_key)
    if key:
        if family == "runs" and not tail:
            return Target("run", key)
        if family == "runs" and tail.startswith("files/") and len(tail) > 6:
            return Target("file", key, unquote(tail[6:]))
        if family == "traces" and not tail:
            return Target("trace", key)
        if family == "tests" and not tail:
            return Target("test_run", key)
        if family == "tests" and tail.startswith("report.") and tail[7:] in REPORTS:
            return Target("report", key, REPORTS[tail[7:]])
        if family == "snapshots" and not tail:
            return Target("snapshot", key)
    raise not_found(uri, "it matches none of the templates " + ", ".join(TEMPLATES))


def _connection(ctx: RequestContext) -> Connection:
    return cast(Connection, ctx.connection)


async def call(ctx: RequestContext, method: str, params: dict[str, Any]) -> Any:
    """A daemon method's answer as JSON values, from its own handler."""
    route = _connection(ctx).daemon.dispatcher.route(method)
    assert route is not None, method
    result = route.handler(route.parse_params(params), ctx)
    if route.is_async:
        result = await result
    return as_json(route, result)


def _content(uri: str, mime: str | None, text: str) -> dict[str, Any]:
    if len(text) > MAX_BYTES // 4 and len(text.encode()) > MAX_BYTES:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{uri} is larger than resources/read serves "
                       f"({MAX_BYTES // 2**20} MiB): read it in pages with the `inspect` "
                       "tool, or a smaller file of the run.", {"uri": uri})
    return {"uri": uri, "mimeType": mime, "text": text}


_METHODS = {"run": ("run.get", "run_id"), "trace": ("trace.get", "trace_id"),
            "test_run": ("tests.get", "test_run_id"), "snapshot": ("snapshot.get", "id")}


async def read_target(ctx: RequestContext, uri: str, target: Target) -> dict[str, Any]:
    """The content of the resource `target` names."""
    if target.kind == "file":
        return await _read_file(ctx, uri, target.key, target.part)
    try:
        if target.kind == "report":
            report = await call(ctx, "tests.report",
                                {"test_run_id": target.key, "format": target.part})
            return _content(uri, report["media_type"], report["content"])
        method, field = _METHODS[target.kind]
        result = await call(ctx, method, {field: target.key})
    except RpcError as exc:
        if exc.code != ErrorCode.NOT_FOUND:
            raise
        raise not_found(uri, f"{exc.message} (resources/list lists the runs, test runs and "
                        "snapshots)") from None
    except ValidationError:
        raise not_found(uri, "that is not an id of its kind") from None
    return _content(uri, "application/json", orjson.dumps(result).decode())


def answer(params: Any, result: dict[str, Any],
           modern: dict[str, Any] = COMPLETE) -> dict[str, Any]:
    """A result as the request's MCP revision has it: 2026-07-28 adds `modern`
    (`resultType`, and to a list or a resource the cache hints)."""
    return result | modern if is_modern(params) else result


@contextlib.contextmanager
def era_errors(params: Any) -> Iterator[None]:
    """Resource not found as the request's revision says it: -32002, or in 2026-07-28
    (which dropped that code) -32602."""
    try:
        yield
    except RpcError as exc:
        if exc.code == RESOURCE_NOT_FOUND and is_modern(params):
            exc.code = ErrorCode.INVALID_PARAMS
        raise


@table.method("resources/read")
async def read(params: ResourceParams, ctx: RequestContext) -> dict[str, Any]:
    """A resource's content."""
    with era_errors(params):
        content = await read_target(ctx, params.uri, parse(params.uri))
    return answer(params, {"contents": [content]}, UNCACHED)


# -- a file of a run's directory ------------------------------------------------------------


def _refused(uri: str, why: str) -> RpcError:
    return RpcError(ErrorCode.INVALID_PARAMS, f"Refused: {uri}: {why}. A run file's path is "
                    "relative to its run directory and stays inside it.", {"uri": uri})


def inside(root: Path, relative: str, uri: str) -> Path:
    """The path of `relative` under `root`, refused when it is absolute, has `..`, `.` or
    empty parts, or leads out of `root` through a symbolic link."""
    parts = relative.split("/")
    if relative.startswith("/") or "\\" in relative or "\0" in relative:
        raise _refused(uri, "the path is absolute or has a backslash or NUL")
    if any(part in ("", ".", "..") for part in parts):
        raise _refused(uri, "the path has a `..`, `.` or empty part")
    real_root = root.resolve()
    try:
        path = real_root.joinpath(*parts).resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
        raise _refused(uri, f"the path cannot be resolved ({exc})") from None
    if not path.is_relative_to(real_root):
        raise _refused(uri, "the path leads out of the run directory through a symbolic link")
    return path


def _listing(root: Path) -> str:
    try:
        entries = sorted(e.name + ("/" if e.is_dir(follow_symlinks=False) else "")
                         for e in os.scandir(root))
    except OSError:
        return "the run directory is gone"
    shown = ", ".join(entries[:40]) + (", …" if len(entries) > 40 else "")
    return f"the run directory has {shown}"


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes; None when it is not a regular file; OverflowError past MAX_BYTES,
    OSError when it cannot be read."""
    try:
        if not path.is_file():  # nor a directory, nor a FIFO that would block the read
            return None
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):  # gone meanwhile
        return None
    if len(data) > MAX_BYTES:
        raise OverflowError
    return data


async def _read_file(ctx: RequestContext, uri: str, run_id: str,
                     relative: str) -> dict[str, Any]:
    run = await ctx.services.runs.get_run(run_id)
    if run is None:
        raise not_found(uri, f"no run {run_id}")
    root = ctx.services.home / run.run_dir
    path = inside(root, relative, uri)
    try:
        data = await asyncio.to_thread(_read_bytes, path)
    except OverflowError:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"{uri} is larger than resources/read serves "
                       f"({MAX_BYTES // 2**20} MiB): read it from {path}.", {"uri": uri}) from None
    except OSError as exc:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"Cannot read {uri}: {exc.strerror}.",
                       {"uri": uri}) from None
    if data is None:
        raise not_found(uri, f"no file {relative} in run {run_id}; {_listing(root)}")
    mime = _SUFFIX_TYPES.get(path.suffix.lower())
    try:
        return {"uri": uri, "mimeType": mime or "text/plain", "text": data.decode()}
    except UnicodeDecodeError:
        return {"uri": uri, "mimeType": mime or "application/octet-stream",
                "blob": base64.b64encode(data).decode()}


# -- subscriptions ----------------------------------------------------------------------


async def _topic(ctx: RequestContext, uri: str, target: Target) -> str | None:
    """The topic whose events change an existing resource (None: it never changes);
    not_found when the resource does not exist (a run file may appear later: its run must
    exist)."""
    if target.kind in ("run", "file"):
        run = await ctx.services.runs.get_run(target.key)
        if run is None:
            raise not_found(uri, f"no run {target.key}")
        if target.kind == "file":  # refused as a read of it would be, though it may not exist
            inside(ctx.services.home / run.run_dir, target.part, uri)
        return f"run:{target.key}"
    if target.kind == "trace":
        run = await TraceStore(ctx.services.db).run_of_trace(ctx.services.runs, target.key)
        if run is None:
            raise not_found(uri, f"no trace {target.key}")
        return f"run:{run.run_id}"
    if target.kind in ("test_run", "report"):
        await read_target(ctx, uri, Target("test_run", target.key))
        return f"tests:{target.key}"
    await read_target(ctx, uri, target)
    return None  # a snapshot is never changed, only deleted


@table.method("resources/subscribe")
async def subscribe(params: ResourceParams, ctx: RequestContext) -> dict[str, Any]:
    """`notifications/resources/updated` for the URI whenever its run or test run has an
    event."""
    with era_errors(params):
        topic = await _topic(ctx, params.uri, parse(params.uri))
    if topic is not None:
        connection = _connection(ctx)
        if connection.watch is None:
            connection.watch = ResourceWatch(connection)
        if len(connection.watch) >= MAX_SUBSCRIPTIONS and params.uri not in connection.watch:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: at most "
                           f"{MAX_SUBSCRIPTIONS} subscriptions a session; unsubscribe some "
                           "first", {"uri": params.uri})
        connection.watch.add(topic, params.uri)
    return answer(params, {})


@table.method("resources/unsubscribe")
def unsubscribe(params: ResourceParams, ctx: RequestContext) -> dict[str, Any]:
    """Stop the updates of a URI (nothing happens when it was not subscribed)."""
    watch = _connection(ctx).watch
    if watch is not None:
        watch.remove(params.uri)
    return answer(params, {})
