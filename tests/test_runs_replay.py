"""Replay from a recording, through the daemon: a recorded replay reproduces a run at zero
cost; a changed prompt diverges at exactly its node; hybrid goes live only there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import dot, events, read_json, run_to_end, visits
from .support import REPO, Wire

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = [pytest.mark.in_process, pytest.mark.usefixtures("executor")]

EXAMPLES = sorted([*(REPO / "examples" / "pipelines").glob("*.dot"),
                   *(REPO / "examples" / "recipes").glob("*.yaml")])
OFFLINE = {"human": {"auto_approve": True}, "retry": {"delay_scale": 0}}
# Priced, so that "zero cost" means something: the scripted provider at a real price.
PRICED = {**OFFLINE, "pricing": {"models": {"scripted/*": {"input_per_mtok": 3.0,
                                                            "output_per_mtok": 15.0}}}}
NOT_FOUND, CONFLICT, INVALID_PARAMS = -32001, -32004, -32602

REVIEW = """\
    digraph review {{
        graph [goal="Ship the release notes"]
        start [shape=Mdiamond]
        draft [prompt="Draft the notes for $goal"]
        check [prompt="{check}"]
        polish [prompt="Polish the notes"]
        done [shape=Msquare]
        start -> draft -> check -> polish -> done
    }}"""


async def calls_of(wire: Wire, run_id: str) -> list[dict[str, Any]]:
    """The run's calls, from its trace.jsonl (what a person or tool reads)."""
    detail = await wire.result("run.get", {"run_id": run_id})
    lines = (Path(detail["run_dir"]) / "trace.jsonl").read_text().splitlines()
    import json
    return [json.loads(line) for line in lines]


def outputs(detail: dict[str, Any]) -> dict[str, str]:
    """Every node's response.md and stdout.txt, by node."""
    root = Path(detail["run_dir"])
    return {f"{p.parent.name}/{p.name}": p.read_text()
            for p in sorted([*root.glob("*/response.md"), *root.glob("*/stdout.txt")])}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_a_recorded_replay_reproduces_every_example(daemon: InProcessDaemon,
                                                          path: Path) -> None:
    wire = await daemon.connect()
    pipeline = {"path": str(path)}
    original = await run_to_end(wire, pipeline, settings=PRICED)
    assert original["status"] == "completed"
    replay = await wire.result("run.start", {"replay": {"from_run": original["run_id"]},
                                             "wait": True})
    replayed = await wire.result("run.get", {"run_id": replay["run_id"]})
    assert replayed["run_id"] != original["run_id"]
    assert (replayed["status"], replayed["outcome"]) == (original["status"],
                                                         original["outcome"])
    assert replayed["completed_nodes"] == original["completed_nodes"]
    assert sorted(visits(replayed)) == sorted(visits(original))
    assert [s["status"] for s in replayed["stages"] if not s["branch"]] == [
        s["status"] for s in original["stages"] if not s["branch"]]
    assert replayed["context"] == original["context"]
    assert outputs(replayed) == outputs(original)
    assert replayed["cost_usd"] == 0.0
    assert original["cost_usd"] > 0 or not [c for c in await calls_of(wire, original["run_id"])
                                            if c["kind"] == "model"]
    served = await calls_of(wire, replay["run_id"])
    assert len(served) == len(await calls_of(wire, original["run_id"]))
    assert all(c["cost_usd"] == 0.0 for c in served)


async def test_a_changed_prompt_diverges_at_exactly_that_node(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    original = await run_to_end(wire, dot(REVIEW.format(check="Check the facts")),
                                settings=PRICED)
    await wire.result("run.subscribe", {"run_id": "*"})
    changed = dot(REVIEW.format(check="Check the facts and the tone"))
    summary = await wire.result("run.start", {
        "pipeline": changed, "settings": PRICED, "wait": True,
        "replay": {"from_run": original["run_id"], "mode": "recorded"}})
    assert (summary["status"], summary["outcome"]) == ("failed", "fail")
    reason = summary["failure_reason"]
    assert "node 'check'" in reason and "step 2" in reason
    assert "messages[1].content" in reason and "and the tone" in reason
    detail = await wire.result("run.get", {"run_id": summary["run_id"]})
    assert visits(detail) == ["start", "draft", "check"]  # nothing after the divergence
    [diverged] = events(wire, summary["run_id"], "ReplayDiverged")
    assert diverged["data"]["node_id"] == "check" and diverged["data"]["step"] == 2
    assert [d["path"] for d in diverged["data"]["differences"]] == ["messages[1].content"]
    trace = await calls_of(wire, summary["run_id"])
    assert (trace[-1]["node_id"], trace[-1]["finish_reason"]) == ("check", "error")


async def test_hybrid_goes_live_only_where_the_recording_does_not_match(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    original = await run_to_end(wire, dot(REVIEW.format(check="Check the facts")),
                                settings=PRICED)
    changed = dot(REVIEW.format(check="Check the facts and the tone"))
    hybrid = await run_to_end(wire, changed, settings=PRICED,
                              replay={"from_run": original["run_id"], "mode": "hybrid"})
    assert (hybrid["status"], hybrid["outcome"]) == ("completed", "success")
    trace = await calls_of(wire, hybrid["run_id"])
    live = [c["node_id"] for c in trace if c["cost_usd"] > 0]
    assert live == ["check"]
    assert [c["node_id"] for c in trace] == ["draft", "check", "polish"]
    # The live answer is this run's own; the others are the recording's.
    before = {c["node_id"]: c["response"]["text"] for c in await calls_of(
        wire, original["run_id"])}
    after = {c["node_id"]: c["response"]["text"] for c in trace}
    assert after["draft"] == before["draft"] and after["polish"] == before["polish"]
    assert after["check"] != before["check"]


async def test_replay_errors_are_clear(daemon: InProcessDaemon, tmp_path: Path) -> None:
    wire = await daemon.connect()
    missing = await wire.request("run.start", {"replay": {"from_run": "nope"}})
    assert missing["error"]["code"] == NOT_FOUND
    no_pipeline = await wire.request("run.start", {})
    assert no_pipeline["error"]["code"] == INVALID_PARAMS
    assert "replay.from_run" in str(no_pipeline["error"]["data"])
    quiet = await run_to_end(wire, dot(REVIEW.format(check="Check")), record="metadata_only")
    refused = await wire.request("run.start", {"replay": {"from_run": quiet["run_id"]}})
    assert refused["error"]["code"] == CONFLICT
    assert "metadata_only" in refused["error"]["message"]
    # A run still running has only part of its recording.
    slow = {"providers": {"scripted": {"type": "scripted", "latency_ms": 60_000}}}
    running = await wire.result("run.start", {"pipeline": dot(REVIEW.format(check="Check")),
                                              "settings": slow})
    for mode in ("recorded", "hybrid"):
        early = await wire.request("run.start", {"replay": {"from_run": running["run_id"],
                                                            "mode": mode}})
        assert early["error"]["code"] == CONFLICT
        assert "running" in early["error"]["message"]
    await wire.result("run.cancel", {"run_id": running["run_id"]})
    # Trial-set options without a trial set are a mistake, not something to ignore.
    for stray in ({"concurrency": 2}, {"early_stop": True}, {"pass_threshold": 0.5}):
        wrong = await wire.request("run.start", {"pipeline": dot(REVIEW.format(check="C")),
                                                 **stray})
        assert wrong["error"]["code"] == INVALID_PARAMS
        assert "give `trials`" in str(wrong["error"]["data"])
    # Their defaults are no mistake: typed clients send every field.
    plain = await wire.result("run.start", {"pipeline": dot(REVIEW.format(check="C")),
                                            "concurrency": 4, "early_stop": False,
                                            "pass_threshold": 1.0, "wait": True})
    assert plain["status"] == "completed" and "run_id" in plain


async def test_metadata_only_keeps_no_prompt_or_response_content(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    secret_prompt = "Summarise the merger of Zanzibar Ltd"
    source = dot(f"""\
        digraph quiet {{
            start [shape=Mdiamond]
            ask [prompt="{secret_prompt}"]
            done [shape=Msquare]
            start -> ask -> done
        }}""")
    detail = await run_to_end(wire, source, record="metadata_only")
    assert (detail["status"], detail["outcome"]) == ("completed", "success")
    root = Path(detail["run_dir"])
    assert not (root / "ask" / "prompt.md").exists()
    assert not (root / "ask" / "response.md").exists()
    for name in ("trace.jsonl", "ask/status.json"):
        assert "Zanzibar" not in (root / name).read_text(), name
    [call] = await calls_of(wire, detail["run_id"])
    assert call["request"]["messages"]["omitted"] is True
    assert call["request"]["messages"]["chars"] > 0
    assert call["input_tokens"] > 0 and call["finish_reason"] == "stop"
    trace = await wire.result("trace.get", {"trace_id": detail["trace_id"]})
    assert "Zanzibar" not in str(trace)
    assert read_json(detail, "config/launch.json")["record"] == "metadata_only"


async def test_a_tool_that_cannot_start_is_recorded_and_replayed(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    missing = dot("""\
        digraph missing {
            start [shape=Mdiamond]
            run_it [shape=parallelogram, tool_argv="[\\"no-such-program-7f3\\", \\"x\\"]",
                    retry_policy=none]
            done [shape=Msquare]
            start -> run_it -> done
        }""")
    original = await run_to_end(wire, missing)
    assert original["status"] == "failed"
    assert "cannot start 'no-such-program-7f3'" in original["failure_reason"]
    [call] = await calls_of(wire, original["run_id"])
    assert (call["node_id"], call["finish_reason"], call["response"]) == (
        "run_it", "error", None)
    replayed = await run_to_end(wire, missing, replay={"from_run": original["run_id"]})
    assert (replayed["status"], replayed["failure_reason"]) == (
        original["status"], original["failure_reason"])


async def test_a_replay_with_its_pipeline_given_keeps_the_recorded_inputs_and_settings(
        daemon: InProcessDaemon, tmp_path: Path) -> None:
    wire = await daemon.connect()
    path = tmp_path / "topic.dot"
    path.write_text("""\
        digraph topic {
            start [shape=Mdiamond]
            research [prompt="Research $topic"]
            done [shape=Msquare]
            start -> research -> done
        }""")
    original = await run_to_end(wire, {"path": str(path)}, settings=PRICED,
                                inputs={"topic": "tides"})
    replayed = await run_to_end(wire, {"path": str(path)}, settings=PRICED,
                                replay={"from_run": original["run_id"]})
    # Settings were given again here; the inputs come from the recording.
    assert (replayed["status"], replayed["context"]) == ("completed", original["context"])
    summary = await wire.result("run.start", {"pipeline": {"path": str(path)}, "wait": True,
                                              "replay": {"from_run": original["run_id"]}})
    assert summary["status"] == "completed"  # settings from the recording too


async def test_a_metadata_only_replay_divergence_names_paths_not_content(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    original = await run_to_end(wire, dot(REVIEW.format(check="Check the Zanzibar facts")))
    changed = dot(REVIEW.format(check="Check the Zanzibar facts and the Quokka tone"))
    summary = await wire.result("run.start", {
        "pipeline": changed, "wait": True, "record": "metadata_only",
        "replay": {"from_run": original["run_id"]}, "settings": OFFLINE})
    assert summary["status"] == "failed"
    assert "messages[1].content" in summary["failure_reason"]
    detail = await wire.result("run.get", {"run_id": summary["run_id"]})
    root = Path(detail["run_dir"])
    written = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file()
                       and "config" not in p.parts)
    assert b"Quokka" not in written and b"Quokka" not in str(detail).encode()
