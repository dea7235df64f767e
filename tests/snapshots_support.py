"""Helpers of the snapshot tests: a priced pipeline whose run makes model and tool calls, and
the snapshot methods through a real daemon, with results checked against schemas/."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from .runs_support import dot, run_to_end
from .support import Wire, published

NOT_FOUND, CONFLICT, INVALID_PARAMS, METHOD_NOT_FOUND = -32001, -32004, -32602, -32601

SOURCE = """
    digraph brief {
        start [shape=Mdiamond]
        exit  [shape=Msquare]
        research [prompt="Research $topic", scripted.usage="10,20"]
        count [shape=parallelogram, tool_command="echo 3 sources found"]
        write [prompt="Write the brief", scripted.usage="5,5"]
        start -> research -> count -> write -> exit
    }
"""
BRIEF = dot(SOURCE)
INPUTS = {"topic": "tides"}
# The scripted provider at a price that makes every token count: research costs $50
# (10 in, 20 out), write $15; `write` answers what the settings script.
PRICED: dict[str, Any] = {
    "retry": {"delay_scale": 0},
    "pricing": {"models": {"scripted/*": {"input_per_mtok": 1_000_000,
                                          "output_per_mtok": 2_000_000}}},
    "providers": {"scripted": {"responses": {"write": "The brief: tides follow the moon."}}}}
REWRITTEN = {"providers": {"scripted": {"responses": {"write": "The brief: tides are wind."}}}}
CHECKS = [{"type": "run_status", "value": "COMPLETED", "description": "seeds/001 spelling"},
          {"type": "contains", "value": "follow the moon", "path": "node.write"},
          {"type": "max_cost_usd", "value": 100}]


async def brief_run(wire: Wire, **params: Any) -> dict[str, Any]:
    """A completed, priced run of BRIEF ($65)."""
    params.setdefault("settings", PRICED)
    params.setdefault("inputs", INPUTS)
    run = await run_to_end(wire, BRIEF, **params)
    assert (run["status"], run["cost_usd"]) == ("completed", 65.0), run
    return run


async def create(wire: Wire, **params: Any) -> dict[str, Any]:
    """snapshot.create, answered with a result."""
    return published("snapshot.create", await wire.result("snapshot.create", params))


async def get(wire: Wire, snapshot_id: str, **params: Any) -> dict[str, Any]:
    return published("snapshot.get", await wire.result("snapshot.get",
                                                       {"id": snapshot_id, **params}))


async def listing(wire: Wire, **params: Any) -> dict[str, Any]:
    return published("snapshot.list", await wire.result("snapshot.list", params))


async def replay(wire: Wire, snapshot_id: str, **params: Any) -> dict[str, Any]:
    """snapshot.replay with `wait`; the run's (or trial set's) summary."""
    return published("snapshot.replay", await wire.result(
        "snapshot.replay", {"id": snapshot_id, "wait": True, **params}))


async def error(wire: Wire, method: str, params: Any) -> dict[str, Any]:
    """The error a request is answered with."""
    reply = await wire.request(method, params)
    assert "error" in reply, reply
    return reply["error"]


async def outputs(wire: Wire, run_id: str) -> dict[str, str]:
    """What each node of a run answered, from its trace."""
    detail = await wire.result("run.get", {"run_id": run_id})
    calls = (await wire.result("trace.get", {"trace_id": detail["trace_id"]}))["calls"]
    return {c["node_id"]: (c["response"] or {}).get("text") or (c["response"] or {}).get(
        "stdout") for c in calls}


def db_rows(home: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read from the daemon's database file by sqlite3 itself."""
    connection = sqlite3.connect(home / "ostinato.db")
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def ostinato(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The `ostinato` command line, run as a user would."""
    return subprocess.run([sys.executable, "-m", "ostinato.clients.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
