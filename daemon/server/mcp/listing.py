"""MCP `resources/list` and `resources/templates/list`: the home's runs, test runs and
snapshots as `ostinato://` resources, from run.list, tests.list and snapshot.list.

One opaque cursor walks the three lists in turn, each newest first: it holds which list a
page continues and that list's own keyset cursor."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import orjson

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.mcp import PagedParams

from ...services.base import HandlerTable, RequestContext
from .era import LISTED, UNCACHED, is_modern
from .resources import TEMPLATES, answer, call

table = HandlerTable()

PAGE = 50  # resources per page


def _run(run: dict[str, Any]) -> dict[str, Any]:
    run_id, status = run["run_id"], run["status"]
    outcome = f", {run['outcome']}" if run.get("outcome") else ""
    return {"uri": f"ostinato://runs/{run_id}", "name": f"run {run_id}",
            "title": f"Run of {run['pipeline_name']} ({status}{outcome})",
            "description": f"Created {run['created_at']}; ${run['cost_usd']:.4f}. Its trace: "
                           f"ostinato://traces/{run['trace_id']}; its files: "
                           f"ostinato://runs/{run_id}/files/{{path}} (manifest.json, "
                           "checkpoint.json, trace.jsonl, <node>/response.md).",
            "mimeType": "application/json"}


def _test_run(entry: dict[str, Any]) -> dict[str, Any]:
    test_run_id, summary = entry["test_run_id"], entry["summary"]
    return {"uri": f"ostinato://tests/{test_run_id}", "name": f"test run {test_run_id}",
            "title": f"Test run: {summary['passed']}/{summary['total']} passed "
                     f"({entry['status']})",
            "description": f"Started {entry['started_at']}; {summary['failed']} failed, "
                           f"{summary['errors']} errors. Its report: "
                           f"ostinato://tests/{test_run_id}/report.md (or .html, .xml).",
            "mimeType": "application/json"}


def _snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    name, version = snapshot["name"], snapshot["version"]
    tags = f" [{', '.join(snapshot['tags'])}]" if snapshot["tags"] else ""
    return {"uri": f"ostinato://snapshots/{snapshot['id']}", "name": f"{name}@{version}",
            "title": f"Snapshot {name} v{version}{tags}",
            "description": (snapshot["description"] or f"Of pipeline "
                            f"{snapshot['pipeline']['name']}") + f"; created "
                           f"{snapshot['created_at']}, {snapshot['invariants']} invariants.",
            "mimeType": "application/json"}


# Walked in this order: (method, the key of its list, one entry as a resource).
_LISTS: tuple[tuple[str, str, Callable[[dict[str, Any]], dict[str, Any]]], ...] = (
    ("run.list", "runs", _run), ("tests.list", "test_runs", _test_run),
    ("snapshot.list", "snapshots", _snapshot))


def _cursor(which: int, inner: str | None) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([which, inner])).decode()


def _position(cursor: str) -> tuple[int, str | None]:
    """The list a cursor continues and that list's cursor; -32602 for one not ours."""
    try:
        which, inner = orjson.loads(base64.urlsafe_b64decode(cursor))
    except (ValueError, TypeError, binascii.Error):
        which = inner = None
    if type(which) is not int or not 0 <= which < len(_LISTS) or (
            inner is not None and type(inner) is not str):
        raise RpcError(ErrorCode.INVALID_PARAMS, "Invalid params: bad cursor (pass the "
                       "nextCursor of the previous page, or none for the first)")
    return which, inner


@table.method("resources/list")
async def list_resources(params: PagedParams, ctx: RequestContext) -> dict[str, Any]:
    """A page of the home's runs, then test runs, then snapshots, each newest first."""
    which, inner = (0, None) if params.cursor is None else _position(params.cursor)
    resources: list[dict[str, Any]] = []
    while which < len(_LISTS) and len(resources) < PAGE:
        method, key, resource = _LISTS[which]
        page = await call(ctx, method, {"limit": PAGE - len(resources), "cursor": inner})
        resources += [resource(entry) for entry in page[key]]
        inner = page["next_cursor"]
        if inner is None:
            which += 1
    result: dict[str, Any] = {"resources": resources}
    if which < len(_LISTS):
        result["nextCursor"] = _cursor(which, inner)
    return answer(params, result, UNCACHED)  # runs come and go


@table.method("resources/templates/list")
def list_templates(params: PagedParams, ctx: RequestContext) -> dict[str, Any]:
    """Every resource's URI template."""
    templates = []
    for template, (name, title, mime, description) in TEMPLATES.items():
        entry = {"uriTemplate": template, "name": name, "title": title,
                 "description": description}
        if mime is not None:
            entry["mimeType"] = mime
        templates.append(entry)
    return {"resourceTemplates": templates, **(LISTED if is_modern(params) else {})}
