"""What the fake LLM server answers: the OpenAI Chat Completions and Anthropic Messages APIs'
request checks and response shapes (tests/fakes/llm_server.py serves them over HTTP).

Requests the real APIs refuse get a 400 in the vendor's error body, with messages modelled
on the real ones; the strict-schema rules are OpenAI's Structured Outputs rules.
"""

from __future__ import annotations

import json
import math
import re
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
    # Success: tool calls (name, arguments) the model makes.
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
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
    return 200, build(body, reply), extra


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
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _OPENAI_ROLES:
            return f"Invalid value: '{role}'. Supported values are: {sorted(_OPENAI_ROLES)}."
        for call in message.get("tool_calls") or []:
            call_ids.add(call.get("id"))
        if role == "tool" and message.get("tool_call_id") not in call_ids:
            return (f"Invalid parameter: messages[{index}]: messages with role 'tool' must "
                    "be a response to a preceeding message with 'tool_calls'.")
        if message.get("content") is None and not (role == "assistant"
                                                   and message.get("tool_calls")):
            return f"Missing required parameter: 'messages[{index}].content'."
    return _check_response_format(body.get("response_format")) or _check_openai_tools(body)


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
    previous_uses: set[str] = set()
    for index, message in enumerate(messages):
        if index and message["role"] == messages[index - 1]["role"]:
            return ('messages: roles must alternate between "user" and "assistant", but found '
                    f'multiple "{message["role"]}" roles in a row')
        problem = _check_anthropic_content(index, message, len(messages), previous_uses)
        if problem:
            return problem
        previous_uses = {block.get("id") for block in _blocks(message)
                         if block.get("type") == "tool_use"}
    return _check_anthropic_tools(body)


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _check_anthropic_content(index: int, message: dict[str, Any], count: int,
                             previous_uses: set[str]) -> str | None:
    content = message.get("content")
    if content == "" or any(block.get("type") == "text" and not block.get("text")
                            for block in _blocks(message)):
        return f"messages.{index}: text content blocks must be non-empty"
    if content == [] and not (index == count - 1 and message["role"] == "assistant"):
        return (f"messages.{index}: all messages must have non-empty content except for the "
                "optional final assistant message")
    for number, block in enumerate(_blocks(message)):
        if block.get("type") == "tool_result" and block.get("tool_use_id") not in previous_uses:
            return (f"messages.{index}.content.{number}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                    "block must have a corresponding `tool_use` block in the previous message.")
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
    if choice["type"] != "none" and not names:
        return "tool_choice may only be specified while providing tools."
    if choice["type"] == "tool" and choice.get("name") not in names:
        return f"tool_choice.name: Tool '{choice.get('name')}' not found in tools"
    return None


# -- answers ------------------------------------------------------------------------------


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
    prompt = json.dumps(body["messages"]) + str(body.get("system", ""))
    return math.ceil(len(prompt) / 4) + reply.cache_read + reply.cache_write, \
        math.ceil(len(output) / 4)


def _forced_function(body: dict[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    return (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None


def _openai_completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    calls = list(reply.tool_calls)
    forced = _forced_function(body)
    content = reply.text
    if reply.structured is not None and forced:
        calls.insert(0, (forced, reply.structured))
    elif reply.structured is not None:
        content = json.dumps(reply.structured)
    elif content is None and not calls:
        content = "fake: " + _last_user(body["messages"])
    tool_calls = [{"id": f"call_fake{n}", "type": "function",
                   "function": {"name": name, "arguments": json.dumps(arguments)}}
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


def _anthropic_message(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
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
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": f"toolu_fake{n}", "name": name, "input": arguments}
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
        "stop_reason": reply.finish or ("tool_use" if calls else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": max(0, total - cached), "output_tokens": output,
                  "cache_creation_input_tokens": reply.cache_write,
                  "cache_read_input_tokens": reply.cache_read},
    }
