"""What the provider tests share: requests, a sleep that records instead of waiting, and the
two vendor flavours with their fixtures (the vendor key in the environment, the fake API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from ostinato.daemon.engine.providers import ModelRequest

from ..fakes.llm_server import ANTHROPIC_PATH, OPENAI_PATH, FakeLLMServer, SeenRequest

NO_JITTER = {"initial_delay_ms": 1, "factor": 2.0, "jitter": False}


def request(text: str = "hello", **fields: Any) -> ModelRequest:
    """A one-message request for node n1."""
    return ModelRequest(messages=[{"role": "user", "content": text}],
                        node_id=fields.pop("node_id", "n1"), **fields)


class SleepRecorder:
    """Stands in for asyncio.sleep in the pool: records backoff delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays_ms: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays_ms.append(seconds * 1000)


@dataclass(frozen=True)
class Flavour:
    """One vendor API: how to point its provider at the fake server and what to expect."""

    name: str
    model: str
    path: str

    @property
    def env(self) -> str:
        return f"OST_TEST_{self.name.upper()}_KEY"

    @property
    def key(self) -> str:
        return f"sk-{self.name}-test-5f1c9a"

    def base_url(self, url: str) -> str:
        """The provider's base_url for a server at `url` (the OpenAI SDK wants the /v1)."""
        return url + ("/v1" if self.name == "openai" else "")

    def settings(self, server: FakeLLMServer | str, *, timeout_s: float = 5.0,
                 max_attempts: int = 3, **extra: Any) -> dict[str, Any]:
        """Pool settings with this flavour as the default provider, at `server`."""
        url = server if isinstance(server, str) else server.url
        return {"default": self.name, "providers": {self.name: {
            "base_url": self.base_url(url), "api_key_env": self.env, "timeout_s": timeout_s,
            "retry": {"max_attempts": max_attempts, **NO_JITTER}, **extra}}}

    def key_sent(self, seen: SeenRequest) -> str:
        # anthropic 2.x sends the key as a bearer token; earlier SDKs used x-api-key.
        if "x-api-key" in seen.headers:
            return seen.headers["x-api-key"]
        return seen.headers["authorization"].removeprefix("Bearer ")


FLAVOURS = [Flavour("openai", "gpt-4o-mini", OPENAI_PATH),
            Flavour("anthropic", "claude-haiku-4-5", ANTHROPIC_PATH)]
OPENAI, ANTHROPIC = FLAVOURS


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both test keys set, and no ambient header or proxy variable in the SDKs' way."""
    for flavour in FLAVOURS:
        monkeypatch.setenv(flavour.env, flavour.key)
    for name in ("OPENAI_CUSTOM_HEADERS", "ANTHROPIC_CUSTOM_HEADERS", "HTTP_PROXY",
                 "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=FLAVOURS, ids=lambda f: f.name)
def flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Flavour:
    """A vendor, with its test key in the environment and nothing ambient in the way."""
    clean_environment(monkeypatch)
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test keys in the environment, for tests that pick their flavour themselves."""
    clean_environment(monkeypatch)


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    """The fake vendor API, closed after the test."""
    async with FakeLLMServer() as fake:
        yield fake


def chat(flavour: Flavour, **fields: Any) -> ModelRequest:
    """A system + user request for the flavour's model."""
    fields.setdefault("model", flavour.model)
    return ModelRequest(node_id="n1", messages=[
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name a prime."}], **fields)
