"""Structured output through the official SDKs against the fake API: OpenAI's json_schema
response format and forced function tool, Anthropic's forced tool; how requests with an output
are recorded and matched in replays; and multi-turn histories."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from ostinato.daemon.engine.providers import (
    ModelRequest,
    ModelResponse,
    ProviderError,
    ProviderPool,
    Usage,
)
from ostinato.daemon.engine.providers.base import OutputSpec
from ostinato.daemon.engine.replay import Cassette, canonical_request, request_hash

from ..fakes.llm_server import FakeLLMServer, Reply
from . import providers_support
from .providers_support import ANTHROPIC, OPENAI, Flavour, chat

server = providers_support.server
keys = providers_support.keys

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["success", "fail"]},
        "notes": {"type": "object", "properties": {"reason": {"type": "string"}},
                  "required": ["reason"], "additionalProperties": False},
    },
    "required": ["status", "notes"],
    "additionalProperties": False,
}
VERDICT = OutputSpec(name="verdict", description="The outcome of the node.",
                     schema=VERDICT_SCHEMA)
ANSWER = {"status": "success", "notes": {"reason": "all checks passed"}}


@dataclass(frozen=True)
class Mode:
    """One way of asking for a structured answer."""

    id: str
    flavour: Flavour
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def tool(self) -> bool:
        """True when the answer comes as a tool call (not as JSON content)."""
        return self.id != "openai-json_schema"

    def assert_asked(self, body: dict[str, Any]) -> None:
        """The request body asks for VERDICT the way this mode should."""
        if self.id == "openai-json_schema":
            assert body["response_format"] == {"type": "json_schema", "json_schema": {
                "name": "verdict", "description": "The outcome of the node.",
                "schema": VERDICT_SCHEMA, "strict": True}}
            assert "tools" not in body
        elif self.id == "openai-tool":
            assert body["tools"] == [{"type": "function", "function": {
                "name": "verdict", "description": "The outcome of the node.",
                "parameters": VERDICT_SCHEMA, "strict": True}}]
            assert body["tool_choice"] == {"type": "function", "function": {"name": "verdict"}}
            assert "response_format" not in body
        else:
            assert body["tools"] == [{"name": "verdict", "description": "The outcome of the node.",
                                      "input_schema": VERDICT_SCHEMA}]
            assert body["tool_choice"] == {"type": "tool", "name": "verdict"}


MODES = [Mode("openai-json_schema", OPENAI),
         Mode("openai-tool", OPENAI, {"structured_output": "tool"}),
         Mode("anthropic-tool", ANTHROPIC)]
TOOL_MODES = MODES[1:]


@pytest.fixture(params=MODES, ids=lambda m: m.id)
def mode(request: pytest.FixtureRequest, keys: None) -> Mode:
    """A way of asking for a structured answer, with the test keys in the environment."""
    return request.param  # type: ignore[no-any-return]


async def ask(mode: Mode, server: FakeLLMServer, *replies: Reply, **fields: Any) -> Any:
    """One request for VERDICT through a pool on the fake server, answered by `replies`."""
    server.queue(*replies)
    fields.setdefault("output", VERDICT)
    async with ProviderPool(mode.flavour.settings(server, **mode.settings)) as pool:
        return await pool.complete(chat(mode.flavour, **fields))


async def test_a_structured_answer_is_asked_for_and_parsed(mode: Mode,
                                                           server: FakeLLMServer) -> None:
    response = await ask(mode, server, Reply(structured=ANSWER))
    assert (response.structured, response.structured_error) == (ANSWER, None)
    # No text content: the text is the answer's JSON, so that a response file is not empty.
    assert json.loads(response.text) == ANSWER
    assert response.finish_reason == ("tool_calls" if mode.tool else "stop")
    [seen] = server.requests
    mode.assert_asked(seen.body)


@pytest.mark.parametrize("mode", TOOL_MODES, ids=lambda m: m.id)
async def test_text_beside_a_tool_call_is_the_text(mode: Mode, server: FakeLLMServer,
                                                   keys: None) -> None:
    response = await ask(mode, server, Reply(text="Checked all three.", structured=ANSWER))
    assert (response.text, response.structured) == ("Checked all three.", ANSWER)


async def test_a_plain_text_answer_has_a_structured_error(mode: Mode,
                                                          server: FakeLLMServer) -> None:
    response = await ask(mode, server, Reply(text="I think it passed."))
    assert response.structured is None
    assert response.text == "I think it passed."
    if mode.tool:
        assert response.structured_error == "the model called no tool"
    else:
        assert response.structured_error.startswith("the reply is not JSON: Expecting value")


@pytest.mark.parametrize("mode", TOOL_MODES, ids=lambda m: m.id)
async def test_a_call_of_another_tool_is_no_answer(mode: Mode, server: FakeLLMServer,
                                                   keys: None) -> None:
    response = await ask(mode, server, Reply(tool_calls=[("grep", {"pattern": "x"})]))
    assert response.structured is None
    assert response.structured_error == "the model called no tool named 'verdict' " \
                                        "(it called 'grep')"


async def test_a_cut_short_answer_says_why(server: FakeLLMServer, keys: None) -> None:
    response = await ask(MODES[0], server, Reply(text='{"status": "succ', finish="length"))
    assert response.structured is None and response.text == '{"status": "succ'
    assert response.structured_error.startswith("the reply is not JSON: Unterminated string")
    assert response.structured_error.endswith("(finish_reason length)")


def openai_tool_reply(arguments: str) -> Reply:
    """A raw chat.completion whose one function call has these arguments."""
    message = {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "verdict", "arguments": arguments}}]}
    return Reply(body={"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                       "model": "gpt-4o-mini", "choices": [{
                           "index": 0, "message": message, "finish_reason": "tool_calls"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 5,
                                 "total_tokens": 10}})


@pytest.mark.parametrize(("arguments", "error"), [
    ('{"status": ', "the tool input is not JSON: Expecting value"),
    ("[1, 2]", "the tool input is not an object but list"),
])
async def test_bad_function_arguments_are_no_answer(server: FakeLLMServer, keys: None,
                                                    arguments: str, error: str) -> None:
    response = await ask(MODES[1], server, openai_tool_reply(arguments))
    assert response.structured is None and response.structured_error.startswith(error)
    assert response.text == arguments


async def test_a_tool_input_that_is_not_an_object_is_no_answer(server: FakeLLMServer,
                                                               keys: None) -> None:
    body = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "verdict",
                         "input": ["success"]}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 5}}
    response = await ask(MODES[2], server, Reply(body=body))
    assert response.structured is None
    assert response.structured_error == "the tool input is not an object but list"
    assert response.text == '["success"]'


async def test_a_refusal_is_no_answer(server: FakeLLMServer, keys: None) -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    response = await ask(MODES[0], server, Reply(body=body))
    assert response.structured_error == "the model refused: I can't help with that."
    assert response.text == "I can't help with that."


async def test_an_output_wins_over_a_response_format_param(server: FakeLLMServer,
                                                           keys: None) -> None:
    await ask(MODES[0], server, Reply(structured=ANSWER),
              params={"response_format": {"type": "json_object"}})
    MODES[0].assert_asked(server.requests[0].body)


@pytest.mark.parametrize("mode_id", ["openai-json_schema", "openai-tool"])
async def test_a_schema_strict_mode_refuses_is_a_client_error(
        server: FakeLLMServer, keys: None, mode_id: str) -> None:
    loose = {"type": "object", "properties": {"status": {"type": "string"},
                                              "extra": {"type": "object"}},
             "required": ["status", "extra"], "additionalProperties": False}
    mode = next(m for m in MODES if m.id == mode_id)
    with pytest.raises(ProviderError) as caught:
        await ask(mode, server, output=OutputSpec(name="loose", schema=loose))
    error = caught.value
    assert (error.status, error.kind, error.retryable, error.attempts) == (400, "client",
                                                                          False, 1)
    assert "In context=('properties', 'extra'), 'additionalProperties' is required" in str(error)


# ---------------------------------------------------------------------------- threads


THREAD = [{"role": "system", "content": "You review patches."},
          {"role": "user", "content": "Review patch 1."},
          {"role": "assistant", "content": '{"status": "fail"}'},
          {"role": "user", "content": "Now patch 2."}]


@pytest.mark.parametrize("flavour", [OPENAI, ANTHROPIC], ids=lambda f: f.name)
async def test_a_multi_turn_thread_is_sent_as_it_is(server: FakeLLMServer, keys: None,
                                                    flavour: Flavour) -> None:
    server.queue(Reply(structured=ANSWER))
    async with ProviderPool(flavour.settings(server)) as pool:
        request = ModelRequest(model=flavour.model, messages=THREAD, output=VERDICT)
        response = await pool.complete(request)
    assert response.structured == ANSWER
    sent = server.requests[0].body
    if flavour is ANTHROPIC:
        assert sent["system"] == "You review patches."
        assert sent["messages"] == THREAD[1:]
    else:
        assert sent["messages"] == THREAD


@pytest.mark.parametrize(("messages", "complaint"), [
    (THREAD[:2] + THREAD[3:], 'multiple "user" roles in a row'),
    ([*THREAD[:2], {"role": "assistant", "content": ""}, THREAD[3]],
     "messages.1: text content blocks must be non-empty"),
    (THREAD[2:], 'first message must use the "user" role'),
])
async def test_anthropic_refuses_broken_threads(server: FakeLLMServer, keys: None,
                                                messages: list[dict[str, str]],
                                                complaint: str) -> None:
    async with ProviderPool(ANTHROPIC.settings(server)) as pool:
        with pytest.raises(ProviderError, match=complaint) as caught:
            await pool.complete(ModelRequest(model=ANTHROPIC.model, messages=messages))
    assert caught.value.status == 400


# ---------------------------------------------------------------------------- recording


def test_a_request_with_an_output_round_trips_through_its_recorded_form() -> None:
    request = ModelRequest(node_id="judge", messages=THREAD, output=VERDICT)
    recorded = request.to_dict()
    assert recorded["output"] == {"name": "verdict", "description": "The outcome of the node.",
                                  "schema": VERDICT_SCHEMA}
    again = ModelRequest.model_validate(json.loads(json.dumps(recorded)))
    assert again == request and again.output.schema_ == VERDICT_SCHEMA
    by_field_name = OutputSpec(name="v", schema_={"type": "object"})
    assert by_field_name.to_dict() == {"name": "v", "description": "",
                                       "schema": {"type": "object"}}
    with pytest.raises(ValueError, match="pattern"):
        OutputSpec(name="no spaces", schema={})


def test_calls_without_the_new_fields_are_recorded_as_before() -> None:
    request = ModelRequest(node_id="n", messages=THREAD)
    assert "output" not in request.to_dict()
    assert ModelRequest.model_validate(request.to_dict()) == request
    response = ModelResponse(text="ok", usage=Usage(input_tokens=3, output_tokens=1))
    recorded = response.to_dict()
    assert not {"structured", "structured_error"} & set(recorded)
    assert recorded["usage"] == {"input_tokens": 3, "output_tokens": 1, "total": 4}
    assert ModelResponse.model_validate(recorded) == response
    full = ModelResponse(text="{}", structured={}, structured_error=None,
                         usage=Usage(input_tokens=3, cache_read_tokens=2))
    assert full.to_dict()["structured"] == {} and full.to_dict()["usage"]["cache_read_tokens"] == 2
    assert ModelResponse.model_validate(full.to_dict()) == full


def test_the_output_is_part_of_the_replay_hash_and_old_recordings_still_match() -> None:
    plain = ModelRequest(provider="openai", model="gpt-4o-mini", node_id="n", messages=THREAD)
    asking = plain.model_copy(update={"output": VERDICT})
    other = plain.model_copy(update={"output": VERDICT.model_copy(update={"name": "v2"})})
    assert len({request_hash("model", r) for r in (plain, asking, other)}) == 3
    # A trace line recorded before requests had an output: no `output` key at all.
    old = plain.model_dump(mode="json", exclude={"output"})
    assert request_hash("model", old) == request_hash("model", plain)
    assert canonical_request("model", old)["output"] is None
    cassette = Cassette.from_calls([{"seq": 1, "node_id": "n", "attempt": 1, "kind": "model",
                                     "request": old, "response": {"text": "ok"}}])
    assert cassette.match("n", 1, "model", asking) is None
    assert cassette.match("n", 1, "model", plain) is not None
