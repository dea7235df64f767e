"""The codergen handler (attractor §4.5): prompt → model → response, all recorded."""

from __future__ import annotations

import asyncio
import time

from ..outcome import Outcome, Status
from ..providers.base import ModelRequest, ProviderError
from ..recording import INTERRUPTED
from .base import NodeRun

RESPONSE_IN_CONTEXT = 200  # last_response is truncated (§4.5); the full text is response.md
_PASSED_PARAMS = ("temperature", "max_tokens", "top_p", "reasoning_effort")


def build_messages(run: NodeRun) -> list[dict[str, str]]:
    """The prompt, preceded by a compact preamble of the run so far (fidelity `compact`)."""
    prompt = run.node.prompt.replace("$goal", run.graph.goal)
    messages = []
    done: list[dict] = []
    for entry in reversed(run.context.logs):  # the last 20, without walking the whole log
        if entry.get("node") != run.node.id:
            done.append(entry)
            if len(done) == 20:
                break
    done.reverse()
    if run.graph.goal or done:
        lines = [f"Goal: {run.graph.goal}"] if run.graph.goal else []
        lines += [f"- {entry['node']}: {entry['outcome']}" for entry in done]
        messages.append({"role": "system", "content": "\n".join(lines)})
    messages.append({"role": "user", "content": prompt})
    return messages


def _metadata(run: NodeRun) -> dict[str, object]:
    """The node's `scripted.*` attributes (the scripted provider's script), and the trial's
    index when the run is one of a trial set."""
    metadata: dict[str, object] = {k: v for k, v in run.node.attrs.items()
                                   if k.startswith("scripted.")}
    if run.executor.trial_index is not None:
        metadata["trial"] = run.executor.trial_index
    return metadata


class CodergenHandler:
    """Calls the node's model through the run's provider pool."""

    async def execute(self, run: NodeRun) -> Outcome:
        """One model call; provider failures (after the pool's own retries) are FAIL."""
        node = run.node
        messages = build_messages(run)
        run.write_file("prompt.md", messages[-1]["content"])
        request = ModelRequest(
            provider=str(node.get("llm_provider", "") or ""),
            model=str(node.get("llm_model", "") or ""),
            messages=messages,
            params={k: node.get(k) for k in _PASSED_PARAMS if node.get(k) is not None},
            node_id=node.id,
            attempt=run.attempt,
            metadata=_metadata(run),
        )
        executor = run.executor
        started = time.monotonic()
        try:
            request = executor.providers.resolve(request)  # the provider and model it gets
            response = await executor.providers.complete(request)
        except (asyncio.CancelledError, TimeoutError):  # the node's timeout, or a cancel
            executor.record_call(node_id=node.id, attempt=run.attempt, kind="model",
                                 request=request.to_dict(), response=None, error=INTERRUPTED,
                                 latency_ms=(time.monotonic() - started) * 1000,
                                 finish_reason="error")
            raise
        except ProviderError as exc:
            executor.record_call(node_id=node.id, attempt=run.attempt, kind="model",
                                 request=request.to_dict(), response=None, error=str(exc),
                                 latency_ms=(time.monotonic() - started) * 1000,
                                 finish_reason="error")
            # The pool already retried what can be retried; a config error or a 4xx will
            # not go away by running the node again.
            return Outcome(Status.FAIL, failure_reason=f"model call failed: {exc}",
                           retryable=False)
        executor.record_call(node_id=node.id, attempt=run.attempt, kind="model",
                             request=request.to_dict(), response=response.to_dict(),
                             input_tokens=response.usage.input_tokens,
                             output_tokens=response.usage.output_tokens,
                             cost_usd=response.cost_usd, latency_ms=response.latency_ms,
                             finish_reason=response.finish_reason)
        run.write_file("response.md", response.text)
        # The full text is in response.md and the trace; the context (checkpointed after
        # every node) keeps it short.
        updates = {"last_stage": node.id, "last_response": response.text[:RESPONSE_IN_CONTEXT]}
        updates.update(response.context_updates or {})
        status = Status(response.status) if response.status else Status.SUCCESS
        return Outcome(status, preferred_label=response.preferred_label or "",
                       context_updates=updates, notes=f"Stage completed: {node.id}",
                       failure_reason="" if status.succeeded else
                       f"the model reported {status.value}")
