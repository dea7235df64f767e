"""Providers: the scripted provider, pricing, backoff and the pool (the openai and anthropic
providers over HTTP: test_providers_http.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ostinato.daemon.engine.providers import (
    ModelRequest,
    ModelResponse,
    Pricing,
    ProviderError,
    ProviderPool,
    RetryPolicy,
    Usage,
    backoff_delay_ms,
)
from ostinato.daemon.engine.providers.base import retry_after_ms, status_error
from ostinato.daemon.engine.providers.scripted import ScriptedProvider
from ostinato.daemon.engine.redact import is_secret_name, redact_settings

from .providers_support import NO_JITTER, SleepRecorder, request

# ---------------------------------------------------------------------------- scripted


async def test_scripted_is_deterministic() -> None:
    req = request("what is 2+2?", attempt=2, params={"temperature": 0.3})
    first, second = ScriptedProvider(), ScriptedProvider()
    a, b = await first.complete(req), await second.complete(req)
    assert a.to_dict() == b.to_dict()
    assert a.text == "[scripted] what is 2+2?"
    assert a.usage == Usage(input_tokens=3, output_tokens=6)  # ceil(12/4), ceil(23/4)
    assert (a.provider, a.model, a.finish_reason, a.cost_usd) == ("scripted", "scripted",
                                                                  "stop", 0.0)
    other = await first.complete(request("what is 3+3?", attempt=2))
    assert other.raw_id != a.raw_id
    json.dumps(a.to_dict())  # recordable as is


async def test_scripted_echo_is_truncated() -> None:
    response = await ScriptedProvider().complete(request("x" * 5000))
    assert response.text == "[scripted] " + "x" * 300


@pytest.mark.parametrize("script", [
    {"scripted.responses": '["a", "b", "c"]', "scripted.statuses": '["retry", "fail", "success"]'},
    {"scripted.responses": "a|b|c", "scripted.statuses": "retry | fail | success"},
    {"scripted.responses": ["a", "b", "c"], "scripted.statuses": ["retry", "fail", "success"]},
    {"scripted": {"responses": ["a", "b", "c"], "statuses": "RETRY|fail|success"}},
])
async def test_per_attempt_scripts_are_indexed_by_attempt_and_the_last_repeats(
        script: dict[str, Any]) -> None:
    provider = ScriptedProvider()
    answers = [await provider.complete(request(attempt=n, metadata=script)) for n in (1, 2, 3, 4)]
    assert [r.text for r in answers] == ["a", "b", "c", "c"]
    assert [r.status for r in answers] == ["retry", "fail", "success", "success"]


async def test_node_scripts_win_over_settings_and_settings_over_the_echo() -> None:
    provider = ScriptedProvider({"responses": {"n1": ["s1", "s2"], "n2": "only"},
                                 "statuses": {"n1": "partial_success"}})
    assert (await provider.complete(request(attempt=2))).text == "s2"
    assert (await provider.complete(request(attempt=2))).status == "partial_success"
    assert (await provider.complete(request(node_id="n2", attempt=5))).text == "only"
    scripted = request(metadata={"scripted.response": "mine", "scripted.status": "fail"})
    response = await provider.complete(scripted)
    assert (response.text, response.status) == ("mine", "fail")
    assert (await provider.complete(request(node_id="n3"))).text == "[scripted] hello"


async def test_scripted_hints_usage_and_cost() -> None:
    pricing = Pricing.load({"scripted/*": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}})
    provider = ScriptedProvider(pricing=pricing)
    response = await provider.complete(request(metadata={
        "scripted.response": {"answer": 42},
        "scripted.preferred_label": "Approve",
        "scripted.context_updates": '{"score": 0.9, "tags": ["a"]}',
        "scripted.usage": "12, 34",
    }))
    assert response.text == '{"answer": 42}'
    assert response.preferred_label == "Approve"
    assert response.context_updates == {"score": 0.9, "tags": ["a"]}
    assert response.usage == Usage(input_tokens=12, output_tokens=34)
    assert response.cost_usd == pytest.approx((12 * 2.0 + 34 * 8.0) / 1e6)
    assert response.cost_known


@pytest.mark.parametrize(("metadata", "complaint"), [
    ({"scripted.status": "maybe"}, "is not one of"),
    ({"scripted.context_updates": "{not json"}, "not JSON"),
    ({"scripted.context_updates": "[1, 2]"}, "JSON object"),
    ({"scripted.usage": "12"}, "input,output"),
])
async def test_a_bad_script_is_a_non_retryable_config_error(metadata: dict[str, Any],
                                                            complaint: str) -> None:
    with pytest.raises(ProviderError) as caught:
        await ScriptedProvider().complete(request(metadata=metadata))
    assert (caught.value.retryable, caught.value.kind) == (False, "config")
    assert complaint in str(caught.value) and "'n1'" in str(caught.value)


async def test_simulated_latency_is_reported_as_configured() -> None:
    provider = ScriptedProvider({"latency_ms": 20})
    started = time.perf_counter()
    response = await provider.complete(request())
    assert time.perf_counter() - started >= 0.02
    assert response.latency_ms == 20


async def outcomes(seed: int, calls: int = 40) -> list[str]:
    """What a fail_rate=0.5 provider does for a fixed series of calls."""
    provider = ScriptedProvider({"fail_rate": 0.5, "seed": seed})
    seen = []
    for n in range(calls):
        req = request(node_id=f"n{n % 4}", attempt=1 + n % 3, provider_attempt=1 + n % 2)
        try:
            seen.append((await provider.complete(req)).text)
        except ProviderError as error:
            assert (error.status, error.retryable, error.kind) == (503, True, "injected")
            seen.append("503")
    return seen


async def test_fail_rate_is_reproducible_for_a_seed() -> None:
    first, again, other = await outcomes(7), await outcomes(7), await outcomes(8)
    assert first == again
    assert first != other
    assert 0 < first.count("503") < len(first)


async def drawn(settings: dict[str, Any], trials: int, **fields: Any) -> list[str | None]:
    """The statuses of one call (node n1, attempt 1) in each of `trials` trials of a set."""
    provider = ScriptedProvider(settings)
    metadata = fields.pop("metadata", {})
    return [(await provider.complete(request(metadata={**metadata, "trial": t}, **fields)))
            .status for t in range(trials)]


@pytest.mark.parametrize("probability", [0.1, 0.6, 0.9])
async def test_pass_probability_passes_at_that_rate(probability: float) -> None:
    n = 4000
    statuses = await drawn({"pass_probability": probability, "seed": 11}, n)
    assert set(statuses) <= {"success", "fail"}
    # Within 4 standard deviations of the binomial mean: a correct draw misses about once in
    # 16,000 seeds, and this seed is fixed.
    tolerance = 4 * math.sqrt(n * probability * (1 - probability))
    assert abs(statuses.count("success") - n * probability) <= tolerance


async def test_pass_probability_is_reproducible_per_seed_and_independent_per_trial() -> None:
    settings = {"pass_probability": 0.5, "seed": 5}
    first = await drawn(settings, 400)
    assert first == await drawn(settings, 400)  # the same seed: the same outcomes
    assert first != await drawn({**settings, "seed": 6}, 400)
    # Independent across trial indices: a trial's outcome tells nothing of the next one's.
    # Independent fair draws: whether neighbours agree is itself a fair coin, so 399 pairs
    # agree 199.5 times on average (sd 10).
    agree = sum(a == b for a, b in itertools.pairwise(first))
    assert abs(agree - 199.5) <= 4 * 10
    # ...and of the injected failures' draws (a different salt): at fail_rate 0.5 some calls
    # that are not failed still draw `fail`.
    mixed = ScriptedProvider({**settings, "fail_rate": 0.5})
    seen = set()
    for t in range(200):
        try:
            seen.add((await mixed.complete(request(metadata={"trial": t}))).status)
        except ProviderError:
            seen.add("503")
    assert seen == {"503", "success", "fail"}


async def test_pass_probability_by_node_and_its_precedence() -> None:
    assert set(await drawn({}, 50)) == {None}  # off by default
    assert set(await drawn({"pass_probability": 1}, 50)) == {"success"}
    assert set(await drawn({"pass_probability": 0}, 50)) == {"fail"}
    # The node's own value wins over the settings'; a scripted status over both.
    node = {"scripted.pass_probability": "0"}
    assert set(await drawn({"pass_probability": 1}, 50, metadata=node)) == {"fail"}
    nested = {"scripted": {"pass_probability": 1.0}}
    assert set(await drawn({"pass_probability": 0}, 50, metadata=nested)) == {"success"}
    scripted = {**node, "scripted.status": "partial_success"}
    assert set(await drawn({}, 50, metadata=scripted)) == {"partial_success"}
    by_settings = {"pass_probability": 0, "statuses": {"n1": "retry"}}
    assert set(await drawn(by_settings, 50)) == {"retry"}
    assert set(await drawn(by_settings, 50, node_id="n2")) == {"fail"}


@pytest.mark.parametrize("value", ["often", "1.5", -0.1, True])
async def test_a_bad_node_pass_probability_is_a_config_error(value: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        await ScriptedProvider().complete(request(metadata={"scripted.pass_probability": value}))
    assert (caught.value.retryable, caught.value.kind) == (False, "config")
    assert "pass_probability" in str(caught.value) and "[0, 1]" in str(caught.value)


@pytest.mark.parametrize("value", [1.5, -0.1, "often"])
def test_a_bad_pass_probability_setting_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="pass_probability"):
        ScriptedProvider({"pass_probability": value})


async def test_the_pool_retries_injected_failures_deterministically() -> None:
    async def attempts(seed: int) -> list[int | str]:
        settings = {"providers": {"scripted": {"fail_rate": 0.5, "seed": seed,
                                               "retry": {"max_attempts": 6, **NO_JITTER}}}}
        async with ProviderPool(settings, sleep=SleepRecorder()) as pool:
            results: list[int | str] = []
            for n in range(12):
                try:
                    results.append((await pool.complete(request(node_id=f"n{n}"))).attempts)
                except ProviderError as error:
                    results.append(f"gave up after {error.attempts}")
            return results

    first = await attempts(3)
    assert first == await attempts(3)
    assert any(isinstance(n, int) and n > 1 for n in first)


async def test_the_pool_gives_up_after_max_attempts_with_backoff_between() -> None:
    sleep = SleepRecorder()
    settings = {"providers": {"scripted": {"fail_rate": 1.0,
                                           "retry": {"max_attempts": 4, **NO_JITTER}}}}
    async with ProviderPool(settings, sleep=sleep) as pool:
        with pytest.raises(ProviderError) as caught:
            await pool.complete(request())
    assert (caught.value.attempts, caught.value.status, caught.value.retryable) == (4, 503, True)
    assert sleep.delays_ms == pytest.approx([1, 2, 4])


async def test_on_retry_hears_of_each_try_that_will_be_retried() -> None:
    heard: list[tuple[str, int, float]] = []

    def on_retry(error: ProviderError, try_number: int, delay_ms: float) -> None:
        heard.append((error.kind, try_number, delay_ms))

    settings = {"providers": {"scripted": {"fail_rate": 1.0,
                                           "retry": {"max_attempts": 3, **NO_JITTER}}}}
    async with ProviderPool(settings, sleep=SleepRecorder()) as pool:
        with pytest.raises(ProviderError):
            await pool.complete(request(), on_retry=on_retry)
    assert heard == [("injected", 1, 1), ("injected", 2, 2)]  # not the last, failed, try
    async with ProviderPool() as pool:  # a call that succeeds at once retries nothing
        assert (await pool.complete(request(), on_retry=on_retry)).attempts == 1
    assert len(heard) == 2


# ---------------------------------------------------------------------------- pricing


def test_pricing_lookup_order_and_unknown_models() -> None:
    pricing = Pricing.load({"openai/*": {"input_per_mtok": 9, "output_per_mtok": 9}})
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    table = pricing.to_dict()["models"]
    mini = table["openai/gpt-4o-mini"]
    assert pricing.cost("openai", "gpt-4o-mini", usage) == pytest.approx(
        mini["input_per_mtok"] + mini["output_per_mtok"])
    assert pricing.cost("openai", "gpt-4o-mini-2024-07-18", usage) == pricing.cost(
        "openai", "gpt-4o-mini", usage)
    assert pricing.cost("openai", "some-new-model", usage) == 18
    assert pricing.known("scripted", "anything")
    assert not pricing.known("anthropic", "claude-unreleased")
    assert pricing.cost("anthropic", "claude-unreleased", usage) == 0.0
    assert pricing.unknown() == ["anthropic/claude-unreleased"]


def test_shipped_pricing_is_versioned_and_overrides_change_the_version(tmp_path: Path) -> None:
    shipped = Pricing.load()
    assert shipped.version == "2026-12-06"
    assert shipped.to_dict()["currency"] == "USD"
    assert all(key.count("/") == 1 for key in shipped.to_dict()["models"])
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"version": "team-7", "models": {
        "openai/gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 2}}}))
    custom = Pricing.load(path)
    assert custom.version == "team-7"
    assert custom.cost("openai", "gpt-4o", Usage(input_tokens=10**6)) == 1
    assert Pricing.load({"x/y": {"input_per_mtok": 0, "output_per_mtok": 0}}).version == (
        "2026-12-06+overrides")
    with pytest.raises(ValueError, match="provider/model"):
        Pricing.load({"models": {"gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 1}}})


def test_cached_input_has_its_own_rates() -> None:
    pricing = Pricing.load({"x/cached": {"input_per_mtok": 10, "output_per_mtok": 20,
                                         "cached_input_per_mtok": 1,
                                         "cache_write_per_mtok": 12.5},
                            "x/plain": {"input_per_mtok": 10, "output_per_mtok": 20}})
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cache_read_tokens=600_000,
                  cache_write_tokens=200_000)
    # 200k uncached at 10, 600k read at 1, 200k written at 12.5, 100k out at 20.
    assert pricing.cost("x", "cached", usage) == pytest.approx(2 + 0.6 + 2.5 + 2)
    # Without cache rates every input token costs the input rate, as before.
    assert pricing.cost("x", "plain", usage) == pytest.approx(10 + 2)
    # Counts that claim more cache than input are capped, never negative.
    odd = Usage(input_tokens=100, cache_read_tokens=500)
    assert pricing.cost("x", "cached", odd) == pytest.approx(100 * 1 / 1e6)
    with pytest.raises(ValueError, match="cached_input_per_mtok"):
        Pricing.load({"x/y": {"input_per_mtok": 1, "output_per_mtok": 1,
                              "cached_input_per_mtok": "cheap"}})


def test_the_shipped_table_prices_cache_reads_and_writes() -> None:
    models = Pricing.load().to_dict()["models"]
    vendors = {key: rate for key, rate in models.items() if not key.startswith("scripted/")}
    assert all(0 < rate["cached_input_per_mtok"] < rate["input_per_mtok"]
               for rate in vendors.values())
    for key, rate in vendors.items():
        if key.startswith("anthropic/"):  # reads 0.1x, 5-minute writes 1.25x of input
            assert rate["cached_input_per_mtok"] == pytest.approx(rate["input_per_mtok"] / 10)
            assert rate["cache_write_per_mtok"] == pytest.approx(rate["input_per_mtok"] * 1.25)
        else:  # OpenAI charges nothing extra for writes
            assert "cache_write_per_mtok" not in rate


# ---------------------------------------------------------------------------- backoff


def test_backoff_follows_attractor_3_6() -> None:
    policy = RetryPolicy.from_settings({"initial_delay_ms": 200, "factor": 2.0,
                                        "max_delay_ms": 1000, "jitter": False})
    assert [backoff_delay_ms(n, policy) for n in (1, 2, 3, 4, 5)] == [200, 400, 800, 1000, 1000]
    assert backoff_delay_ms(10_000, policy) == 1000
    jittery = RetryPolicy(initial_delay_ms=200, jitter=True)
    delays = [backoff_delay_ms(2, jittery, random.Random(1)) for _ in range(3)]
    assert delays[0] == delays[1] == delays[2]
    assert all(200 <= backoff_delay_ms(2, jittery, random.Random(s)) <= 600 for s in range(50))
    assert RetryPolicy.from_settings("linear") == RetryPolicy(3, 500, 1.0)
    assert RetryPolicy.from_settings({"preset": "patient", "jitter": False}).max_attempts == 3
    with pytest.raises(ValueError, match="unknown"):
        RetryPolicy.from_settings({"attempts": 3})


def test_status_classification() -> None:
    assert [status_error("p", s, "x").retryable for s in (400, 401, 403, 404, 422)] == [False] * 5
    assert [status_error("p", s, "x").retryable for s in (408, 429, 500, 503, 529)] == [True] * 5
    assert not status_error("p", 503, "x", {"x-should-retry": "false"}).retryable
    assert retry_after_ms({"retry-after": "2"}) == 2000
    assert retry_after_ms({"retry-after-ms": "150", "retry-after": "1"}) == 150
    # An HTTP date: the wait until then, none if it is past; garbage is ignored.
    now = datetime(2026, 10, 21, 7, 27, 30, tzinfo=UTC)
    date = {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}
    assert retry_after_ms(date, now=now) == 30_000
    assert retry_after_ms(date, now=now + timedelta(minutes=5)) == 0
    assert retry_after_ms({"retry-after": "soon"}) is None
    assert retry_after_ms({"retry-after-ms": "soon", "retry-after": "3"}) == 3000


# ---------------------------------------------------------------------------- pool


async def test_the_pool_picks_the_provider_and_fills_in_the_model() -> None:
    settings = {"default": "fast",
                "providers": {"fast": {"type": "scripted", "model": "m-fast"},
                              "slow": {"type": "scripted", "latency_ms": 1}}}
    async with ProviderPool(settings) as pool:
        assert pool.resolve(request()).provider == "fast"
        assert pool.resolve(request()).model == "m-fast"
        assert (await pool.complete(request())).provider == "fast"
        assert (await pool.complete(request(provider="slow"))).provider == "slow"
        assert (await pool.complete(request(provider="scripted"))).model == "scripted"
        with pytest.raises(ProviderError, match="unknown provider 'nope'") as caught:
            await pool.complete(request(provider="nope"))
        assert not caught.value.retryable


@pytest.mark.parametrize(("settings", "complaint"), [
    ({"providers": {"x": {"type": "grok"}}}, "unknown type"),
    ({"providers": {"scripted": {"latency": 5}}}, "latency"),
    ({"providers": {"openai": {"api_key": "sk-live"}}}, "api_key_env"),
    ({"default": "openai"}, "not configured"),
    ({"providers": {"scripted": {"concurrency": 0}}}, "at least 1"),
])
def test_bad_settings_are_refused_at_construction(settings: dict[str, Any],
                                                  complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        ProviderPool(settings)
    assert "sk-live" not in str(caught.value)


@dataclass
class GatedProvider:
    """Holds every call until released, counting how many run at once."""

    name: str = "gated"
    active: int = 0
    peak: int = 0
    calls: int = 0

    def __post_init__(self) -> None:
        self.release = asyncio.Event()
        self.full = asyncio.Event()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.active == 2:
            self.full.set()
        try:
            await self.release.wait()
        finally:
            self.active -= 1
        return ModelResponse(text="ok", provider=self.name)

    async def aclose(self) -> None:
        pass


async def test_the_pool_limits_concurrency_per_provider() -> None:
    gated = GatedProvider()
    async with ProviderPool() as pool:
        pool.add(gated, concurrency=2)
        tasks = [asyncio.create_task(pool.complete(request(provider="gated"))) for _ in range(5)]
        await gated.full.wait()
        for _ in range(10):  # give the other three every chance to start
            await asyncio.sleep(0)
        assert (gated.active, gated.calls) == (2, 2)
        gated.release.set()
        results = await asyncio.gather(*tasks)
    assert [r.text for r in results] == ["ok"] * 5
    assert (gated.peak, gated.calls) == (2, 5)


async def test_describe_has_no_keys_and_secrets_lists_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-describe-0123456789"
    monkeypatch.setenv("OST_TEST_DESCRIBE_KEY", key)
    settings = {"default": "openai", "providers": {
        "openai": {"api_key_env": "OST_TEST_DESCRIBE_KEY", "model": "gpt-4o-mini",
                   "base_url": f"https://proxy.example/{key}/v1", "concurrency": 3,
                   "retry": "standard"},
        "anthropic": {"api_key_env": "OST_TEST_UNSET_KEY", "max_tokens": 2048}}}
    async with ProviderPool(settings) as pool:
        described = pool.describe()
        assert pool.secrets() == [key]
    assert key not in json.dumps(described)
    openai = described["providers"]["openai"]
    assert openai["api_key_env"] == "OST_TEST_DESCRIBE_KEY"
    assert openai["base_url"] == "https://proxy.example/[redacted]/v1"
    assert (openai["model"], openai["concurrency"], openai["retry"]["max_attempts"]) == (
        "gpt-4o-mini", 3, 5)
    assert described["providers"]["anthropic"]["max_tokens"] == 2048
    assert set(described["providers"]) == {"openai", "anthropic", "scripted"}
    assert described["pricing_version"] == "2026-12-06"


def test_secret_looking_names() -> None:
    secret = ["api_key", "apiKey", "access_token", "client_secret", "password", "Authorization"]
    plain = ["max_tokens", "api_key_env", "base_url", "tokenizer_name", "keys_seen"]
    assert all(is_secret_name(name) for name in secret)
    assert not any(is_secret_name(name) for name in plain)
    assert redact_settings({"headers": {"x-api-key": "v"}, "note": "has s3cr3t"},
                           ["s3cr3t"]) == {"headers": {"x-api-key": "[redacted]"},
                                           "note": "has [redacted]"}


def test_key_variables_are_limited_to_the_documented_and_allowed_ones() -> None:
    from ostinato.daemon.engine.providers.anthropic import AnthropicSettings
    from ostinato.daemon.engine.providers.openai import OpenAISettings
    from ostinato.daemon.engine.providers.runtime import DOCUMENTED_KEY_ENV

    documented = {kind: settings.model_fields["api_key_env"].default for kind, settings in
                  (("openai", OpenAISettings), ("anthropic", AnthropicSettings))}
    assert documented == DOCUMENTED_KEY_ENV

    def pool(entry: dict[str, Any], allowed: tuple[str, ...] = ()) -> ProviderPool:
        return ProviderPool({"providers": {"p": entry}}, allowed_key_env=allowed)

    with pytest.raises(ValueError, match="api_key_env 'DB_PASS' is not allowed"):
        pool({"type": "openai", "api_key_env": "DB_PASS"})
    assert pool({"type": "openai", "api_key_env": "DB_PASS"}, ("DB_PASS",))
    assert pool({"type": "openai", "api_key_env": "OPENAI_API_KEY"})
    assert pool({"type": "anthropic"})  # the default, documented name
    assert pool({"type": "openai", "api_key_env": None})  # keyless
    # Without an allowlist (in-process callers that trust their settings), any name.
    assert ProviderPool({"providers": {"p": {"type": "openai", "api_key_env": "DB_PASS"}}})
