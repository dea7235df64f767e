"""Trials family: `trials.get` and `trials.cancel` (trial sets run through
daemon/runs/trial_sets.py)."""

from __future__ import annotations

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.trials import TrialSetIdParams, TrialSetRef, TrialSetSummary

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


@table.method("trials.cancel")
async def cancel(params: TrialSetRef, ctx: RequestContext) -> TrialSetSummary:
    """Cancel a running trial set and answer once it has stopped."""
    sets = ctx.services.trials
    trial_set = sets.sets.get(params.trial_set_id)
    if trial_set is None:
        ended = await sets.get(params.trial_set_id)  # NOT_FOUND when there is no such set
        raise RpcError(ErrorCode.CONFLICT, f"trial set {params.trial_set_id} is "
                                           f"{ended['status']}, not running")
    await trial_set.cancel()
    return await trial_set.reply(False)
