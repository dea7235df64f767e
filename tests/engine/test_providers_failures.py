"""How the openai and anthropic providers fail, through the official SDKs against the fake
API: every retried try reported, the server's Retry-After obeyed, connect and read timeouts,
the endpoint named in every error, and the key in none."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import ModuleType
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from ostinato.daemon.engine.providers import ProviderError, ProviderPool
from ostinato.daemon.engine.providers.base import from_sdk_error
from ostinato.daemon.engine.replay import Cassette, Replayer, ReplayProviders

from ..fakes.llm_server import FakeLLMServer, Reply, refused_url, unanswered_url
from . import providers_support
from .providers_support import NO_JITTER, Flavour, SleepRecorder, chat

flavour = providers_support.flavour
server = providers_support.server


class Retries:
    """An on_retry callback recording what it is told, in order with the pool's sleeps."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def __call__(self, error: ProviderError, try_number: int, delay_ms: float) -> None:
        self.log.append(("retry", error.kind, error.status, try_number, delay_ms))

    async def sleep(self, seconds: float) -> None:
        """The pool's sleep: recorded, not waited."""
        self.log.append(("sleep", seconds * 1000))


def endpoint(flavour: Flavour, url: str) -> str:
    """What errors should name: the method, host:port and path of the call."""
    return "POST " + flavour.base_url(url).removeprefix("http://") + (
        "/chat/completions" if flavour.name == "openai" else "/v1/messages")


async def test_every_retried_try_is_reported_before_its_backoff(
        flavour: Flavour, server: FakeLLMServer) -> None:
    server.queue(Reply(status=429, headers={"retry-after-ms": "40"}), Reply(status=503),
                 Reply(text="third time"))
    retries = Retries()
    async with ProviderPool(flavour.settings(server), sleep=retries.sleep) as pool:
        response = await pool.complete(chat(flavour), on_retry=retries)
    assert (response.text, response.attempts) == ("third time", 3)
    assert retries.log == [("retry", "rate_limit", 429, 1, 40), ("sleep", 40),
                           ("retry", "server", 503, 2, 2), ("sleep", 2)]


async def test_the_last_try_is_not_a_retry(flavour: Flavour, server: FakeLLMServer) -> None:
    server.queue(*[Reply(status=500)] * 3)
    retries = Retries()
    async with ProviderPool(flavour.settings(server), sleep=retries.sleep) as pool:
        with pytest.raises(ProviderError) as caught:
            await pool.complete(chat(flavour), on_retry=retries)
    assert caught.value.attempts == 3
    assert [entry[3] for entry in retries.log if entry[0] == "retry"] == [1, 2]


async def test_a_replay_passes_on_retry_to_the_live_pool(flavour: Flavour,
                                                         server: FakeLLMServer) -> None:
    server.queue(Reply(status=503))
    retries = Retries()
    async with ProviderPool(flavour.settings(server), sleep=retries.sleep) as pool:
        replaying = ReplayProviders(pool, Replayer("hybrid", Cassette()))
        response = await replaying.complete(chat(flavour), on_retry=retries)
    assert response.attempts == 2 and retries.log[0][:4] == ("retry", "server", 503, 1)


async def test_an_http_date_retry_after_is_obeyed_up_to_max_delay(
        flavour: Flavour, server: FakeLLMServer) -> None:
    def at(seconds: float) -> Reply:
        """A 429 asking to come back `seconds` from now (when the request arrives)."""
        when = datetime.now(UTC) + timedelta(seconds=seconds)
        return Reply(status=429, headers={"retry-after": format_datetime(when, usegmt=True)})
    replies = iter([lambda: at(5), lambda: at(600), Reply])
    server.responder = lambda seen: next(replies)()
    settings = flavour.settings(server)
    settings["providers"][flavour.name]["retry"] = {"max_delay_ms": 10_000, **NO_JITTER}
    sleep = SleepRecorder()
    async with ProviderPool(settings, sleep=sleep) as pool:
        assert (await pool.complete(chat(flavour))).attempts == 3
    # Dates have whole seconds: "in 5 s" is between 4 and 5 s away when written, a little
    # less when read.
    assert 3000 < sleep.delays_ms[0] <= 5000
    assert sleep.delays_ms[1] == 10_000


async def test_a_read_timeout_names_the_endpoint_and_the_setting(
        flavour: Flavour, server: FakeLLMServer) -> None:
    server.queue(Reply(delay_s=30), Reply(delay_s=30))  # held until the client gives up
    retries = Retries()
    settings = flavour.settings(server, timeout_s=0.3, max_attempts=2)
    async with ProviderPool(settings, sleep=retries.sleep) as pool:
        with pytest.raises(ProviderError) as caught:
            await pool.complete(chat(flavour), on_retry=retries)
    error = caught.value
    assert (error.kind, error.retryable, error.attempts) == ("timeout", True, 2)
    assert error.endpoint == endpoint(flavour, server.url)
    assert str(error) == f"{flavour.name}: {error.endpoint}: no response within 0.3 s " \
                         f"(timeout_s)"
    assert retries.log[0][:4] == ("retry", "timeout", None, 1)


async def test_a_refused_connection_is_retried_and_named(flavour: Flavour) -> None:
    url = refused_url()
    retries = Retries()
    async with ProviderPool(flavour.settings(url), sleep=retries.sleep) as pool:
        with pytest.raises(ProviderError) as caught:
            await pool.complete(chat(flavour), on_retry=retries)
    error = caught.value
    assert (error.kind, error.retryable, error.attempts, error.status) == (
        "connection", True, 3, None)
    assert error.endpoint == endpoint(flavour, url)
    assert str(error).startswith(f"{flavour.name}: connection to {error.endpoint} failed: "
                                 f"ConnectError:")
    assert [entry[:4] for entry in retries.log if entry[0] == "retry"] == [
        ("retry", "connection", None, 1), ("retry", "connection", None, 2)]


async def test_a_connect_timeout_fails_the_try_fast(flavour: Flavour) -> None:
    retries = Retries()
    with unanswered_url() as url:
        settings = flavour.settings(url, timeout_s=60, max_attempts=2,
                                    connect_timeout_s=0.2)
        async with ProviderPool(settings, sleep=retries.sleep) as pool:
            started = time.perf_counter()  # the SDK is imported by now
            with pytest.raises(ProviderError) as caught:
                await pool.complete(chat(flavour), on_retry=retries)
            elapsed = time.perf_counter() - started
    # Two tries of 0.2 s each, nowhere near the 60 s read timeout.
    assert elapsed < 5
    error = caught.value
    assert (error.kind, error.retryable, error.attempts) == ("connection", True, 2)
    assert str(error) == f"{flavour.name}: {endpoint(flavour, url)}: could not connect " \
                         f"within 0.2 s (connect_timeout_s)"
    assert retries.log[0][:4] == ("retry", "connection", None, 1)


@pytest.mark.parametrize(("reply", "kind", "says"), [
    (Reply(status=429, message="Rate limit reached"), "rate_limit", "HTTP 429 from {}: Rate"),
    (Reply(status=500, message="boom"), "server", "HTTP 500 from {}: boom"),
    (Reply(status=400, message="bad"), "client", "HTTP 400 from {}: bad"),
    (Reply(body=["not", "a", "response"]), "invalid_response",
     "unexpected response: AttributeError: "),
])
async def test_every_error_names_its_endpoint(flavour: Flavour, server: FakeLLMServer,
                                              reply: Reply, kind: str, says: str) -> None:
    server.queue(*[reply] * 3)
    async with ProviderPool(flavour.settings(server), sleep=SleepRecorder()) as pool:
        with pytest.raises(ProviderError) as caught:
            await pool.complete(chat(flavour))
    error = caught.value
    assert error.kind == kind
    assert error.endpoint == endpoint(flavour, server.url)
    assert says.format(error.endpoint) in str(error) and error.endpoint in str(error)
    assert error.to_dict()["endpoint"] == error.endpoint


async def test_no_key_anywhere_in_an_error(flavour: Flavour, server: FakeLLMServer) -> None:
    """The key echoed in the error body and sitting in the base_url's path (some proxies
    want it there) is redacted from the message, the endpoint and the recorded form."""
    settings = flavour.settings(server.url + f"/{flavour.key}")
    server.queue(Reply(status=401, message=f"Incorrect API key provided: {flavour.key}"))
    async with ProviderPool(settings) as pool:
        with pytest.raises(ProviderError) as caught:
            await pool.complete(chat(flavour))
    error = caught.value
    recorded = json.dumps(error.to_dict())
    assert flavour.key not in recorded and flavour.key not in str(error)
    assert error.endpoint.startswith(f"POST 127.0.0.1:{server.port}/[redacted]")
    assert error.message.count("[redacted]") == 2 and error.status == 401


@pytest.mark.parametrize("sdk", [openai, anthropic], ids=lambda m: m.__name__)
def test_an_sdk_validation_error_names_the_endpoint(sdk: ModuleType) -> None:
    # The SDKs raise it only in strict mode (which we leave off, for compatible servers that
    # bend the schema); built here with the SDKs' HTTP library.
    request = httpx2.Request("POST", "http://u:p@10.0.0.7:8000/v1/chat/completions?key=sk-q")
    exc = sdk.APIResponseValidationError(httpx2.Response(200, request=request), body=None,
                                         message="choices: Field required")
    error = from_sdk_error("local", exc, sdk, ["sk-never"])
    assert (error.kind, error.retryable, error.status) == ("invalid_response", False, 200)
    assert error.endpoint == "POST 10.0.0.7:8000/v1/chat/completions"  # no user, no query
    assert str(error) == "local: unexpected response from POST 10.0.0.7:8000/v1/chat/" \
                         "completions: choices: Field required"
