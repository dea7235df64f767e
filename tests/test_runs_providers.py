"""Model providers through the daemon: the official SDKs against a fake API on 127.0.0.1."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from .fakes.llm_server import FakeLLMServer, Reply
from .support import DaemonProcess, start_daemon

KEY = "sk-canary-7d1f0b2e9a"
PIPELINE = """
digraph priced {
    graph [model_stylesheet="* { llm_provider: %s; llm_model: %s; }"]
    start [shape=Mdiamond]
    ask   [prompt="Name a prime"]
    done  [shape=Msquare]
    start -> ask -> done
}
"""
VENDORS = {"openai": ("gpt-4o-mini", "/v1"), "anthropic": ("claude-haiku-4-5", "")}


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer() as server:
        yield server


@pytest.fixture
async def keyed_daemon(short_tmp: Path) -> AsyncIterator[DaemonProcess]:
    """A daemon whose environment holds the vendor key (and nothing else vendor-specific)."""
    saved = os.environ.get("OST_TEST_VENDOR_KEY")
    os.environ["OST_TEST_VENDOR_KEY"] = KEY
    try:
        daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                    "--allow-key-env", "OST_TEST_VENDOR_KEY")
    finally:
        if saved is None:
            os.environ.pop("OST_TEST_VENDOR_KEY")
        else:
            os.environ["OST_TEST_VENDOR_KEY"] = saved
    yield daemon
    assert await daemon.stop() == 0


def start_params(vendor: str, server: FakeLLMServer) -> dict[str, Any]:
    model, suffix = VENDORS[vendor]
    return {"pipeline": {"source": PIPELINE % (vendor, model), "format": "dot"}, "wait": True,
            "settings": {"providers": {vendor: {
                "base_url": server.url + suffix, "api_key_env": "OST_TEST_VENDOR_KEY",
                "timeout_s": 5, "retry": {"max_attempts": 3, "initial_delay_ms": 1,
                                          "jitter": False}}}}}


def everything_written(home: Path) -> bytes:
    """Every byte under the home, the database included."""
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_a_priced_call_with_a_rate_limit_on_the_way(
        vendor: str, fake_api: FakeLLMServer, keyed_daemon: DaemonProcess) -> None:
    fake_api.queue(Reply(status=429, headers={"retry-after-ms": "5"}),
                   Reply(text="7 is prime", usage=(1000, 2000)))
    wire = await keyed_daemon.connect()
    run = await wire.result("run.start", start_params(vendor, fake_api))
    assert run["status"] == "completed" and run["outcome"] == "success"
    assert len(fake_api.requests) == 2  # the 429, then the answer
    assert (run["input_tokens"], run["output_tokens"]) == (1000, 2000)
    pricing = orjson.loads((Path(run["run_dir"]) / "config" / "pricing.json").read_bytes())
    rate = pricing["models"][f"{vendor}/{VENDORS[vendor][0]}"]
    expected = (1000 * rate["input_per_mtok"] + 2000 * rate["output_per_mtok"]) / 1e6
    assert run["cost_usd"] == pytest.approx(expected) and expected > 0
    assert (Path(run["run_dir"]) / "ask" / "response.md").read_text() == "7 is prime"
    trace = [orjson.loads(line) for line in
             (Path(run["run_dir"]) / "trace.jsonl").read_bytes().splitlines()]
    # Every try is in the trace: the 429 the pool retried, then the call that answered.
    assert [(c["node_id"], c["kind"], c["output_tokens"]) for c in trace] == [
        ("ask", "model_retry", 0), ("ask", "model", 2000)]
    assert "HTTP 429" in trace[0]["error"] and trace[0]["request"]["provider_attempt"] == 1
    await wire.result("shutdown")
    # The key reached the vendor, and nowhere else.
    assert KEY.encode() not in everything_written(keyed_daemon.home)
    db = sqlite3.connect(keyed_daemon.home / "ostinato.db")
    assert not [row for table in ("runs", "calls", "events", "stages", "pipelines")
                for row in db.execute(f"SELECT * FROM {table}") if KEY in repr(row)]


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_a_bad_request_fails_the_node_at_once(
        vendor: str, fake_api: FakeLLMServer, keyed_daemon: DaemonProcess) -> None:
    fake_api.queue(Reply(status=400, message="model does not exist"))
    wire = await keyed_daemon.connect()
    run = await wire.result("run.start", start_params(vendor, fake_api))
    assert run["status"] == "failed" and run["outcome"] == "fail"
    assert "model call failed" in run["failure_reason"]
    assert len(fake_api.requests) == 1  # a 400 is never retried
    detail = await wire.result("run.get", {"run_id": run["run_id"]})
    assert [s["node_id"] for s in detail["stages"]][-1] == "ask"
    assert detail["stages"][-1]["status"] == "fail"


async def test_a_timeout_is_retried_then_fails_the_node(
        fake_api: FakeLLMServer, keyed_daemon: DaemonProcess) -> None:
    fake_api.queue(*[Reply(delay_s=30)] * 3)
    params = start_params("openai", fake_api)
    params["settings"]["providers"]["openai"]["timeout_s"] = 0.3
    wire = await keyed_daemon.connect()
    run = await wire.result("run.start", params)
    assert run["outcome"] == "fail" and len(fake_api.requests) == 3


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_cached_tokens_are_in_the_totals_and_priced_at_their_rates(
        vendor: str, fake_api: FakeLLMServer, keyed_daemon: DaemonProcess) -> None:
    write = 0 if vendor == "openai" else 2_000  # OpenAI reports (and charges) no writes
    fake_api.queue(Reply(text="7", usage=(10_000, 1_000), cache_read=6_000, cache_write=write))
    wire = await keyed_daemon.connect()
    run = await wire.result("run.start", start_params(vendor, fake_api))
    assert run["outcome"] == "success"
    # input_tokens stays ALL input, cache reads and writes included.
    assert (run["input_tokens"], run["output_tokens"]) == (10_000, 1_000)
    pricing = orjson.loads((Path(run["run_dir"]) / "config" / "pricing.json").read_bytes())
    rate = pricing["models"][f"{vendor}/{VENDORS[vendor][0]}"]
    expected = ((10_000 - 6_000 - write) * rate["input_per_mtok"]
                + 6_000 * rate["cached_input_per_mtok"]
                + write * rate.get("cache_write_per_mtok", rate["input_per_mtok"])
                + 1_000 * rate["output_per_mtok"]) / 1e6
    assert run["cost_usd"] == pytest.approx(expected)
    assert expected < (10_000 * rate["input_per_mtok"] + 1_000 * rate["output_per_mtok"]) / 1e6
    [call] = [orjson.loads(line) for line in
              (Path(run["run_dir"]) / "trace.jsonl").read_bytes().splitlines()]
    # A count of 0 is not recorded: a call without caching is recorded as before.
    assert call["response"]["usage"] == {
        "input_tokens": 10_000, "output_tokens": 1_000, "cache_read_tokens": 6_000,
        **({"cache_write_tokens": write} if write else {}), "total": 11_000}
    assert call["cost_usd"] == pytest.approx(expected)
