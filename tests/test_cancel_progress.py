"""Cancellation, work done progress and subscriptions, with the test-only slow method."""

from __future__ import annotations

import json

from .support import DaemonProcess


async def test_cancel_request_answers_32800_and_the_connection_goes_on(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.send({"jsonrpc": "2.0", "id": "slow", "method": "test.slow",
                     "params": {"gate": "cancel-me", "workDoneToken": "tok"}})
    begin = await wire.recv()  # the handler is now running and waits at its gate
    assert begin["method"] == "$/progress"
    assert begin["params"] == {"token": "tok", "value": {
        "kind": "begin", "title": "slow work", "percentage": 0, "cancellable": True}}
    await wire.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "slow"}})
    reply = await wire.response()
    assert reply == {"jsonrpc": "2.0", "id": "slow",
                     "error": {"code": -32800, "message": "Request cancelled"}}
    assert "result" in await wire.request("daemon.status")


async def test_cancelling_an_unknown_or_finished_request_is_harmless(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 12345}})
    done = await wire.result("test.slow", {"steps": 1})
    assert done == {"steps_done": 1}
    await wire.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}})
    assert "result" in await wire.request("daemon.status")


async def test_progress_begin_report_end_in_order(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    reply = await wire.request("test.slow", {"steps": 4, "workDoneToken": 77})
    assert reply["result"] == {"steps_done": 4}
    values = [n["params"]["value"] for n in wire.notifications if n["params"]["token"] == 77]
    assert [v["kind"] for v in values] == ["begin", "report", "report", "report", "report",
                                           "end"]
    assert [v.get("percentage") for v in values[1:5]] == [25, 50, 75, 100]
    assert values[-1] == {"kind": "end", "message": "done"}


async def test_no_progress_without_a_token(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    assert (await wire.result("test.slow", {"steps": 3})) == {"steps_done": 3}
    assert wire.notifications == []


async def test_requests_run_concurrently_and_cancel_independently(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    for name in ("a", "b"):
        await wire.send({"jsonrpc": "2.0", "id": name, "method": "test.slow",
                         "params": {"steps": 1, "gate": name, "workDoneToken": name}})
    for _ in range(2):
        assert (await wire.recv())["params"]["value"]["kind"] == "begin"
    await wire.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": "a"}})
    assert (await wire.response())["id"] == "a"
    other = await daemon.connect()
    assert await other.result("test.release", {"name": "b:0"}) == {"count": 1}
    finished = await wire.response()
    assert finished == {"jsonrpc": "2.0", "id": "b", "result": {"steps_done": 1}}


async def test_events_reach_subscribed_connections_only(daemon: DaemonProcess) -> None:
    listener = await daemon.connect("ndjson")
    bystander = await daemon.connect()
    publisher = await daemon.connect()
    await listener.result("test.subscribe", {"topic": "runs"})
    await bystander.result("test.subscribe", {"topic": "other"})
    assert await publisher.result("test.publish",
                                  {"topic": "runs", "payload": {"n": 1}}) == {"count": 1}
    event = await listener.recv()
    assert event == {"jsonrpc": "2.0", "method": "test/event",
                     "params": {"topic": "runs", "payload": {"n": 1}}}
    await bystander.result("daemon.status")
    assert bystander.notifications == []


async def test_cancel_arriving_with_its_request_still_gets_an_answer(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    slow = {"jsonrpc": "2.0", "id": 1, "method": "test.slow", "params": {"gate": "never-1"}}
    cancel = {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}}
    await wire.send_raw(wire.frame(json.dumps(slow).encode())
                        + wire.frame(json.dumps(cancel).encode()))
    assert (await wire.response())["error"]["code"] == -32800


async def test_a_batch_with_a_cancelled_item_still_answers_every_item(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.send([
        {"jsonrpc": "2.0", "id": 2, "method": "test.slow", "params": {"gate": "never-2"}},
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 2}},
        {"jsonrpc": "2.0", "id": 3, "method": "daemon.status"},
    ])
    replies = await wire.response()
    assert [r["id"] for r in replies] == [2, 3]
    assert replies[0]["error"]["code"] == -32800 and "result" in replies[1]


async def test_a_failing_notification_handler_is_logged(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.send({"jsonrpc": "2.0", "method": "test.fail"})
    assert "result" in await wire.request("daemon.status")
    log = (daemon.home / "daemon.log").read_text()
    assert "internal error" in log and "in test.fail" in log
