"""The openai and anthropic providers driven through the official SDKs against a fake HTTP
server on 127.0.0.1: calls, usage, cost, retries, errors and keys."""

from __future__ import annotations

import time

import anthropic
import pytest

from ostinato.daemon.engine.providers import Pricing, ProviderError, ProviderPool, Usage

from ..fakes.llm_server import FakeLLMServer, Reply
from . import providers_support
from .providers_support import FLAVOURS, Flavour, SleepRecorder, chat, request

# The shared fixtures, by name, where pytest looks for them.
flavour = providers_support.flavour
server = providers_support.server


async def test_a_call_maps_text_usage_and_cost_and_sends_the_key(
        flavour: Flavour, server: FakeLLMServer) -> None:
    server.queue(Reply(text="Seven.", usage=(1200, 300)))
    async with ProviderPool(flavour.settings(server)) as pool:
        response = await pool.complete(chat(flavour, params={
            "temperature": 0.2, "max_tokens": 64, "reasoning_effort": "low",
            "not_a_vendor_param": True}))
    rate = Pricing.load().to_dict()["models"][f"{flavour.name}/{flavour.model}"]
    assert response.text == "Seven."
    assert response.usage == Usage(input_tokens=1200, output_tokens=300)
    assert response.cost_usd == pytest.approx(
        (1200 * rate["input_per_mtok"] + 300 * rate["output_per_mtok"]) / 1e6)
    assert response.cost_known and response.cost_usd > 0
    assert (response.finish_reason, response.model, response.provider, response.attempts) == (
        "stop", flavour.model, flavour.name, 1)
    assert response.raw_id and response.latency_ms > 0
    [seen] = server.requests
    assert (seen.method, seen.path) == ("POST", flavour.path)
    assert flavour.key_sent(seen) == flavour.key
    assert seen.body["temperature"] == 0.2
    assert "not_a_vendor_param" not in seen.body
    if flavour.name == "anthropic":
        assert seen.body["system"] == "Answer briefly."
        assert [m["role"] for m in seen.body["messages"]] == ["user"]
        assert (seen.body["max_tokens"], seen.body["output_config"]) == (64, {"effort": "low"})
    else:
        assert [m["role"] for m in seen.body["messages"]] == ["system", "user"]
        # A compatible server (not api.openai.com) gets the classic field.
        assert (seen.body["max_tokens"], seen.body["reasoning_effort"]) == (64, "low")


async def test_a_length_stop_is_reported(flavour: Flavour, server: FakeLLMServer) -> None:
    server.queue(Reply(finish="length" if flavour.name == "openai" else "max_tokens"))
    async with ProviderPool(flavour.settings(server)) as pool:
        assert (await pool.complete(chat(flavour))).finish_reason == "length"


async def test_rate_limited_then_served_succeeds_on_the_second_try(
        flavour: Flavour, server: FakeLLMServer) -> None:
    server.queue(Reply(status=429, message="slow down",
                       headers={"retry-after": "1", "retry-after-ms": "40"}), Reply())
    sleep = SleepRecorder()
    async with ProviderPool(flavour.settings(server), sleep=sleep) as pool:
        response = await pool.complete(chat(flavour))
    assert response.attempts == 2
    assert len(server.requests) == 2
    # The server asked for 40 ms, longer than the 1 ms backoff: its wish wins.
    assert sleep.delays_ms == [40]


@pytest.mark.parametrize("status", [500, 503])
async def test_a_server_error_is_retried(flavour: Flavour, server: FakeLLMServer,
                                         status: int) -> None:
    server.queue(Reply(status=status))
    async with ProviderPool(flavour.settings(server), sleep=SleepRecorder()) as pool:
        assert (await pool.complete(chat(flavour))).attempts == 2
    assert len(server.requests) == 2


async def test_a_bad_request_fails_at_once(flavour: Flavour, server: FakeLLMServer) -> None:
    server.queue(Reply(status=400, message="messages: unexpected field 'colour'"))
    sleep = SleepRecorder()
    async with ProviderPool(flavour.settings(server), sleep=sleep) as pool:
        with pytest.raises(ProviderError) as caught:
            await pool.complete(chat(flavour))
    error = caught.value
    assert (error.status, error.retryable, error.kind, error.attempts) == (400, False,
                                                                          "client", 1)
    assert "unexpected field 'colour'" in error.message
    assert len(server.requests) == 1 and sleep.delays_ms == []


async def test_a_timeout_is_retryable(flavour: Flavour, server: FakeLLMServer) -> None:
    server.queue(Reply(delay_s=10), Reply(delay_s=10))
    settings = flavour.settings(server, timeout_s=0.3, max_attempts=2)
    async with ProviderPool(settings) as pool:
        started = time.perf_counter()  # the SDK is imported by now
        with pytest.raises(ProviderError) as caught:
            await pool.complete(chat(flavour))
        elapsed = time.perf_counter() - started
    assert (caught.value.kind, caught.value.retryable, caught.value.status) == (
        "timeout", True, None)
    assert caught.value.attempts == 2 and len(server.requests) == 2
    assert elapsed < 5


async def test_a_missing_key_is_a_clear_error_that_reveals_no_secret(
        flavour: Flavour, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(flavour.env)
    async with ProviderPool(flavour.settings(server)) as pool:
        with pytest.raises(ProviderError) as caught:
            await pool.complete(chat(flavour))
        assert pool.secrets() == []
    error = caught.value
    assert (error.retryable, error.kind, error.attempts) == (False, "config", 1)
    assert flavour.env in error.message
    assert not any(f.key in error.message for f in FLAVOURS)
    assert server.requests == []


async def test_a_key_echoed_by_the_server_is_redacted(flavour: Flavour,
                                                      server: FakeLLMServer) -> None:
    server.queue(Reply(status=401, message=f"Incorrect API key provided: {flavour.key}"))
    async with ProviderPool(flavour.settings(server)) as pool:
        with pytest.raises(ProviderError) as caught:
            await pool.complete(chat(flavour))
    assert flavour.key not in str(caught.value)
    assert "[redacted]" in caught.value.message and not caught.value.retryable


async def test_a_model_is_required(flavour: Flavour, server: FakeLLMServer) -> None:
    async with ProviderPool(flavour.settings(server)) as pool:
        with pytest.raises(ProviderError, match="no model") as caught:
            await pool.complete(chat(flavour, model=""))
    assert caught.value.kind == "config" and server.requests == []


async def test_a_keyless_compatible_server_needs_no_environment(server: FakeLLMServer) -> None:
    settings = {"default": "local", "providers": {"local": {
        "type": "openai", "base_url": server.url + "/v1", "api_key_env": None,
        "model": "llama3"}}}
    async with ProviderPool(settings) as pool:
        response = await pool.complete(request())
        assert pool.secrets() == []
    assert (response.provider, response.model, response.cost_known) == ("local", "llama3", False)
    assert server.requests[0].body["model"] == "llama3"


def test_max_tokens_goes_where_the_endpoint_expects_it() -> None:
    from ostinato.daemon.engine.providers.openai import OpenAISettings

    assert OpenAISettings().resolved_max_tokens_field() == "max_completion_tokens"
    local = OpenAISettings(base_url="http://127.0.0.1:8000/v1")
    assert local.resolved_max_tokens_field() == "max_tokens"
    forced = OpenAISettings(base_url=local.base_url, max_tokens_field="max_completion_tokens")
    assert forced.resolved_max_tokens_field() == "max_completion_tokens"


async def test_cached_tokens_are_counted_and_priced(flavour: Flavour,
                                                    server: FakeLLMServer) -> None:
    # OpenAI reports no cache writes (it charges none); Anthropic counts both apart.
    write = 0 if flavour.name == "openai" else 2_000
    server.queue(Reply(text="Seven.", usage=(10_000, 1_000), cache_read=6_000,
                       cache_write=write))
    async with ProviderPool(flavour.settings(server)) as pool:
        response = await pool.complete(chat(flavour))
    assert response.usage == Usage(input_tokens=10_000, output_tokens=1_000,
                                   cache_read_tokens=6_000, cache_write_tokens=write)
    rate = Pricing.load().to_dict()["models"][f"{flavour.name}/{flavour.model}"]
    cached, written = rate["cached_input_per_mtok"], rate.get("cache_write_per_mtok")
    assert cached < rate["input_per_mtok"]
    expected = ((10_000 - 6_000 - write) * rate["input_per_mtok"] + 6_000 * cached
                + write * (written or 0) + 1_000 * rate["output_per_mtok"]) / 1e6
    assert response.cost_usd == pytest.approx(expected) and response.cost_known
    uncached = Pricing.load().cost(flavour.name, flavour.model,
                                   Usage(input_tokens=10_000, output_tokens=1_000))
    assert response.cost_usd < uncached


def test_timeouts_by_vendor_and_endpoint() -> None:
    from ostinato.daemon.engine.providers.anthropic import AnthropicProvider
    from ostinato.daemon.engine.providers.openai import OpenAIProvider

    hosted, local = OpenAIProvider(), OpenAIProvider({"base_url": "http://127.0.0.1:1/v1"})
    claude = AnthropicProvider({"connect_timeout_s": 3, "timeout_s": 45})
    assert [(p.describe()["timeout_s"], p.describe()["connect_timeout_s"])
            for p in (hosted, local, claude)] == [(300, 10), (600, 10), (45, 3)]
    assert OpenAIProvider().describe()["structured_output"] == "json_schema"
    # What the SDK is given: connecting and waiting for a pooled connection are short.
    assert claude.timeout(anthropic) == anthropic.Timeout(connect=3, read=45, write=45, pool=3)
