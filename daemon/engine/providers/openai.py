"""OpenAI Chat Completions through the official SDK, against any OpenAI-compatible endpoint
(OpenAI, vLLM, Ollama, llama.cpp, LM Studio, OpenRouter)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import openai

# What the SDK would import on a client's first call (50 ms, on the event loop): here, it
# is imported with this module, in a thread (runtime.open_pool).
import openai.resources.chat
from pydantic import Field

from .base import (
    TOOL_CHOICES,
    Message,
    ModelRequest,
    ModelResponse,
    OutputSpec,
    ProviderError,
    SDKProvider,
    SDKSettings,
    ToolCall,
    ToolSpec,
    Usage,
    from_sdk_error,
    json_object,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"
# No key is needed by local servers, but the SDK refuses to start without one.
_KEYLESS_PLACEHOLDER = "no-key"

# Chat Completions parameters that request.params may carry through; others are ignored
# (an unknown keyword would be a TypeError in the SDK). `extra_body` passes through as is.
# Tools never come from params (free-form node attributes): only from the request's fields.
_PASS_THROUGH = frozenset({
    "temperature", "top_p", "max_completion_tokens", "reasoning_effort", "stop", "seed",
    "presence_penalty", "frequency_penalty", "response_format", "logit_bias", "user",
    "verbosity", "service_tier", "prompt_cache_key", "safety_identifier", "store",
})
# Finish reasons of a complete answer: any other one explains a broken structured answer.
_COMPLETE = frozenset({"stop", "tool_calls"})


class OpenAISettings(SDKSettings):
    """Settings of an OpenAI-compatible provider."""

    base_url: str = OPENAI_BASE_URL
    api_key_env: str | None = "OPENAI_API_KEY"
    # Where params.max_tokens goes. OpenAI's newer models reject `max_tokens`, while many
    # compatible servers only know it; None picks by base_url.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = Field(default=None)
    # How request.output is asked for: `response_format` json_schema, or a forced function
    # tool. Some compatible servers (older Ollama, llama.cpp builds) only support one.
    structured_output: Literal["json_schema", "tool"] = "json_schema"

    def is_openai(self) -> bool:
        """True when base_url is OpenAI's own API."""
        return (urlsplit(self.base_url).hostname or "").endswith("openai.com")

    def resolved_max_tokens_field(self) -> str:
        """`max_completion_tokens` for api.openai.com, `max_tokens` elsewhere, unless set."""
        if self.max_tokens_field:
            return self.max_tokens_field
        return "max_completion_tokens" if self.is_openai() else "max_tokens"

    def default_timeout_s(self) -> float:
        """300 s for OpenAI (reasoning models think for minutes), 600 s for other servers
        (a local one may first load the model, then generate a few tokens a second)."""
        return 300.0 if self.is_openai() else 600.0


class OpenAIProvider(SDKProvider):
    """Calls `chat.completions.create`; retries are the pool's, never the SDK's."""

    settings_class = OpenAISettings
    type_name = "openai"
    path = "/chat/completions"

    def _client(self) -> openai.AsyncOpenAI:
        # Built on first use so that configuring an unused provider needs no key.
        if self._sdk is None:
            key = self.settings.api_key(self.name)
            self._secrets = [key] if key else []
            key = key or _KEYLESS_PLACEHOLDER
            self._sdk = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.settings.base_url,
                timeout=self.timeout(openai),
                max_retries=0,
                http_client=self.http_client(openai),
                # Explicit, so that an Authorization line in OPENAI_CUSTOM_HEADERS cannot
                # replace the key named in settings.
                default_headers={"Authorization": f"Bearer {key}"},
            )
        return self._sdk

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        params = request.params
        arguments: dict[str, Any] = {k: v for k, v in params.items() if k in _PASS_THROUGH}
        if params.get("max_tokens") is not None:
            arguments[self.settings.resolved_max_tokens_field()] = params["max_tokens"]
        if isinstance(params.get("extra_body"), Mapping):
            arguments["extra_body"] = dict(params["extra_body"])
        if request.tools:
            arguments.update(_tools(request))
        if request.output is not None:  # wins over a response_format in params
            if request.tools and self.settings.structured_output == "tool":
                # The forced answer tool would replace the node's tools.
                raise ProviderError(f"{self.name}: structured_output 'tool' cannot be used "
                                    "beside tools yet: use 'json_schema'", kind="config",
                                    provider=self.name)
            arguments.update(self._structured(request.output))
        return arguments

    def _structured(self, output: OutputSpec) -> dict[str, Any]:
        if self.settings.structured_output == "tool":
            function = {"name": output.name, "description": output.description,
                        "parameters": output.schema_, "strict": True}
            return {"tools": [{"type": "function", "function": function}],
                    "tool_choice": {"type": "function", "function": {"name": output.name}}}
        json_schema = {"name": output.name, "description": output.description,
                       "schema": output.schema_, "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": json_schema}}

    def _parse(self, message: Any, output: OutputSpec) -> tuple[Any, str | None, str]:
        """(structured, structured_error, the raw answer) of a reply to request.output."""
        if self.settings.structured_output == "json_schema":
            if getattr(message, "refusal", None):
                return None, f"the model refused: {message.refusal}", ""
            structured, error = json_object(message.content, "the reply")
            return structured, error, message.content or ""
        calls = [call for call in message.tool_calls or [] if getattr(call, "function", None)]
        chosen = next((call for call in calls if call.function.name == output.name), None)
        if chosen is None:
            others = ", ".join(repr(call.function.name) for call in calls)
            return None, "the model called no tool" + (
                f" named {output.name!r} (it called {others})" if others else ""), ""
        raw = chosen.function.arguments or ""
        structured, error = json_object(raw, "the tool input")
        return structured, error, raw

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """One Chat Completions call; SDK errors become ProviderError."""
        model = request.model or self.settings.model
        if not model:
            raise ProviderError(f"{self.name}: no model: name one in the request or set the "
                                f"provider's model setting", kind="config", provider=self.name)
        client = self._client()
        started = time.perf_counter()
        try:
            completion = await client.chat.completions.create(
                model=model,
                messages=[_message(m) for m in request.messages],
                **self._arguments(request),
            )
        except openai.OpenAIError as exc:
            raise from_sdk_error(self.name, exc, openai, self._secrets,
                                 self.endpoint()) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        with self.reading():
            response = self._response(request, completion, model, latency_ms)
        return self.pricing.price(request, response)

    def _response(self, request: ModelRequest, completion: Any, model: str,
                  latency_ms: float) -> ModelResponse:
        if not completion.choices:
            raise self.error("the response has no choices")
        choice = completion.choices[0]
        message = choice.message
        finish = choice.finish_reason or "unknown"
        text = message.content or getattr(message, "refusal", None) or ""
        structured = structured_error = None
        # Calls are reported only to a request that offered tools: a forced answer tool is
        # the structured answer, recorded as it always was.
        tool_calls = self._tool_calls(message) if request.tools else ()
        # A turn that calls tools is not the answer yet: the answer comes after their results.
        if request.output is not None and not tool_calls:
            structured, structured_error, raw = self._parse(message, request.output)
            text = text or raw
            if structured_error and finish not in _COMPLETE:
                structured_error += f" (finish_reason {finish})"
        return ModelResponse(
            text=text,
            structured=structured,
            structured_error=structured_error,
            tool_calls=tool_calls,
            usage=_usage(completion.usage),
            latency_ms=latency_ms,
            finish_reason=finish,
            model=completion.model or model,
            provider=self.name,
            raw_id=completion.id or None,
        )

    def _tool_calls(self, message: Any) -> tuple[ToolCall, ...]:
        calls = []
        for call in message.tool_calls or []:
            if call.type != "function":  # e.g. a `custom` tool, which no request offers
                raise self.error(f"unexpected response: a tool call of type {call.type!r}")
            # The arguments as the model wrote them, even malformed: the loop judges them.
            calls.append(ToolCall(id=call.id, name=call.function.name,
                                  arguments=call.function.arguments or ""))
        return tuple(calls)

    def describe(self) -> dict[str, Any]:
        """The settings in use, for providers.json (they hold no keys)."""
        return {**super().describe(),
                "max_tokens_field": self.settings.resolved_max_tokens_field()}


def _message(message: Message) -> dict[str, Any]:
    """A message in Chat Completions' shape."""
    if message.role == "tool":
        # Chat Completions has no error flag: the content itself must say it failed.
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_calls:
        # The arguments go back verbatim, so that the prompt's prefix (and OpenAI's automatic
        # prompt cache) stays the same from turn to turn.
        return {"role": "assistant", "content": message.content or None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls]}
    return {"role": message.role, "content": message.content}


def _function(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "description": tool.description,
                                "parameters": tool.schema_}
    if tool.strict:  # only then: compatible servers refuse the key less than they mishandle it
        function["strict"] = True
    return {"type": "function", "function": function}


def _tools(request: ModelRequest) -> dict[str, Any]:
    """tools, tool_choice and parallel_tool_calls, each only when the request sets it."""
    arguments: dict[str, Any] = {"tools": [_function(tool) for tool in request.tools]}
    choice = request.tool_choice
    if choice is not None:
        arguments["tool_choice"] = choice if choice in TOOL_CHOICES else {
            "type": "function", "function": {"name": choice}}
    if request.parallel_tool_calls is not None:
        arguments["parallel_tool_calls"] = request.parallel_tool_calls
    return arguments


def _usage(usage: Any) -> Usage:
    """Chat Completions usage: cached tokens are part of prompt_tokens, counted apart too."""
    if usage is None:
        return Usage()
    prompt = usage.prompt_tokens or 0
    details = getattr(usage, "prompt_tokens_details", None)
    read = min(getattr(details, "cached_tokens", None) or 0, prompt)
    # Cache writes are reported by some compatible routers (OpenRouter) for vendors that
    # charge for them; OpenAI's own caching writes for free and reports none.
    write = min(getattr(details, "cache_write_tokens", None) or 0, prompt - read)
    return Usage(input_tokens=prompt, output_tokens=usage.completion_tokens or 0,
                 cache_read_tokens=read, cache_write_tokens=write)
