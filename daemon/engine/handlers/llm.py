"""What every node that asks a model shares (codergen, a ranking fan-in, a steering
manager): its prompt with the context filled in, its messages at the node's fidelity, and
the call through the provider pool with every try recorded."""

from __future__ import annotations

import asyncio
import difflib
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from ..context_keys import known_keys
from ..fidelity import build_messages, resolve_mode, resolve_thread
from ..outcome import Outcome, Status
from ..providers.base import (
    Message,
    ModelRequest,
    ModelResponse,
    OutputSpec,
    ProviderError,
    ToolSpec,
)
from ..recording import INTERRUPTED, PROVIDER_RETRY
from ..templates import MISSING, MissingReference, TemplateError, render
from ..verdict import AnswerSpec
from .base import NodeRun

PASSED_PARAMS = ("temperature", "max_tokens", "top_p", "reasoning_effort")


class PromptError(Exception):
    """A prompt that cannot be filled in; its message is the node's failure reason."""


def render_prompt(run: NodeRun, text: str, what: str = "prompt") -> str:
    """`text` with its `${key}` references filled in from the context (docs/pipelines.md)."""
    try:
        return render(text, lambda key: run.value(key, MISSING))
    except TemplateError as exc:
        raise PromptError(f"node {run.node.id!r} {what}: {exc}") from None
    except MissingReference as exc:
        reference = exc.reference
        candidates = {*run.context.values, *known_keys(run.graph)}
        close = difflib.get_close_matches(reference.context_key, sorted(candidates), 3)
        hint = f"; keys like it: {', '.join(close)}" if close else ""
        raise PromptError(
            f"node {run.node.id!r} {what} refers to {reference.text}, which the context "
            f"does not hold (no node has set it yet){hint}; write "
            f"${{{reference.key}:-…}} to give a default") from None


@dataclass(frozen=True)
class Conversation:
    """The messages of a request, and the thread a `full` node continues (else None)."""

    messages: list[dict[str, str]]
    thread: str | None


def conversation(run: NodeRun, prompt: str, instructions: str = "") -> Conversation:
    """The messages for `prompt` at the node's fidelity (attractor §5.4)."""
    executor = run.executor
    mode = resolve_mode(run.graph, run.node, run.via)
    thread = resolve_thread(run.graph, run.node, run.via, run.context) \
        if mode == "full" else None
    messages = build_messages(mode, run.graph, run.node, run.context, prompt, thread=thread,
                              inputs=executor.inputs,
                              completed=len(executor.state.completed_nodes),
                              instructions=instructions)
    return Conversation(messages, thread)


def model_request(run: NodeRun, messages: list[dict[str, str]] | list[Message],
                  output: dict[str, Any] | None = None, *, tools: list[ToolSpec] | None = None,
                  tool_choice: str | None = None, turn: int | None = None) -> ModelRequest:
    """The node's request: its provider, model and parameters, and the scripted provider's
    script (its `scripted.*` attributes) with the node's call number and trial; an agent's
    turn also offers its tools and says which turn of the loop it is."""
    node = run.node
    metadata: dict[str, Any] = {**run.graph.per_node("scripts", node, _script),
                                "call": run.call}
    if run.executor.trial_index is not None:
        metadata["trial"] = run.executor.trial_index
    if turn is not None:
        metadata["turn"] = turn
    return ModelRequest(
        provider=str(node.get("llm_provider", "") or ""),
        model=str(node.get("llm_model", "") or ""),
        messages=messages,
        params={k: node.get(k) for k in PASSED_PARAMS if node.get(k) is not None},
        output=None if output is None else OutputSpec.model_validate(output),
        node_id=node.id,
        attempt=run.attempt,
        metadata=metadata,
        tools=tools or [],
        tool_choice=tool_choice,
    )


def _script(_graph: Any, node: Any) -> dict[str, Any]:
    """A node's `scripted.*` attributes: the scripted provider's script for it."""
    return {k: v for k, v in node.attrs.items() if k.startswith("scripted.")}


async def call_model(run: NodeRun, request: ModelRequest,
                     status_path: str | None = None) -> ModelResponse | Outcome:
    """The model's response, every try of it recorded (a try the pool will retry as a
    `model_retry` trace entry and a `ModelRetrying` event); a provider failure (after the
    pool's retries) is a FAIL outcome that node retries skip. A status file found at
    `status_path` after the call is recorded with the response, so that a replay, which
    serves the response, reproduces the outcome it gave."""
    executor, node = run.executor, run.node
    started = last = time.monotonic()

    def retried(error: ProviderError, try_number: int, delay_ms: float) -> None:
        nonlocal last
        now = time.monotonic()
        # The request is the one the call line after it records; this line says which try.
        executor.record_call(
            node_id=node.id, attempt=run.attempt, kind=PROVIDER_RETRY,
            request={"provider": request.provider, "model": request.model,
                     "provider_attempt": try_number},
            response=None, error=str(error), latency_ms=(now - last) * 1000,
            finish_reason="error")
        last = now + delay_ms / 1000
        executor.emit("ModelRetrying", name=node.id, attempt=run.attempt, provider_try=try_number,
                      error=str(error), status=error.status, delay_ms=round(delay_ms, 1))

    try:
        request = executor.providers.resolve(request)  # the provider and model it gets
        response: ModelResponse = await executor.providers.complete(request, on_retry=retried)
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
        # The pool already retried what can be retried; a config error or a 4xx will not go
        # away by running the node again.
        return Outcome(Status.FAIL, failure_reason=f"model call failed: {exc}", retryable=False)
    if status_path is not None and response.status_file is None:
        status_file = read_status_file(status_path)
        if status_file is not None:
            response = response.model_copy(update={"status_file": status_file})
    executor.record_call(node_id=node.id, attempt=run.attempt, kind="model",
                         request=request.to_dict(), response=response.to_dict(),
                         input_tokens=response.usage.input_tokens,
                         output_tokens=response.usage.output_tokens,
                         cost_usd=response.cost_usd, latency_ms=response.latency_ms,
                         finish_reason=response.finish_reason)
    return response


@dataclass(frozen=True)
class Answer:
    """A structured answer that keeps to its schema, the text it came as, and the thread
    of the request (a `full` node's)."""

    fields: dict[str, Any]
    text: str
    thread: str | None


async def ask_structured(run: NodeRun, text: str, spec: AnswerSpec) -> Answer | Outcome:
    """Ask the node's model for `spec`'s structured answer to `text`, at the node's
    fidelity; prompt.md and response.md are written. A failed call, or an answer that breaks
    the schema, is a FAIL outcome that says what was wrong."""
    talk = conversation(run, text, spec.instructions)
    run.write_file("prompt.md", text)
    response = await call_model(run, model_request(run, talk.messages, spec.output()))
    if isinstance(response, Outcome):
        return response
    problems = spec.problems(response.structured, response.structured_error)
    if problems or response.structured is None:
        return Outcome(Status.FAIL, failure_reason=f"invalid {spec.name}: {problems}")
    run.write_file("response.md", response.text)
    return Answer(dict(response.structured), response.text, talk.thread)


def read_status_file(path: str) -> dict[str, Any] | None:
    """A status.json someone wrote at `path`, or None (one that is not a JSON object, or is
    half written, counts as none)."""
    if not os.access(path, os.F_OK):  # asked after every model call, almost never there
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            data = orjson.loads(handle.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
