"""Queries for test runs and their per-snapshot results (migration 004)."""

from __future__ import annotations

from typing import Any

import orjson

from ..ids import utc_now
from .db import Database, Statement
from .pages import newest_first
from .records import TEST_RUN_COLUMNS, TestResult, TestRunRecord, summarize

INTERRUPTED_MESSAGE = "not finished: the daemon stopped during the test run"


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class TestRunStore:
    """Everything the store knows about test runs."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, test_run_id: str, *, options: dict[str, Any],
                  cost_limit_usd: float | None, created_at: str,
                  results: list[TestResult]) -> None:
        """A new test run (`running`) with a `pending` result per selected snapshot."""
        statements: list[Statement] = [(
            "INSERT INTO test_runs (id, status, options_json, summary_json, cost_limit_usd, "
            "created_at) VALUES (?, 'running', ?, ?, ?, ?)",
            (test_run_id, _json(options), _json(summarize(results)), cost_limit_usd,
             created_at))]
        if results:
            statements.append((
                "INSERT INTO test_results (test_run_id, idx, snapshot_id, name, version, "
                "status, result_json, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(test_run_id, r.index, r.snapshot_id, r.name, r.version, r.status,
                  _json(r.as_dict()), r.cost_usd) for r in results]))
        await self.db.write(statements)

    @staticmethod
    def _result_statement(test_run_id: str, result: TestResult) -> Statement:
        return ("UPDATE test_results SET status = ?, result_json = ?, cost_usd = ? "
                "WHERE test_run_id = ? AND idx = ?",
                (result.status, _json(result.as_dict()), result.cost_usd, test_run_id,
                 result.index))

    async def save(self, test_run_id: str, results: list[TestResult], *,
                   total_cost_usd: float, summary: dict[str, int],
                   status: str | None = None, message: str | None = None,
                   ended_at: str | None = None) -> None:
        """Some snapshots' results with the test run's summary and cost (and, at the end,
        its status), in one transaction."""
        statements = [self._result_statement(test_run_id, r) for r in results]
        fields: dict[str, Any] = {"summary_json": _json(summary),
                                  "total_cost_usd": round(total_cost_usd, 10)}
        if status is not None:
            fields.update(status=status, message=message, ended_at=ended_at)
        assignments = ", ".join(f"{name} = ?" for name in fields)
        statements.append((f"UPDATE test_runs SET {assignments} WHERE id = ?",
                           (*fields.values(), test_run_id)))
        await self.db.write(statements)

    async def get(self, test_run_id: str) -> TestRunRecord | None:
        """A test run with its results in order, or None."""
        rows = await self.db.rows(f"SELECT {TEST_RUN_COLUMNS} FROM test_runs WHERE id = ?",
                                  (test_run_id,))
        test_run = next((TestRunRecord.from_row(row) for row in rows), None)
        if test_run is None:
            return None
        results = await self.db.rows(
            "SELECT result_json FROM test_results WHERE test_run_id = ? ORDER BY idx",
            (test_run_id,))
        test_run.results = [TestResult(**orjson.loads(text)) for text, in results]
        return test_run

    async def list(self, *, statuses: list[str] | None, limit: int,
                   cursor: str | None) -> tuple[list[TestRunRecord], str | None]:
        """A page of test runs (without results), newest first; the cursor is opaque to
        clients (ValueError when it is not one of ours)."""
        where: list[str] = []
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
        rows, next_cursor = await newest_first(self.db, "test_runs", TEST_RUN_COLUMNS, where,
                                               list(statuses or []), limit=limit,
                                               cursor=cursor)
        return [TestRunRecord.from_row(row) for row in rows], next_cursor

    async def mark_interrupted(self) -> list[str]:
        """Test runs a dead daemon left `running` become `interrupted`: the results that
        finished are kept, the others are `skipped` with a message saying why; returns
        their ids."""
        rows = await self.db.fetchall("SELECT id FROM test_runs WHERE status = 'running'")
        ended = utc_now()
        for row in rows:
            stored = await self.get(row["id"])
            assert stored is not None
            changed = []
            for result in stored.results:
                if result.status in ("pending", "running"):
                    result.status, result.message = "skipped", INTERRUPTED_MESSAGE
                    changed.append(result)
            await self.save(row["id"], changed, total_cost_usd=stored.total_cost_usd,
                            summary=summarize(stored.results), status="interrupted",
                            message="the daemon stopped while the test run ran",
                            ended_at=ended)
        return [row["id"] for row in rows]

