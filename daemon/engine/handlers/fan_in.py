"""The fan-in (attractor §4.9): the best of a parallel node's branch results.

Without a `prompt`, the §4.9 heuristic picks: outcome, then score, then id. With one, the
node's model ranks the candidates: the prompt, each branch's answer, and a structured
choice (`fan_in_choice`: best_id, ranking, reason) asked for as verdicts are. Either way the
fan-in fails only when there are no results or every branch failed.
"""

from __future__ import annotations

from typing import Any

from ..outcome import Outcome, Status
from ..verdict import AnswerSpec, strict_object
from .base import NodeRun
from .llm import PromptError, ask_structured, render_prompt

_RANK = {"success": 0, "partial_success": 1, "retry": 2, "fail": 3, "skipped": 4}
CHOICE = "fan_in_choice"


class FanInHandler:
    """Picks the best branch result, by the heuristic or by the node's model."""

    async def execute(self, run: NodeRun) -> Outcome:
        """FAIL only when there are no results, or every branch failed."""
        results: list[dict[str, Any]] = run.value("parallel.results") or []
        if not results:
            return Outcome(Status.FAIL, failure_reason="No parallel results to evaluate")
        best = sorted(results, key=lambda r: (_RANK.get(r["status"], 9),
                                              -(r.get("score") or 0), r["id"]))[0]
        if all(r["status"] == "fail" for r in results):
            return Outcome(Status.FAIL, failure_reason="every parallel branch failed",
                           context_updates={"parallel.fan_in.best_id": best["id"]})
        if run.node.get("prompt"):
            return await _ranked(run, results)
        return Outcome(Status.SUCCESS, notes=f"Selected best candidate: {best['id']}",
                       context_updates={"parallel.fan_in.best_id": best["id"],
                                        "parallel.fan_in.best_outcome": best["status"]})


def choice_spec(ids: list[str]) -> AnswerSpec:
    """The structured choice among candidates `ids`."""
    candidate = {"type": "string", "enum": ids}
    schema = strict_object({
        "best_id": {**candidate, "description": "The id of the best candidate."},
        "ranking": {"type": "array", "items": candidate,
                    "description": "Every candidate's id, best first."},
        "reason": {"type": "string", "description": "Why the best one is best."},
    })
    instructions = (f"Answer with the {CHOICE} structure: best_id, the id of the best "
                    "candidate; ranking, every candidate's id from best to worst; reason, "
                    "why. Candidates: " + ", ".join(ids) + ".")
    return AnswerSpec(CHOICE, "Choose the best candidate.", schema, instructions)


def _candidates(results: list[dict[str, Any]]) -> str:
    parts = []
    for result in results:
        head = f"## Candidate {result['id']} ({result['status']}"
        if result.get("score") is not None:
            head += f", score {result['score']}"
        body = result.get("answer") or result.get("failure_reason") or result.get("notes")
        parts.append(f"{head})\n{body or '(no answer)'}")
    return "\n\n".join(parts)


async def _ranked(run: NodeRun, results: list[dict[str, Any]]) -> Outcome:
    """The model's choice among the candidates; an invalid one fails the attempt."""
    try:
        prompt = render_prompt(run, str(run.node.get("prompt")))
    except PromptError as exc:
        return Outcome(Status.FAIL, failure_reason=str(exc), retryable=False)
    text = f"{prompt}\n\n{_candidates(results)}"
    answer = await ask_structured(run, text, choice_spec([r["id"] for r in results]))
    if isinstance(answer, Outcome):
        return answer
    choice = answer.fields
    best = next(r for r in results if r["id"] == choice["best_id"])
    outcome = Outcome(
        Status.SUCCESS, notes=f"Selected best candidate: {best['id']}",
        context_updates={"parallel.fan_in.best_id": best["id"],
                         "parallel.fan_in.best_outcome": best["status"],
                         "parallel.fan_in.ranking": list(choice["ranking"]),
                         "parallel.fan_in.reason": choice["reason"]},
        answer=str(choice["reason"]))
    if answer.thread is not None:
        outcome.turn = {"thread": answer.thread, "node": run.node.id, "status": "success",
                        "user": text, "assistant": answer.text}
    return outcome
