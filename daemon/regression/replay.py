"""A snapshot's replay: a new run (or trial set) from what the snapshot stored, carrying its
id (`snapshot.replay` and the checks of a test run start replays here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings

from ..runs.launch import Launched, Trials, launch
from ..runs.options import RunOptions
from ..store.records import SnapshotRecord
from ..store.snapshot_schema import UnknownSchema
from ..store.snapshots import SnapshotNotFound, SnapshotStore
from .needs import Needs


async def find_snapshot(snapshots: SnapshotStore, ref: str) -> SnapshotRecord:
    """A snapshot by id, name (its latest version) or name@version; NOT_FOUND saying what
    exists, CONFLICT when a newer daemon wrote it."""
    try:
        return await snapshots.resolve(ref)
    except SnapshotNotFound as exc:
        raise RpcError(ErrorCode.NOT_FOUND, str(exc), exc.data) from None
    except UnknownSchema as exc:
        raise RpcError(ErrorCode.CONFLICT, str(exc), {"id": ref}) from None


async def replay_snapshot(services: Needs, home: Path, snapshot: SnapshotRecord, *,
                          mode: str, trials: int = 1, concurrency: int = 1,
                          overrides: dict[str, Any] | None = None, budget: Any = None,
                          record: str = "full", inputs: dict[str, Any] | None = None,
                          variables: dict[str, str] | None = None) -> Launched:
    """Start a replay of `snapshot`: one run, or a
    trial set when `trials` > 1. `overrides`, `inputs` and `variables` are shallow-merged
    over the stored ones; `budget` is charged by every call (tests.run shares one).
    `recorded` and `hybrid` serve calls from the snapshot's own cassette."""
    ref = PipelineRef(source=snapshot.pipeline["source"],
                      format=snapshot.pipeline["format"])  # type: ignore[arg-type]
    try:
        settings = RunSettings.model_validate({**snapshot.settings, **(overrides or {})})
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        for error in errors:
            error["loc"] = ["overrides", *error["loc"]]
        raise RpcError(ErrorCode.INVALID_PARAMS, "Invalid params: overrides", errors) from None
    cassette = None
    if mode != "live":
        if snapshot.has_cassette:
            cassette = await services.snapshots.cassette(snapshot.id)
        elif mode == "recorded":
            raise RpcError(ErrorCode.CONFLICT,
                           f"snapshot {snapshot.id} ({snapshot.name} "
                           f"v{snapshot.version}) has no cassette to replay from: it was "
                           "made from a pipeline, or from a run recorded metadata_only; "
                           "replay it with mode live or hybrid", {"id": snapshot.id})
        else:
            cassette = []  # hybrid without a recording: every call goes live
    options = RunOptions(record=record, replay_mode=mode,  # type: ignore[arg-type]
                         snapshot_id=snapshot.id, cassette=cassette, budget=budget)
    return await launch(services, ref, {**snapshot.inputs, **(inputs or {})},
                        {**(snapshot.variables or {}), **(variables or {})}, settings, options,
                        Trials(trials, concurrency) if trials > 1 else None)
