"""Bad input gets a precise error and never disturbs the daemon or other clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest

from .inprocess import InProcessDaemon
from .support import WAIT, DaemonProcess, Wire, spawn_stdio


@pytest.fixture
async def bystander(daemon: DaemonProcess) -> Wire:
    """Another client whose session must not notice anything."""
    return await daemon.connect()


async def still_served(bystander: Wire, daemon: DaemonProcess) -> None:
    status = await bystander.result("daemon.status")
    assert status["pid"] == daemon.process.pid
    assert daemon.process.returncode is None


async def test_garbage_bytes_give_a_parse_error_with_null_id(
        daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    await wire.send_raw(b"\x00\xff garbage \x13\r\n\r\n")
    reply = await wire.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32700
    assert await wire.result("daemon.status")  # the same connection resynchronised
    await still_served(bystander, daemon)


async def test_invalid_json_body(daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    await wire.send_raw(wire.frame(b'{"jsonrpc": "2.0", "id": 1, "method": '))
    reply = await wire.recv()
    assert reply == {"jsonrpc": "2.0", "id": None, "error": reply["error"]}
    assert reply["error"]["code"] == -32700
    await still_served(bystander, daemon)


async def test_invalid_utf8(daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    body = b'{"jsonrpc":"2.0","id":1,"method":"daemon.status","params":{"x":"\xc3\x28"}}'
    await wire.send_raw(wire.frame(body))
    assert (await wire.recv())["error"]["code"] == -32700
    await still_served(bystander, daemon)


async def test_truncated_header_then_client_vanishes(
        daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    await wire.send_raw(b"Content-Len")
    await wire.close()
    wire = await daemon.connect(initialize=False)
    await wire.send_raw(b"Content-Length: 100\r\n\r\n{\"jsonrpc\":")  # closed mid-body
    await wire.close()
    await still_served(bystander, daemon)


async def test_too_short_content_length_costs_one_error(
        daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "daemon.status"}).encode()
    good = wire.frame(json.dumps({"jsonrpc": "2.0", "id": 8, "method": "daemon.status"}).encode())
    await wire.send_raw(b"Content-Length: %d\r\n\r\n" % (len(body) - 5) + body + good)
    replies = [await wire.recv(), await wire.recv(), await wire.recv()]
    assert [r.get("id") for r in replies] == [None, None, 8]
    assert all(r["error"]["code"] == -32700 for r in replies[:2])
    await still_served(bystander, daemon)


async def test_too_long_content_length_waits_then_resynchronises(
        daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "daemon.status"}).encode()
    await wire.send_raw(b"Content-Length: %d\r\n\r\n" % (len(body) + 20) + body)
    await still_served(bystander, daemon)  # the daemon waits for the missing bytes
    nine, ten = (wire.frame(json.dumps({"jsonrpc": "2.0", "id": n, "method": "daemon.status"})
                            .encode()) for n in (9, 10))
    await wire.send_raw(nine + ten)
    replies = [await wire.recv() for _ in range(3)]
    # frame 7 swallowed the header of frame 9; frame 9's body is garbage before frame 10
    assert [r["id"] for r in replies] == [None, None, 10]
    assert [r["error"]["code"] for r in replies[:2]] == [-32700, -32700]


async def test_a_content_length_of_thousands_of_digits_gets_a_reply(
        daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    await wire.send_raw(b"Content-Length: " + b"7" * 4400 + b"\r\n\r\n")
    reply = await wire.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32600
    assert (await wire.result("daemon.status"))["pid"] == daemon.process.pid
    await still_served(bystander, daemon)


async def test_huge_frame_is_refused_and_skipped(short_tmp: Path) -> None:
    from .support import TEST_EXTENSION, start_daemon

    daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                "--max-frame-bytes", "65536", "--extension", TEST_EXTENSION)
    try:
        bystander = await daemon.connect()
        for framing in ("content-length", "ndjson"):
            wire = await daemon.connect(framing)
            big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "daemon.status",
                              "params": {"pad": "x" * 1_000_000}}).encode()
            await wire.send_raw(wire.frame(big))
            reply = await wire.recv()
            assert reply["id"] is None and reply["error"]["code"] == -32600
            assert reply["error"]["data"]["limit"] == 65536
            assert (await wire.result("daemon.status"))["pid"] == daemon.process.pid
            await wire.close()
            await still_served(bystander, daemon)
    finally:
        assert await daemon.stop() == 0


async def test_default_limit_accepts_a_frame_of_several_megabytes(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    reply = await wire.request("daemon.status", {"pad": "x" * 5_000_000})
    assert reply["error"]["code"] == -32602  # read whole, then refused for its unknown field


async def test_empty_batch(daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    await wire.send([])
    reply = await wire.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32600
    await still_served(bystander, daemon)


async def test_batch_answers_requests_in_order_and_skips_notifications(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.send([
        {"jsonrpc": "2.0", "id": "a", "method": "daemon.status"},
        {"jsonrpc": "2.0", "method": "initialized"},
        {"jsonrpc": "2.0", "id": "b", "method": "no.such"},
        {"jsonrpc": "2.0", "id": "c", "method": "test.slow", "params": {"steps": 2}},
        1,
    ])
    replies = await wire.recv()
    assert [r["id"] for r in replies] == ["a", "b", "c", None]
    assert "result" in replies[0]
    assert replies[1]["error"]["code"] == -32601
    assert replies[2]["result"] == {"steps_done": 2}
    assert replies[3]["error"]["code"] == -32600


async def test_batch_of_notifications_gets_no_reply(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.send([{"jsonrpc": "2.0", "method": "initialized"},
                     {"jsonrpc": "2.0", "method": "no.such"}])
    assert "result" in await wire.request("daemon.status")  # the very next reply is this one


@pytest.mark.parametrize(("message", "code"), [
    ({"jsonrpc": "1.0", "id": 1, "method": "daemon.status"}, -32600),
    ({"id": 1, "method": "daemon.status"}, -32600),
    ({"jsonrpc": "2.0", "id": 1}, -32600),
    ({"jsonrpc": "2.0", "id": 1, "method": 5}, -32600),
    ({"jsonrpc": "2.0", "id": 1, "method": "daemon.status", "params": "x"}, -32600),
    ({"jsonrpc": "2.0", "id": 1, "method": "daemon.status", "params": [1]}, -32602),
    ({"jsonrpc": "2.0", "id": 1, "method": "nope"}, -32601),
])
async def test_invalid_requests(daemon: DaemonProcess, message: dict, code: int) -> None:
    wire = await daemon.connect()
    await wire.send(message)
    reply = await wire.recv()
    assert reply["error"]["code"] == code
    assert reply["id"] == 1  # the id is echoed whenever it could be read


async def test_id_of_wrong_type_is_invalid_with_null_id(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.send({"jsonrpc": "2.0", "id": {"x": 1}, "method": "daemon.status"})
    reply = await wire.recv()
    assert reply["id"] is None and reply["error"]["code"] == -32600


async def test_wrong_param_types_carry_pydantic_errors(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    reply = await wire.request("test.slow", {"steps": "many", "gate": 3})
    error = reply["error"]
    assert error["code"] == -32602
    locations = {tuple(e["loc"]) for e in error["data"]}
    assert locations == {("steps",), ("gate",)}
    assert all("msg" in e and "type" in e for e in error["data"])


async def test_internal_error_has_an_id_in_the_log_and_no_traceback(
        daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    error = (await wire.request("test.fail"))["error"]
    assert error["code"] == -32603
    error_id = error["data"]["error_id"]
    assert "Traceback" not in json.dumps(error) and "secret" not in json.dumps(error)
    await still_served(bystander, daemon)
    log = (daemon.home / "daemon.log").read_text()
    assert re.search(rf"internal error {error_id} in test\.fail", log)
    assert "Traceback" in log and "deliberate failure" in log


async def test_a_sync_handler_that_keeps_its_context_is_an_internal_error_in_strict_mode(
        daemon: DaemonProcess, bystander: Wire) -> None:
    # Sync handlers of requests without params share their connection's context from a
    # method's second call on (its first builds the method's empty params); strict mode,
    # which every test daemon runs in, catches one that keeps it.
    wire = await daemon.connect()
    assert (await wire.result("test.keep_context"))["count"] == 1
    error = (await wire.request("test.keep_context"))["error"]
    assert error["code"] == -32603
    log = (daemon.home / "daemon.log").read_text()
    assert re.search(rf"internal error {error['data']['error_id']} in test\.keep_context", log)
    assert "kept its request context" in log
    # Requests in one chunk, each answered inline on the shared context, keep their ids.
    await wire.send_raw(b"".join(wire.frame(json.dumps(
        {"jsonrpc": "2.0", "id": f"s{n}", "method": "daemon.status"}).encode())
        for n in range(3)))
    replies = [await wire.recv() for _ in range(3)]
    assert [reply["id"] for reply in replies] == ["s0", "s1", "s2"]
    assert all(reply["result"]["pid"] == daemon.process.pid for reply in replies)
    await still_served(bystander, daemon)


@pytest.mark.in_process  # the test's log capture keeps each record, traceback and all
async def test_an_internal_error_does_not_spoil_the_next_requests(
        daemon: InProcessDaemon) -> None:
    # From a method's second call on, a request without params shares its connection's
    # context (Connection); an error's traceback, kept by a log handler, holds it.
    wire = await daemon.connect()
    for _ in range(2):
        assert (await wire.request("test.fail"))["error"]["code"] == -32603
    for _ in range(2):
        assert (await wire.result("daemon.status"))["pid"] == os.getpid()


async def test_unsolicited_responses_are_ignored(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.send({"jsonrpc": "2.0", "id": 99, "result": {}})
    assert "result" in await wire.request("daemon.status")  # the very next reply is this one


async def test_client_that_vanishes_with_requests_in_flight(
        daemon: DaemonProcess, bystander: Wire) -> None:
    wire = await daemon.connect()
    for n in range(50):
        await wire.send({"jsonrpc": "2.0", "id": n, "method": "test.slow",
                         "params": {"gate": f"never-{n}"}})
    wire.writer.transport.abort()  # RST, no goodbye
    await still_served(bystander, daemon)
    # The reset and the bystander's request race in the daemon's event loop: ask until the
    # reset has been seen (a bounded number of round trips, no sleeping).
    for _ in range(1000):
        if (await bystander.result("daemon.status"))["connections"] == 1:
            break
    assert (await bystander.result("daemon.status"))["connections"] == 1


async def test_stdio_client_that_closes_its_read_end(tmp_path: Path) -> None:
    process, wire = await spawn_stdio(tmp_path / "home")
    await wire.initialize()
    process.stdout._transport.close()  # type: ignore[union-attr]  # nobody reads replies now
    for n in range(200):
        await wire.send({"jsonrpc": "2.0", "id": n, "method": "daemon.status"})
    wire.writer.close()
    assert await asyncio.wait_for(process.wait(), WAIT) == 1  # no shutdown: 1, and no hang


async def test_invalid_params_do_not_echo_the_offending_value(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    error = (await wire.request("test.slow", {"steps": "sk-canary-value"}))["error"]
    assert error["code"] == -32602 and error["data"][0]["loc"] == ["steps"]
    assert "sk-canary-value" not in json.dumps(error)
