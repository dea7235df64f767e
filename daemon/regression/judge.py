"""The judge of a snapshot's replay in a test run (check.py calls it).

Each trial is judged by a Judge of its own, so that its calls are recorded on the run it
judged (stored.record_judge_calls). Its providers are the run's (stored.judge_pool),
behind the snapshot's recorded `$judge` calls in modes `recorded` and `hybrid` (a recorded
replay's judge costs nothing), and behind the test run's Budget: no judge call starts once
it is spent, and each is charged when it returns. A call refused by the budget, or a
recorded replay whose judge call the cassette does not hold, fails that vote (a
ProviderError), which makes the `judge` check `error`. With trials, evaluate_trials then
aggregates the trials, hearing the same votes again from `Votes` (no call is made twice).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.budget import Budget, BudgetExceeded
from ..engine.providers.base import ProviderError
from ..engine.replay import Cassette, ReplayDivergence, Replayer, ReplayProviders
from .invariants import JUDGE_NODE, Judge, StoredRun, evaluate
from .stored import judge_pool, record_judge_calls, run_redactor

if TYPE_CHECKING:
    from .needs import Needs

REFUSED = "not asked: "  # how a vote the budget refused fails


class ChargedProviders:
    """Providers drawing on a budget; replay divergences and refusals become a failed
    call (ProviderError), which is what the judge expects of a call that did not work."""

    def __init__(self, providers: Any, budget: Budget | None) -> None:
        self.providers = providers
        self.budget = budget
        self.refused = False  # a judge call was not made for want of budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self.providers, name)

    def resolve(self, request: Any) -> Any:
        """The wrapped providers' resolution."""
        return self.providers.resolve(request)

    async def complete(self, request: Any) -> Any:
        """The call, if the budget still allows one."""
        if self.budget is not None:
            try:
                self.budget.check()
            except BudgetExceeded as exc:
                self.refused = True
                raise ProviderError(f"{REFUSED}{exc}", kind="budget") from None
        try:
            response = await self.providers.complete(request)
        except ReplayDivergence as exc:
            raise ProviderError(f"the snapshot's cassette has no such judge call: {exc}",
                                kind="divergence") from None
        if self.budget is not None:
            self.budget.charge(response.cost_usd)
        return response


class TrialJudge(Judge):
    """A Judge that also keeps each vote's outcome (the vote, or the error it raised)."""

    def __init__(self, providers: Any, outcomes: list[Any]) -> None:
        super().__init__(providers)
        self.outcomes = outcomes

    async def vote(self, invariant: Any, text: str, number: int) -> str | None:
        """One vote, its outcome kept."""
        try:
            answer = await super().vote(invariant, text, number)
        except ProviderError as exc:
            self.outcomes.append(exc)
            raise
        self.outcomes.append(answer)
        return answer


class Votes:
    """A judge that gives, in order, the outcomes the trials' own judges had."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = deque(outcomes)

    async def vote(self, invariant: Any, text: str, number: int) -> str | None:
        """The next outcome: a vote, or the error that vote raised."""
        outcome = self.outcomes.popleft()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[no-any-return]


class Judged:
    """What judging the trials left: the outcomes in order, the cost, whether the budget
    refused a call."""

    def __init__(self) -> None:
        self.outcomes: list[Any] = []
        self.cost_usd = 0.0
        self.refused = False


async def judge_trials(services: Needs, home: Path, runs: list[StoredRun],
                       invariants: list[Any], *, mode: str, budget: Budget | None,
                       cassette: list[dict[str, Any]],
                       evaluate_all: bool) -> tuple[Judged, list[list[dict[str, Any]]]]:
    """Judge each run with a Judge of its own and record its calls on that run. With
    `evaluate_all` every invariant is evaluated (one run, no trials: its results are
    returned), else only the `judge` ones (their votes are for evaluate_trials)."""
    judged = Judged()
    recorded = [c for c in cassette if c.get("node_id") == JUDGE_NODE]
    checks = invariants if evaluate_all else [i for i in invariants
                                              if getattr(i, "type", None) == "judge"]
    results = []
    for run in runs:
        pool = await judge_pool(run, services.host.settings.allowed_key_env,
                                services.runner.connections)
        # Recorded requests had the run's secrets redacted: the new ones are matched so too.
        redactor = run_redactor(run, pool.secrets())
        providers: Any = pool if mode == "live" else ReplayProviders(pool, Replayer(
            mode, Cassette.from_calls(recorded, redactor=redactor)))  # type: ignore[arg-type]
        charged = ChargedProviders(providers, budget)
        judge = TrialJudge(charged, judged.outcomes)
        try:
            results.append(await evaluate(checks, run, judge=judge))
        finally:
            await pool.aclose()
        judged.cost_usd += judge.cost_usd
        judged.refused = judged.refused or charged.refused
        # A vote the budget refused never started: it is no call of the run's.
        made = [c for c in judge.calls if not str(c.get("error") or "").startswith(REFUSED)]
        await record_judge_calls(services, home, run.run_id, made, secrets=judge.secrets())
    return judged, results
