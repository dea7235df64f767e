"""The agent loop of a codergen node with tools (decision 0006): model → tool calls → results
→ model, until the model answers without calling a tool.

Each model turn and each tool call is its own recorded call. The turn at `max_turns` (or
once `max_tool_calls` is spent) allows no tool, so the model must answer; a model that still
calls one fails the node. The structured verdict, when the node asks for one, is the final
turn's, as for a node without tools.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..outcome import Outcome, Status
from ..providers.base import Message, ModelResponse, ToolCall, ToolSpec
from ..tools.agent_spec import AgentSpec
from . import transcript
from .agent_calls import CutShort, ToolResult, tool_call
from .agent_offer import Offer, ToolCallFailed, offered_tools
from .base import NodeRun
from .llm import call_model, model_request

LAST_TURN_NOTE = ("You have no tool calls left in this step (its limit is reached): answer "
                  "now, without calling a tool.")
ANSWER_NOTE = "Give your final answer now, in the requested format, without calling a tool."


async def agent_loop(run: NodeRun, spec: AgentSpec, messages: list[dict[str, str]],
                     output: dict[str, Any] | None,
                     status_path: str | None) -> ModelResponse | Outcome:
    """Run the loop; the final turn's response, or the Outcome that ended the node."""
    transcript.begin(run)
    try:
        offer = await offered_tools(run, spec)
    except ToolCallFailed as exc:  # an MCP server that cannot start or list its tools
        return Outcome(Status.FAIL, failure_reason=str(exc))
    tools = offer.tools
    history = [Message.model_validate(message) for message in messages]
    calls_made, asked = 0, False
    for turn in range(1, spec.max_turns + 1):
        last = asked or turn == spec.max_turns or calls_made >= spec.max_tool_calls
        if last and turn > 1 and not asked:
            history.append(Message(role="user", content=LAST_TURN_NOTE))
        response = await _turn(run, history, output, tools, turn, last, status_path)
        if isinstance(response, Outcome):
            return response
        if not response.tool_calls:
            if _needs_answer(response, output) and not last:
                # The model stopped without the verdict (it wrote prose): one turn that
                # allows no tool asks for it.
                history += [response.assistant_message(), Message(role="user",
                                                                  content=ANSWER_NOTE)]
                asked = True
                continue
            return response
        if last:
            return Outcome(Status.FAIL, retryable=False, failure_reason=(
                f"the model called {len(response.tool_calls)} tool(s) on its last turn "
                f"(max_turns {spec.max_turns}, max_tool_calls {spec.max_tool_calls}) "
                "instead of answering"))
        history.append(response.assistant_message())
        allowed = spec.max_tool_calls - calls_made
        try:
            results = await _run_calls(run, spec, offer, response.tool_calls, turn, allowed)
        except ToolCallFailed as exc:
            return Outcome(Status.FAIL, failure_reason=str(exc))
        calls_made += len(response.tool_calls)
        history += [result.message for result in results]
        failed = [r for r in results if r.is_error]
        if failed and spec.tool_errors == "fail":
            first = failed[0]
            return Outcome(Status.FAIL, retryable=False, failure_reason=(
                f"tool {first.request['tool']!r} failed (tool_errors=fail): "
                f"{first.message.content[:500]}"))
        _check_budget(run)
    raise AssertionError("unreachable: the last turn always returns")


async def _turn(run: NodeRun, history: list[Message], output: dict[str, Any] | None,
                tools: list[ToolSpec], turn: int, last: bool,
                status_path: str | None) -> ModelResponse | Outcome:
    request = model_request(run, history, output, tools=tools,
                            tool_choice="none" if last and tools else None, turn=turn)
    response = await call_model(run, request, status_path)
    if not isinstance(response, Outcome):
        transcript.model_turn(run, turn, response)
    return response


def _needs_answer(response: ModelResponse, output: dict[str, Any] | None) -> bool:
    return output is not None and response.structured is None and response.status_file is None


async def _run_calls(run: NodeRun, spec: AgentSpec, offer: Offer, calls: tuple[ToolCall, ...],
                     turn: int, allowed: int) -> list[ToolResult]:
    """The turn's calls, up to `tool_concurrency` at once; results in the model's order.
    Calls past `max_tool_calls` are refused (every call needs its answer)."""
    gate = asyncio.Semaphore(spec.tool_concurrency)
    limit = (f"the step's limit of {spec.max_tool_calls} tool calls (max_tool_calls) is "
             "reached")

    async def one(index: int, call: ToolCall) -> ToolResult | CutShort:
        async with gate:
            try:
                result = await tool_call(run, spec, offer, call, turn, index,
                                         refusal=limit if index >= allowed else None)
            except CutShort as cut:
                # Served from a recording, where a sibling's failure or the node's timeout
                # cut it short: the siblings are served first, so that the same failure ends
                # the turn again.
                return cut
        transcript.tool_call(run, turn, index, result)
        return result

    # A task group cancels the others when one fails (a crashed server): each records
    # itself as interrupted and kills its process.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(index, call)) for index, call in enumerate(calls)]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    results = [task.result() for task in tasks]
    cut = next((r for r in results if isinstance(r, CutShort)), None)
    if cut is not None:
        raise cut
    return results  # type: ignore[return-value]


def _check_budget(run: NodeRun) -> None:
    """A spent cost budget stops the loop between turns, not after the last one."""
    if run.executor.budget is not None:
        run.executor.budget.check()
