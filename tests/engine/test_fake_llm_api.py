"""The fake LLM API itself, driven by the official SDKs: it refuses what the real APIs refuse,
answers tool calls and tool results, and replies as a function of the request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from ..fakes.llm_server import FakeLLMServer, Reply, SeenRequest

STRICT = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
          "additionalProperties": False}
USER = [{"role": "user", "content": "hi"}]
Clients = tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    """The fake vendor API, closed after the test."""
    async with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
async def clients(server: FakeLLMServer) -> AsyncIterator[Clients]:
    """SDK clients for the fake, never retrying."""
    async with (openai.AsyncOpenAI(api_key="k", base_url=server.url + "/v1",
                                   max_retries=0) as chat,
                anthropic.AsyncAnthropic(api_key="k", base_url=server.url,
                                         max_retries=0) as messages):
        yield chat, messages


def function(name: str, parameters: dict[str, Any] = STRICT) -> dict[str, Any]:
    """An OpenAI strict function tool."""
    return {"type": "function", "function": {"name": name, "parameters": parameters,
                                             "strict": True}}


@pytest.mark.parametrize(("arguments", "complaint"), [
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "has space", "schema": STRICT}}}, "json_schema.name': string does not match"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "v"}}},
     "Missing required parameter: 'response_format.json_schema.schema'"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "v", "strict": True, "schema": {**STRICT, "required": []}}}},
     "Invalid schema for response_format 'v': In context=(), 'required' is required to be "
     "supplied and to be an array including every key in properties. Missing 'a'."),
    ({"tools": [function("f", {**STRICT, "additionalProperties": True})]},
     "Invalid schema for function 'f': In context=(), 'additionalProperties'"),
    ({"tools": [function("f")], "tool_choice": {"type": "function",
                                                "function": {"name": "g"}}},
     "function 'g' not found in 'tools'"),
    ({"tool_choice": "required"}, "'tool_choice' is only allowed when 'tools' are specified"),
    ({"messages": [*USER, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]},
     "must be a response to a preceeding message with 'tool_calls'"),
])
async def test_openai_refuses_what_the_api_refuses(clients: Clients,
                                                   arguments: dict[str, Any],
                                                   complaint: str) -> None:
    client, _ = clients
    arguments = {"model": "m", "messages": USER, **arguments}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(**arguments)
    assert complaint in caught.value.message


@pytest.mark.parametrize(("arguments", "complaint"), [
    ({"tools": [{"name": "f", "input_schema": {"type": "array"}}]},
     "tools.0.custom.input_schema.type: Input should be 'object'"),
    ({"tools": [{"name": "f", "input_schema": STRICT}],
      "tool_choice": {"type": "tool", "name": "g"}}, "Tool 'g' not found in tools"),
    ({"messages": [*USER, *USER]}, 'multiple "user" roles in a row'),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
     "text content blocks must be non-empty"),
    ({"messages": [*USER, {"role": "assistant", "content": []}, *USER]},
     "all messages must have non-empty content"),
    ({"messages": [*USER, {"role": "assistant", "content": "ok"}, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}]},
     "unexpected `tool_use_id` found in `tool_result` blocks: toolu_9"),
])
async def test_anthropic_refuses_what_the_api_refuses(clients: Clients,
                                                      arguments: dict[str, Any],
                                                      complaint: str) -> None:
    _, client = clients
    arguments = {"model": "m", "max_tokens": 10, "messages": USER, **arguments}
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(**arguments)
    assert complaint in caught.value.message


async def test_openai_tool_calls_and_results(server: FakeLLMServer, clients: Clients) -> None:
    client, _ = clients
    server.queue(Reply(tool_calls=[("read", {"path": "a.txt"}), ("read", {"path": "b"})]),
                 Reply(text="Both read."))
    tools = [function("read", {"type": "object", "properties": {"path": {"type": "string"}},
                               "required": ["path"], "additionalProperties": False})]
    first = await client.chat.completions.create(model="m", messages=USER, tools=tools)
    choice = first.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("tool_calls", None)
    calls = choice.message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("read", '{"path": "a.txt"}'), ("read", '{"path": "b"}')]
    history = [*USER, choice.message.model_dump(exclude_none=True),
               *({"role": "tool", "tool_call_id": c.id, "content": "text"} for c in calls)]
    second = await client.chat.completions.create(model="m", messages=history, tools=tools)
    assert second.choices[0].message.content == "Both read."


async def test_anthropic_tool_use_and_results(server: FakeLLMServer, clients: Clients) -> None:
    _, client = clients
    server.queue(Reply(text="Reading.", tool_calls=[("read", {"path": "a.txt"})]),
                 Reply(text="Read."))
    tools = [{"name": "read", "input_schema": {"type": "object"}}]
    first = await client.messages.create(model="m", max_tokens=10, messages=USER, tools=tools)
    assert first.stop_reason == "tool_use"
    text, use = first.content
    assert (text.text, use.name, use.input) == ("Reading.", "read", {"path": "a.txt"})
    history = [*USER, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                             "content": "text"}]}]
    second = await client.messages.create(model="m", max_tokens=10, messages=history,
                                          tools=tools)
    assert second.content[0].text == "Read."


async def test_a_responder_answers_by_request_after_the_queue() -> None:
    async def by_prompt(seen: SeenRequest) -> Reply:
        await asyncio.sleep(0)  # an async responder is awaited
        return Reply(text=seen.body["messages"][-1]["content"].upper())

    async with (FakeLLMServer(responder=by_prompt) as server,
                openai.AsyncOpenAI(api_key="k", base_url=server.url + "/v1") as client):
        server.queue(Reply(text="queued"))
        answers = [(await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": word}])).choices[0].message.content
            for word in ("one", "two")]
    assert answers == ["queued", "TWO"]


async def test_cache_usage_in_each_vendors_shape(server: FakeLLMServer, clients: Clients) -> None:
    client, messages = clients
    server.queue(Reply(usage=(1000, 10), cache_read=600, cache_write=100),
                 Reply(usage=(1000, 10), cache_read=600, cache_write=100))
    usage = (await client.chat.completions.create(model="m", messages=USER)).usage
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (1000, 600)
    used = (await messages.messages.create(model="m", max_tokens=10, messages=USER)).usage
    assert (used.input_tokens, used.cache_read_input_tokens,
            used.cache_creation_input_tokens) == (300, 600, 100)
