"""The wait.human handler (attractor §4.6): a question of one of the §6.2 types, asked through
the run's interviewer. Multiple choice offers the node's edges; yes/no routes on the edges
labelled Yes and No; a confirmation fails the node when refused; freeform takes any text."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from ..edges import normalize_label
from ..graph import Graph, Node
from ..outcome import Outcome, Status
from .base import ACCEPTED_YES_NO, QUESTION_TYPES, YES_NO_TYPES, NodeRun, Question, yes_or_no
from .llm import PromptError, render_prompt

_KEY_PATTERNS = (re.compile(r"^\s*\[(\w)\]"), re.compile(r"^\s*(\w)\)"),
                 re.compile(r"^\s*(\w)\s+-\s"))


def accelerator_key(label: str) -> str:
    """`[K] Label`, `K) Label`, `K - Label`, else the first character (§4.6)."""
    for pattern in _KEY_PATTERNS:
        match = pattern.match(label)
        if match:
            return match.group(1).upper()
    return label.strip()[:1].upper()


def match_option(answer: str, options: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The option an answer names: its key, its label (normalised) or its target node."""
    wanted = answer.strip()
    for option in options:
        if wanted.upper() == option["key"] or wanted == option["target"]:
            return option
    for option in options:
        if normalize_label(wanted) == normalize_label(option["label"]):
            return option
    return None


def question_type(node: Node) -> str:
    """The node's `human.type` (any case); multiple_choice when absent or unknown (the
    `human_type_known` lint rule warns about an unknown one)."""
    value = str(node.get("human.type", "multiple_choice")).strip().lower()
    return value if value in QUESTION_TYPES else "multiple_choice"


def attr_text(value: Any) -> str:
    """An attribute value as the text it was written as (`true`, not Python's `True`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def choice_options(graph: Graph, node: Node) -> list[dict[str, Any]]:
    """A multiple-choice gate's options: one per outgoing edge, in declaration order."""
    options = []
    for edge in graph.outgoing(node.id):
        label = edge.label or edge.target
        options.append({"key": accelerator_key(label), "label": label, "target": edge.target})
    return options


def yes_no_options(graph: Graph, node: Node, kind: str) -> list[dict[str, Any]]:
    """Yes (Y) and No (N). A yes_no option's target is the edge whose label normalises to
    its word (`[Y] Yes` → yes); a confirmation routes by outcome, so it has none."""
    targets: dict[str, str] = {}
    if kind == "yes_no":
        for edge in graph.outgoing(node.id):
            targets.setdefault(normalize_label(edge.label), edge.target)
    return [{"key": "Y", "label": "Yes", "target": targets.get("yes")},
            {"key": "N", "label": "No", "target": targets.get("no")}]


class WaitHumanHandler:
    """Asks the run's interviewer and routes on the answer."""

    handles_timeout = True  # on timeout: `human.default_choice`, else RETRY (§4.6, §6.5)

    async def execute(self, run: NodeRun) -> Outcome:
        """Ask; SKIPPED (no answer) fails the node; the answer goes to the context."""
        node, kind = run.node, question_type(run.node)
        if kind == "multiple_choice":
            options = choice_options(run.graph, node)
            if not options:
                return Outcome(Status.FAIL, failure_reason="No outgoing edges for human gate")
        elif kind in YES_NO_TYPES:
            options = yes_no_options(run.graph, node, kind)
        else:
            options = []
        try:  # the question may quote the context: `label="Ship it? ${plan.response}"`
            text = render_prompt(run, node.label, "label")
        except PromptError as exc:
            return Outcome(Status.FAIL, failure_reason=str(exc), retryable=False)
        default = node.get("human.default_choice")
        shown = None if default is None else attr_text(default)
        if shown is not None and kind in YES_NO_TYPES:
            shown = yes_or_no(shown) or shown  # a valid default is shown as yes or no
        question = Question(
            id=f"{node.id}:{run.executor.state.stage_seq + 1}",
            run_id=run.executor.run_id, node_id=node.id,
            text=text, options=options, default=shown,  # the label, else the id
            type=kind)
        timeout = node.get("timeout")
        try:
            async with asyncio.timeout(timeout.seconds if timeout is not None else None):
                answer = await run.executor.interviewer.ask(question)
        except TimeoutError:
            run.executor.emit("InterviewTimeout", question_id=question.id,
                              stage=node.id, duration_ms=timeout.ms)
            if question.default is None:
                return Outcome(Status.RETRY, failure_reason="human gate timeout, no default")
            answer = question.default
            if kind in YES_NO_TYPES and yes_or_no(answer) is None:
                return _not_yes_or_no(f"human.default_choice {answer!r}")
        if answer is None:
            return Outcome(Status.FAIL, failure_reason="human skipped interaction")
        if kind == "multiple_choice":
            outcome = _chosen(node, answer, options)
        elif kind in YES_NO_TYPES:
            outcome = _yes_or_no(node, kind, answer, options)
        else:
            outcome = _freeform(node, answer)
        outcome.answer = answer
        return outcome


def _answer_updates(node: Node, answer: str, key: str, label: str) -> dict[str, Any]:
    # `<node>.answer` keeps each gate's answer apart; `human.gate.*` is the latest gate's.
    return {"human.gate.selected": key, "human.gate.label": label,
            "human.gate.answer": answer, f"{node.id}.answer": answer}


def _chosen(node: Node, answer: str, options: list[dict[str, Any]]) -> Outcome:
    """Multiple choice: the option the answer names, else the first (§4.6)."""
    selected = match_option(answer, options) or options[0]
    return Outcome(
        Status.SUCCESS, preferred_label=selected["label"],
        suggested_next_ids=[selected["target"]],
        context_updates=_answer_updates(node, answer, selected["key"], selected["label"]),
        notes=f"human chose {selected['label']}")


def _yes_or_no(node: Node, kind: str, answer: str, options: list[dict[str, Any]]) -> Outcome:
    """yes_no succeeds either way and routes on the Yes/No edge; a refused confirmation
    fails the node."""
    word = yes_or_no(answer)
    if word is None:
        # Only a preset answer (or another interviewer) gets here: human.answer refuses it.
        return _not_yes_or_no(f"answer {answer!r}")
    option = options[0] if word == "yes" else options[1]
    updates = _answer_updates(node, word, option["key"], option["label"])
    if kind == "confirmation" and word == "no":
        # A person's "no" is a decision: retrying the node would only ask again.
        return Outcome(Status.FAIL, preferred_label=word, failure_reason="not confirmed",
                       context_updates=updates, notes="human did not confirm",
                       retryable=False)
    return Outcome(Status.SUCCESS, preferred_label=word,
                   suggested_next_ids=[option["target"]] if option["target"] else [],
                   context_updates=updates, notes=f"human answered {word}")


def _not_yes_or_no(what: str) -> Outcome:
    # Asking again would not change a preset or a default, so the node's retries are not
    # used.
    return Outcome(Status.FAIL, retryable=False,
                   failure_reason=f"{what} is not an answer to a yes/no question: accepted "
                                  f"are {ACCEPTED_YES_NO}")


def _freeform(node: Node, answer: str) -> Outcome:
    """Any text is the answer; edges are chosen by condition or weight."""
    # No option was selected: clear the keys so that an earlier gate's choice cannot
    # steer a condition after this one.
    return Outcome(Status.SUCCESS, context_updates=_answer_updates(node, answer, "", ""),
                   notes="human answered")
