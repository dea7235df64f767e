"""The provider contract: requests, responses, usage, errors and the `Provider` protocol.

Providers turn a `ModelRequest` into a `ModelResponse` and account for its cost. They know
nothing of graphs, runs or JSON-RPC. Requests and responses are pydantic models so that the
engine can record them to a trace with `to_dict()`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from ..redact import Redactor

if TYPE_CHECKING:
    from .pricing import Pricing

Role = Literal["system", "user", "assistant"]
RoutingStatus = Literal["success", "fail", "retry", "partial_success"]

# Attractor §3.6: request timeouts, rate limits and server errors are transient.
_RETRYABLE_STATUSES = frozenset({408, 429})


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: str


class ModelRequest(BaseModel):
    """What the engine asks a provider for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Empty: the pool's default provider; the pool fills it in before calling.
    provider: str = ""
    # Empty: the provider's configured default model.
    model: str = ""
    messages: list[Message]
    params: dict[str, Any] = Field(default_factory=dict)
    node_id: str = ""
    attempt: int = Field(default=1, ge=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # The pool's try of this request (1-based), distinct from the engine's node `attempt`;
    # it keys the scripted provider's injected failures, so results never depend on
    # how concurrent runs interleave.
    provider_attempt: int = Field(default=1, ge=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the trace."""
        return self.model_dump(mode="json")

    def last_user_message(self) -> str:
        """The content of the last user message, or ''."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


class Usage(BaseModel):
    """Token counts of one call."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        """input_tokens + output_tokens."""
        return self.input_tokens + self.output_tokens

    @classmethod
    def estimate(cls, prompt: str, completion: str) -> Usage:
        """Deterministic counts when a provider reports none: one token per 4 characters."""
        return cls(input_tokens=math.ceil(len(prompt) / 4),
                   output_tokens=math.ceil(len(completion) / 4))


class ModelResponse(BaseModel):
    """What a provider answered, with its cost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    # False when the pricing table has no rate for the model: cost_usd is then 0.0.
    cost_known: bool = True
    latency_ms: float = 0.0
    finish_reason: str = "stop"
    model: str = ""
    provider: str = ""
    raw_id: str | None = None
    # How many tries the pool needed (1 = first try succeeded).
    attempts: int = Field(default=1, ge=1)
    # Routing hints; only the scripted provider sets them.
    status: RoutingStatus | None = None
    preferred_label: str | None = None
    context_updates: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the trace."""
        return self.model_dump(mode="json")


class ProviderError(Exception):
    """A failed model call; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 kind: str = "error", provider: str | None = None,
                 retry_after_ms: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        # One of: config, timeout, connection, rate_limit, server, client, invalid_response,
        # injected, error.
        self.kind = kind
        self.provider = provider
        self.retry_after_ms = retry_after_ms
        # Set by the pool: how many tries were made before giving up.
        self.attempts = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the trace."""
        return {"message": self.message, "status": self.status, "retryable": self.retryable,
                "kind": self.kind, "provider": self.provider,
                "retry_after_ms": self.retry_after_ms, "attempts": self.attempts}


@runtime_checkable
class Provider(Protocol):
    """Anything that answers model requests."""

    name: str

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer one request or raise ProviderError."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def retryable_status(status: int) -> bool:
    """Attractor §3.6's predicate for an HTTP status: 408, 429 and 5xx are transient."""
    return status in _RETRYABLE_STATUSES or status >= 500


def retry_after_ms(headers: Mapping[str, str] | None) -> float | None:
    """The server's requested wait from `retry-after-ms` or `retry-after` (seconds), if any."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1.0), ("retry-after", 1000.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value) * scale
        except ValueError:
            continue  # an HTTP date: rare from model APIs, and our backoff covers it
        if math.isfinite(delay) and delay >= 0:
            return delay
    return None


def status_error(provider: str, status: int, detail: str,
                 headers: Mapping[str, str] | None = None) -> ProviderError:
    """A ProviderError for an HTTP error status, classified by §3.6."""
    retryable = retryable_status(status)
    # Servers may send this to overrule the status-based guess; the SDKs obey it, and so do we.
    hint = (headers or {}).get("x-should-retry")
    if hint in ("true", "false"):
        retryable = hint == "true"
    if status == 429:
        kind = "rate_limit"
    elif status == 408:
        kind = "timeout"
    elif status >= 500:
        kind = "server"
    else:
        kind = "client"
    return ProviderError(f"{provider}: HTTP {status}: {detail}", status=status,
                         retryable=retryable, kind=kind, provider=provider,
                         retry_after_ms=retry_after_ms(headers))


def error_detail(body: object, fallback: str) -> str:
    """The human message inside an OpenAI- or Anthropic-shaped error body."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    return fallback


def api_key_from_env(provider: str, env_name: str) -> str:
    """The key in environment variable `env_name`; a non-retryable error naming it if unset."""
    value = os.environ.get(env_name, "")
    if not value.strip():
        raise ProviderError(
            f"{provider}: no API key: set the environment variable {env_name} "
            f"(named by the provider's api_key_env setting)",
            retryable=False, kind="config", provider=provider)
    return value


def from_sdk_error(provider: str, exc: Exception, sdk: ModuleType,
                   secrets: list[str]) -> ProviderError:
    """An openai or anthropic SDK exception as a ProviderError, secrets removed."""
    # Both official SDKs are generated by Stainless and share one exception hierarchy.
    if isinstance(exc, sdk.APITimeoutError):
        error = ProviderError(f"{provider}: request timed out", retryable=True,
                              kind="timeout", provider=provider)
    elif isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        error = ProviderError(f"{provider}: connection failed: {type(cause).__name__}: {cause}",
                              retryable=True, kind="connection", provider=provider)
    elif isinstance(exc, sdk.APIStatusError):
        error = status_error(provider, exc.status_code, error_detail(exc.body, exc.message),
                             exc.response.headers)
    elif isinstance(exc, sdk.APIResponseValidationError):
        error = ProviderError(f"{provider}: unexpected response: {exc.message}",
                              status=exc.status_code, retryable=False,
                              kind="invalid_response", provider=provider)
    else:
        error = ProviderError(f"{provider}: {type(exc).__name__}: {exc}", retryable=False,
                              kind="error", provider=provider)
    error.message = Redactor(secrets).text(error.message)
    error.args = (error.message,)
    return error


class SDKSettings(BaseModel):
    """Settings shared by the providers that call a vendor SDK over HTTP."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    # The NAME of the variable holding the key; None or "" for keyless local servers.
    api_key_env: str | None
    timeout_s: float = Field(default=120.0, gt=0)
    # The model used when a request names none.
    model: str = ""

    @model_validator(mode="before")
    @classmethod
    def _no_literal_keys(cls, data: Any) -> Any:
        # Settings are snapshotted into run directories: keys must never be among them.
        if isinstance(data, Mapping) and "api_key" in data:
            raise ValueError("api_key is not a setting: put the key in an environment "
                             "variable and name that variable in api_key_env")
        return data

    def api_key(self, provider: str) -> str | None:
        """The key from the environment, None when keyless; raises ProviderError if unset."""
        if not self.api_key_env:
            return None
        return api_key_from_env(provider, self.api_key_env)

    def secrets(self) -> list[str]:
        """The key's current value, if any, for redaction."""
        value = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return [value] if value.strip() else []


class SDKProvider:
    """What the providers that call a vendor SDK share: settings, pricing, the lazily built
    client, its key (for redaction) and closing it. Subclasses set `settings_class` and
    `type_name`, and build their client in `_client`."""

    settings_class: type[SDKSettings] = SDKSettings
    type_name = ""

    def __init__(self, settings: Mapping[str, Any] | SDKSettings | None = None, *,
                 name: str = "", pricing: Pricing | None = None) -> None:
        from .pricing import Pricing  # pricing imports this module

        self.name = name or self.type_name
        self.settings: Any = (settings if isinstance(settings, self.settings_class)
                              else self.settings_class.model_validate(dict(settings or {})))
        self.pricing = pricing or Pricing.load()
        self._sdk: Any = None
        self._secrets: list[str] = []

    def describe(self) -> dict[str, Any]:
        """The settings in use, for providers.json (they hold no keys)."""
        return {"type": self.type_name, **self.settings.model_dump(mode="json")}

    def secrets(self) -> list[str]:
        """The key in use or, before first use, the one the environment holds."""
        return list(dict.fromkeys([*self._secrets, *self.settings.secrets()]))

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        if self._sdk is not None:
            await self._sdk.close()
            self._sdk = None
