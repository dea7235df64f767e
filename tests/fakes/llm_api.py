"""What the fake LLM server answers: the OpenAI Chat Completions and Anthropic Messages APIs'
request checks and response shapes (tests/fakes/llm_server.py serves them over HTTP).

Requests the real APIs refuse get a 400 in the vendor's error body, with messages modelled
on the real ones; the strict-schema rules are OpenAI's Structured Outputs rules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
                       404: "invalid_request_error", 429: "rate_limit_exceeded"}
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                          403: "permission_error", 404: "not_found_error",
                          429: "rate_limit_error", 529: "overloaded_error"}
_OPENAI_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


@dataclass
class Reply:
    """How to answer one request."""

    status: int = 200
    # Success: the reply text (default: an echo of the last user message, unless the reply
    # is structured or calls tools).
    text: str | None = None
    # Success: the structured answer, in the shape the request asked for it (json_schema
    # content, a forced function call, a forced tool_use block). A request that asked for
    # one answered with `text` only gets that text as plain content.
    structured: dict[str, Any] | None = None
    # Success: tool calls (name, arguments) the model makes; arguments given as a string are
    # sent as written (OpenAI only: a model may write malformed JSON, Anthropic's cannot).
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    # Success: (input, output) tokens (default: a character-based count). Input is ALL the
    # input, cached included: it becomes OpenAI's prompt_tokens, and Anthropic's
    # input_tokens less the cache reads and writes, which Anthropic counts apart.
    usage: tuple[int, int] | None = None
    cache_read: int = 0
    cache_write: int = 0
    finish: str | None = None
    # Errors: the message inside the vendor's error body.
    message: str = "scripted failure"
    # A complete body to send instead of the generated one.
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Hold the answer this long, or until the client hangs up, whichever is first.
    delay_s: float = 0.0


@dataclass
class SeenRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any
    # Its place among the server's requests (0-based): tool call ids are unique per server.
    index: int = 0

    @property
    def anthropic(self) -> bool:
        """True for a Messages API request, False for Chat Completions."""
        return self.path.endswith(ANTHROPIC_PATH)

    def tool_names(self) -> list[str]:
        """The names of the tools offered, in order."""
        tools = self.body.get("tools") or []
        return [tool["name"] if self.anthropic else tool["function"]["name"] for tool in tools]

    def tool_choice(self) -> str | None:
        """tool_choice in the provider-neutral form: auto, required, none, a name, or None."""
        choice = self.body.get("tool_choice")
        if not isinstance(choice, dict):
            return choice
        if self.anthropic:
            return {"any": "required"}.get(choice["type"], choice.get("name", choice["type"]))
        return (choice.get("function") or {}).get("name")

    def tool_results(self) -> list[tuple[str, str, bool]]:
        """(call id, content, is_error) of every tool result sent, in order; Chat
        Completions has no error flag, so is_error is always False there."""
        if not self.anthropic:
            return [(m["tool_call_id"], m["content"], False) for m in self.body["messages"]
                    if m.get("role") == "tool"]
        return [(b["tool_use_id"], b.get("content", ""), bool(b.get("is_error")))
                for m in self.body["messages"] for b in _blocks(m)
                if b.get("type") == "tool_result"]

    def turn(self) -> int:
        """Which turn of a conversation this is: its assistant messages + 1."""
        return 1 + sum(m.get("role") == "assistant" for m in self.body["messages"])


def by_turn(script: dict[str, list[Reply]]) -> Callable[[SeenRequest], Reply]:
    """A responder for conversations run concurrently: the one whose first user message
    holds a key of `script` gets that key's replies, one per turn."""
    def respond(seen: SeenRequest) -> Reply:
        first = _first_user(seen.body["messages"])
        for key, replies in script.items():
            if key in first:
                return replies[seen.turn() - 1]
        return Reply(status=500, message=f"fake: no script for {first!r}")
    return respond


def answer(seen: SeenRequest, reply: Reply) -> tuple[int, Any, dict[str, str]]:
    """Status, JSON payload and extra headers for one request."""
    # By suffix: base URLs may have a prefix, as proxies' often do.
    if seen.method != "POST" or not seen.path.endswith((OPENAI_PATH, ANTHROPIC_PATH)):
        return 404, {"error": {"message": f"no route for {seen.method} {seen.path}"}}, {}
    anthropic = seen.path.endswith(ANTHROPIC_PATH)
    extra = {"request-id" if anthropic else "x-request-id": f"req_{id(reply):x}",
             **reply.headers}
    if reply.body is not None:
        return reply.status, reply.body, extra
    if reply.status >= 400:
        return reply.status, error_body(anthropic, reply.status, reply.message), extra
    body = seen.body
    problem = check_anthropic(seen.headers, body) if anthropic else check_openai(body)
    if problem:
        return 400, error_body(anthropic, 400, problem), extra
    build = _anthropic_message if anthropic else _openai_completion
    try:
        return 200, build(body, reply, seen.index), extra
    except _TestBug as bug:  # a 500 naming it, so that the failing test says what is wrong
        return 500, error_body(anthropic, 500, f"fake: {bug}"), extra


class _TestBug(Exception):
    """A reply that cannot answer its request (the test scripted it wrong)."""


def error_body(anthropic: bool, status: int, message: str) -> dict[str, Any]:
    """The vendor's error body."""
    if anthropic:
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


# -- checks -------------------------------------------------------------------------------


def strict_problem(schema: Any, context: tuple[str, ...] = ()) -> str | None:
    """Why `schema` breaks OpenAI's strict mode (every object closed, every property
    required, recursively), or None."""
    if not isinstance(schema, dict):
        return None
    where = f"In context={context!r}, "
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return where + "'additionalProperties' is required to be supplied and to be false."
        properties = schema.get("properties") or {}
        required = schema.get("required")
        missing = [key for key in properties if not isinstance(required, list)
                   or key not in required]
        if missing:
            return (where + "'required' is required to be supplied and to be an array "
                    f"including every key in properties. Missing '{missing[0]}'.")
        for key, sub in properties.items():
            if problem := strict_problem(sub, (*context, "properties", key)):
                return problem
    for name in ("items",):
        if problem := strict_problem(schema.get(name), (*context, name)):
            return problem
    for name in ("anyOf", "$defs", "definitions"):
        subs = schema.get(name) or {}
        pairs = enumerate(subs) if isinstance(subs, list) else subs.items()
        for key, sub in pairs:
            if problem := strict_problem(sub, (*context, name, str(key))):
                return problem
    return None


def check_openai(body: Any) -> str | None:
    """Why Chat Completions would refuse `body` (400), or None."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Invalid 'messages': empty array. Expected an array with minimum length 1."
    call_ids: set[str] = set()
    unanswered: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _OPENAI_ROLES:
            return f"Invalid value: '{role}'. Supported values are: {sorted(_OPENAI_ROLES)}."
        if unanswered and role != "tool":
            break
        for call in message.get("tool_calls") or []:
            call_ids.add(call.get("id"))
            unanswered.append(call.get("id"))
        if role == "tool":
            if message.get("tool_call_id") not in call_ids:
                return (f"Invalid parameter: messages[{index}]: messages with role 'tool' must "
                        "be a response to a preceeding message with 'tool_calls'.")
            if message["tool_call_id"] in unanswered:
                unanswered.remove(message["tool_call_id"])
            if not _text_content(message.get("content")):
                return (f"Invalid 'messages[{index}].content': expected a string or an array "
                        "of text content parts.")
        if message.get("content") is None and not (role == "assistant"
                                                   and message.get("tool_calls")):
            return f"Missing required parameter: 'messages[{index}].content'."
    if unanswered:
        return ("An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(unanswered)}")
    return _check_response_format(body.get("response_format")) or _check_openai_tools(body)


def _text_content(content: Any) -> bool:
    return isinstance(content, str) or (isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" for part in content))


def _check_response_format(response_format: Any) -> str | None:
    if response_format is None or response_format.get("type") in ("text", "json_object"):
        return None
    if response_format.get("type") != "json_schema":
        return f"Invalid value: '{response_format.get('type')}'. Supported values are: " \
               "'json_object', 'json_schema', and 'text'."
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        return "Missing required parameter: 'response_format.json_schema'."
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        return ("Invalid 'response_format.json_schema.name': string does not match pattern. "
                "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.")
    if not isinstance(spec.get("schema"), dict):
        return "Missing required parameter: 'response_format.json_schema.schema'."
    if spec.get("strict") and (problem := strict_problem(spec["schema"])):
        return f"Invalid schema for response_format '{name}': {problem}"
    return None


def _check_openai_tools(body: dict[str, Any]) -> str | None:
    names = []
    for index, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(function, dict):
            return f"Missing required parameter: 'tools[{index}].function'."
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            return (f"Invalid 'tools[{index}].function.name': string does not match pattern. "
                    "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.")
        if function.get("strict") and (problem := strict_problem(function.get("parameters"))):
            return f"Invalid schema for function '{name}': {problem}"
        names.append(name)
    if body.get("parallel_tool_calls") is not None and not names:
        return ("Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only "
                "allowed when 'tools' are specified.")
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if not names:
        return ("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.")
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        if wanted not in names:
            return f"Invalid value for 'tool_choice': function '{wanted}' not found in 'tools'."
    elif choice not in ("none", "auto", "required"):
        return f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', 'required'."
    return None


def check_anthropic(headers: dict[str, str], body: Any) -> str | None:
    """Why the Messages API would refuse the request (400), or None."""
    if "anthropic-version" not in headers:
        return "anthropic-version header is required"
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if any(not isinstance(m, dict) or m.get("role") not in ("user", "assistant")
           for m in messages):
        return "messages: roles must be 'user' or 'assistant'; use the system parameter"
    if messages[0]["role"] != "user":
        return 'messages: first message must use the "user" role'
    previous_uses: list[str] = []
    for index, message in enumerate(messages):
        if index and message["role"] == messages[index - 1]["role"]:
            return ('messages: roles must alternate between "user" and "assistant", but found '
                    f'multiple "{message["role"]}" roles in a row')
        problem = _check_anthropic_content(index, message, len(messages), previous_uses)
        if problem:
            return problem
        previous_uses = [block.get("id") for block in _blocks(message)
                         if block.get("type") == "tool_use"]
    if not body.get("tools") and any(block.get("type") in ("tool_use", "tool_result")
                                     for message in messages for block in _blocks(message)):
        return "Requests which include `tool_use` or `tool_result` blocks must define tools."
    return _check_anthropic_tools(body)


def _unanswered(index: int, ids: list[str]) -> str:
    return (f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(ids)}. Each `tool_use` block must have a "
            "corresponding `tool_result` block in the next message.")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _check_anthropic_content(index: int, message: dict[str, Any], count: int,
                             previous_uses: list[str]) -> str | None:
    content = message.get("content")
    if content == "" or any(block.get("type") == "text" and not block.get("text")
                            for block in _blocks(message)):
        return f"messages.{index}: text content blocks must be non-empty"
    if content == [] and not (index == count - 1 and message["role"] == "assistant"):
        return (f"messages.{index}: all messages must have non-empty content except for the "
                "optional final assistant message")
    blocks = _blocks(message)
    for number, block in enumerate(blocks):
        if block.get("type") != "tool_result":
            continue
        if block.get("tool_use_id") not in previous_uses:
            return (f"messages.{index}.content.{number}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                    "block must have a corresponding `tool_use` block in the previous message.")
        if not isinstance(block.get("is_error", False), bool):
            return (f"messages.{index}.content.{number}.tool_result.is_error: Input should be "
                    "a valid boolean")
    if previous_uses:
        leading = [b.get("tool_use_id") for b in blocks[:len(previous_uses)]
                   if b.get("type") == "tool_result"]
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        if missing := [i for i in previous_uses if i not in results]:
            return _unanswered(index - 1, missing)
        if len(leading) < len(previous_uses):
            return (f"messages.{index}: Did not find {len(previous_uses)} `tool_result` "
                    "block(s) at the beginning of this message. Messages following "
                    "`tool_use` blocks must begin with `tool_result` blocks.")
    return None


def _check_anthropic_tools(body: dict[str, Any]) -> str | None:
    names = []
    for index, tool in enumerate(body.get("tools") or []):
        name = tool.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            return (f"tools.{index}.custom.name: String should match pattern "
                    "'^[a-zA-Z0-9_-]{1,64}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{index}.custom.input_schema.type: Input should be 'object'"
        names.append(name)
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if choice.get("type") not in ("auto", "any", "tool", "none"):
        return "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"
    if not isinstance(choice.get("disable_parallel_tool_use", False), bool):
        return (f"tool_choice.{choice['type']}.disable_parallel_tool_use: Input should be a "
                "valid boolean")
    if choice["type"] != "none" and not names:
        return "tool_choice may only be specified while providing tools."
    if choice["type"] == "tool" and choice.get("name") not in names:
        return f"tool_choice.name: Tool '{choice.get('name')}' not found in tools"
    return None


# -- answers ------------------------------------------------------------------------------


def _first_user(messages: list[dict[str, Any]]) -> str:
    first = next((m.get("content") for m in messages if m.get("role") == "user"), "")
    return first if isinstance(first, str) else json.dumps(first)


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _counts(body: dict[str, Any], reply: Reply, output: str) -> tuple[int, int]:
    """(all input, output) tokens: the reply's, else one per 4 characters."""
    if reply.usage:
        return reply.usage
    # Vendors bill the tool definitions as input too.
    prompt = json.dumps(body["messages"]) + str(body.get("system", "")) + (
        json.dumps(body["tools"]) if body.get("tools") else "")
    return math.ceil(len(prompt) / 4) + reply.cache_read + reply.cache_write, \
        math.ceil(len(output) / 4)


def _forced_function(body: dict[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    return (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None


def _check_calls(calls: list[Any], choice: str | None, serial: bool) -> None:
    """Refuse scripted calls the request's tool choice rules out."""
    if serial and len(calls) > 1:
        raise _TestBug(f"{len(calls)} tool calls scripted, but parallel tool use is disabled")
    if choice == "required" and not calls:
        raise _TestBug("no tool call scripted, but the request requires one")
    if choice == "none" and calls:
        raise _TestBug("a tool call scripted, but the request's tool_choice is none")


def _openai_completion(body: dict[str, Any], reply: Reply, index: int) -> dict[str, Any]:
    calls = list(reply.tool_calls)
    forced = _forced_function(body)
    content = reply.text
    if reply.structured is not None and forced:
        calls.insert(0, (forced, reply.structured))
    elif reply.structured is not None:
        content = json.dumps(reply.structured)
    elif content is None and not calls:
        content = "fake: " + _last_user(body["messages"])
    choice = body.get("tool_choice")
    _check_calls(calls, choice if isinstance(choice, str) else None,
                 body.get("parallel_tool_calls") is False)
    tool_calls = [{"id": f"call_{index}_{n}", "type": "function",
                   "function": {"name": name, "arguments": arguments if isinstance(arguments, str)
                                else json.dumps(arguments)}}
                  for n, (name, arguments) in enumerate(calls, 1)]
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    written = (content or "") + "".join(c["function"]["arguments"] for c in tool_calls)
    prompt, completion = _counts(body, reply, written)
    details: dict[str, int] = {"cached_tokens": reply.cache_read, "audio_tokens": 0}
    if reply.cache_write:  # OpenAI never reports writes; routers such as OpenRouter do
        details["cache_write_tokens"] = reply.cache_write
    return {
        "id": "chatcmpl-fake0001",
        "object": "chat.completion",
        "created": 1_790_000_000,
        "model": body["model"],
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": reply.finish or ("tool_calls" if tool_calls else "stop"),
        }],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion, "prompt_tokens_details": details},
    }


# Chat Completions' finish reasons a test may script for either API → Anthropic's.
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _anthropic_message(body: dict[str, Any], reply: Reply, index: int) -> dict[str, Any]:
    calls = list(reply.tool_calls)
    choice = body.get("tool_choice") or {}
    forced = choice.get("name") if choice.get("type") == "tool" else None
    text = reply.text
    if reply.structured is not None and forced:
        calls.insert(0, (forced, reply.structured))
    elif reply.structured is not None:
        text = json.dumps(reply.structured)
    elif text is None and not calls:
        text = "fake: " + _last_user(body["messages"])
    if any(isinstance(arguments, str) for _, arguments in calls):
        raise _TestBug("tool_use input must be an object")
    _check_calls(calls, {"any": "required", "none": "none"}.get(choice.get("type", "")),
                 choice.get("disable_parallel_tool_use") is True)
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": f"toolu_{index}_{n}", "name": name, "input": arguments}
                for n, (name, arguments) in enumerate(calls, 1)]
    written = (text or "") + "".join(json.dumps(arguments) for _, arguments in calls)
    total, output = _counts(body, reply, written)
    cached = reply.cache_read + reply.cache_write
    return {
        "id": "msg_fake0001",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": _STOP_REASONS.get(reply.finish or "", reply.finish)
        or ("tool_use" if calls else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": max(0, total - cached), "output_tokens": output,
                  "cache_creation_input_tokens": reply.cache_write,
                  "cache_read_input_tokens": reply.cache_read},
    }
