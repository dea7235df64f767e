"""The provider contract's tools: tool specs, tool calls and tool messages; requests without
them recorded, hashed and replayed exactly as before tools existed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ostinato.daemon.engine.providers import (
    Message,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolSpec,
)
from ostinato.daemon.engine.providers.base import OutputSpec
from ostinato.daemon.engine.recording import without_content
from ostinato.daemon.engine.replay import (
    Cassette,
    canonical_request,
    replayed_response,
    request_hash,
)

# A model call's line as trace.jsonl held it before requests could carry tools.
OLD_LINE: dict[str, Any] = json.loads("""{"seq": 3, "node_id": "review", "attempt": 1,
  "kind": "model",
  "request": {"provider": "openai", "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "You review patches."},
                 {"role": "user", "content": "Review this."},
                 {"role": "assistant", "content": "Looks fine."},
                 {"role": "user", "content": "Sure?"}],
    "params": {"temperature": 0}, "node_id": "review", "attempt": 1,
    "metadata": {"call": 1}, "provider_attempt": 1},
  "response": {"text": "Yes.", "usage": {"input_tokens": 20, "output_tokens": 2, "total": 22},
    "cost_usd": 0.0001, "cost_known": true, "latency_ms": 120.5, "finish_reason": "stop",
    "model": "gpt-4o-mini", "provider": "openai", "raw_id": "chatcmpl-1", "attempts": 1,
    "status": null, "preferred_label": null, "context_updates": {}}}""")

READ = ToolSpec(name="read", description="Read a file.",
                schema={"type": "object", "properties": {"path": {"type": "string"}}})
CALLS = (ToolCall(id="call_1", name="read", arguments='{"path": "a.py"}'),
         ToolCall(id="call_2", name="read", arguments='{"path": "b.py"'))
AGENT_TURN_2 = [
    Message(role="user", content="Fix it."),
    Message(role="assistant", content="", tool_calls=CALLS),
    Message(role="tool", tool_call_id="call_1", content="print(1)"),
    Message(role="tool", tool_call_id="call_2", content="error: not JSON", is_error=True),
]


def test_an_old_recorded_request_round_trips_and_hashes_unchanged() -> None:
    recorded = OLD_LINE["request"]
    request = ModelRequest.model_validate(recorded)
    assert request.to_dict() == recorded  # so run.diff of old against new runs is clean
    assert request_hash("model", recorded) == request_hash("model", request)
    # The very digest it had before tools: the tool fields are hashed only when set.
    assert set(canonical_request("model", request)) == {"provider", "model", "messages",
                                                        "params", "output"}
    cassette = Cassette.from_calls([OLD_LINE])
    assert cassette.match("review", 1, "model", request) is not None
    response = replayed_response(OLD_LINE)
    assert response.tool_calls == () and "tool_calls" not in response.to_dict()


def test_tools_and_tool_traffic_round_trip_through_the_recorded_form() -> None:
    request = ModelRequest(provider="openai", model="m", messages=AGENT_TURN_2, tools=[READ],
                           tool_choice="auto", parallel_tool_calls=True, node_id="agent")
    recorded = json.loads(json.dumps(request.to_dict()))
    assert recorded["tools"] == [{"name": "read", "description": "Read a file.",
                                  "schema": READ.schema_, "strict": False}]
    assert (recorded["tool_choice"], recorded["parallel_tool_calls"]) == ("auto", True)
    assert recorded["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "name": "read", "arguments": '{"path": "a.py"}'},
        {"id": "call_2", "name": "read", "arguments": '{"path": "b.py"'}]}
    assert recorded["messages"][3] == {"role": "tool", "content": "error: not JSON",
                                       "tool_call_id": "call_2", "is_error": True}
    assert ModelRequest.model_validate(recorded) == request
    assert request_hash("model", recorded) == request_hash("model", request)
    # Each new field is part of what a replay matches on.
    variants = [request.model_copy(update=change) for change in (
        {"tools": []}, {"tool_choice": "none"}, {"parallel_tool_calls": False})]
    hashes = {request_hash("model", r) for r in [request, *variants]}
    assert len(hashes) == 4


def test_a_replayed_response_carries_its_tool_calls() -> None:
    response = ModelResponse(text="Reading both.", tool_calls=CALLS, finish_reason="tool_calls")
    line = {**OLD_LINE, "response": json.loads(json.dumps(response.to_dict()))}
    replayed = replayed_response(line)
    assert replayed.tool_calls == CALLS and replayed.finish_reason == "tool_calls"
    assert replayed.assistant_message() == Message(role="assistant", content="Reading both.",
                                                   tool_calls=CALLS)
    # Malformed arguments are kept as written; parsing them says why they are no object.
    assert CALLS[0].parsed() == ({"path": "a.py"}, None)
    parsed, problem = CALLS[1].parsed()
    assert parsed is None and problem.startswith("the arguments of 'read' is not JSON")


def test_metadata_only_records_keep_which_tools_were_called_not_their_arguments() -> None:
    response = ModelResponse(text="", tool_calls=CALLS[:1]).to_dict()
    call = without_content(response)["tool_calls"][0]
    assert (call["id"], call["name"], call["arguments"]["omitted"]) == ("call_1", "read", True)


@pytest.mark.parametrize(("messages", "fields", "complaint"), [
    (AGENT_TURN_2[:3], {}, r"tool calls \['call_2'\] are unanswered"),
    ([*AGENT_TURN_2[:3], Message(role="user", content="go on")], {},
     r"messages\[3\]: tool calls \['call_2'\] are unanswered"),
    ([AGENT_TURN_2[0], AGENT_TURN_2[2]], {}, "answers no pending tool call: 'call_1'"),
    ([AGENT_TURN_2[0]], {"tools": [READ, READ]}, "tool names must be unique"),
    ([AGENT_TURN_2[0]], {"tools": [READ.model_copy(update={"name": "verdict"})],
                         "output": OutputSpec(name="verdict", schema={"type": "object"})},
     "tool names must be unique and none of"),
    ([AGENT_TURN_2[0]], {"tool_choice": "auto"}, "tool_choice and parallel_tool_calls need"),
    ([AGENT_TURN_2[0]], {"tools": [READ], "tool_choice": "write"}, "names no tool"),
])
def test_ill_formed_tool_turns_are_refused(messages: list[Message], fields: dict[str, Any],
                                           complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ModelRequest(messages=messages, **fields)


@pytest.mark.parametrize(("build", "complaint"), [
    (lambda: Message(role="user", content="x", tool_calls=CALLS), "user message cannot call"),
    (lambda: Message(role="tool", content="x"), "needs the tool_call_id"),
    (lambda: Message(role="assistant", content="x", is_error=True), "are for tool messages"),
    (lambda: ToolSpec(name="read", schema={"type": "string"}), "must have type object"),
    (lambda: ModelResponse(text="", tool_calls=(CALLS[0], CALLS[0])), "repeats a tool call"),
])
def test_ill_formed_parts_are_refused(build: Any, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        build()
