"""What a run writes to the home besides its executor's records: its config/ files,
manifest.json as it starts, its line of run_manifest.jsonl; and the resolved plan."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import orjson

from ..disk import disk_full
from ..engine.graph import Graph
from ..engine.rundir import AppendLog, RunDirectory, dump_json, write_file
from .options import Prepared, RunOptions

log = logging.getLogger("ostinato.runs")


def write_config(run_dir: RunDirectory, prepared: Prepared, launch: dict[str, Any]) -> None:
    """config/: source, resolved plan, settings, providers, pricing, launch record (`launch`,
    redacted already).
    Written once, before the run is in the store or announced, and never rewritten:
    plain writes (a run cut short before its row exists cannot be resumed anyway). The
    runs of a trial set link to one copy: creating a file costs many times a link on
    some file systems, and a trial has only a few files more."""
    config = f"{run_dir.root}/config/"
    linked = prepared.config_dir is not None
    for name, data in prepared.config.items():
        if linked:
            try:
                os.link(f"{prepared.config_dir}/{name}", config + name)
                continue
            except OSError:  # no hard links here (another device, a file system)
                linked = False
        write_file(config + name, data)
    write_file(config + "launch.json", dump_json(launch))


def new_manifest(run_id: str, trace_id: str, prepared: Prepared, created: str,
                 options: RunOptions) -> dict[str, Any]:
    """manifest.json of a run that starts now."""
    graph = prepared.graph
    start_node, model = graph.derived("manifest", _start_and_model)
    return {"run_id": run_id, "trace_id": trace_id, "pipeline_name": graph.name,
            "pipeline_hash": prepared.digest, "goal": graph.goal, "start_time": created,
            "end_time": None, "status": "running", "outcome": None,
            "start_node": start_node, "node_count": len(graph.nodes), "model": model,
            "trial": None if options.trial_set_id is None else {
                "set": options.trial_set_id, "index": options.trial_index},
            "parent": None if options.parent_run_id is None else {
                "run_id": options.parent_run_id, "node": options.parent_node,
                "run_dir": f"runs/{options.parent_run_id}"}}


def _start_and_model(graph: Graph) -> tuple[str | None, str | list[str] | None]:
    """What a manifest says of the pipeline's start node and models (the one, or all)."""
    models = sorted({str(n.get("llm_model")) for n in graph.nodes.values()
                     if n.get("llm_model")})
    starts = graph.start_nodes()
    return (starts[0].id if starts else None,
            models[0] if len(models) == 1 else (models or None))


def index_run(index: AppendLog, run_id: str, trace_id: str, prepared: Prepared,
              created: str) -> None:
    """The run's line of run_manifest.jsonl (`index`: rundir.run_index)."""
    try:
        index.append(orjson.dumps({
            "run_id": run_id, "trace_id": trace_id, "pipeline_name": prepared.graph.name,
            "pipeline_hash": prepared.digest, "created_at": created,
            "run_dir": f"runs/{run_id}", "manifest": f"runs/{run_id}/manifest.json",
            "config": {name: f"runs/{run_id}/config/{name}"
                       for name in [*prepared.config, "launch.json"]}}) + b"\n")
    except OSError as exc:
        if not disk_full(exc):
            raise
        # The run exists now: it meets the full disk at its first write and ends
        # `interrupted` with a disk full reason; only the index misses its line.
        log.warning("run %s is missing from run_manifest.jsonl: %s", run_id, exc)


@contextlib.contextmanager
def unless_full(run_id: str, what: str) -> Iterator[None]:
    """Go on past a write that a full disk refused (logged); anything else is raised."""
    try:
        yield
    except Exception as exc:
        if not disk_full(exc):
            raise
        log.error("run %s: %s not written: %s", run_id, what, exc)


def plan_of(graph: Graph) -> dict[str, Any]:
    """The resolved plan: the transformed graph with each node's handler type."""
    return {"pipeline_hash": graph.digest(), **graph.to_dict()}


def plan_file(graph: Graph) -> bytes:
    """plan.json, dumped once per loaded graph: every run of it writes the same."""
    return graph.derived("plan.json", lambda loaded: dump_json(plan_of(loaded)))
