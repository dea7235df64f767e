"""The provider pool: provider choice, per-provider concurrency limits, retries with backoff
(attractor §3.6), pricing, and a key-free description of it all for a run's providers.json.

Settings shape::

    {"default": "scripted",
     "providers": {
        "scripted": {"responses": {...}, "fail_rate": 0.1, "seed": 7},
        "openai": {"base_url": "...", "api_key_env": "OPENAI_API_KEY", "model": "gpt-4o-mini",
                   "timeout_s": 60, "connect_timeout_s": 10, "concurrency": 4,
                   "structured_output": "json_schema",
                   "retry": {"max_attempts": 4, "initial_delay_ms": 200, "factor": 2.0,
                             "max_delay_ms": 60000, "jitter": true}},
        "ollama": {"type": "openai", "base_url": "http://127.0.0.1:11434/v1",
                   "api_key_env": null, "structured_output": "tool"}},
     "pricing": {"models": {"ollama/*": {"input_per_mtok": 0, "output_per_mtok": 0}}}}

`type` defaults to the entry's name; `retry` may also be a preset name (`standard`, ...).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..redact import redact_settings
from ..retry import RetryPolicy, backoff_delay_ms
from .base import ModelRequest, ModelResponse, Provider, ProviderError
from .connections import SharedConnections
from .pricing import Pricing
from .scripted import ScriptedProvider

log = logging.getLogger(__name__)

DEFAULT_PROVIDER = "scripted"
DEFAULT_CONCURRENCY = 8
# A factory builds a provider from its own settings (pool keys removed), name, pricing and
# the process's shared HTTP connections (or None).
ProviderFactory = Callable[..., Provider]
# Told of each failed try that will be retried: the error, the try's number, the backoff.
RetryCallback = Callable[[ProviderError, int, float], None]


def _scripted(settings: Mapping[str, Any], *, name: str, pricing: Pricing,
              connections: SharedConnections | None) -> Provider:
    return ScriptedProvider(settings, name=name, pricing=pricing)


def _openai(settings: Mapping[str, Any], *, name: str, pricing: Pricing,
            connections: SharedConnections | None) -> Provider:
    # The vendor SDKs take seconds to import; offline runs never pay for them.
    from .openai import OpenAIProvider

    return OpenAIProvider(settings, name=name, pricing=pricing, connections=connections)


def _anthropic(settings: Mapping[str, Any], *, name: str, pricing: Pricing,
               connections: SharedConnections | None) -> Provider:
    from .anthropic import AnthropicProvider

    return AnthropicProvider(settings, name=name, pricing=pricing, connections=connections)


PROVIDER_TYPES: dict[str, ProviderFactory] = {
    "scripted": _scripted,
    "openai": _openai,
    "anthropic": _anthropic,
}
# The modules of the types that import a vendor SDK, and those this process has imported.
_SDK_MODULES = {"openai": f"{__package__}.openai", "anthropic": f"{__package__}.anthropic"}
_imported: set[str] = set()


@functools.cache
def _importer() -> ThreadPoolExecutor:
    """The one thread SDKs are imported in: runs starting at once queue behind the one
    import (the later ones find the module imported), taking no thread of the loop's."""
    return ThreadPoolExecutor(1, thread_name_prefix="sdk-import")


async def open_pool(settings: Mapping[str, Any], *,
                    allowed_key_env: Collection[str] | None = None,
                    connections: SharedConnections | None = None) -> ProviderPool:
    """The pool of `settings` (arguments as ProviderPool's), built without blocking the
    event loop: what can be refused is refused first, then the vendor SDKs it uses are
    imported and their shared connections prepared in threads, then the pool is built."""
    ProviderPool.check(settings, allowed_key_env)
    await _import_sdks(settings.get("providers"), connections)
    return ProviderPool(settings, allowed_key_env=allowed_key_env, connections=connections)


async def _import_sdks(providers: Mapping[str, Any] | None,
                       connections: SharedConnections | None) -> None:
    """Import the vendor SDKs these provider settings use, and build their shared
    connections' clients, in threads: an SDK takes 0.4-0.9 s to import, during which the
    event loop would serve nothing (every client of the daemon, every run of a worker,
    would wait)."""
    for name, entry in (providers or {}).items():
        kind = _type_of(name, entry)  # entries are mappings: checked
        module = _SDK_MODULES.get(kind)
        if module is None:
            continue
        if module not in _imported:
            await asyncio.get_running_loop().run_in_executor(
                _importer(), importlib.import_module, module)
            _imported.add(module)
        if connections is not None:
            await connections.prepare(importlib.import_module(kind))  # the SDK, imported


# The key variable each provider type documents (its settings' default api_key_env).
DOCUMENTED_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
_POOL_KEYS = frozenset({"type", "concurrency", "retry"})
_SETTINGS_KEYS = frozenset({"default", "providers", "pricing"})

# A limit held elsewhere, by provider name: a trial set's pool in the daemon, for a run on a
# worker (daemon/workers/worker.py::SharedLimits).
SharedLimit = Callable[[str], AbstractAsyncContextManager[Any]]


def _type_of(name: Any, entry: Mapping[str, Any] | None) -> str:
    """A provider entry's type: its `type`, else its name."""
    return str((entry or {}).get("type") or name)


def _check_key_env(name: str, kind: str, env_name: Any,
                   allowed: Collection[str] | None) -> None:
    """Settings from a client must not send an arbitrary variable (a database password) as
    an API key to a URL of their choice: only allowed names may be read."""
    if allowed is None or not isinstance(env_name, str) or not env_name:
        return
    documented = DOCUMENTED_KEY_ENV.get(kind)
    if env_name == documented or env_name in allowed:
        return
    names = sorted({*DOCUMENTED_KEY_ENV.values(), *allowed})
    raise ValueError(
        f"providers.{name}: api_key_env {env_name!r} is not allowed: this daemon reads "
        f"keys only from {', '.join(names)} (each provider type its documented one, "
        f"{documented or 'none for ' + kind}, and those the daemon allows); start the "
        f"daemon with --allow-key-env {env_name} (or OSTINATO_ALLOWED_KEY_ENV) to allow it")


@dataclass(slots=True)
class _Slot:
    provider: Provider
    semaphore: asyncio.Semaphore
    concurrency: int
    retry: RetryPolicy
    model: str
    shared: SharedLimit | None = None

    def hold(self) -> AbstractAsyncContextManager[Any]:
        """What a call holds while it is made: the shared limit's permit, else a place in
        this pool's own semaphore."""
        return self.semaphore if self.shared is None else self.shared(self.provider.name)


class ProviderPool:
    """Providers by name, each with a concurrency limit and a retry policy."""

    def __init__(self, settings: Mapping[str, Any] | None = None, *,
                 pricing: Pricing | None = None, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[Any]] | None = None,
                 allowed_key_env: Collection[str] | None = None,
                 connections: SharedConnections | None = None) -> None:
        """`allowed_key_env`: the api_key_env names settings may use besides each type's
        documented one (None: any name, for callers that trust their settings);
        `connections`: the process's shared HTTP connections for the SDK providers (None:
        each keeps its own)."""
        self._connections = connections
        settings = dict(settings or {})
        self.check(settings, allowed_key_env)
        self.pricing = pricing or Pricing.load(settings.get("pricing"))
        self._rng = rng  # retry jitter; None: the random module's own generator
        self._sleep = sleep or asyncio.sleep
        self._shared: SharedLimit | None = None
        self._slots: dict[str, _Slot] = {}
        for name, entry in dict(settings.get("providers") or {}).items():
            self._slots[name] = self._build(str(name), dict(entry or {}))
        if DEFAULT_PROVIDER not in self._slots:
            self._slots[DEFAULT_PROVIDER] = self._build(DEFAULT_PROVIDER, {})
        self.default = str(settings.get("default") or DEFAULT_PROVIDER)
        if self.default not in self._slots:
            raise ValueError(f"provider settings: default {self.default!r} is not configured; "
                             f"configured: {sorted(self._slots)}")

    @staticmethod
    def check(settings: Mapping[str, Any], allowed_key_env: Collection[str] | None) -> None:
        """ValueError for what can be refused before any provider is built, and any vendor
        SDK imported: unknown keys, a pricing of the wrong kind, unknown provider types and
        key variables that are not allowed (`allowed_key_env`: see the constructor)."""
        unknown = set(settings) - _SETTINGS_KEYS
        if unknown:
            raise ValueError(f"provider settings: unknown keys {sorted(unknown)}")
        overrides = settings.get("pricing")
        if overrides is not None and not isinstance(overrides, str | Path | Mapping):
            raise ValueError("provider settings: pricing must be an object or a file path")
        for name, entry in dict(settings.get("providers") or {}).items():
            entry = dict(entry or {})
            kind = _type_of(name, entry)
            if kind not in PROVIDER_TYPES:
                raise ValueError(f"providers.{name}: unknown type {kind!r}; "
                                 f"one of {sorted(PROVIDER_TYPES)}")
            _check_key_env(str(name), kind, entry.get("api_key_env"), allowed_key_env)

    def _build(self, name: str, entry: dict[str, Any]) -> _Slot:
        factory = PROVIDER_TYPES[_type_of(name, entry)]  # checked
        own = {key: value for key, value in entry.items() if key not in _POOL_KEYS}
        try:
            provider = factory(own, name=name, pricing=self.pricing,
                               connections=self._connections)
            retry = RetryPolicy.from_settings(entry.get("retry"))
        except ValidationError as exc:
            # Not str(exc): pydantic quotes the input values, and a value may be a key.
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                                 for e in exc.errors())
            raise ValueError(f"providers.{name}: {problems}") from None
        except ValueError as exc:
            raise ValueError(f"providers.{name}: {exc}") from None
        return self._slot(provider, entry.get("concurrency"), retry, str(own.get("model") or ""))

    def _slot(self, provider: Provider, concurrency: Any, retry: RetryPolicy,
              model: str) -> _Slot:
        limit = DEFAULT_CONCURRENCY if concurrency is None else int(concurrency)
        if limit < 1:
            raise ValueError(f"providers.{provider.name}: concurrency must be at least 1")
        return _Slot(provider, asyncio.Semaphore(limit), limit, retry, model, self._shared)

    def share_limits(self, limit: SharedLimit) -> None:
        """Calls hold `limit(provider name)` instead of this pool's own limits: those of a
        pool shared with runs executing elsewhere."""
        self._shared = limit
        for slot in self._slots.values():
            slot.shared = limit

    def semaphore(self, name: str) -> asyncio.Semaphore:
        """The concurrency limit of provider `name`."""
        return self._get_slot(name).semaphore

    def add(self, provider: Provider, *, concurrency: int | None = None,
            retry: str | Mapping[str, Any] | RetryPolicy | None = None,
            replace: bool = False) -> None:
        """Register a provider built elsewhere (a replay provider, a test double)."""
        if provider.name in self._slots and not replace:
            raise ValueError(f"provider {provider.name!r} already exists")
        self._slots[provider.name] = self._slot(provider, concurrency,
                                                RetryPolicy.from_settings(retry), "")

    @property
    def names(self) -> list[str]:
        """The configured provider names."""
        return list(self._slots)

    def get(self, name: str) -> Provider:
        """The provider called `name`; a non-retryable ProviderError if there is none."""
        return self._get_slot(name).provider

    def _get_slot(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            raise ProviderError(f"unknown provider {name!r}; configured: {sorted(self._slots)}",
                                retryable=False, kind="config", provider=name)
        return slot

    def resolve(self, request: ModelRequest) -> ModelRequest:
        """`request` with provider and default model filled in: what the engine should record."""
        name = request.provider or self.default
        slot = self._get_slot(name)
        update: dict[str, Any] = {}
        if request.provider != name:
            update["provider"] = name
        if not request.model and slot.model:
            update["model"] = slot.model
        return request.model_copy(update=update) if update else request

    def retry_delay_ms(self, attempt: int, policy: RetryPolicy, error: ProviderError) -> float:
        """The §3.6 backoff, or the server's longer retry-after, never beyond max_delay_ms."""
        delay = backoff_delay_ms(attempt, policy, self._rng)
        if error.retry_after_ms is not None:
            delay = min(max(delay, error.retry_after_ms), policy.max_delay_ms)
        return delay

    async def complete(self, request: ModelRequest,
                       on_retry: RetryCallback | None = None) -> ModelResponse:
        """Answer through the chosen provider, retrying retryable errors; else the last error.
        `on_retry(error, try_number, delay_ms)` is called for each failed try that will be
        retried, before its backoff."""
        # The raised ProviderError carries `attempts`; non-retryable ones are raised at once.
        request = self.resolve(request)
        slot = self._get_slot(request.provider)
        policy = slot.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                # Only the call holds a slot: a request waiting out its backoff blocks nobody.
                async with slot.hold():
                    response = await slot.provider.complete(
                        request if request.provider_attempt == attempt else
                        request.model_copy(update={"provider_attempt": attempt}))
            except ProviderError as error:
                error.attempts = attempt
                error.provider = error.provider or request.provider
                if not error.retryable or attempt >= policy.max_attempts:
                    raise
                delay_ms = self.retry_delay_ms(attempt, policy, error)
                log.info("%s: try %d of %d failed (%s); retrying in %.0f ms", request.provider,
                         attempt, policy.max_attempts, error.message, delay_ms)
                if on_retry is not None:
                    # Before the wait, so that a long backoff is never a silent one.
                    on_retry(error, attempt, delay_ms)
                await self._sleep(delay_ms / 1000)
                continue
            return response if response.attempts == attempt else \
                response.model_copy(update={"attempts": attempt})

    def secrets(self) -> list[str]:
        """The key values the providers use, so that callers can redact them anywhere."""
        found: list[str] = []
        for slot in self._slots.values():
            secrets = getattr(slot.provider, "secrets", None)
            if callable(secrets):
                found.extend(value for value in secrets() if value)
        return list(dict.fromkeys(found))

    def offline(self) -> bool:
        """Whether every provider is the scripted one: no service whose limits a shared
        pool's concurrency protects."""
        return all(isinstance(slot.provider, ScriptedProvider) for slot in self._slots.values())

    def describe(self) -> dict[str, Any]:
        """providers.json: names, types, models, base URLs, limits, retry; keys redacted."""
        providers: dict[str, Any] = {}
        for name, slot in self._slots.items():
            describe = getattr(slot.provider, "describe", None)
            entry = describe() if callable(describe) else {"type": type(slot.provider).__name__}
            providers[name] = {**entry, "concurrency": slot.concurrency,
                               "retry": slot.retry.to_dict()}
        return redact_settings({"default": self.default, "pricing_version": self.pricing.version,
                                "providers": providers}, self.secrets())

    async def aclose(self) -> None:
        """Close every provider; one failing to close does not keep the others open."""
        for name, slot in self._slots.items():
            try:
                await slot.provider.aclose()
            except Exception:
                log.exception("provider %s failed to close", name)

    async def __aenter__(self) -> ProviderPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
