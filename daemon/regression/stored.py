"""Stored runs for the invariant library: finding a run (`find_run`), loading what it
recorded (`load_stored_run`),
evaluating a reeval's checks on it (`reeval_checks`, with its judge), and appending the calls
a judge made to the run's records (`record_judge_calls`). Reeval, snapshot replays and test
runs read runs through here."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.runs import RunSettings

from ..engine.providers.connections import SharedConnections
from ..engine.providers.runtime import ProviderPool, open_pool
from ..engine.redact import Redactor, run_secrets
from ..engine.replay import Cassette, Replayer, ReplayProviders
from ..engine.rundir import RunDirectory
from ..store.records import RunRecord
from ..store.traces import TraceStore
from .invariants import JUDGE_NODE, Judge, StoredRun, evaluate

if TYPE_CHECKING:
    from .needs import Needs

__all__ = ["StoredRun", "find_run", "judge_pool", "load_stored_run", "record_judge_calls",
           "reeval_checks", "run_redactor"]


async def find_run(services: Needs, run_id: str) -> RunRecord:
    """A stored run; an RpcError NOT_FOUND when there is no such run."""
    run = await services.runs.get_run(run_id)
    if run is None:
        raise RpcError(ErrorCode.NOT_FOUND, f"no run {run_id}")
    return run


async def load_stored_run(services: Needs, home: Path, run: RunRecord) -> StoredRun:
    """What a stored run recorded, as the invariant library reads it: the run, its stages
    and calls as JSON documents, the final context from checkpoint.json, the record mode,
    launch.json and a reader of its artifacts."""
    run_dir = RunDirectory(home / run.run_dir)
    launch: dict[str, Any] = run_dir.read_json("config", "launch.json") or {}
    checkpoint = run_dir.read_json("checkpoint.json")
    stages = [stage.as_dict() for stage in await services.runs.stages(run.id)]
    calls = await TraceStore(services.db).run_calls(run.id)
    return StoredRun(
        run=run.as_dict(), stages=stages, calls=calls,  # type: ignore[arg-type]
        context=checkpoint.get("context") if checkpoint else None,
        record=run.record or launch.get("record") or "full",
        artifact=lambda artifact_id: run_dir.read_json("artifacts", f"{artifact_id}.json"),
        launch=launch)


async def judge_pool(run: StoredRun, allowed_key_env: Collection[str],
                     connections: SharedConnections | None = None) -> ProviderPool:
    """A provider pool with the run's providers and default provider (from launch.json:
    keys given inline were redacted there; keys named by `api_key_env`, if still allowed,
    are read from the environment again)."""
    settings = RunSettings.model_validate(run.launch.get("settings") or run.run.get("settings")
                                          or {})
    try:
        return await open_pool({"default": settings.default_provider,
                                "providers": settings.providers, "pricing": settings.pricing},
                               allowed_key_env=allowed_key_env, connections=connections)
    except ValueError as exc:
        raise RpcError(ErrorCode.CONFLICT, f"the run's providers cannot be rebuilt for a "
                                           f"judge: {exc}") from None


def run_redactor(run: StoredRun, keys: Iterable[str]) -> Redactor:
    """The redactor of a run's records: its secrets (run_secrets of its launch inputs and
    variables) and the provider keys `keys`."""
    named = {**(run.launch.get("inputs") or {}), **(run.launch.get("variables") or {})}
    return Redactor(run_secrets(named, keys))


async def reeval_checks(services: Needs, home: Path, run: StoredRun,
                        invariants: Sequence[Any], *,
                        allow_partial: bool = False) -> list[dict[str, Any]]:
    """The invariants evaluated on a stored run for `run.reeval`. A `judge` is served from
    the run's recorded `$judge` calls where they match (same vote, same request), otherwise
    asked live through the run's providers; the live calls are recorded on the run."""
    if not any(getattr(i, "type", None) == "judge" for i in invariants):
        return await evaluate(invariants, run, allow_partial=allow_partial)
    pool = await judge_pool(run, services.host.settings.allowed_key_env,
                            services.runner.connections)
    try:
        redactor = run_redactor(run, pool.secrets())
        recorded = [c for c in run.calls if c.get("node_id") == JUDGE_NODE]
        replayer = Replayer("hybrid", Cassette.from_calls(recorded, redactor=redactor))
        judge = Judge(ReplayProviders(pool, replayer))
        results = await evaluate(invariants, run, allow_partial=allow_partial, judge=judge)
        if judge.new_calls:
            await record_judge_calls(services, home, run.run_id, judge.new_calls,
                                     secrets=judge.secrets())
        return results
    finally:
        await pool.aclose()


async def record_judge_calls(services: Needs, home: Path, run_id: str,
                             calls: Sequence[dict[str, Any]], *,
                             secrets: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Append a judge's calls to a run: rows of the calls table and lines of its
    trace.jsonl, numbered after its last call, redacted like the run's own (the run's
    secrets plus `secrets`, e.g. judge.secrets()). The run's cost and token totals stay
    those of its own work. Returns the records as stored."""
    if not calls:
        return []
    run = await find_run(services, run_id)
    root = home / run.run_dir
    launch = RunDirectory(root).read_json("config", "launch.json") or {}
    redactor = run_redactor(StoredRun(run=run.as_dict(), launch=launch), secrets)
    async with services.appending_calls:  # two reevals at once would number theirs alike
        last = await services.db.fetchone(
            "SELECT COALESCE(MAX(seq), 0) AS seq FROM calls WHERE run_id = ?", (run_id,))
        seq = int(last["seq"]) if last else 0
        records = []
        for offset, call in enumerate(calls, 1):
            record = {key: value for key, value in call.items() if key != "usage"}
            record.update(run_id=run_id, trace_id=run.trace_id, seq=seq + offset)
            records.append(redactor.values(record))
        await services.runs.record(run_id, stages=(), events=[], calls=records)
        run_dir = RunDirectory(root, redactor)
        try:
            for record in records:
                run_dir.append_trace(record)
        finally:
            run_dir.close()
    return records
