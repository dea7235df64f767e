"""Human gates (wait.human) through the daemon: preset answers, auto-approve, answers through
human.answer with the question from InterviewStarted, refused answers, and a waiting run that
is cancelled and resumed."""

from __future__ import annotations

from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import (
    FAST,
    dot,
    events,
    next_event,
    of_type,
    response_to,
    run_to_end,
    send_request,
    visits,
)
from .support import DaemonProcess

CONFLICT = -32004

TWO_GATES = dot("""\
    digraph approvals {
        start [shape=Mdiamond]
        draft [prompt="Draft"]
        legal [shape=hexagon, label="Legal review"]
        boss [shape=hexagon, label="Final call"]
        rework [prompt="Rework"]
        ship [prompt="Ship"]
        shelve [prompt="Shelve"]
        done [shape=Msquare]
        start -> draft -> legal
        legal -> boss [label="[Y] Cleared"]
        legal -> rework [label="[N] Not cleared"]
        rework -> boss
        boss -> ship [label="S) Ship it"]
        boss -> shelve [label="H - Hold"]
        ship -> done
        shelve -> done
    }""")


def human(**settings: Any) -> dict[str, Any]:
    return {**FAST, "human": settings}


@pytest.mark.in_process
async def test_preset_answers_are_used_in_order_by_label_or_target(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    # The first answer is a label (accelerator and case ignored), the second a target id.
    detail = await run_to_end(wire, TWO_GATES,
                              settings=human(answers=["not CLEARED", "shelve"]))
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert visits(detail) == ["start", "draft", "legal", "rework", "boss", "shelve", "done"]
    assert events(wire, detail["run_id"], "InterviewStarted") == []  # nobody was asked
    answered = events(wire, detail["run_id"], "InterviewCompleted")
    assert [(e["data"]["stage"], e["data"]["answer"]) for e in answered] == [
        ("legal", "not CLEARED"), ("boss", "shelve")]
    assert detail["context"]["human.gate.selected"] == "H"


@pytest.mark.in_process
async def test_auto_approve_takes_the_first_option_once_the_answers_run_out(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, TWO_GATES, settings=human(answers=["N"],
                                                              auto_approve=True))
    assert visits(detail) == ["start", "draft", "legal", "rework", "boss", "ship", "done"]
    assert detail["context"]["human.gate.label"] == "S) Ship it"


@pytest.mark.in_process
async def test_answers_through_human_answer_and_refused_answers(
        daemon: InProcessDaemon) -> None:
    runner = await daemon.connect()
    person = await daemon.connect()
    await runner.result("run.subscribe", {"run_id": "*"})
    start = await send_request(runner, "run.start",
                               {"pipeline": TWO_GATES, "settings": FAST, "wait": True})
    first = await next_event(runner, of_type("InterviewStarted", stage="legal"))
    run_id, question = first["run_id"], first["data"]["question"]
    assert [(o["key"], o["target"]) for o in question["options"]] == [
        ("Y", "boss"), ("N", "rework")]
    waiting = await person.result("run.list", {"status": ["waiting"]})
    assert [r["run_id"] for r in waiting["runs"]] == [run_id]

    wrong = await person.request("human.answer", {"run_id": run_id,
                                                  "question_id": "nope", "answer": "Y"})
    assert wrong["error"]["code"] == CONFLICT
    await person.result("human.answer", {"run_id": run_id,
                                         "question_id": question["question_id"],
                                         "answer": "y"})
    second = await next_event(runner, of_type("InterviewStarted", stage="boss"))
    assert second["data"]["question"]["question_id"] != question["question_id"]
    # The first question is closed: answering it again is refused.
    stale = await person.request("human.answer", {"run_id": run_id,
                                                  "question_id": question["question_id"],
                                                  "answer": "N"})
    assert stale["error"]["code"] == CONFLICT
    await person.result("human.answer", {
        "run_id": run_id, "question_id": second["data"]["question"]["question_id"],
        "answer": "H"})
    summary = (await response_to(runner, start))["result"]
    assert summary["status"] == "completed"
    detail = await person.result("run.get", {"run_id": run_id})
    assert visits(detail) == ["start", "draft", "legal", "boss", "shelve", "done"]
    late = await person.request("human.answer", {
        "run_id": run_id, "question_id": second["data"]["question"]["question_id"],
        "answer": "S"})
    assert late["error"]["code"] == CONFLICT


async def test_a_waiting_run_cancelled_and_resumed_asks_again(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    started = await wire.result("run.start", {"pipeline": TWO_GATES, "settings": FAST})
    run_id = started["run_id"]
    await next_event(wire, of_type("InterviewStarted", stage="legal"))
    cancelled = await wire.result("run.cancel", {"run_id": run_id})
    assert (cancelled["status"], cancelled["resumable"]) == ("cancelled", True), (
        (daemon.home / "daemon.log").read_text())
    assert (await wire.result("run.get", {"run_id": run_id}))["question"] is None

    person = await daemon.connect()
    resume = await send_request(wire, "run.resume", {"run_id": run_id, "wait": True})
    asked = await next_event(wire, of_type("InterviewStarted", stage="legal"))
    assert asked["run_id"] == run_id
    await person.result("human.answer", {
        "run_id": run_id, "answer": "Y",
        "question_id": asked["data"]["question"]["question_id"]})
    again = await next_event(wire, of_type("InterviewStarted", stage="boss"))
    await person.result("human.answer", {
        "run_id": run_id, "answer": "S",
        "question_id": again["data"]["question"]["question_id"]})
    summary = (await response_to(wire, resume))["result"]
    assert (summary["status"], summary["outcome"]) == ("completed", "success")
    detail = await person.result("run.get", {"run_id": run_id})
    # The gate that was waiting when the run was cancelled has one stage: the answered one.
    assert visits(detail) == ["start", "draft", "legal", "boss", "ship", "done"]
