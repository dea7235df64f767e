"""Tool calling through the official SDKs against the fake API: tools and tool choice on the
wire, the tool-call history sent back in each vendor's shape, tool calls parsed back (raw
arguments kept as written), and conversations of several turns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ostinato.daemon.engine.providers import (
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ProviderPool,
    ToolCall,
    ToolSpec,
)
from ostinato.daemon.engine.providers.base import OutputSpec

from ..fakes.llm_server import FakeLLMServer, Reply
from . import providers_support
from .providers_support import ANTHROPIC, OPENAI, Flavour

server = providers_support.server
keys = providers_support.keys
flavour = providers_support.flavour

PATH = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"],
        "additionalProperties": False}
READ = ToolSpec(name="read", description="Read a file.", schema=PATH, strict=True)
GREP = ToolSpec(name="grep", description="Search files.", schema={"type": "object"})
TASK = [Message(role="system", content="You fix bugs."),
        Message(role="user", content="Fix the failing test.")]


def turn(flavour: Flavour, messages: list[Message], **fields: Any) -> ModelRequest:
    """One turn of agent node `agent` offering READ and GREP."""
    return ModelRequest(model=flavour.model, node_id="agent", messages=messages,
                        tools=[READ, GREP], **fields)


async def test_two_parallel_calls_then_a_final_answer(server: FakeLLMServer,
                                                      flavour: Flavour) -> None:
    server.queue(Reply(text="Reading both.", tool_calls=[("read", {"path": "a.py"}),
                                                         ("read", {"path": "b.py"})]),
                 Reply(text="Fixed: off-by-one in b.py."))
    async with ProviderPool(flavour.settings(server)) as pool:
        first = await pool.complete(turn(flavour, TASK, tool_choice="auto"))
        prefix = "toolu" if flavour is ANTHROPIC else "call"
        assert first.tool_calls == (
            ToolCall(id=f"{prefix}_0_1", name="read", arguments='{"path": "a.py"}'),
            ToolCall(id=f"{prefix}_0_2", name="read", arguments='{"path": "b.py"}'))
        assert (first.text, first.finish_reason) == ("Reading both.", "tool_calls")
        assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
        a, b = first.tool_calls
        history = [*TASK, first.assistant_message(),
                   Message(role="tool", tool_call_id=a.id, content="def f(): ..."),
                   Message(role="tool", tool_call_id=b.id, content="error: b.py: no such file",
                           is_error=True),
                   Message(role="user", content="Keep going.")]
        final = await pool.complete(turn(flavour, history))
    assert (final.text, final.tool_calls, final.finish_reason) == (
        "Fixed: off-by-one in b.py.", (), "stop")
    sent = server.requests[1]
    assert sent.tool_names() == ["read", "grep"] and sent.turn() == 2
    # Chat Completions has no error flag: the result's text says it.
    assert sent.tool_results() == [(a.id, "def f(): ...", False),
                                   (b.id, "error: b.py: no such file", flavour is ANTHROPIC)]
    assert server.requests[0].tool_choice() == "auto" and sent.tool_choice() is None
    if flavour is ANTHROPIC:
        assert sent.body["system"] == "You fix bugs."
        assert sent.body["messages"][1:] == [
            {"role": "assistant", "content": [
                {"type": "text", "text": "Reading both."},
                {"type": "tool_use", "id": a.id, "name": "read", "input": {"path": "a.py"}},
                {"type": "tool_use", "id": b.id, "name": "read", "input": {"path": "b.py"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": a.id, "content": "def f(): ..."},
                {"type": "tool_result", "tool_use_id": b.id,
                 "content": "error: b.py: no such file", "is_error": True},
                {"type": "text", "text": "Keep going."}]}]
        assert sent.body["tools"][0] == {"name": "read", "description": "Read a file.",
                                         "input_schema": PATH, "strict": True}
    else:
        assert sent.body["messages"][2:] == [
            {"role": "assistant", "content": "Reading both.", "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": "read", "arguments": call.arguments}}
                for call in (a, b)]},
            {"role": "tool", "tool_call_id": a.id, "content": "def f(): ..."},
            {"role": "tool", "tool_call_id": b.id, "content": "error: b.py: no such file"},
            {"role": "user", "content": "Keep going."}]
        assert sent.body["tools"] == [
            {"type": "function", "function": {"name": "read", "description": "Read a file.",
                                              "parameters": PATH, "strict": True}},
            {"type": "function", "function": {"name": "grep", "description": "Search files.",
                                              "parameters": {"type": "object"}}}]


async def test_a_turn_is_recorded_with_its_tools_and_calls(server: FakeLLMServer,
                                                           flavour: Flavour) -> None:
    server.queue(Reply(tool_calls=[("grep", {"pattern": "TODO"})]))
    request = turn(flavour, TASK, tool_choice="required")
    async with ProviderPool(flavour.settings(server)) as pool:
        response = await pool.complete(request)
    recorded_request = json.loads(json.dumps(request.to_dict()))
    recorded_response = json.loads(json.dumps(response.to_dict()))
    assert recorded_request["tools"] == [READ.to_dict(), GREP.to_dict()]
    assert recorded_request["tool_choice"] == "required"
    assert "parallel_tool_calls" not in recorded_request
    assert recorded_response["tool_calls"] == [
        {"id": response.tool_calls[0].id, "name": "grep", "arguments": '{"pattern": "TODO"}'}]
    assert recorded_response["finish_reason"] == "tool_calls" and recorded_response["text"] == ""
    assert ModelResponse.model_validate(recorded_response) == response


@pytest.mark.parametrize(("fields", "openai_body", "anthropic_body"), [
    ({}, {}, {}),
    ({"tool_choice": "required"}, {"tool_choice": "required"},
     {"tool_choice": {"type": "any"}}),
    ({"tool_choice": "none"}, {"tool_choice": "none"}, {"tool_choice": {"type": "none"}}),
    ({"tool_choice": "grep"}, {"tool_choice": {"type": "function", "function": {"name": "grep"}}},
     {"tool_choice": {"type": "tool", "name": "grep"}}),
    ({"parallel_tool_calls": False}, {"parallel_tool_calls": False},
     {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}),
    ({"tool_choice": "required", "parallel_tool_calls": False},
     {"tool_choice": "required", "parallel_tool_calls": False},
     {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}}),
])
async def test_the_tool_choice_in_each_vendors_terms(
        server: FakeLLMServer, flavour: Flavour, fields: dict[str, Any],
        openai_body: dict[str, Any], anthropic_body: dict[str, Any]) -> None:
    calls = [] if fields.get("tool_choice") == "none" else [("grep", {})]
    server.queue(Reply(text="ok", tool_calls=calls))
    async with ProviderPool(flavour.settings(server)) as pool:
        await pool.complete(turn(flavour, TASK, **fields))
    body = server.requests[0].body
    expected = anthropic_body if flavour is ANTHROPIC else openai_body
    assert {k: body[k] for k in ("tool_choice", "parallel_tool_calls") if k in body} == expected
    # Anthropic's flag against parallel calls lives in a tool choice: the default, auto.
    serial = flavour is ANTHROPIC and "parallel_tool_calls" in fields
    assert server.requests[0].tool_choice() == fields.get("tool_choice",
                                                          "auto" if serial else None)


async def test_malformed_arguments_are_kept_as_the_model_wrote_them(
        server: FakeLLMServer, keys: None) -> None:
    server.queue(Reply(tool_calls=[("read", '{"path": ')]), Reply(text="done"))
    async with ProviderPool(OPENAI.settings(server)) as pool:
        first = await pool.complete(turn(OPENAI, TASK))
        call, = first.tool_calls
        assert call.arguments == '{"path": ' and call.parsed()[0] is None
        history = [*TASK, first.assistant_message(),
                   Message(role="tool", tool_call_id=call.id, is_error=True,
                           content="error: the arguments are not a JSON object")]
        await pool.complete(turn(OPENAI, history))
    # Sent back verbatim: the prompt's prefix stays the one the model saw.
    sent = server.requests[1].body["messages"][2]
    assert sent["tool_calls"][0]["function"]["arguments"] == '{"path": '
    assert sent["content"] is None


async def test_anthropic_gets_an_empty_input_for_arguments_that_are_no_object(
        server: FakeLLMServer, keys: None) -> None:
    # Only a history from another vendor's model can hold them.
    call = ToolCall(id="call_9", name="read", arguments='{"path": ')
    history = [*TASK, Message(role="assistant", content="", tool_calls=(call,)),
               Message(role="tool", tool_call_id="call_9", content="")]
    async with ProviderPool(ANTHROPIC.settings(server)) as pool:
        await pool.complete(turn(ANTHROPIC, history))
    assistant, results = server.requests[0].body["messages"][1:]
    assert assistant["content"] == [{"type": "tool_use", "id": "call_9", "name": "read",
                                     "input": {}}]
    assert results == {"role": "user", "content": [{"type": "tool_result",
                                                     "tool_use_id": "call_9"}]}


async def test_calls_cut_short_at_max_tokens_are_returned_with_length(
        server: FakeLLMServer, flavour: Flavour) -> None:
    server.queue(Reply(tool_calls=[("grep", {"pattern": "x"})], finish="length"))
    async with ProviderPool(flavour.settings(server)) as pool:
        response = await pool.complete(turn(flavour, TASK))
    assert response.finish_reason == "length" and response.tool_calls[0].name == "grep"


def completion(*calls: dict[str, Any]) -> dict[str, Any]:
    """A Chat Completions body whose message makes `calls`."""
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": list(calls)}}]}


@pytest.mark.parametrize(("body", "complaint"), [
    (completion({"id": "c1", "type": "custom", "custom": {"name": "sh", "input": "ls"}}),
     "a tool call of type 'custom'"),
    (completion(*[{"id": "c1", "type": "function",
                   "function": {"name": "grep", "arguments": "{}"}}] * 2),
     "repeats a tool call id"),
])
async def test_tool_calls_no_request_allows_are_invalid_responses(
        server: FakeLLMServer, keys: None, body: dict[str, Any], complaint: str) -> None:
    server.queue(Reply(body=body))
    async with ProviderPool(OPENAI.settings(server)) as pool:
        with pytest.raises(ProviderError, match=complaint) as caught:
            await pool.complete(turn(OPENAI, TASK))
    assert caught.value.kind == "invalid_response" and len(server.requests) == 1


async def test_a_json_schema_answer_comes_after_the_tool_calls(server: FakeLLMServer,
                                                               keys: None) -> None:
    verdict = OutputSpec(name="verdict", schema={
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
        "additionalProperties": False})
    server.queue(Reply(tool_calls=[("grep", {})]), Reply(structured={"ok": True}))
    async with ProviderPool(OPENAI.settings(server)) as pool:
        first = await pool.complete(turn(OPENAI, TASK, output=verdict))
        history = [*TASK, first.assistant_message(),
                   Message(role="tool", tool_call_id=first.tool_calls[0].id, content="none")]
        final = await pool.complete(turn(OPENAI, history, output=verdict))
    assert (first.structured, first.structured_error) == (None, None)
    assert final.structured == {"ok": True} and final.tool_calls == ()
    assert server.requests[0].body["response_format"]["type"] == "json_schema"


ANY_OBJECT = OutputSpec(name="v", schema={"type": "object"})


async def test_anthropic_offers_the_structured_answer_as_a_tool_beside_the_nodes(
        server: FakeLLMServer, keys: None) -> None:
    # The model works with the node's tools, then ends by calling the answer tool; a turn
    # that may call no tool is made to call it.
    server.queue(Reply(tool_calls=[("grep", {}), ("v", {"ok": False})]),
                 Reply(tool_calls=[("v", {"ok": True})]),
                 Reply(structured={"ok": True}))
    async with ProviderPool(ANTHROPIC.settings(server)) as pool:
        first = await pool.complete(turn(ANTHROPIC, TASK, output=ANY_OBJECT))
        history = [*TASK, first.assistant_message(),
                   Message(role="tool", tool_call_id=first.tool_calls[0].id, content="none")]
        final = await pool.complete(turn(ANTHROPIC, history, output=ANY_OBJECT))
        forced = await pool.complete(turn(ANTHROPIC, history, output=ANY_OBJECT,
                                          tool_choice="none"))
    # An answer beside other calls is not the answer: their results come first.
    assert [c.name for c in first.tool_calls] == ["grep"] and first.structured is None
    assert final.tool_calls == () and final.structured == {"ok": True}
    assert forced.structured == {"ok": True}
    assert server.requests[0].tool_names() == ["read", "grep", "v"]
    assert server.requests[0].tool_choice() is None
    assert server.requests[2].tool_choice() == "v"


@pytest.mark.parametrize(("chosen", "settings", "fields", "complaint"), [
    (OPENAI, {"structured_output": "tool"}, {"output": ANY_OBJECT},
     "structured_output 'tool' cannot be used beside tools"),
    (ANTHROPIC, {}, {"params": {"thinking": {"type": "enabled", "budget_tokens": 1024}}},
     "tools cannot be used beside thinking"),
], ids=["openai-tool-output", "anthropic-thinking"])
async def test_what_tools_cannot_be_combined_with_yet_is_refused_before_sending(
        server: FakeLLMServer, keys: None, chosen: Flavour, settings: dict[str, Any],
        fields: dict[str, Any], complaint: str) -> None:
    async with ProviderPool(chosen.settings(server, **settings)) as pool:
        with pytest.raises(ProviderError, match=complaint) as caught:
            await pool.complete(turn(chosen, TASK, **fields))
    assert caught.value.kind == "config" and server.requests == []
