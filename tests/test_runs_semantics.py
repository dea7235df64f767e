"""Engine semantics where the spec leaves room, as the daemon carries them out."""

from __future__ import annotations

import json

import pytest

from .inprocess import InProcessDaemon
from .runs_support import dot, read_json, run_file, run_to_end, stages_of, visits

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = [pytest.mark.in_process, pytest.mark.usefixtures("executor")]


# A tool that fails on its first visit and passes on the next (its stage dir persists).
PASS_ON_SECOND_VISIT = ('test -f \\"$OSTINATO_STAGE_DIR/seen\\" && exit 0; '
                        'touch \\"$OSTINATO_STAGE_DIR/seen\\"; exit 1')


async def test_a_dead_end_checks_goal_gates_like_an_exit(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot(f"""
        digraph g {{
            start [shape=Mdiamond]
            build [prompt="b", goal_gate=true, scripted.status=partial_success]
            gate  [shape=parallelogram, goal_gate=true, retry_target=gate,
                   tool_command="{PASS_ON_SECOND_VISIT}"]
            wrap  [prompt="w"]
            start -> build -> gate
            gate -> wrap [condition="outcome=fail"]
            exit [shape=Msquare]
        }}"""))
    # `wrap` is a dead end reached with the gate failed: the run goes back to the gate,
    # which passes on its second visit.
    assert visits(detail) == ["start", "build", "gate", "wrap", "gate"]
    assert detail["outcome"] == "success"


async def test_an_unsatisfied_gate_at_a_dead_end_fails_the_run(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""
        digraph g {
            start [shape=Mdiamond]
            gate  [prompt="g", goal_gate=true, scripted.status=fail]
            wrap  [prompt="w"]
            exit  [shape=Msquare]
            start -> gate
            gate -> wrap [condition="outcome=fail"]
        }"""))
    assert detail["status"] == "failed"
    assert "goal gate" in detail["failure_reason"]


async def test_an_old_preferred_label_does_not_steer_a_later_diamond(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""
        digraph g {
            start [shape=Mdiamond]
            ask   [shape=hexagon, label="Which?"]
            plain [prompt="p"]
            fork  [shape=diamond]
            left  [prompt="l"]
            right [prompt="r"]
            exit  [shape=Msquare]
            start -> ask
            ask -> plain [label="Left"]
            plain -> fork
            fork -> left  [condition="preferred_label=Left"]
            fork -> right [condition="preferred_label!=Left"]
            left -> exit
            right -> exit
        }"""), settings={"human": {"answers": ["Left"]}})
    assert "right" in visits(detail) and "left" not in visits(detail)


async def test_a_human_gate_timeout_takes_the_default_choice(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""
        digraph g {
            start [shape=Mdiamond]
            ask   [shape=hexagon, label="Ship?", timeout="50ms", human.default_choice=hold]
            ship  [prompt="s"]
            hold  [prompt="h"]
            exit  [shape=Msquare]
            start -> ask
            ask -> ship [label="[S] Ship"]
            ask -> hold [label="[H] Hold"]
            ship -> exit
            hold -> exit
        }"""))
    assert visits(detail)[2] == "hold" and detail["outcome"] == "success"


async def test_a_fan_in_reads_branch_results_kept_as_an_artifact(
        daemon: InProcessDaemon) -> None:
    # Each branch leaves a 60 KB draft in its context: parallel.results passes 100 KB.
    big = '{\\"draft\\": \\"' + "x" * 60_000 + '\\"}'
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot(f"""
        digraph g {{
            start [shape=Mdiamond]
            fan   [shape=component]
            a [prompt="a", scripted.context_updates="{big}"]
            b [prompt="b", scripted.context_updates="{big}"]
            c [prompt="c", scripted.context_updates="{big}"]
            join  [shape=tripleoctagon]
            exit  [shape=Msquare]
            start -> fan
            fan -> a
            fan -> b
            fan -> c
            a -> join
            b -> join
            c -> join
            join -> exit
        }}"""))
    assert detail["outcome"] == "success"
    ref = detail["context"]["parallel.results"]
    assert set(ref) >= {"artifact_ref", "size_bytes"}
    stored = json.loads(run_file(detail, "artifacts", f"{ref['artifact_ref']}.json").read_text())
    assert [r["id"] for r in stored] == ["a", "b", "c"]
    assert detail["context"]["parallel.fan_in.best_id"] == "a"


async def test_a_configuration_error_is_not_retried_by_the_node(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot("""
        digraph g {
            start [shape=Mdiamond]
            ask   [prompt="p", llm_provider=nowhere, max_retries=3]
            exit  [shape=Msquare]
            start -> ask -> exit
        }"""))
    assert detail["status"] == "failed"
    assert len(stages_of(detail, "ask")) == 1  # retrying cannot conjure a provider


async def test_secret_looking_inputs_are_not_written_and_can_be_given_again(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    secret = "hunter2-very-secret"
    detail = await run_to_end(wire, dot("""
        digraph g {
            start [shape=Mdiamond]
            ask   [prompt="Log in with $db_password"]
            exit  [shape=Msquare]
            start -> ask -> exit
        }"""), inputs={"db_password": secret})
    assert detail["outcome"] == "success"
    home_bytes = b"".join(p.read_bytes() for p in daemon.home.rglob("*") if p.is_file())
    assert secret.encode() not in home_bytes
    assert "[redacted]" in run_file(detail, "ask", "prompt.md").read_text()
    assert read_json(detail, "config", "launch.json")["inputs"]["db_password"] == "[redacted]"
