"""Tests family: tests.run, tests.get, tests.list, tests.report, tests.cancel,
tests.subscribe and tests.unsubscribe; regression/suite.py runs the test runs."""

from __future__ import annotations

import asyncio

from ostinato.protocol.base import NullResult
from ostinato.protocol.tests import (
    TestRunIdParams,
    TestRunRef,
    TestRunSummary,
    TestsListParams,
    TestsListResult,
    TestsReportParams,
    TestsReportResult,
    TestsRunParams,
    TestsSubscribeParams,
)

from ..regression.suite import TestRuns
from ..store.records import TestResult
from .base import HandlerTable, RequestContext, cursor_errors

table = HandlerTable()


def _runs(ctx: RequestContext) -> TestRuns:
    return ctx.services.tests


@table.method("tests.run")
async def run(params: TestsRunParams, ctx: RequestContext) -> TestRunSummary:
    """Start a test run; with `wait`, answer when it has ended (progress per snapshot)."""
    runs = _runs(ctx)
    test_run = await runs.start(params, ctx.connection)
    if not params.wait:
        return test_run.record().result()
    progress, total = ctx.progress, len(test_run.results)
    progress.begin(f"test run {test_run.id}", f"0/{total} snapshots", 0)

    def report(result: TestResult) -> None:
        finished = result.index + 1
        progress.report(f"{finished}/{total} {result.name} v{result.version}: "
                        f"{result.status}", int(100 * finished / total))

    test_run.listeners.append(report)
    try:
        ended = await runs.get(test_run.id, wait=True)
    except asyncio.CancelledError:
        if params.cancel_with_request:  # answered -32800 once the test run has stopped
            await runs.cancel(test_run.id)
        raise
    progress.end(f"test run {test_run.id} {ended.status}")
    return ended.result()


@table.method("tests.get")
async def get(params: TestRunIdParams, ctx: RequestContext) -> TestRunSummary:
    """A test run, live or stored."""
    return (await _runs(ctx).get(params.test_run_id, params.wait)).result()


@table.method("tests.list")
async def list_test_runs(params: TestsListParams, ctx: RequestContext) -> TestsListResult:
    """Test runs newest first, paged."""
    with cursor_errors():
        test_runs, cursor = await _runs(ctx).store.list(
            statuses=params.status, limit=params.limit, cursor=params.cursor)
    return TestsListResult(test_runs=[test_run.entry() for test_run in test_runs],
                           next_cursor=cursor)


@table.method("tests.report")
async def report(params: TestsReportParams, ctx: RequestContext) -> TestsReportResult:
    """A test run rendered as JUnit XML, Markdown or HTML."""
    from ..regression import reports  # rarely asked for: not imported when the daemon starts

    # Through the model: a report renders exactly what tests.get answers.
    validated = (await _runs(ctx).get(params.test_run_id)).result().model_dump(mode="json")
    content, media_type = reports.render(validated, params.format)
    return TestsReportResult(test_run_id=params.test_run_id, format=params.format,
                             media_type=media_type, content=content)


@table.method("tests.cancel")
async def cancel(params: TestRunRef, ctx: RequestContext) -> TestRunSummary:
    """Cancel a running test run."""
    return (await _runs(ctx).cancel(params.test_run_id)).result()


@table.method("tests.subscribe")
def subscribe(params: TestsSubscribeParams, ctx: RequestContext) -> NullResult:
    """Send this connection the test run's `tests/event` notifications."""
    ctx.connection.subscriptions.add(f"tests:{params.test_run_id}")
    return NullResult()


@table.method("tests.unsubscribe")
def unsubscribe(params: TestsSubscribeParams, ctx: RequestContext) -> NullResult:
    """Stop sending them."""
    ctx.connection.subscriptions.discard(f"tests:{params.test_run_id}")
    return NullResult()
