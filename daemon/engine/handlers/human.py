"""The wait.human handler (attractor §4.6): a multiple-choice question from the node's edges."""

from __future__ import annotations

import asyncio
import re

from ..edges import normalize_label
from ..outcome import Outcome, Status
from .base import NodeRun, Question

_KEY_PATTERNS = (re.compile(r"^\s*\[(\w)\]"), re.compile(r"^\s*(\w)\)"),
                 re.compile(r"^\s*(\w)\s+-\s"))


def accelerator_key(label: str) -> str:
    """`[K] Label`, `K) Label`, `K - Label`, else the first character (§4.6)."""
    for pattern in _KEY_PATTERNS:
        match = pattern.match(label)
        if match:
            return match.group(1).upper()
    return label.strip()[:1].upper()


def match_option(answer: str, options: list[dict[str, str]]) -> dict[str, str] | None:
    """The option an answer names: its key, its label (normalised) or its target node."""
    wanted = answer.strip()
    for option in options:
        if wanted.upper() == option["key"] or wanted == option["target"]:
            return option
    for option in options:
        if normalize_label(wanted) == normalize_label(option["label"]):
            return option
    return None


class WaitHumanHandler:
    """Asks the run's interviewer and routes on the answer."""

    handles_timeout = True  # on timeout: `human.default_choice`, else RETRY (§4.6, §6.5)

    async def execute(self, run: NodeRun) -> Outcome:
        """Ask; SKIPPED (no answer) fails the node, an unknown answer takes the first option."""
        edges = run.graph.outgoing(run.node.id)
        if not edges:
            return Outcome(Status.FAIL, failure_reason="No outgoing edges for human gate")
        options = []
        for edge in edges:
            label = edge.label or edge.target
            options.append({"key": accelerator_key(label), "label": label,
                            "target": edge.target})
        default = run.node.get("human.default_choice")
        question = Question(
            id=f"{run.node.id}:{run.executor.state.stage_seq + 1}",
            run_id=run.executor.run_id, node_id=run.node.id,
            text=run.node.label or "Select an option:", options=options,
            default=str(default) if default else None)
        timeout = run.node.get("timeout")
        try:
            async with asyncio.timeout(timeout.seconds if timeout is not None else None):
                answer = await run.executor.interviewer.ask(question)
        except TimeoutError:
            run.executor.emit("InterviewTimeout", question_id=question.id,
                              stage=run.node.id, duration_ms=timeout.ms)
            if question.default is None:
                return Outcome(Status.RETRY, failure_reason="human gate timeout, no default")
            answer = question.default
        if answer is None:
            return Outcome(Status.FAIL, failure_reason="human skipped interaction")
        selected = match_option(answer, options) or options[0]
        return Outcome(
            Status.SUCCESS, preferred_label=selected["label"],
            suggested_next_ids=[selected["target"]],
            context_updates={"human.gate.selected": selected["key"],
                             "human.gate.label": selected["label"],
                             "human.gate.answer": answer},
            notes=f"human chose {selected['label']}")
