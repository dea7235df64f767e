"""Queries for pipelines, runs, stages, calls and events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ..disk import disk_full
from ..ids import utc_now
from .db import Database, Statement
from .pages import newest_first
from .records import (
    RUN_COLUMNS,
    STAGE_COLUMNS,
    TRIAL_SET_COLUMNS,
    RunRecord,
    StageRecord,
    TrialSetRecord,
)

ACTIVE = ("pending", "running", "waiting")
_RUN_FIELDS = ("status", "outcome", "failure_reason", "resumable", "current_node", "started_at",
               "ended_at", "resumed_from", "cost_usd", "input_tokens", "output_tokens")


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class RunStore:
    """Everything the store knows about runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Run fields a full disk kept out of the store (a run's end, mostly): written with
        # the next write that succeeds, and laid over the rows read meanwhile, so that a
        # run that stopped is never reported running.
        self.unwritten: dict[str, dict[str, Any]] = {}

    async def add_run(self, *, pipeline_hash: str, pipeline_name: str, pipeline_format: str,
                      source: str, run: dict[str, Any], concurrent: bool = False,
                      pipeline_stored: bool = False) -> None:
        """Record a pipeline (once per hash, unless `pipeline_stored`) and a new run of it;
        `concurrent` as in Database.write."""
        pipeline: list[Statement] = [] if pipeline_stored else [
            ("INSERT OR IGNORE INTO pipelines (hash, name, format, source, created_at) "
             "VALUES (?, ?, ?, ?, ?)",
             (pipeline_hash, pipeline_name, pipeline_format, source, utc_now()))]
        await self.db.write([
            *pipeline,
            ("INSERT INTO runs (id, pipeline_hash, pipeline_name, status, run_dir, trace_id, "
             "inputs_json, settings_json, created_at, started_at, record, replay_of, "
             "replay_mode, trial_set_id, trial_index, snapshot_id, parent_run_id, "
             "parent_node, parent_key) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (run["id"], pipeline_hash, pipeline_name, run["status"], run["run_dir"],
              run["trace_id"], _json(run.get("inputs", {})), _json(run.get("settings", {})),
              run["created_at"], run.get("started_at"), run.get("record", "full"),
              run.get("replay_of"), run.get("replay_mode"), run.get("trial_set_id"),
              run.get("trial_index"), run.get("snapshot_id"), run.get("parent_run_id"),
              run.get("parent_node"), run.get("parent_key"))),
        ], concurrent=concurrent)

    @staticmethod
    def update_statement(run_id: str, **fields: Any) -> tuple[str, tuple[Any, ...]]:
        """The UPDATE for some of a run's fields (to batch with other writes)."""
        unknown = set(fields) - set(_RUN_FIELDS)
        if unknown:
            raise ValueError(f"unknown run fields {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        return f"UPDATE runs SET {assignments} WHERE id = ?", (*fields.values(), run_id)

    async def update_run(self, run_id: str, *, concurrent: bool = False,
                         **fields: Any) -> None:
        """Change some of a run's fields; `concurrent` as in Database.write (a change that
        must follow writes of the group being committed joins the group)."""
        await self._write(run_id, [self.update_statement(run_id, **fields)], None,
                          concurrent=concurrent)

    async def _write(self, run_id: str, statements: list[Statement],
                     run_fields: dict[str, Any] | None, concurrent: bool = False) -> None:
        """Write `statements`, after the run fields a full disk kept out; when the disk is
        still full, `run_fields` (what a run reports of itself: true whether written or
        not) wait with them."""
        waiting = dict(self.unwritten)
        earlier = [self.update_statement(rid, **fields) for rid, fields in waiting.items()]
        try:
            await self.db.write(earlier + statements, concurrent=concurrent)
        except Exception as exc:
            if run_fields and disk_full(exc):
                self.unwritten[run_id] = {**self.unwritten.get(run_id, {}), **run_fields}
            raise
        for rid, fields in waiting.items():
            if self.unwritten.get(rid) is fields:
                del self.unwritten[rid]

    async def write_unwritten(self) -> bool:
        """Try again to write what a full disk kept out; True when nothing is left."""
        if self.unwritten:
            try:
                await self._write("", [], None)
            except Exception as exc:
                if not disk_full(exc):
                    raise
        return not self.unwritten

    def _as_known(self, run: RunRecord) -> RunRecord:
        """A run with the fields a full disk kept out of its row."""
        fields = self.unwritten.get(run.id)
        if fields is not None:
            for name, value in fields.items():
                setattr(run, name, value)
        return run

    async def _runs(self, where: str, params: tuple[Any, ...]) -> list[RunRecord]:
        """The runs `where` selects (an SQL tail: WHERE, ORDER BY, LIMIT)."""
        rows = await self.db.rows(f"SELECT {RUN_COLUMNS} FROM runs {where}", params)
        return [self._as_known(RunRecord(*row)) for row in rows]

    async def record(self, run_id: str, *, stages: Sequence[dict[str, Any]],
                     events: list[dict[str, Any]], calls: list[dict[str, Any]],
                     run_fields: dict[str, Any] | None = None,
                     concurrent: bool = False) -> None:
        """Stages (usually one) with the events and calls since the last ones, in one
        transaction; `concurrent` as in Database.write."""
        statements: list[Statement] = []
        for call in calls:
            statements.append((
                "INSERT INTO calls (id, run_id, trace_id, seq, node_id, attempt, kind, "
                "request_json, response_json, input_tokens, output_tokens, cost_usd, "
                "latency_ms, error, finish_reason, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (call["id"], run_id, call["trace_id"], call["seq"], call["node_id"],
                 call["attempt"], call["kind"], _json(call["request"]),
                 None if call["response"] is None else _json(call["response"]),
                 call["input_tokens"], call["output_tokens"], call["cost_usd"],
                 call["latency_ms"], call["error"], call["finish_reason"],
                 call["created_at"])))
        if events:
            statements.append((
                "INSERT INTO events (run_id, seq, type, data_json, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(run_id, event["seq"], event["type"], _json(event["data"]), event["time"])
                 for event in events]))
        if stages:
            rows = [(run_id, stage["seq"], stage["node_id"], stage["attempt"], stage["status"],
                     stage["handler"], stage["branch"], stage["started_at"], stage["ended_at"],
                     stage["duration_ms"], _json(stage["outcome"])) for stage in stages]
            statements.append((
                "INSERT INTO stages (run_id, seq, node_id, attempt, status, handler, branch, "
                "started_at, ended_at, duration_ms, outcome_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows[0] if len(rows) == 1 else rows))
        if run_fields:
            statements.append(self.update_statement(run_id, **run_fields))
        if statements:
            await self._write(run_id, statements, run_fields, concurrent=concurrent)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """One run."""
        runs = await self._runs("WHERE id = ?", (run_id,))
        return runs[0] if runs else None

    async def run_with_trace(self, trace_id: str) -> RunRecord | None:
        """The run whose own trace is `trace_id`."""
        runs = await self._runs("WHERE trace_id = ?", (trace_id,))
        return runs[0] if runs else None

    async def child_run(self, parent_run_id: str, key: str) -> RunRecord | None:
        """The child a parent run's manager node started for `key` (node:visit:attempt)."""
        runs = await self._runs("WHERE parent_run_id = ? AND parent_key = ? "
                                "ORDER BY created_at DESC LIMIT 1", (parent_run_id, key))
        return runs[0] if runs else None

    async def children(self, parent_run_id: str) -> list[str]:
        """The ids of a run's child runs, oldest first."""
        rows = await self.db.fetchall(
            "SELECT id FROM runs WHERE parent_run_id = ? ORDER BY created_at, id",
            (parent_run_id,))
        return [row["id"] for row in rows]

    async def add_trial_set(self, set_id: str, *, pipeline_hash: str, pipeline_name: str,
                            pipeline_format: str, source: str, trials: int, concurrency: int,
                            early_stop: bool, pass_threshold: float, set_dir: str,
                            created_at: str) -> None:
        """Record a pipeline (once per hash) and a new trial set of it."""
        await self.db.write([
            ("INSERT OR IGNORE INTO pipelines (hash, name, format, source, created_at) "
             "VALUES (?, ?, ?, ?, ?)",
             (pipeline_hash, pipeline_name, pipeline_format, source, created_at)),
            ("INSERT INTO trial_sets (id, pipeline_hash, pipeline_name, status, trials, "
             "concurrency, early_stop, pass_threshold, set_dir, created_at) "
             "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
             (set_id, pipeline_hash, pipeline_name, trials, concurrency, int(early_stop),
              pass_threshold, set_dir, created_at)),
        ])

    async def update_trial_set(self, set_id: str, *, status: str, summary: dict[str, Any],
                               ended_at: str | None) -> None:
        """A trial set's status and aggregates as of its last finished trial."""
        await self.db.write([("UPDATE trial_sets SET status = ?, summary_json = ?, "
                               "ended_at = ? WHERE id = ?",
                               (status, _json(summary), ended_at, set_id))])

    async def get_trial_set(self, set_id: str) -> TrialSetRecord | None:
        """One trial set."""
        rows = await self.db.rows(f"SELECT {TRIAL_SET_COLUMNS} FROM trial_sets WHERE id = ?",
                                  (set_id,))
        return next((TrialSetRecord(*row) for row in rows), None)

    async def trial_runs(self, set_id: str) -> list[RunRecord]:
        """The runs of a trial set, by trial index."""
        return await self._runs("WHERE trial_set_id = ? ORDER BY trial_index", (set_id,))

    async def mark_trial_sets_interrupted(self) -> int:
        """Trial sets a dead daemon left running: their finished trials are kept."""
        rows = await self.db.fetchall("SELECT id FROM trial_sets WHERE status = 'running'")
        if rows:
            await self.db.write([("UPDATE trial_sets SET status = 'interrupted' "
                                  "WHERE status = 'running'", ())])
        return len(rows)

    async def stages(self, run_id: str) -> list[StageRecord]:
        """A run's stages in order."""
        rows = await self.db.rows(
            f"SELECT {STAGE_COLUMNS} FROM stages WHERE run_id = ? ORDER BY seq", (run_id,))
        return [StageRecord.from_row(row) for row in rows]

    async def drop_calls(self, run_id: str, seqs: list[int]) -> None:
        """Remove calls a resumed run makes again under the same numbers (an agent's
        finished turns, served from its trace), and take them out of the run's totals, so
        that they are counted once."""
        if not seqs:
            return
        marks = ", ".join("?" * len(seqs))
        chosen = f"FROM calls WHERE run_id = ? AND seq IN ({marks})"
        totals = ", ".join(f"{name} = {name} - (SELECT COALESCE(SUM({name}), 0) {chosen})"
                           for name in ("cost_usd", "input_tokens", "output_tokens"))
        await self._write(run_id, [
            (f"UPDATE runs SET {totals} WHERE id = ?", (*(run_id, *seqs) * 3, run_id)),
            (f"DELETE {chosen}", (run_id, *seqs))], None)

    async def next_sequences(self, run_id: str) -> tuple[int, int]:
        """The next event seq and stage seq of a run (continued across resumes)."""
        row = await self.db.fetchone(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?) AS events, "
            "(SELECT COALESCE(MAX(seq), 0) FROM stages WHERE run_id = ?) AS stages",
            (run_id, run_id))
        assert row is not None
        return row["events"] + 1, row["stages"] + 1

    async def list_runs(self, *, statuses: list[str] | None, pipeline: str | None,
                        since: str | None, until: str | None, limit: int,
                        cursor: str | None) -> tuple[list[RunRecord], str | None]:
        """A page of runs, newest first; the cursor is opaque to clients (ValueError when it
        is not one of ours)."""
        where: list[str] = []
        params: list[Any] = []
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += statuses
        if pipeline:
            where.append("(pipeline_name = ? OR pipeline_hash = ?)")
            params += [pipeline, pipeline]
        if since:
            where.append("created_at >= ?")
            params.append(since)
        if until:
            where.append("created_at < ?")
            params.append(until)
        rows, cursor = await newest_first(self.db, "runs", RUN_COLUMNS, where, params,
                                          limit=limit, cursor=cursor)
        runs = [RunRecord(*row) for row in rows]
        if self.unwritten:  # a run the store still says is running may have stopped
            runs = [run for run in map(self._as_known, runs)
                    if not statuses or run.status in statuses]
        return runs, cursor

    async def mark_interrupted(self) -> list[RunRecord]:
        """Runs that were active when the daemon died: interrupted and resumable; returns
        them as they are now."""
        runs = await self._runs(f"WHERE status IN ({', '.join('?' * len(ACTIVE))})", ACTIVE)
        if runs:
            await self.db.write([(
                f"UPDATE runs SET status = 'interrupted', resumable = 1 "
                f"WHERE id IN ({', '.join('?' * len(runs))})", tuple(run.id for run in runs))])
        for run in runs:
            run.status, run.resumable = "interrupted", 1
        return runs
