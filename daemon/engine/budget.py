"""A cost budget shared by the runs of a test run: once spent, nothing new starts.

The executor checks it before every node attempt and charges it with every recorded call's
cost, so concurrent runs (a snapshot's trials, one snapshot after another) draw on one limit.
Calls already in flight finish and are charged: a budget can be overshot by at most what
the runs had in flight when it was reached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class BudgetExceeded(Exception):
    """Raised before work starts once the budget is spent; the run ends `budget_exceeded`."""

    def __init__(self, budget: Budget) -> None:
        self.spent_usd = budget.spent_usd
        self.limit_usd = budget.limit_usd
        super().__init__(f"cost budget reached: ${self.spent_usd:.6g} spent of "
                         f"${self.limit_usd:.6g}")


class Budget:
    """A cost limit in US dollars and what has been spent against it."""

    def __init__(self, limit_usd: float) -> None:
        if limit_usd < 0:
            raise ValueError("a budget's limit cannot be negative")
        self.limit_usd = float(limit_usd)
        self.spent_usd = 0.0
        # Told the spending once it reaches the limit: runs executing elsewhere (on workers,
        # each checking a copy of this budget) learn of it.
        self.on_exceeded: list[Callable[[float], None]] = []

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        """A copy of a budget, from its `to_dict`."""
        budget = cls(data["limit_usd"])
        budget.spent_usd = float(data["spent_usd"])
        return budget

    @property
    def exceeded(self) -> bool:
        """True once the spending reached the limit. Free work never exceeds a budget, so a
        limit of 0 lets recorded replays (which cost nothing) run and stops at the first
        paid call."""
        return self.spent_usd >= self.limit_usd and self.spent_usd > 0

    def charge(self, cost_usd: float | None) -> None:
        """Add what a call cost."""
        if cost_usd:
            was = self.exceeded
            self.spent_usd += float(cost_usd)
            if self.exceeded and not was:
                for tell in list(self.on_exceeded):
                    tell(self.spent_usd)

    def spent_elsewhere(self, spent_usd: float) -> None:
        """A copy learns what the budget it copies has spent (at least)."""
        self.spent_usd = max(self.spent_usd, spent_usd)

    def check(self) -> None:
        """Raise BudgetExceeded once the limit is reached."""
        if self.exceeded:
            raise BudgetExceeded(self)

    def to_dict(self) -> dict[str, float]:
        """For events and reports."""
        return {"limit_usd": self.limit_usd, "spent_usd": round(self.spent_usd, 10)}
