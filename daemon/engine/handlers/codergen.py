"""The codergen handler (attractor §4.5): prompt → model → response, all recorded.

The prompt has its `${key}` references filled in from the context; the messages carry the
run so far at the node's fidelity (fidelity.py); a node whose outcome matters asks its model
for a structured verdict (verdict.py). A `status.json` that an external agent or tool writes
into the stage directory while the node runs decides the outcome instead (appendix C).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ..context_keys import referenced_keys
from ..outcome import Outcome, Status
from ..providers.base import ModelResponse
from ..tools.agent_spec import agent_spec, is_agent
from ..verdict import parse_verdict, verdict_spec, wants_verdict
from .base import NodeRun
from .llm import PromptError, call_model, conversation, model_request, render_prompt

RESPONSE_IN_CONTEXT = 200  # last_response is truncated (§4.5); `<node>.response` is whole


class CodergenHandler:
    """Calls the node's model through the run's provider pool."""

    async def execute(self, run: NodeRun) -> Outcome:
        """One model call; provider failures (after the pool's own retries) are FAIL."""
        node = run.node
        try:
            prompt = render_prompt(run, node.prompt)
        except PromptError as exc:  # the same context would fail the same way again
            return Outcome(Status.FAIL, failure_reason=str(exc), retryable=False)
        spec = verdict_spec(run.graph, node) if wants_verdict(run.graph, node) else None
        talk = conversation(run, prompt, spec.instructions if spec else "")
        run.write_file("prompt.md", prompt)
        status_path = os.path.join(run.executor.run_dir.stage(node.id), "status.json")
        if run.call > 1 or run.executor.resumed_at is not None:
            # An earlier attempt's or visit's, or one the interrupted run left.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(status_path)
        if is_agent(run.graph, node):
            from .agent import agent_loop  # the loop's modules load with the first agent

            try:
                agent = agent_spec(run.graph, node, run.executor.settings)
            except ValueError as exc:  # the lint says so before a run; settings can too
                return Outcome(Status.FAIL, failure_reason=str(exc), retryable=False)
            response = await agent_loop(run, agent, talk.messages,
                                        spec.output() if spec else None, status_path)
        else:
            request = model_request(run, talk.messages, spec.output() if spec else None)
            response = await call_model(run, request, status_path)
        if isinstance(response, Outcome):
            return response
        outcome = _outcome(response, spec)
        answer = outcome.answer if outcome.answer is not None else response.text
        run.write_file("response.md", answer)
        updates: dict[str, Any] = {"last_stage": node.id,
                                   "last_response": answer[:RESPONSE_IN_CONTEXT]}
        if f"{node.id}.response" in referenced_keys(run.graph):
            updates[f"{node.id}.response"] = answer
        outcome.context_updates = {**updates, **outcome.context_updates}
        outcome.answer = answer
        if talk.thread is not None:
            outcome.turn = {"thread": talk.thread, "node": node.id,
                            "status": outcome.status.value, "user": prompt,
                            "assistant": answer}
        return outcome


def _outcome(response: ModelResponse, spec: Any) -> Outcome:
    """The status file's outcome if one was written, else the verdict's, else the
    scripted provider's routing hints (a real model without a verdict always succeeds)."""
    if response.status_file is not None:
        outcome = Outcome.from_status_file(response.status_file)
        outcome.notes = outcome.notes or "outcome from status.json"
        return outcome
    if spec is not None:
        return parse_verdict(spec, response.structured, response.structured_error)
    status = Status(response.status) if response.status else Status.SUCCESS
    return Outcome(status, preferred_label=response.preferred_label or "",
                   context_updates=dict(response.context_updates or {}),
                   notes="Stage completed", failure_reason="" if status.succeeded else
                   f"the model reported {status.value}")
