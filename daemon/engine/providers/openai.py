"""OpenAI Chat Completions through the official SDK, against any OpenAI-compatible endpoint
(OpenAI, vLLM, Ollama, llama.cpp, LM Studio, OpenRouter)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import openai
from pydantic import Field

from .base import (
    ModelRequest,
    ModelResponse,
    ProviderError,
    SDKProvider,
    SDKSettings,
    Usage,
    from_sdk_error,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"
# No key is needed by local servers, but the SDK refuses to start without one.
_KEYLESS_PLACEHOLDER = "no-key"

# Chat Completions parameters that request.params may carry through; others are ignored
# (an unknown keyword would be a TypeError in the SDK). `extra_body` passes through as is.
_PASS_THROUGH = frozenset({
    "temperature", "top_p", "max_completion_tokens", "reasoning_effort", "stop", "seed",
    "presence_penalty", "frequency_penalty", "response_format", "logit_bias", "user",
    "verbosity", "service_tier", "prompt_cache_key", "safety_identifier", "store",
})


class OpenAISettings(SDKSettings):
    """Settings of an OpenAI-compatible provider."""

    base_url: str = OPENAI_BASE_URL
    api_key_env: str | None = "OPENAI_API_KEY"
    # Where params.max_tokens goes. OpenAI's newer models reject `max_tokens`, while many
    # compatible servers only know it; None picks by base_url.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = Field(default=None)

    def resolved_max_tokens_field(self) -> str:
        """`max_completion_tokens` for api.openai.com, `max_tokens` elsewhere, unless set."""
        if self.max_tokens_field:
            return self.max_tokens_field
        host = urlsplit(self.base_url).hostname or ""
        return "max_completion_tokens" if host.endswith("openai.com") else "max_tokens"


class OpenAIProvider(SDKProvider):
    """Calls `chat.completions.create`; retries are the pool's, never the SDK's."""

    settings_class = OpenAISettings
    type_name = "openai"

    def _client(self) -> openai.AsyncOpenAI:
        # Built on first use so that configuring an unused provider needs no key.
        if self._sdk is None:
            key = self.settings.api_key(self.name)
            self._secrets = [key] if key else []
            key = key or _KEYLESS_PLACEHOLDER
            self._sdk = openai.AsyncOpenAI(
                api_key=key,
                base_url=self.settings.base_url,
                timeout=self.settings.timeout_s,
                max_retries=0,
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
        return arguments

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
                messages=[{"role": m.role, "content": m.content} for m in request.messages],
                **self._arguments(request),
            )
        except openai.OpenAIError as exc:
            raise from_sdk_error(self.name, exc, openai, self._secrets) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if not completion.choices:
            raise ProviderError(f"{self.name}: the response has no choices",
                                kind="invalid_response", provider=self.name)
        choice = completion.choices[0]
        usage = completion.usage
        response = ModelResponse(
            text=choice.message.content or getattr(choice.message, "refusal", None) or "",
            usage=Usage(input_tokens=usage.prompt_tokens or 0,
                        output_tokens=usage.completion_tokens or 0) if usage else Usage(),
            latency_ms=latency_ms,
            finish_reason=choice.finish_reason or "unknown",
            model=completion.model or model,
            provider=self.name,
            raw_id=completion.id or None,
        )
        return self.pricing.price(request, response)

    def describe(self) -> dict[str, Any]:
        """The settings in use, for providers.json (they hold no keys)."""
        return {**super().describe(),
                "max_tokens_field": self.settings.resolved_max_tokens_field()}
