"""Pipelines with real models, through the official openai and anthropic SDKs against the
fake API on 127.0.0.1: context flows into prompts, the model chooses routes with a
structured verdict (JSON-schema output, a forced function or a forced tool), invalid
verdicts are retried and then fail clearly, a status.json decides, a fan-in's model ranks,
and a recorded replay reproduces all of it at zero cost."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .fakes.llm_server import FakeLLMServer, Reply, SeenRequest
from .inprocess import InProcessDaemon
from .runs_support import FAST, dot, events, run_to_end, stages_of, trace, visits
from .support import WAIT

# Every test here runs once on each executor (tests/conftest.py::executor).
pytestmark = [pytest.mark.in_process, pytest.mark.usefixtures("executor")]


# (provider settings, model) per way of asking for a verdict.
VENDORS: dict[str, tuple[dict[str, Any], str]] = {
    "openai-json_schema": ({"type": "openai", "structured_output": "json_schema"},
                           "gpt-4o-mini"),
    "openai-tool": ({"type": "openai", "structured_output": "tool"}, "gpt-4o-mini"),
    "anthropic-tool": ({"type": "anthropic"}, "claude-haiku-4-5"),
}
# Longer than last_response's 200 characters: only the whole answer carries its last step.
PLAN = ("1. Take n.\n2. Return False when n is below 2.\n3. Try every divisor from 2 to the "
        "square root of n.\n4. Return False at the first one that divides n.\n5. Otherwise "
        "return True.\n6. Finally: add doctests for 1, 7 and 9 (the reviewer checks them).")


ONE_CALL = dot("""\
    digraph once {
        start [shape=Mdiamond]
        done [shape=Msquare]
        ask [prompt="Hello"]
        start -> ask -> done
    }""")


def settings(server: FakeLLMServer, vendor: str) -> dict[str, Any]:
    """Run settings: the vendor as provider `llm`, at the fake."""
    entry, model = VENDORS[vendor]
    suffix = "" if entry["type"] == "anthropic" else "/v1"
    return {**FAST, "default_provider": "llm", "providers": {"llm": {
        **entry, "base_url": server.url + suffix, "api_key_env": None, "model": model,
        "retry": {"max_attempts": 3, "initial_delay_ms": 1, "jitter": False}}}}


def last_user(seen: SeenRequest) -> str:
    """The prompt of a request, in either vendor's shape."""
    content = [m for m in seen.body["messages"] if m["role"] == "user"][-1]["content"]
    return content if isinstance(content, str) else content[0]["text"]


def verdict(response: str, status: str = "success", label: str = "",
            reason: str = "") -> dict[str, Any]:
    return {"response": response, "status": status, "preferred_label": label,
            "suggested_next_ids": [], "context_updates": [], "notes": "",
            "failure_reason": reason}


class Team:
    """The model behind the review loop: its answers depend on what it is asked."""

    def __init__(self) -> None:
        self.implement_prompts: list[str] = []
        self.code = ""

    def __call__(self, seen: SeenRequest) -> Reply:
        prompt = last_user(seen)
        if prompt.startswith("Plan"):
            return Reply(text=PLAN)
        if prompt.startswith("Implement"):
            self.implement_prompts.append(prompt)
            feedback = prompt.split("Feedback:")[-1]
            self.code = "def is_prime(n): ..." if "doctests" not in feedback else \
                "def is_prime(n):\n    '''>>> is_prime(7)\n    True'''"
            return Reply(text=self.code)
        if prompt.startswith("Say what"):
            return Reply(text="Add the doctests.")
        assert prompt.startswith("Review")
        # The review fails unless the implementer was shown the plan's whole answer.
        if not self.implement_prompts or PLAN not in self.implement_prompts[-1]:
            return Reply(structured=verdict("I never saw the plan", "fail",
                                            reason="the implementation ignores the plan"))
        if ">>>" not in self.code:
            return Reply(structured=verdict("No doctests yet.", label="Fix"))
        return Reply(structured=verdict("Correct, with doctests.", label="Approve"))


LOOP = """\
digraph review_loop {
    graph [goal="Write is_prime(n)"]
    start [shape=Mdiamond]
    done [shape=Msquare]
    plan [prompt="Plan: $goal"]
    implement [prompt="Implement this plan:\\n%s\\nFeedback: ${fix.response:-none}"]
    review [prompt="Review the implementation"]
    fix [prompt="Say what to fix"]
    start -> plan -> implement -> review
    review -> done [label="Approve"]
    review -> fix [label="Fix"]
    fix -> implement
}
"""


@pytest.fixture
async def team_api() -> AsyncIterator[tuple[FakeLLMServer, Team]]:
    team = Team()
    async with FakeLLMServer(responder=team) as server:
        yield server, team


async def recorded_replay(wire: Any, run_id: str) -> dict[str, Any]:
    """A recorded replay of a run, with its own pipeline, inputs and settings."""
    summary = await wire.result("run.start", {"replay": {"from_run": run_id,
                                                         "mode": "recorded"}, "wait": True})
    return await wire.result("run.get", {"run_id": summary["run_id"]})


def asked_for_verdict(seen: SeenRequest) -> bool:
    """Whether the request asks for the node_outcome structure, in its vendor's way."""
    body = seen.body
    if "response_format" in body:
        schema = body["response_format"]["json_schema"]
        return schema["name"] == "node_outcome" and schema["strict"] is True
    choice = body.get("tool_choice") or {}
    return choice.get("name") == "node_outcome" or \
        choice.get("function", {}).get("name") == "node_outcome"


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_context_flows_and_the_model_chooses_the_route(
        vendor: str, daemon: InProcessDaemon, team_api: tuple[FakeLLMServer, Team]) -> None:
    server, team = team_api
    wire = await daemon.connect()
    detail = await run_to_end(wire, dot(LOOP % "${plan.response}"),
                              settings=settings(server, vendor))
    assert (detail["status"], detail["outcome"]) == ("completed", "success"), \
        detail["failure_reason"]
    # The review asked for a fix once, then approved: routes the model chose by label.
    assert visits(detail) == ["start", "plan", "implement", "review", "fix", "implement",
                              "review", "done"]
    assert [s["outcome"]["preferred_label"] for s in stages_of(detail, "review")] == [
        "Fix", "Approve"]
    # The implementer saw the plan's whole answer, then the fixer's too.
    assert all(PLAN in prompt for prompt in team.implement_prompts)
    assert team.implement_prompts[1].endswith("Feedback: Add the doctests.")
    # Only the labelled node asked for a verdict, in its vendor's native way.
    kinds = [(last_user(seen).split()[0], asked_for_verdict(seen)) for seen in server.requests]
    assert kinds == [("Plan:", False), ("Implement", False), ("Review", True),
                     ("Say", False), ("Implement", False), ("Review", True)]
    review = [c for c in trace(detail) if c["node_id"] == "review"]
    assert review[-1]["request"]["output"]["name"] == "node_outcome"
    assert review[-1]["response"]["structured"]["preferred_label"] == "Approve"
    assert (Path(detail["run_dir"]) / "review" / "response.md").read_text() == \
        "Correct, with doctests."
    assert detail["context"]["plan.response"] == PLAN  # kept whole: a prompt reads it

    # A recorded replay reproduces the run exactly, at zero cost and with no model call.
    before = len(server.requests)
    replay = await recorded_replay(wire, detail["run_id"])
    assert (replay["status"], replay["cost_usd"]) == ("completed", 0.0), \
        replay["failure_reason"]
    assert len(server.requests) == before
    diff = await wire.result("run.diff", {"a": detail["run_id"], "b": replay["run_id"]})
    assert diff["identical"] is True, diff["first_divergence"]


async def test_without_the_plan_the_reviewer_fails_the_run(
        daemon: InProcessDaemon, team_api: tuple[FakeLLMServer, Team]) -> None:
    server, _ = team_api
    wire = await daemon.connect()
    # last_response holds only the first 200 characters of the plan.
    detail = await run_to_end(wire, dot(LOOP % "${last_response}"),
                              settings=settings(server, "openai-json_schema"))
    assert (detail["status"], detail["failure_reason"]) == (
        "failed", "the implementation ignores the plan")
    assert visits(detail)[-1] == "review"


INVALID = dot("""\
    digraph invalid {
        start [shape=Mdiamond]
        done [shape=Msquare]
        judge [prompt="Judge it", max_retries=1]
        start -> judge
        judge -> done [condition="outcome=success"]
    }""")


@pytest.mark.parametrize(("replies", "reason"), [
    ([Reply(structured={**verdict("ok"), "status": "done"})] * 2,
     "invalid verdict: status: 'done' is not one of ['success', 'partial_success', 'retry', "
     "'fail']"),
    ([Reply(text="Looks fine to me")] * 2,
     "invalid verdict: the model gave no node_outcome: the reply is not JSON"),
])
async def test_an_invalid_verdict_is_retried_then_fails_with_what_was_wrong(
        daemon: InProcessDaemon, replies: list[Reply], reason: str) -> None:
    async with FakeLLMServer() as server:
        server.queue(*replies)
        wire = await daemon.connect()
        await wire.result("run.subscribe", {"run_id": "*"})
        detail = await run_to_end(wire, INVALID,
                                  settings=settings(server, "openai-json_schema"))
    assert detail["status"] == "failed"
    assert detail["failure_reason"].startswith(reason), detail["failure_reason"]
    attempts = stages_of(detail, "judge")
    assert [s["status"] for s in attempts] == ["fail", "fail"]
    failed = events(wire, detail["run_id"], "StageFailed")
    assert [e["data"]["will_retry"] for e in failed] == [True, False]


STATUS_FILE = dot("""\
    digraph external {
        start [shape=Mdiamond]
        done [shape=Msquare]
        work [prompt="Run the migration"]
        ok [prompt="Announce it"]
        rollback [prompt="Roll it back"]
        start -> work
        work -> ok [condition="outcome=success"]
        work -> rollback [condition="outcome=fail"]
        ok -> done
        rollback -> done
    }""")


async def test_a_status_file_written_during_the_call_decides_and_replays(
        daemon: InProcessDaemon) -> None:
    def agent(seen: SeenRequest) -> Reply:
        # An external agent that the node drives writes the status file of the contract.
        if last_user(seen) == "Run the migration":
            for stage in daemon.home.glob("runs/*/work"):
                (stage / "status.json").write_text(json.dumps(
                    {"outcome": "fail", "failure_reason": "migration 12 failed",
                     "context_updates": {"migration": 12}}))
        return Reply(text="done")

    async with FakeLLMServer(responder=agent) as server:
        wire = await daemon.connect()
        detail = await run_to_end(wire, STATUS_FILE,
                                  settings=settings(server, "openai-json_schema"))
        assert visits(detail) == ["start", "work", "rollback", "done"]
        assert detail["context"]["migration"] == 12
        work = next(c for c in trace(detail) if c["node_id"] == "work")
        assert work["response"]["status_file"]["outcome"] == "fail"
        calls = len(server.requests)
        replay = await recorded_replay(wire, detail["run_id"])
        assert len(server.requests) == calls
    assert visits(replay) == visits(detail) and replay["cost_usd"] == 0.0
    assert replay["context"]["migration"] == 12


RANKED = dot("""\
    digraph ranked {
        start [shape=Mdiamond]
        done [shape=Msquare]
        fan [shape=component]
        formal [prompt="Title, formally"]
        playful [prompt="Title, playfully"]
        pick [shape=tripleoctagon, prompt="Pick the title readers will click"]
        start -> fan
        fan -> formal
        fan -> playful
        formal -> pick
        playful -> pick
        pick -> done
    }""")


async def test_a_fan_in_with_a_prompt_lets_its_model_rank_the_branches(
        daemon: InProcessDaemon) -> None:
    def editor(seen: SeenRequest) -> Reply:
        prompt = last_user(seen)
        if prompt.startswith("Pick"):
            assert "## Candidate formal (success)\nQuarterly Results" in prompt
            return Reply(structured={"best_id": "playful", "ranking": ["playful", "formal"],
                                     "reason": "more inviting"})
        return Reply(text="Quarterly Results" if "formally" in prompt else "Money, Money!")

    async with FakeLLMServer(responder=editor) as server:
        wire = await daemon.connect()
        detail = await run_to_end(wire, RANKED, settings=settings(server, "anthropic-tool"))
    assert detail["status"] == "completed", detail["failure_reason"]
    context = detail["context"]
    # The heuristic would pick `formal` (equal outcomes, then the lower id): the model did not.
    assert context["parallel.fan_in.best_id"] == "playful"
    assert context["parallel.fan_in.ranking"] == ["playful", "formal"]
    assert context["parallel.fan_in.reason"] == "more inviting"
    results = {r["id"]: r["answer"] for r in context["parallel.results"]}
    assert results == {"formal": "Quarterly Results", "playful": "Money, Money!"}


@pytest.mark.parametrize("vendor", ["openai-json_schema", "anthropic-tool"])
async def test_runs_share_a_connection_to_the_api_but_never_a_cookie(
        daemon: InProcessDaemon, vendor: str) -> None:
    # The API (a gateway, say) sets a session cookie on every answer: no later run sends
    # it back, although every run uses the same connections.
    async with FakeLLMServer(Reply(text="hi", headers={
            "set-cookie": "gateway_session=FIRST_RUNS; Path=/"})) as server:
        wire = await daemon.connect()
        for _ in range(2):
            detail = await run_to_end(wire, ONE_CALL, settings=settings(server, vendor))
            assert detail["status"] == "completed", detail["failure_reason"]
        assert [seen.headers.get("cookie") for seen in server.requests] == [None, None]


@pytest.mark.parametrize("vendor", ["openai-json_schema", "anthropic-tool"])
async def test_runs_one_after_another_share_one_connection_to_the_api(
        daemon: InProcessDaemon, vendor: str) -> None:
    # A run's provider uses its daemon's (or worker's) HTTP connections: no new connection
    # (and no new TLS handshake with a real API) for every run.
    async with FakeLLMServer(Reply(text="hi")) as server:
        wire = await daemon.connect()
        for _ in range(3):
            detail = await run_to_end(wire, ONE_CALL, settings=settings(server, vendor))
            assert detail["status"] == "completed", detail["failure_reason"]
        assert (len(server.requests), server.connections_accepted) == (3, 1)


@pytest.fixture
def slow_sdk_import(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The openai provider's module, as this process has not imported it yet, stood in for by
    one whose import waits for the test (tests/fakes/slow_import.py)."""
    from ostinato.daemon.engine.providers import runtime

    from .fakes import slow_import

    monkeypatch.setitem(runtime._SDK_MODULES, "openai", "tests.fakes.slow_sdk")
    monkeypatch.setattr(runtime, "_imported", set())
    monkeypatch.delitem(sys.modules, "tests.fakes.slow_sdk", raising=False)
    for event in (slow_import.ENTERED, slow_import.RELEASE):
        event.clear()
    monkeypatch.setattr(slow_import, "RELEASED", [])
    return slow_import


async def test_the_daemon_answers_while_a_run_imports_its_models_sdk(
        daemon: InProcessDaemon, slow_sdk_import: Any) -> None:
    # A vendor SDK takes up to a second to import, the first time a run uses it: the daemon
    # imports it in a thread and answers its clients meanwhile (here the import waits for
    # the test, standing in for the SDK's).
    async with FakeLLMServer(Reply(text="hi")) as server:
        wire, other = await daemon.connect(), await daemon.connect()
        started = asyncio.ensure_future(run_to_end(
            wire, ONE_CALL, settings=settings(server, "openai-json_schema")))
        try:
            assert await asyncio.to_thread(slow_sdk_import.ENTERED.wait, WAIT)
            status = await asyncio.wait_for(other.result("daemon.status"), WAIT)
            assert status["active_runs"] == 0 and not started.done()  # still importing
        finally:
            slow_sdk_import.RELEASE.set()
        detail = await started
    assert slow_sdk_import.RELEASED == [True]  # the test could answer while it imported
    assert detail["status"] == "completed", detail["failure_reason"]
    assert len(server.requests) == 1


async def test_settings_the_daemon_refuses_import_no_sdk(
        daemon: InProcessDaemon, slow_sdk_import: Any) -> None:
    # A key variable the daemon does not allow is refused before the provider's SDK is
    # imported for nothing (up to a second of the client's wait, the first time).
    wire = await daemon.connect()
    refused = await asyncio.wait_for(wire.request("run.start", {
        "pipeline": ONE_CALL, "settings": {**FAST, "default_provider": "llm", "providers": {
            "llm": {"type": "openai", "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": "OST_TEST_NOT_ALLOWED", "model": "gpt-4o-mini"}}}}),
        WAIT)
    assert refused["error"]["code"] == -32602
    assert "api_key_env 'OST_TEST_NOT_ALLOWED' is not allowed" in refused["error"]["message"]
    assert not slow_sdk_import.ENTERED.is_set()


async def test_every_try_of_a_call_is_an_event_and_a_trace_line(
        daemon: InProcessDaemon) -> None:
    async with FakeLLMServer() as server:
        server.queue(Reply(status=503, message="overloaded"), Reply(text="fine"))
        wire = await daemon.connect()
        await wire.result("run.subscribe", {"run_id": "*"})
        detail = await run_to_end(wire, ONE_CALL, settings=settings(server, "openai-json_schema"))
    assert detail["status"] == "completed"
    retried = events(wire, detail["run_id"], "ModelRetrying")
    assert [(e["data"]["name"], e["data"]["provider_try"], e["data"]["status"])
            for e in retried] == [("ask", 1, 503)]
    assert f"from POST 127.0.0.1:{server.port}/v1/chat/completions" in \
        retried[0]["data"]["error"]
    kinds = [(c["kind"], c["error"] is not None) for c in trace(detail)]
    assert kinds == [("model_retry", True), ("model", False)]
