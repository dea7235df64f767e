"""Anthropic's Messages API through the official SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import anthropic

# What the SDK would import on a client's first call (20 ms, on the event loop): here, it
# is imported with this module, in a thread (runtime.open_pool).
import anthropic.resources.messages
from pydantic import Field

from .base import (
    Message,
    ModelRequest,
    ModelResponse,
    OutputSpec,
    ProviderError,
    SDKProvider,
    SDKSettings,
    ToolCall,
    Usage,
    checked_object,
    from_sdk_error,
    json_object,
)

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
_KEYLESS_PLACEHOLDER = "no-key"

# Messages API parameters that are keywords of `messages.create`.
_KEYWORDS = frozenset({"metadata", "service_tier", "thinking", "stop_sequences"})
# Sampling parameters the installed SDK no longer names; sent in the body when given.
_BODY = frozenset({"temperature", "top_p", "top_k"})

# stop_reason → the finish_reason vocabulary OpenAI-style callers expect.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # A server tool's long turn paused: only server tools (never offered yet) cause it.
    "pause_turn": "pause",
}
# The neutral tool_choice → the Messages API's; any other value is a tool's name.
_TOOL_CHOICE = {"auto": "auto", "required": "any", "none": "none"}


class AnthropicSettings(SDKSettings):
    """Settings of an Anthropic provider."""

    base_url: str = ANTHROPIC_BASE_URL
    api_key_env: str | None = "ANTHROPIC_API_KEY"
    # The API requires max_tokens on every call.
    max_tokens: int = Field(default=1024, gt=0)

    def default_timeout_s(self) -> float:
        """300 s: ample for max_tokens 1024 (well under a minute), and for a few thousand
        tokens of extended thinking; longer answers want a larger timeout_s."""
        return 300.0


class AnthropicProvider(SDKProvider):
    """Calls `messages.create`; retries are the pool's, never the SDK's."""

    settings_class = AnthropicSettings
    type_name = "anthropic"
    path = "/v1/messages"

    def _client(self) -> anthropic.AsyncAnthropic:
        # Built on first use so that configuring an unused provider needs no key. An explicit
        # api_key also stops the SDK from consulting ANTHROPIC_* variables and profiles.
        if self._sdk is None:
            key = self.settings.api_key(self.name)
            self._secrets = [key] if key else []
            self._sdk = anthropic.AsyncAnthropic(
                api_key=key or _KEYLESS_PLACEHOLDER,
                base_url=self.settings.base_url,
                timeout=self.timeout(anthropic),
                max_retries=0,
                http_client=self.http_client(anthropic),
            )
        return self._sdk

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        params = request.params
        arguments: dict[str, Any] = {k: v for k, v in params.items() if k in _KEYWORDS}
        arguments["max_tokens"] = int(params.get("max_tokens") or self.settings.max_tokens)
        if params.get("stop") is not None and "stop_sequences" not in arguments:
            stop = params["stop"]
            arguments["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if params.get("reasoning_effort") is not None:
            arguments["output_config"] = {"effort": params["reasoning_effort"]}
        body = {k: v for k, v in params.items() if k in _BODY and v is not None}
        if isinstance(params.get("extra_body"), Mapping):
            body.update(params["extra_body"])
        if body:
            arguments["extra_body"] = body
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        if system:
            arguments["system"] = system
        if request.tools:
            arguments.update(self._tools(request))
        elif request.output is not None:
            arguments.update(_forced_tool(request.output))
        return arguments

    def _tools(self, request: ModelRequest) -> dict[str, Any]:
        if "thinking" in request.params:
            # Extended thinking needs its signed blocks sent back each turn, which messages
            # do not keep yet.
            raise ProviderError(f"{self.name}: tools cannot be used beside thinking yet",
                                kind="config", provider=self.name)
        tools = []
        # The structured answer is one more tool beside the node's: the model ends its work
        # by calling it, and a turn that may call no tool is made to call it.
        answer = [] if request.output is None else [_answer_tool(request.output)]
        for tool in request.tools:
            spec: dict[str, Any] = {"name": tool.name, "description": tool.description,
                                    "input_schema": tool.schema_}
            if tool.strict:
                spec["strict"] = True
            tools.append(spec)
        arguments: dict[str, Any] = {"tools": tools + answer}
        choice: dict[str, Any] | None = None
        if request.output is not None and request.tool_choice == "none":
            choice = {"type": "tool", "name": request.output.name}
        elif request.tool_choice is not None:
            kind = _TOOL_CHOICE.get(request.tool_choice, "tool")
            choice = {"type": kind, **({"name": request.tool_choice} if kind == "tool" else {})}
        if request.parallel_tool_calls is False:
            # The flag lives in the tool choice, so one is needed: the default, auto.
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            arguments["tool_choice"] = choice
        return arguments

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One Messages call; SDK errors become ProviderError."""
        model = request.model or self.settings.model
        if not model:
            raise ProviderError(f"{self.name}: no model: name one in the request or set the "
                                f"provider's model setting", kind="config", provider=self.name)
        client = self._client()
        arguments = self._arguments(request)
        started = time.perf_counter()
        try:
            message = await client.messages.create(
                model=model,
                messages=_messages(request.messages),
                **arguments,
            )
        except anthropic.AnthropicError as exc:
            raise from_sdk_error(self.name, exc, anthropic, self._secrets,
                                 self.endpoint()) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        with self.reading():
            response = self._response(request, message, model, latency_ms)
        return self.pricing.price(request, response)

    def _response(self, request: ModelRequest, message: Any, model: str,
                  latency_ms: float) -> ModelResponse:
        text = "".join(block.text for block in message.content if block.type == "text")
        structured = structured_error = None
        # Calls are reported only to a request that offered tools: a forced answer tool is
        # the structured answer, recorded as it always was.
        answer = request.output.name if request.output is not None else None
        tool_calls = tuple(
            ToolCall(id=block.id, name=block.name,
                     arguments=json.dumps(block.input, ensure_ascii=False))
            for block in message.content
            if block.type == "tool_use" and block.name != answer) if request.tools else ()
        # A turn that calls the node's tools is not the answer yet, even beside the answer
        # tool: the answer comes after their results.
        if request.output is not None and not tool_calls:
            structured, structured_error, raw = _tool_input(message.content, request.output)
            text = text or raw
            if structured_error and message.stop_reason not in ("tool_use", "end_turn"):
                structured_error += f" (stop_reason {message.stop_reason})"
        return ModelResponse(
            text=text,
            structured=structured,
            structured_error=structured_error,
            tool_calls=tool_calls,
            usage=_usage(message.usage),
            latency_ms=latency_ms,
            finish_reason=_FINISH.get(message.stop_reason or "", message.stop_reason or "unknown"),
            model=message.model or model,
            provider=self.name,
            raw_id=message.id or None,
        )


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The turns in the Messages API's shape: system prompts left out (they go apart), tool
    calls as tool_use blocks, and tool results merged with the user text after them into one
    user message whose tool_result blocks come first (the API refuses them anywhere else)."""
    turns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
            if message.content:
                result["content"] = message.content
            if message.is_error:
                result["is_error"] = True
            results.append(result)
            continue
        if message.role == "system":
            continue
        if results:
            text = ([{"type": "text", "text": message.content}]
                    if message.role == "user" and message.content else [])
            turns.append({"role": "user", "content": [*results, *text]})
            results = []
            if message.role == "user":
                continue
        if message.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": message.content}] if message.content else [])
            blocks += [{"type": "tool_use", "id": call.id, "name": call.name,
                        "input": _input(call)} for call in message.tool_calls]
            turns.append({"role": "assistant", "content": blocks})
        else:
            turns.append({"role": message.role, "content": message.content})
    if results:
        turns.append({"role": "user", "content": results})
    return turns


def _input(call: ToolCall) -> dict[str, Any]:
    """A call's arguments as tool_use input: Anthropic's are always an object, so anything
    else came from another vendor's model in the history and becomes {}."""
    arguments, _ = json_object(call.arguments, "the arguments")
    return arguments or {}


def _answer_tool(output: OutputSpec) -> dict[str, Any]:
    """The structured answer as a tool of the Messages API."""
    return {"name": output.name, "description": output.description,
            "input_schema": output.schema_}


def _forced_tool(output: OutputSpec) -> dict[str, Any]:
    """The Messages API's way to a structured answer: one tool the model must call."""
    return {"tools": [_answer_tool(output)],
            "tool_choice": {"type": "tool", "name": output.name}}


def _tool_input(content: list[Any], output: OutputSpec) -> tuple[Any, str | None, str]:
    """The input of the tool_use block calling output.name, or None and why not; and that
    input as JSON text."""
    calls = [block for block in content if block.type == "tool_use"]
    chosen = next((block for block in calls if block.name == output.name), None)
    if chosen is None:
        others = ", ".join(repr(block.name) for block in calls)
        return None, "the model called no tool" + (
            f" named {output.name!r} (it called {others})" if others else ""), ""
    structured, error = checked_object(chosen.input, "the tool input")
    return structured, error, json.dumps(chosen.input, ensure_ascii=False)


def _usage(usage: Any) -> Usage:
    """Messages usage: cache reads and writes are input too, though Anthropic counts them
    apart from input_tokens."""
    read = getattr(usage, "cache_read_input_tokens", None) or 0
    write = getattr(usage, "cache_creation_input_tokens", None) or 0
    return Usage(input_tokens=(usage.input_tokens or 0) + read + write,
                 output_tokens=usage.output_tokens or 0,
                 cache_read_tokens=read, cache_write_tokens=write)
