"""Evaluating invariants against one stored run: one evaluator per `type` in `EVALUATORS`
(filled by the family modules), the metadata_only rule for content checks, and the verdict."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ostinato.protocol.invariants import (
    ACROSS_TRIALS,
    CONTENT_CHECKS,
    InvariantBase,
    invariant_list,
)

from .model import NotRecorded, StoredRun, Unavailable

if TYPE_CHECKING:
    from .judge import Judge

# An evaluator: (invariant, run, judge) -> {status, expected, actual, message} (or an
# awaitable of it); raises Unavailable when the check cannot be evaluated.
Evaluator = Callable[[Any, StoredRun, "Judge | None"],
                     dict[str, Any] | Awaitable[dict[str, Any]]]
EVALUATORS: dict[str, Evaluator] = {}
log = logging.getLogger("ostinato.invariants")


def evaluator(*types: str) -> Callable[[Evaluator], Evaluator]:
    """Register a function as the evaluator of these invariant types."""
    def register(function: Evaluator) -> Evaluator:
        for type_ in types:
            EVALUATORS[type_] = function
        return function
    return register


def expected_of(invariant: Any) -> Any:
    """What an invariant expects, for results that never got as far as an evaluator: its
    `value`, or else its settings."""
    if "value" in type(invariant).model_fields:
        return invariant.value
    return invariant.model_dump(mode="json", exclude={"type", "description"})


def parsed(invariants: Iterable[InvariantBase | dict[str, Any]]) -> list[InvariantBase]:
    """Invariant models; dicts (as snapshots store them) are validated into models."""
    items = list(invariants)
    if all(isinstance(item, InvariantBase) for item in items):
        return items  # type: ignore[return-value]
    return [item if isinstance(item, InvariantBase) else invariant_list.validate_python(
        [item])[0] for item in items]


async def evaluate(invariants: Iterable[InvariantBase | dict[str, Any]], run: StoredRun, *,
                   allow_partial: bool = False,
                   judge: Judge | None = None) -> list[dict[str, Any]]:
    """One result per invariant, in order: {type, description, status, expected, actual,
    message}. Invariants are models, or dicts validated here (a ValidationError when one is
    bad). Across-trials checks (`pass_rate`, `pass_at_k`) need a trial set: on one run they
    are `skipped` (evaluate_trials evaluates them)."""
    return [await evaluate_one(invariant, run, allow_partial=allow_partial, judge=judge)
            for invariant in parsed(invariants)]


async def evaluate_one(invariant: InvariantBase, run: StoredRun, *,
                       allow_partial: bool = False,
                       judge: Judge | None = None) -> dict[str, Any]:
    """One invariant's result on one run."""
    type_ = getattr(invariant, "type", type(invariant).__name__)
    base = {"type": type_, "description": invariant.description}
    if type_ in ACROSS_TRIALS:
        return {**base, "status": "skipped", "expected": expected_of(invariant),
                "actual": None,
                "message": f"`{type_}` is an across-trials check: it is evaluated over the "
                           "runs of a trial set (tests.run or snapshot.replay with trials), "
                           "not on one run"}
    if type_ in CONTENT_CHECKS and run.record != "full":
        status = "skipped" if allow_partial else "error"
        return {**base, "status": status, "expected": expected_of(invariant), "actual": None,
                "message": f"the run was recorded `{run.record}`: its content was not kept"
                           + (", check skipped (allow_partial)" if allow_partial else
                              "; pass allow_partial to skip such checks")}
    check = EVALUATORS.get(type_)
    if check is None:  # a model without an evaluator: a bug, reported, not raised
        return {**base, "status": "error", "expected": None, "actual": None,
                "message": f"no evaluator for invariant type {type_!r}"}
    try:
        answer = check(invariant, run, judge)
        if inspect.isawaitable(answer):
            answer = await answer
    except Unavailable as exc:
        status = "skipped" if allow_partial and isinstance(exc, NotRecorded) else "error"
        return {**base, "status": status, "expected": expected_of(invariant), "actual": None,
                "message": str(exc)}
    except Exception as exc:  # a library's surprise (or our bug): this check errors, no other
        log.exception("invariant %s could not be evaluated", type_)
        return {**base, "status": "error", "expected": expected_of(invariant), "actual": None,
                "message": f"the check could not be evaluated: {type(exc).__name__}: {exc}"}
    return {**base, **answer}


def verdict(results: Sequence[dict[str, Any]]) -> str:
    """`passed` when no result failed or errored (skipped ones do not count)."""
    return "failed" if any(r["status"] in ("failed", "error") for r in results) else "passed"
