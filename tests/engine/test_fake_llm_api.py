"""The fake LLM API itself, driven by the official SDKs: it refuses what the real APIs refuse,
answers tool calls and tool results, and replies as a function of the request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from ..fakes.llm_server import FakeLLMServer, Reply, SeenRequest, by_turn

STRICT = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
          "additionalProperties": False}
USER = [{"role": "user", "content": "hi"}]
OBJECT = {"type": "object"}
# An assistant turn that called two tools, in each vendor's shape.
CALLED = {"role": "assistant", "content": None, "tool_calls": [
    {"id": f"call_{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    for n in (1, 2)]}
USED = {"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{n}", "name": "f",
                                          "input": {}} for n in (1, 2)]}


def result(n: int, **fields: Any) -> dict[str, Any]:
    """An Anthropic tool_result block answering toolu_{n}."""
    return {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": "ok", **fields}
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


def loose(name: str, description: str = "") -> dict[str, Any]:
    """An OpenAI function tool that takes any object."""
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": OBJECT}}


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
    ({"messages": [*USER, CALLED, {"role": "tool", "tool_call_id": "call_2", "content": "x"},
                   *USER]},
     "An assistant message with 'tool_calls' must be followed by tool messages responding to "
     "each 'tool_call_id'. The following tool_call_ids did not have response messages: call_1"),
    ({"messages": [*USER, CALLED, *({"role": "tool", "tool_call_id": f"call_{n}",
                                     "content": [{"type": "image_url"}]} for n in (1, 2))]},
     "Invalid 'messages[2].content': expected a string or an array of text content parts"),
    ({"parallel_tool_calls": False},
     "'parallel_tool_calls' is only allowed when 'tools' are specified"),
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
    ({"messages": [*USER, USED, {"role": "user", "content": [result(2)]}],
      "tools": [{"name": "f", "input_schema": OBJECT}]},
     "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: "
     "toolu_1. Each `tool_use` block must have a corresponding `tool_result` block"),
    ({"messages": [*USER, USED, {"role": "user", "content": [
        result(1), {"type": "text", "text": "and"}, result(2)]}],
      "tools": [{"name": "f", "input_schema": OBJECT}]},
     "messages.2: Did not find 2 `tool_result` block(s) at the beginning of this message"),
    ({"messages": [*USER, USED, {"role": "user", "content": [result(1), result(2)]}]},
     "Requests which include `tool_use` or `tool_result` blocks must define tools."),
    ({"messages": [*USER, USED, {"role": "user", "content": [result(1, is_error="yes"),
                                                             result(2)]}],
      "tools": [{"name": "f", "input_schema": OBJECT}]},
     "messages.2.content.0.tool_result.is_error: Input should be a valid boolean"),
    ({"tools": [{"name": "f", "input_schema": OBJECT}],
      "tool_choice": {"type": "auto", "disable_parallel_tool_use": "yes"}},
     "tool_choice.auto.disable_parallel_tool_use: Input should be a valid boolean"),
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


async def test_tool_call_ids_are_unique_per_server_and_raw_arguments_are_sent_as_written(
        server: FakeLLMServer, clients: Clients) -> None:
    client, messages = clients
    server.queue(Reply(tool_calls=[("f", {"a": 1}), ("f", '{"a": ')]),
                 Reply(tool_calls=[("f", {"a": 2})]), Reply(tool_calls=[("f", {"a": 3})]))
    tools = [loose("f")]
    first = (await client.chat.completions.create(model="m", messages=USER, tools=tools))
    second = (await client.chat.completions.create(model="m", messages=USER, tools=tools))
    used = await messages.messages.create(model="m", max_tokens=10, messages=USER,
                                          tools=[{"name": "f", "input_schema": OBJECT}])
    calls = first.choices[0].message.tool_calls
    assert [(c.id, c.function.arguments) for c in calls] == [
        ("call_0_1", '{"a": 1}'), ("call_0_2", '{"a": ')]
    assert second.choices[0].message.tool_calls[0].id == "call_1_1"
    assert used.content[0].id == "toolu_2_1"


async def test_the_request_helpers_read_tools_and_results_in_either_dialect(
        server: FakeLLMServer, clients: Clients) -> None:
    client, messages = clients
    openai_history = [*USER, CALLED, *({"role": "tool", "tool_call_id": f"call_{n}",
                                        "content": f"r{n}"} for n in (1, 2))]
    await client.chat.completions.create(model="m", messages=openai_history,
                                         tools=[loose("f")], tool_choice="none")
    server.queue(Reply(tool_calls=[("f", {})]))
    await messages.messages.create(
        model="m", max_tokens=10, tools=[{"name": "f", "input_schema": OBJECT}],
        tool_choice={"type": "any"}, messages=[*USER, USED, {"role": "user", "content": [
            result(1, is_error=True), result(2)]}])
    chat, anthropic_request = server.requests
    assert (chat.tool_names(), chat.tool_choice(), chat.turn()) == (["f"], "none", 2)
    assert chat.tool_results() == [("call_1", "r1", False), ("call_2", "r2", False)]
    assert (anthropic_request.tool_choice(), anthropic_request.turn()) == ("required", 2)
    assert anthropic_request.tool_results() == [("toolu_1", "ok", True), ("toolu_2", "ok", False)]


@pytest.mark.parametrize(("reply", "arguments", "complaint"), [
    (Reply(tool_calls=[("f", {}), ("f", {})]), {"parallel_tool_calls": False},
     "2 tool calls scripted, but parallel tool use is disabled"),
    (Reply(text="no call"), {"tool_choice": "required"},
     "no tool call scripted, but the request requires one"),
    (Reply(tool_calls=[("f", {})]), {"tool_choice": "none"},
     "a tool call scripted, but the request's tool_choice is none"),
])
async def test_replies_the_tool_choice_rules_out_are_test_bugs(
        server: FakeLLMServer, clients: Clients, reply: Reply, arguments: dict[str, Any],
        complaint: str) -> None:
    client, messages = clients
    anthropic_choice = {"parallel_tool_calls": {"type": "auto", "disable_parallel_tool_use": True},
                        "tool_choice": {"type": {"required": "any", "none": "none"}.get(
                            arguments.get("tool_choice", ""), "auto")}}
    server.queue(reply, reply)
    with pytest.raises(openai.InternalServerError, match="fake: " + complaint):
        await client.chat.completions.create(model="m", messages=USER,
                                             tools=[loose("f")], **arguments)
    with pytest.raises(anthropic.InternalServerError, match="fake: " + complaint):
        await messages.messages.create(
            model="m", max_tokens=10, messages=USER, tools=[{"name": "f", "input_schema": OBJECT}],
            tool_choice=anthropic_choice[next(iter(arguments))])


async def test_anthropic_tool_input_must_be_an_object(server: FakeLLMServer,
                                                      clients: Clients) -> None:
    _, messages = clients
    server.queue(Reply(tool_calls=[("f", "[1]")]))
    with pytest.raises(anthropic.InternalServerError, match="fake: tool_use input must be"):
        await messages.messages.create(model="m", max_tokens=10, messages=USER,
                                       tools=[{"name": "f", "input_schema": OBJECT}])


async def test_tool_definitions_are_billed_and_a_cut_call_says_length(
        server: FakeLLMServer, clients: Clients) -> None:
    client, messages = clients
    cut_short = Reply(tool_calls=[("f", {})], finish="length")
    server.queue(Reply(), cut_short, cut_short)
    bare = (await client.chat.completions.create(model="m", messages=USER)).usage.prompt_tokens
    tools = [loose("f", "x" * 400)]
    cut = await client.chat.completions.create(model="m", messages=USER, tools=tools)
    assert cut.usage.prompt_tokens > bare + 100
    assert cut.choices[0].finish_reason == "length"
    used = await messages.messages.create(model="m", max_tokens=10, messages=USER,
                                          tools=[{"name": "f", "input_schema": OBJECT}])
    assert (used.stop_reason, used.content[0].type) == ("max_tokens", "tool_use")


async def test_by_turn_scripts_concurrent_conversations_by_their_first_message() -> None:
    script = {"alpha": [Reply(text="a1"), Reply(text="a2")], "beta": [Reply(text="b1")]}
    async with (FakeLLMServer(responder=by_turn(script)) as server,
                openai.AsyncOpenAI(api_key="k", base_url=server.url + "/v1",
                                   max_retries=0) as client):
        async def ask(messages: list[dict[str, str]]) -> str | None:
            answer = await client.chat.completions.create(model="m", messages=messages)
            return answer.choices[0].message.content

        alpha = [{"role": "user", "content": "task alpha"}]
        answers = await asyncio.gather(
            ask(alpha), ask([{"role": "user", "content": "task beta"}]),
            ask([*alpha, {"role": "assistant", "content": "a1"},
                 {"role": "user", "content": "go on"}]))
        assert answers == ["a1", "b1", "a2"]
        with pytest.raises(openai.InternalServerError, match="fake: no script for 'gamma'"):
            await ask([{"role": "user", "content": "gamma"}])
