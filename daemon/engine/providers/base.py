"""The provider contract: requests, responses, usage, errors and the `Provider` protocol.

Providers turn a `ModelRequest` into a `ModelResponse` and account for its cost. They know
nothing of graphs, runs or JSON-RPC. Requests and responses are pydantic models so that the
engine can record them to a trace with `to_dict()`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    computed_field,
    model_serializer,
    model_validator,
)

from ..redact import Redactor

if TYPE_CHECKING:
    from .connections import SharedConnections
    from .pricing import Pricing

Role = Literal["system", "user", "assistant", "tool"]
RoutingStatus = Literal["success", "fail", "retry", "partial_success"]

# Attractor §3.6: request timeouts, rate limits and server errors are transient.
_RETRYABLE_STATUSES = frozenset({408, 429})
# tool_choice values that are not a tool's name: no tool may be called so.
TOOL_CHOICES = frozenset({"auto", "required", "none"})


# The models of this module are built by their first use (`defer_build`), by a run's first
# model call, not while every daemon and worker starts (6 ms of a 0.3 s start).
class ToolCall(BaseModel):
    """A tool call the model made: the vendor's id, the tool's name, its arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    id: str = Field(min_length=1)
    # As the model wrote it: possibly the name of no tool offered.
    name: str
    # The JSON text as the model wrote it, malformed or not; the loop parses it (`parsed`).
    arguments: str

    def parsed(self) -> tuple[dict[str, Any] | None, str | None]:
        """The arguments as a JSON object, or None and why not."""
        return json_object(self.arguments, f"the arguments of {self.name!r}")


class Message(BaseModel):
    """One chat message: an assistant's may call tools, a tool's answers one call."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    role: Role
    # An assistant that calls tools may say nothing (""); a tool message holds the result.
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    # The tool failed: `content` says how (Chat Completions has no flag, so it must).
    is_error: bool = False

    @model_validator(mode="after")
    def _fields_of_the_role(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"a {self.role} message cannot call tools")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        if self.role != "tool" and (self.tool_call_id is not None or self.is_error):
            raise ValueError(f"tool_call_id and is_error are for tool messages, not {self.role}")
        return self

    @model_serializer(mode="wrap")
    def _dump_without_tool_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Messages without tool traffic dump as they did before tools existed, so recorded
        # requests hash (replay) and diff (run.diff) exactly as before.
        data: dict[str, Any] = handler(self)
        for name, empty in (("tool_calls", ()), ("tool_call_id", None), ("is_error", False)):
            if name in data and data[name] in (empty, []):
                del data[name]
        return data


class _NamedSchema(BaseModel):
    """A name, a description and a JSON schema, dumped as `schema` (OutputSpec, ToolSpec)."""

    # `schema` is a BaseModel attribute, hence the field `schema_`; the JSON form (the
    # recorded request that replays rebuild requests from) says `schema`. Both names are
    # accepted when building one.
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True,
                              defer_build=True)

    # OpenAI's limit for response_format and function names, also valid for Anthropic tools.
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    schema_: dict[str, Any] = Field(alias="schema")

    @model_serializer(mode="wrap")
    def _dump_as_schema(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Every dump says `schema`, nested in a request's too, whatever `by_alias` is.
        data: dict[str, Any] = handler(self)
        if "schema_" in data:
            data["schema"] = data.pop("schema_")
        return data

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: name, description, schema."""
        return self.model_dump(mode="json")


class OutputSpec(_NamedSchema):
    """A structured answer to ask for: a named JSON schema the reply must be an object of
    (OpenAI-strict: type object, every property required, additionalProperties false)."""


class ToolSpec(_NamedSchema):
    """A tool the model may call: its name, what it does, the JSON schema of its arguments."""

    # Ask the vendor to hold the arguments to the schema (only for strict-clean schemas).
    strict: bool = False

    @model_validator(mode="after")
    def _object_schema(self) -> ToolSpec:
        # Both vendors take arguments as one JSON object (Anthropic refuses anything else).
        if self.schema_.get("type") != "object":
            raise ValueError(f"the schema of tool {self.name!r} must have type object")
        return self


class ModelRequest(BaseModel):
    """What the engine asks a provider for."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

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
    # Ask for a structured answer: the response's `structured` (or `structured_error`).
    output: OutputSpec | None = None
    # Tools the model may call, and how: "auto" | "required" | "none" | a tool's name; None
    # is the vendor's default. parallel_tool_calls None: the vendor's default (allowed).
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: str | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _tools_and_turns(self) -> ModelRequest:
        # Both vendors refuse what this refuses; the engine sending it would be a bug.
        names = [tool.name for tool in self.tools]
        reserved = TOOL_CHOICES | ({self.output.name} if self.output else set())
        if len(set(names)) != len(names) or reserved & set(names):
            raise ValueError(f"tool names must be unique and none of {sorted(reserved)}: "
                             f"{names}")
        if (self.tool_choice is not None or self.parallel_tool_calls is not None) and not names:
            raise ValueError("tool_choice and parallel_tool_calls need tools")
        if self.tool_choice is not None and self.tool_choice not in TOOL_CHOICES | set(names):
            raise ValueError(f"tool_choice {self.tool_choice!r} names no tool: {names}")
        _check_turns(self.messages)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the trace; `output` and the tool fields only when set."""
        # Left out when unset, so that a call that asks for no structured answer and offers
        # no tools is recorded as it was before (run.diff compares recorded requests).
        unset = {name for name, empty in (("output", None), ("tools", []), ("tool_choice", None),
                                          ("parallel_tool_calls", None))
                 if getattr(self, name) == empty}
        return self.model_dump(mode="json", exclude=unset or None)

    def last_user_message(self) -> str:
        """The content of the last user message, or ''."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


def _check_turns(messages: list[Message]) -> None:
    """Every tool message answers a call of the closest assistant message before it, and
    every such call is answered before the next assistant or user message."""
    pending: set[str] = set()
    for index, message in enumerate(messages):
        if message.role == "tool":
            if message.tool_call_id not in pending:
                raise ValueError(f"messages[{index}] answers no pending tool call: "
                                 f"{message.tool_call_id!r}")
            pending.discard(message.tool_call_id)
            continue
        if pending and message.role in ("user", "assistant"):
            raise ValueError(f"messages[{index}]: tool calls {sorted(pending)} are unanswered")
        if message.tool_calls:
            ids = [call.id for call in message.tool_calls]
            if len(set(ids)) != len(ids):
                raise ValueError(f"messages[{index}] repeats a tool call id: {ids}")
            pending = set(ids)
    if pending:
        raise ValueError(f"tool calls {sorted(pending)} are unanswered")


class Usage(BaseModel):
    """Token counts of one call."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    # All input tokens, cache reads and writes included (what totals and budgets count).
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    # The parts of input_tokens served from, and written to, the vendor's prompt cache.
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)

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

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    # With request.output: the text content if any, else the structured answer's raw JSON.
    text: str
    # With request.output: the JSON object answered (not checked against the schema: the
    # engine does that), or None and `structured_error` saying why there is none.
    structured: dict[str, Any] | None = None
    structured_error: str | None = None
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
    # The tools the model called this turn (finish_reason "tool_calls", unless cut short).
    tool_calls: tuple[ToolCall, ...] = ()
    # Set by the engine, never by a provider: the status.json an external agent or tool
    # wrote into the node's stage directory during the call (attractor appendix C); it is
    # recorded with the response so that a replay reproduces the outcome it gave.
    status_file: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the trace; structured fields, tool calls and cache counts only
        when set."""
        data = self.model_dump(mode="json")
        # As ModelRequest.to_dict: a call that uses neither is recorded as it was before.
        for name in ("structured", "structured_error", "status_file"):
            if data[name] is None:
                del data[name]
        if not data["tool_calls"]:
            del data["tool_calls"]
        for name in ("cache_read_tokens", "cache_write_tokens"):
            if not data["usage"][name]:
                del data["usage"][name]
        return data

    @model_validator(mode="after")
    def _unique_call_ids(self) -> ModelResponse:
        # The next request answers each call by its id: two alike could not be told apart.
        ids = [call.id for call in self.tool_calls]
        if len(set(ids)) != len(ids):
            raise ValueError(f"the response repeats a tool call id: {ids}")
        return self

    def assistant_message(self) -> Message:
        """This turn as the assistant message the next request's history holds."""
        return Message(role="assistant", content=self.text, tool_calls=self.tool_calls)


class ProviderError(Exception):
    """A failed model call; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 kind: str = "error", provider: str | None = None,
                 retry_after_ms: float | None = None, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        # One of: config, timeout, connection, rate_limit, server, client, invalid_response,
        # injected, error.
        self.kind = kind
        self.provider = provider
        self.retry_after_ms = retry_after_ms
        # "METHOD host[:port]/path" of the failed request; None when none was sent.
        self.endpoint = endpoint
        # Set by the pool: how many tries were made before giving up.
        self.attempts = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the trace."""
        return {"message": self.message, "status": self.status, "retryable": self.retryable,
                "kind": self.kind, "provider": self.provider,
                "retry_after_ms": self.retry_after_ms, "endpoint": self.endpoint,
                "attempts": self.attempts}


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


def retry_after_ms(headers: Mapping[str, str] | None, *,
                   now: datetime | None = None) -> float | None:
    """The server's requested wait from `retry-after-ms`, or `retry-after` in seconds or as
    an HTTP date (measured from `now`, default the current time), if any."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1.0), ("retry-after", 1000.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value) * scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            delay = _until_http_date(value, now)
        if delay is not None and math.isfinite(delay) and delay >= 0:
            return delay
    return None


def _until_http_date(value: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no claim about the local zone (RFC 5322)
        when = when.replace(tzinfo=UTC)
    # A date already past asks for no wait at all.
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds() * 1000)


def endpoint_of(method: str, url: object) -> str:
    """"METHOD host[:port]/path" of a request: no scheme, credentials or query string."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{method.upper()} {host}{port}{parts.path or '/'}"


def status_error(provider: str, status: int, detail: str,
                 headers: Mapping[str, str] | None = None,
                 endpoint: str | None = None) -> ProviderError:
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
    where = f" from {endpoint}" if endpoint else ""
    return ProviderError(f"{provider}: HTTP {status}{where}: {detail}", status=status,
                         retryable=retryable, kind=kind, provider=provider,
                         retry_after_ms=retry_after_ms(headers), endpoint=endpoint)


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


# httpx's timeout exceptions (both httpx and the SDKs' httpx2 name them alike) → what ran out,
# the setting that bounds it, and its key in the request's timeout extension.
_TIMEOUTS = {
    "ConnectTimeout": ("could not connect", "connect_timeout_s", "connect"),
    "ReadTimeout": ("no response", "timeout_s", "read"),
    "WriteTimeout": ("could not send the request", "timeout_s", "write"),
    "PoolTimeout": ("no free connection", "connect_timeout_s", "pool"),
}


def _timeout_message(exc: Exception, request: Any) -> tuple[str, str]:
    """What timed out, e.g. 'no response within 30 s (timeout_s)', and the error kind."""
    what, setting, key = _TIMEOUTS.get(type(exc.__cause__).__name__,
                                       ("timed out", "timeout_s", "read"))
    limits = getattr(request, "extensions", {}).get("timeout") or {}
    limit = limits.get(key) if isinstance(limits, Mapping) else None
    within = f" within {limit:g} s ({setting})" if isinstance(limit, int | float) else ""
    # A server that cannot even be reached is a connection problem, not a slow model.
    return f"{what}{within}", "connection" if key == "connect" else "timeout"


def from_sdk_error(provider: str, exc: Exception, sdk: ModuleType, secrets: list[str],
                   endpoint: str | None = None) -> ProviderError:
    """An openai or anthropic SDK exception as a ProviderError naming the endpoint it was
    sent to (the request's, else `endpoint`), secrets removed."""
    # Both official SDKs are generated by Stainless and share one exception hierarchy.
    request = getattr(exc, "request", None)
    if request is not None:
        endpoint = endpoint_of(request.method, request.url)
    at = f" {endpoint}" if endpoint else ""
    if isinstance(exc, sdk.APITimeoutError):
        what, kind = _timeout_message(exc, request)
        error = ProviderError(f"{provider}:{at}: {what}", retryable=True, kind=kind,
                              provider=provider)
    elif isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc
        error = ProviderError(f"{provider}: connection to{at} failed: "
                              f"{type(cause).__name__}: {cause}",
                              retryable=True, kind="connection", provider=provider)
    elif isinstance(exc, sdk.APIStatusError):
        error = status_error(provider, exc.status_code, error_detail(exc.body, exc.message),
                             exc.response.headers, endpoint)
    elif isinstance(exc, sdk.APIResponseValidationError):
        error = ProviderError(f"{provider}: unexpected response from{at}: {exc.message}",
                              status=exc.status_code, retryable=False,
                              kind="invalid_response", provider=provider)
    else:
        error = ProviderError(f"{provider}:{at}: {type(exc).__name__}: {exc}", retryable=False,
                              kind="error", provider=provider)
    redactor = Redactor(secrets)
    # A key in a base_url's path would otherwise reach the message through the endpoint.
    error.endpoint = redactor.text(endpoint) if endpoint else None
    error.message = redactor.text(error.message)
    error.args = (error.message,)
    return error


def json_object(raw: str | None, what: str) -> tuple[dict[str, Any] | None, str | None]:
    """`raw` parsed as a JSON object, or None and why not ('the reply is not JSON: …')."""
    if raw is None or not raw.strip():
        return None, f"{what} is empty"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return None, f"{what} is not JSON: {exc}"
    return checked_object(value, what)


def checked_object(value: Any, what: str) -> tuple[dict[str, Any] | None, str | None]:
    """`value` if it is a JSON object, else None and why not."""
    if isinstance(value, dict):
        return value, None
    return None, f"{what} is not an object but {type(value).__name__}"


class SDKSettings(BaseModel):
    """Settings shared by the providers that call a vendor SDK over HTTP."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    # The NAME of the variable holding the key; None or "" for keyless local servers.
    api_key_env: str | None
    # The read timeout: the longest wait for the (non-streamed) reply. None: the provider's
    # default (`default_timeout_s`).
    timeout_s: float | None = Field(default=None, gt=0)
    # How long to wait for a connection: short, so that a down server fails the try at once.
    connect_timeout_s: float = Field(default=10.0, gt=0)
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

    def default_timeout_s(self) -> float:
        """The read timeout when timeout_s is unset; providers choose theirs."""
        return 300.0

    def resolved_timeout_s(self) -> float:
        """timeout_s, or the provider's default."""
        return self.timeout_s or self.default_timeout_s()

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
    client, its key (for redaction), timeouts, endpoints and closing it. Subclasses set
    `settings_class`, `type_name` and `path`, and build their client in `_client`."""

    settings_class: type[SDKSettings] = SDKSettings
    type_name = ""
    path = ""  # what the SDK appends to base_url for the one call made

    def __init__(self, settings: Mapping[str, Any] | SDKSettings | None = None, *,
                 name: str = "", pricing: Pricing | None = None,
                 connections: SharedConnections | None = None) -> None:
        """`connections`: the process's shared HTTP connections (None: the client keeps
        its own, closed with it)."""
        from .pricing import Pricing  # pricing imports this module

        self.name = name or self.type_name
        self.settings: Any = (settings if isinstance(settings, self.settings_class)
                              else self.settings_class.model_validate(dict(settings or {})))
        self.pricing = pricing or Pricing.load()
        self.connections = connections
        self._sdk: Any = None
        self._secrets: list[str] = []

    def http_client(self, sdk: ModuleType) -> Any:
        """The httpx client the SDK client is to use: the shared one, or None (its own)."""
        return None if self.connections is None else self.connections.client(sdk)

    def timeout(self, sdk: ModuleType) -> Any:
        """The SDK's httpx Timeout: connect and pool waits short, read and write long."""
        read = self.settings.resolved_timeout_s()
        connect = self.settings.connect_timeout_s
        # Waiting for a pooled connection is a connect wait: the pool is far larger than the
        # provider's concurrency, so it only runs out when connecting does.
        return sdk.Timeout(connect=connect, read=read, write=read, pool=connect)

    def endpoint(self) -> str:
        """"POST host[:port]/path" of the call, for errors found in a response."""
        return endpoint_of("POST", self.settings.base_url.rstrip("/") + self.path)

    def error(self, message: str) -> ProviderError:
        """A non-retryable invalid_response ProviderError about this endpoint's reply."""
        redactor = Redactor(self.secrets())
        endpoint = redactor.text(self.endpoint())
        return ProviderError(redactor.text(f"{self.name}: {message} (from {endpoint})"),
                             kind="invalid_response", provider=self.name, endpoint=endpoint)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Turns a reply of the wrong shape into an invalid_response error: the SDKs build
        their response objects without validating them."""
        try:
            yield
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            if isinstance(exc, ValidationError):  # its first line names only the model
                detail = "; ".join(error["msg"] for error in exc.errors())
            raise self.error(f"unexpected response: {type(exc).__name__}: {detail}") from exc

    def describe(self) -> dict[str, Any]:
        """The settings in use, for providers.json (they hold no keys)."""
        return {"type": self.type_name, **self.settings.model_dump(mode="json"),
                "timeout_s": self.settings.resolved_timeout_s()}

    def secrets(self) -> list[str]:
        """The key in use or, before first use, the one the environment holds."""
        return list(dict.fromkeys([*self._secrets, *self.settings.secrets()]))

    async def aclose(self) -> None:
        """Close the SDK client's connections, unless they are the process's (shared)."""
        if self._sdk is not None:
            if self.connections is None:
                await self._sdk.close()
            self._sdk = None
