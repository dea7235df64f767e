"""Pipelines family: pipeline.validate and pipeline.plan (no side effects)."""

from __future__ import annotations

from pathlib import Path

from ostinato.protocol.pipelines import PlanParams, PlanResult, ValidateParams, ValidateResult

from ..engine.load import LoadResult, load_pipeline_async
from ..runs.files import plan_of
from .base import HandlerTable, RequestContext

table = HandlerTable()


async def _load(params: ValidateParams, ctx: RequestContext) -> LoadResult:
    inputs = params.inputs
    variables = {**{k: v for k, v in inputs.items() if isinstance(v, str)}, **params.variables}
    known = ctx.services.runner.handlers.known_types()
    return await load_pipeline_async(params.pipeline, Path.cwd(), variables, known_types=known,
                                     inputs=tuple(inputs),
                                     max_bytes=ctx.services.host.settings.max_pipeline_bytes)


@table.method("pipeline.validate")
async def validate(params: ValidateParams, ctx: RequestContext) -> ValidateResult:
    """Parse, transform and lint."""
    result = await _load(params, ctx)
    return ValidateResult(valid=result.valid, diagnostics=result.diagnostics,
                          pipeline_hash=result.graph.digest() if result.graph else None)


@table.method("pipeline.plan")
async def plan(params: PlanParams, ctx: RequestContext) -> PlanResult:
    """The resolved plan of a valid pipeline; diagnostics either way."""
    result = await _load(params, ctx)
    graph = result.graph
    return PlanResult(valid=result.valid, diagnostics=result.diagnostics,
                      pipeline_hash=graph.digest() if graph else None,
                      plan=plan_of(graph) if graph is not None and result.valid else None)
