"""Trials family: `trials.get` (trial sets run through daemon/runs/trial_sets.py)."""

from __future__ import annotations

from ostinato.protocol.trials import TrialSetIdParams, TrialSetSummary

from .base import HandlerTable, RequestContext

table = HandlerTable()


@table.method("trials.get")
async def get(params: TrialSetIdParams, ctx: RequestContext) -> TrialSetSummary:
    """A trial set's trials and aggregates."""
    sets = ctx.services.trials
    trial_set = sets.sets.get(params.trial_set_id)
    if trial_set is not None:
        return await trial_set.reply(params.wait)
    return TrialSetSummary.model_validate(await sets.get(params.trial_set_id))
