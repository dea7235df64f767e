"""The question types of human gates (`human.type`, attractor §6.2) through the daemon:
yes_no, confirmation and freeform answered through human.answer, preset answers and
auto-approve for every type, timeouts with a default, refused yes/no answers, and the lint
rules for unknown types and defaults."""

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
    stages_of,
    visits,
    where,
)
from .support import REPO, Wire

pytestmark = pytest.mark.in_process

INVALID_PARAMS = -32602
GATES = {"path": str(REPO / "examples" / "pipelines" / "gates.dot")}
ACCEPTED = "yes, y, true or no, n, false"

# The No edge weighs more, so that only the answer can make the run take the Yes edge.
YES_NO = dot("""\
    digraph yes_no {
        start [shape=Mdiamond]
        ask [shape=hexagon, human.type=yes_no, label="Deploy?"]
        deploy [prompt="Deploy"]
        hold [prompt="Hold"]
        done [shape=Msquare]
        start -> ask
        ask -> hold [label="[N] No", weight=1]
        ask -> deploy [label="Yes"]
        deploy -> done
        hold -> done
    }""")
# A refused confirmation takes the fail edge; its retries would only ask again.
CONFIRM = dot("""\
    digraph confirm {
        start [shape=Mdiamond]
        ask [shape=hexagon, human.type=confirmation, label="Publish now?", max_retries=2]
        publish [prompt="Publish"]
        shelve [prompt="Shelve"]
        done [shape=Msquare]
        start -> ask
        ask -> publish
        ask -> shelve [condition="outcome=fail"]
        publish -> done
        shelve -> done
    }""")
FREEFORM = dot("""\
    digraph notes {
        start [shape=Mdiamond]
        ask [shape=hexagon, human.type=FreeForm, label="Anything to add?"]
        skip [prompt="Nothing to add"]
        write [prompt="Write the notes in"]
        done [shape=Msquare]
        start -> ask
        ask -> skip [condition="context.ask.answer=nothing"]
        ask -> write
        skip -> done
        write -> done
    }""")


async def asked(wire: Wire, stage: str) -> tuple[str, dict[str, Any]]:
    """The run id and question of the next InterviewStarted of `stage`."""
    event = await next_event(wire, of_type("InterviewStarted", stage=stage))
    return event["run_id"], event["data"]["question"]


async def answer(wire: Wire, run_id: str, question: dict[str, Any],
                 text: str) -> dict[str, Any]:
    """The reply to human.answer."""
    return await wire.request("human.answer", {"run_id": run_id, "answer": text,
                                               "question_id": question["question_id"]})


async def answered_run(daemon: InProcessDaemon, pipeline: dict[str, Any], stage: str,
                       text: str) -> dict[str, Any]:
    """Start a run, answer its gate's question with `text` through human.answer, and
    return the run's detail once it ended."""
    runner, person = await daemon.connect(), await daemon.connect()
    await runner.result("run.subscribe", {"run_id": "*"})
    start = await send_request(runner, "run.start",
                               {"pipeline": pipeline, "settings": FAST, "wait": True})
    run_id, question = await asked(runner, stage)
    assert "result" in await answer(person, run_id, question, text)
    assert (await response_to(runner, start))["result"]["status"] == "completed"
    return await person.result("run.get", {"run_id": run_id})


def answers_in(detail: dict[str, Any], *nodes: str) -> dict[str, Any]:
    """The human.gate.* keys and the `<node>.answer` keys of these nodes."""
    return {key: value for key, value in detail["context"].items()
            if key.startswith("human.gate.") or key in {f"{n}.answer" for n in nodes}}


def gate_updates(detail: dict[str, Any], node: str) -> dict[str, Any]:
    """What a gate's (first) stage put in the context."""
    return stages_of(detail, node)[0]["outcome"]["context_updates"]


async def test_a_yes_no_question_refuses_other_answers_and_routes_on_yes_and_no(
        daemon: InProcessDaemon) -> None:
    runner, person = await daemon.connect(), await daemon.connect()
    await runner.result("run.subscribe", {"run_id": "*"})
    start = await send_request(runner, "run.start",
                               {"pipeline": YES_NO, "settings": FAST, "wait": True})
    run_id, question = await asked(runner, "ask")
    assert (question["type"], question["text"], question["default"]) == (
        "yes_no", "Deploy?", None)
    assert question["options"] == [{"key": "Y", "label": "Yes", "target": "deploy"},
                                   {"key": "N", "label": "No", "target": "hold"}]

    refused = await answer(person, run_id, question, "maybe")
    assert refused["error"]["code"] == INVALID_PARAMS
    assert "'maybe'" in refused["error"]["message"] and ACCEPTED in refused["error"]["message"]
    assert refused["error"]["data"][0]["loc"] == ["answer"]
    waiting = await person.result("run.get", {"run_id": run_id})
    assert waiting["status"] == "waiting"
    assert waiting["question"]["question_id"] == question["question_id"]
    assert waiting["question"]["type"] == "yes_no"

    assert "result" in await answer(person, run_id, question, " TRUE ")
    assert (await response_to(runner, start))["result"]["status"] == "completed"
    detail = await person.result("run.get", {"run_id": run_id})
    assert visits(detail) == ["start", "ask", "deploy", "done"]
    assert answers_in(detail, "ask") == {
        "human.gate.selected": "Y", "human.gate.label": "Yes", "human.gate.answer": "yes",
        "ask.answer": "yes"}
    assert stages_of(detail, "ask")[0]["outcome"]["preferred_label"] == "yes"

    detail = await answered_run(daemon, YES_NO, "ask", "n")
    assert visits(detail) == ["start", "ask", "hold", "done"]
    assert answers_in(detail, "ask") == {
        "human.gate.selected": "N", "human.gate.label": "No", "human.gate.answer": "no",
        "ask.answer": "no"}


async def test_a_refused_confirmation_fails_the_gate_and_takes_the_fail_edge(
        daemon: InProcessDaemon) -> None:
    refused = await answered_run(daemon, CONFIRM, "ask", "No")
    # One attempt only: asking again is not what a "no" means.
    assert visits(refused) == ["start", "ask", "shelve", "done"]
    [stage] = stages_of(refused, "ask")
    assert stage["status"] == "fail"
    assert stage["outcome"]["failure_reason"] == "not confirmed"
    assert refused["context"]["human.gate.answer"] == "no"
    assert refused["context"]["ask.answer"] == "no"

    confirmed = await answered_run(daemon, CONFIRM, "ask", "y")
    assert visits(confirmed) == ["start", "ask", "publish", "done"]
    assert answers_in(confirmed, "ask") == {
        "human.gate.selected": "Y", "human.gate.label": "Yes", "human.gate.answer": "yes",
        "ask.answer": "yes"}


async def test_a_refused_confirmation_without_a_fail_edge_fails_the_run(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""\
        digraph g {
            start [shape=Mdiamond]
            ask [shape=hexagon, human.type=confirmation, label="Go?"]
            done [shape=Msquare]
            start -> ask -> done
        }"""), settings={**FAST, "human": {"answers": ["false"]}})
    assert (detail["status"], detail["failure_reason"]) == ("failed", "not confirmed")


async def test_a_freeform_answer_reaches_the_context_as_typed(daemon: InProcessDaemon) -> None:
    runner, person = await daemon.connect(), await daemon.connect()
    await runner.result("run.subscribe", {"run_id": "*"})
    start = await send_request(runner, "run.start",
                               {"pipeline": FREEFORM, "settings": FAST, "wait": True})
    run_id, question = await asked(runner, "ask")
    assert (question["type"], question["options"]) == ("freeform", [])
    text = "  Mention the Q3 numbers,\nand thank the team  "
    assert "result" in await answer(person, run_id, question, text)
    await response_to(runner, start)
    detail = await person.result("run.get", {"run_id": run_id})
    assert visits(detail) == ["start", "ask", "write", "done"]
    assert answers_in(detail, "ask") == {
        "human.gate.selected": "", "human.gate.label": "", "human.gate.answer": text,
        "ask.answer": text}
    assert events(runner, run_id, "InterviewCompleted")[0]["data"]["answer"] == text

    # The answer steers a condition on `context.ask.answer`.
    detail = await answered_run(daemon, FREEFORM, "ask", "nothing")
    assert visits(detail) == ["start", "ask", "skip", "done"]


async def test_a_timeout_takes_the_default_of_a_yes_no_and_a_freeform_gate(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    detail = await run_to_end(wire, dot("""\
        digraph g {
            start [shape=Mdiamond]
            note [shape=hexagon, human.type=freeform, label="Notes?", timeout="50ms",
                  human.default_choice="no notes"]
            ask [shape=hexagon, human.type=yes_no, label="Deploy?", timeout="50ms",
                 human.default_choice=N]
            deploy [prompt="Deploy"]
            hold [prompt="Hold"]
            done [shape=Msquare]
            start -> note -> ask
            ask -> deploy [label="Yes", weight=1]
            ask -> hold [label="No"]
            deploy -> done
            hold -> done
        }"""))
    assert visits(detail) == ["start", "note", "ask", "hold", "done"]
    assert detail["context"]["note.answer"] == "no notes"
    assert answers_in(detail, "ask") == {
        "human.gate.selected": "N", "human.gate.label": "No", "human.gate.answer": "no",
        "ask.answer": "no"}
    run_id = detail["run_id"]
    # Each gate asked (the yes/no default shown as yes or no), and then timed out.
    started = events(wire, run_id, "InterviewStarted")
    assert [(e["data"]["stage"], e["data"]["question"]["default"]) for e in started] == [
        ("note", "no notes"), ("ask", "no")]
    assert [e["data"]["stage"] for e in events(wire, run_id, "InterviewTimeout")] == [
        "note", "ask"]
    assert events(wire, run_id, "InterviewCompleted") == []


async def test_a_yes_no_default_that_is_neither_warns_and_fails_on_timeout(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph g {
            start [shape=Mdiamond]
            ask [shape=hexagon, human.type=confirmation, timeout="50ms",
                 human.default_choice=later, max_retries=3]
            done [shape=Msquare]
            start -> ask -> done
        }""")
    checked = await wire.result("pipeline.validate", {"pipeline": pipeline})
    [warning] = [d for d in checked["diagnostics"] if d["rule"] == "human_default_choice_valid"]
    assert (warning["severity"], warning["node"]) == ("warning", "ask")
    assert (warning["line"], warning["col"]) == where(pipeline["source"],
                                                      "human.default_choice=later")
    detail = await run_to_end(wire, pipeline)
    assert detail["status"] == "failed"
    assert detail["failure_reason"] == ("human.default_choice 'later' is not an answer to a "
                                        f"yes/no question: accepted are {ACCEPTED} (any case)")
    assert len(stages_of(detail, "ask")) == 1  # a default does not change on a retry


async def test_preset_answers_for_every_type(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    presets = ["Add a summary", "No", "h", "n"]
    detail = await run_to_end(wire, GATES, settings={**FAST, "human": {"answers": presets}})
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert visits(detail) == ["start", "draft", "notes", "edit", "charts", "format", "html",
                              "publish", "shelve", "exit"]
    run_id = detail["run_id"]
    assert events(wire, run_id, "InterviewStarted") == []  # nobody was asked
    completed = events(wire, run_id, "InterviewCompleted")
    assert [e["data"]["answer"] for e in completed] == presets
    assert {key: detail["context"][key] for key in (
        "notes.answer", "charts.answer", "format.answer", "publish.answer")} == {
        "notes.answer": "Add a summary", "charts.answer": "no", "format.answer": "h",
        "publish.answer": "no"}
    # A freeform gate clears the choice of the gate before it.
    assert gate_updates(detail, "notes") == {
        "human.gate.selected": "", "human.gate.label": "",
        "human.gate.answer": "Add a summary", "notes.answer": "Add a summary"}
    assert gate_updates(detail, "format") == {
        "human.gate.selected": "H", "human.gate.label": "[H] HTML", "human.gate.answer": "h",
        "format.answer": "h"}


async def test_auto_approve_answers_every_type(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, GATES, settings={**FAST, "human": {"auto_approve": True}})
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    assert visits(detail) == ["start", "draft", "notes", "edit", "charts", "plot", "format",
                              "pdf", "publish", "exit"]
    assert {key: detail["context"][key] for key in (
        "notes.answer", "charts.answer", "format.answer", "publish.answer")} == {
        "notes.answer": "auto-approved", "charts.answer": "yes", "format.answer": "P",
        "publish.answer": "yes"}

    # Preset answers first, then auto-approve.
    detail = await run_to_end(wire, GATES, settings={
        **FAST, "human": {"answers": ["", "no"], "auto_approve": True}})
    assert visits(detail)[2:7] == ["notes", "edit", "charts", "format", "pdf"]
    assert detail["context"]["notes.answer"] == ""


async def test_a_preset_that_is_not_yes_or_no_fails_the_gate(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""\
        digraph g {
            start [shape=Mdiamond]
            ask [shape=hexagon, human.type=yes_no, max_retries=2]
            done [shape=Msquare]
            start -> ask
            ask -> done [label="Yes"]
            ask -> done [label="No"]
        }"""), settings={**FAST, "human": {"answers": ["Deploy", "yes"]}})
    assert detail["status"] == "failed"
    assert detail["failure_reason"] == ("answer 'Deploy' is not an answer to a yes/no "
                                        f"question: accepted are {ACCEPTED} (any case)")
    # A retry would only take the next preset answer meant for another gate.
    assert len(stages_of(detail, "ask")) == 1


async def test_an_unknown_human_type_warns_and_asks_a_multiple_choice(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    await wire.result("run.subscribe", {"run_id": "*"})
    pipeline = dot("""\
        digraph g {
            start [shape=Mdiamond]
            ask [shape=hexagon, human.type=rating, label="Which?"]
            a [prompt="A"]
            b [prompt="B"]
            done [shape=Msquare]
            start -> ask
            ask -> a [label="[A] Alpha"]
            ask -> b [label="[B] Beta"]
            a -> done
            b -> done
        }""")
    checked = await wire.result("pipeline.validate", {"pipeline": pipeline})
    assert checked["valid"]
    [warning] = [d for d in checked["diagnostics"] if d["rule"] == "human_type_known"]
    assert (warning["severity"], warning["node"]) == ("warning", "ask")
    assert (warning["line"], warning["col"]) == where(pipeline["source"], "human.type=rating")
    assert warning["fix"] == "use one of multiple_choice, yes_no, confirmation, freeform"

    start = await send_request(wire, "run.start",
                               {"pipeline": pipeline, "settings": FAST, "wait": True})
    run_id, question = await asked(wire, "ask")
    assert question["type"] == "multiple_choice"
    assert [o["key"] for o in question["options"]] == ["A", "B"]
    person = await daemon.connect()
    assert "result" in await answer(person, run_id, question, "beta")
    await response_to(wire, start)
    detail = await person.result("run.get", {"run_id": run_id})
    assert visits(detail) == ["start", "ask", "b", "done"]
    assert answers_in(detail, "ask") == {
        "human.gate.selected": "B", "human.gate.label": "[B] Beta",
        "human.gate.answer": "beta", "ask.answer": "beta"}
