"""Replay cassettes: matching, repeats, divergences, modes, and a recorded run played back
through the real executor."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ostinato.daemon.engine.executor import Executor
from ostinato.daemon.engine.handlers.registry import default_handlers
from ostinato.daemon.engine.load import load_source
from ostinato.daemon.engine.providers import ModelRequest, ModelResponse, ProviderPool, Usage
from ostinato.daemon.engine.redact import Redactor
from ostinato.daemon.engine.replay import (
    Cassette,
    ReplayDivergence,
    Replayer,
    ReplayProviders,
    canonical_request,
    diff_requests,
    replay_action,
    replayed_response,
    request_hash,
)
from ostinato.daemon.engine.run_state import RunResult
from ostinato.daemon.engine.rundir import RunDirectory

SETTINGS = SimpleNamespace(retry=SimpleNamespace(delay_scale=0.0, jitter=False),
                           max_steps=0, max_parallel=4)


class Recorder:
    """Builds call dicts with the real Executor.record_call, as codergen and tool do."""

    def __init__(self, root: Path) -> None:
        run_dir = RunDirectory(root)
        run_dir.create()
        graph = load_source("digraph g { start [shape=Mdiamond] }", "dot").graph
        self.calls: list[dict[str, Any]] = []
        sink = SimpleNamespace(record_call=self.calls.append, emit=lambda event: None)
        self.executor = Executor(run_id="run-1", trace_id="trace-1", graph=graph,
                                 run_dir=run_dir, handlers=default_handlers(),
                                 providers=None, interviewer=None, sink=sink)  # type: ignore[arg-type]
        self.trace = root / "trace.jsonl"

    def model(self, node_id: str, prompt: str, text: str, *, attempt: int = 1,
              system: str = "Goal: ship it", temperature: float = 0.2,
              error: str | None = None) -> dict[str, Any]:
        request = model_request(node_id, prompt, attempt=attempt, system=system,
                                temperature=temperature)
        if error is not None:
            self.executor.record_call(node_id=node_id, attempt=attempt, kind="model",
                                      request=request.to_dict(), response=None, error=error,
                                      finish_reason="error")
            return self.calls[-1]
        response = ModelResponse(text=text, usage=Usage(input_tokens=10, output_tokens=5),
                                 cost_usd=0.0125, latency_ms=840.0, model="gpt-x",
                                 provider="openai", raw_id="chatcmpl-1",
                                 context_updates={"draft": text})
        self.executor.record_call(node_id=node_id, attempt=attempt, kind="model",
                                  request=request.to_dict(), response=response.to_dict(),
                                  input_tokens=10, output_tokens=5, cost_usd=0.0125,
                                  latency_ms=840.0, finish_reason="stop")
        return self.calls[-1]

    def tool(self, node_id: str, argv: list[str], stdout: str, exit_code: int = 0,
             attempt: int = 1) -> dict[str, Any]:
        self.executor.record_call(
            node_id=node_id, attempt=attempt, kind="tool", request={"argv": argv},
            response={"exit_code": exit_code, "stdout": stdout, "stderr": ""},
            latency_ms=12.5, finish_reason="exit" if exit_code == 0 else "error",
            error=None if exit_code == 0 else f"exit code {exit_code}")
        return self.calls[-1]


def model_request(node_id: str, prompt: str, *, attempt: int = 1, system: str = "Goal: ship it",
                  temperature: float = 0.2, **fields: Any) -> ModelRequest:
    """A resolved request as codergen builds it."""
    return ModelRequest(provider="openai", model="gpt-x",
                        messages=[{"role": "system", "content": system},
                                  {"role": "user", "content": prompt}],
                        params={"temperature": temperature}, node_id=node_id, attempt=attempt,
                        **fields)


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    recorder = Recorder(tmp_path / "run")
    yield recorder
    recorder.executor.run_dir.close()


# -- hashing ------------------------------------------------------------------------------


def test_volatile_fields_do_not_change_the_hash() -> None:
    base = model_request("draft", "Write it")
    moved = model_request("other", "Write it", attempt=3, provider_attempt=4,
                          metadata={"scripted.response": "x"})
    assert request_hash("model", base) == request_hash("model", moved)
    # A trace line (JSON, keys in any order) hashes like the live pydantic request.
    as_json = dict(reversed(list(base.to_dict().items())))
    assert request_hash("model", as_json) == request_hash("model", base)
    assert canonical_request("model", base) == {
        "provider": "openai", "model": "gpt-x", "params": {"temperature": 0.2}, "output": None,
        "messages": [{"role": "system", "content": "Goal: ship it"},
                     {"role": "user", "content": "Write it"}]}


def test_what_determines_the_answer_changes_the_hash() -> None:
    base = request_hash("model", model_request("draft", "Write it"))
    assert request_hash("model", model_request("draft", "Write it!")) != base
    assert request_hash("model", model_request("draft", "Write it", temperature=0.3)) != base
    other_model = model_request("draft", "Write it").model_copy(update={"model": "gpt-y"})
    assert request_hash("model", other_model) != base
    assert request_hash("tool", {"argv": ["ls"]}) != request_hash("tool", {"argv": ["ls", "-l"]})
    assert request_hash("tool", {"argv": ["ls"], "node_id": "a", "env": {"X": "1"}}) == \
        request_hash("tool", {"argv": ["ls"]})


def test_ids_and_timestamps_of_the_recording_do_not_matter(recorder: Recorder) -> None:
    call = recorder.model("draft", "Write it", "v1")
    renamed = {**call, "id": "other", "run_id": "run-2", "trace_id": "t-2",
               "created_at": "2031-01-01T00:00:00Z", "latency_ms": 1.0}
    cassette = Cassette.from_calls([renamed])
    assert cassette.match("draft", 1, "model", model_request("draft", "Write it")) == renamed


# -- matching -----------------------------------------------------------------------------


def test_an_unchanged_call_is_served(recorder: Recorder) -> None:
    recorder.model("plan", "Plan it", "the plan")
    call = recorder.model("draft", "Write it", "the draft")
    cassette = Cassette.from_calls(recorder.calls)
    assert cassette.match("draft", 1, "model", model_request("draft", "Write it")) == call
    assert [c["node_id"] for c in cassette.remaining()] == ["plan"]
    # Served once: the same call again has no recording left.
    assert cassette.match("draft", 1, "model", model_request("draft", "Write it")) is None


def test_node_and_attempt_are_part_of_the_key(recorder: Recorder) -> None:
    recorder.model("draft", "Write it", "v1")
    cassette = Cassette.from_calls(recorder.calls)
    assert cassette.match("draft", 2, "model", model_request("draft", "Write it")) is None
    assert cassette.match("edit", 1, "model", model_request("edit", "Write it")) is None
    assert cassette.match("draft", 1, "tool", {"argv": ["x"]}) is None


def test_repeats_play_back_in_recorded_order(recorder: Recorder) -> None:
    # A loop visits `poll` three times with the same request; each visit got its own answer.
    for text in ("pending", "pending", "done"):
        recorder.model("poll", "Is it done?", text)
        recorder.tool("check", ["./check.sh"], f"{text}\n")
    cassette = Cassette.from_calls(recorder.calls)
    request = model_request("poll", "Is it done?")
    answers = []
    for _ in range(3):
        answers.append(cassette.match("poll", 1, "model", request)["response"]["text"])
        cassette.match("check", 1, "tool", {"argv": ["./check.sh"]})
    assert answers == ["pending", "pending", "done"]
    assert cassette.remaining() == []
    with pytest.raises(ReplayDivergence) as caught:
        Replayer("recorded", cassette).lookup("poll", 1, "model", request)
    assert caught.value.reason == "extra_call"
    assert caught.value.step == 7
    assert "no unused call" in str(caught.value)


def test_tool_calls_are_served_with_their_output(recorder: Recorder) -> None:
    recorder.tool("lint", ["/bin/sh", "-c", "ruff check ."], "All checks passed!\n")
    recorder.tool("test", ["pytest", "-q"], "1 failed\n", exit_code=1)
    cassette = Cassette.from_trace_file(recorder.trace)
    lint = cassette.match("lint", 1, "tool", {"argv": ["/bin/sh", "-c", "ruff check ."]})
    assert lint is not None and lint["response"]["stdout"] == "All checks passed!\n"
    failed = cassette.match("test", 1, "tool", {"argv": ["pytest", "-q"]})
    assert failed is not None
    assert (failed["response"]["exit_code"], failed["error"]) == (1, "exit code 1")


def test_store_rows_load_like_trace_lines(recorder: Recorder) -> None:
    import orjson

    call = recorder.model("draft", "Write it", "v1")
    row = {k: v for k, v in call.items() if k not in ("request", "response")}
    row["request_json"] = orjson.dumps(call["request"]).decode()
    row["response_json"] = orjson.dumps(call["response"]).decode()
    served = Cassette.from_calls([row]).match("draft", 1, "model",
                                              model_request("draft", "Write it"))
    assert served is not None and served["response"] == call["response"]


def test_a_resumed_recording_keeps_the_rerun_calls(recorder: Recorder) -> None:
    recorder.model("plan", "Plan it", "plan")
    recorder.model("draft", "Write it", "abandoned by a crash")
    recorder.executor.call_seq = 1  # resume from the checkpoint taken after `plan`
    recorder.model("draft", "Write it", "the re-run")
    cassette = Cassette.from_trace_file(recorder.trace)
    assert len(cassette) == 2
    served = cassette.match("draft", 1, "model", model_request("draft", "Write it"))
    assert served is not None and served["response"]["text"] == "the re-run"


def test_consume_skips_what_a_resumed_replay_already_made(recorder: Recorder) -> None:
    first = recorder.model("loop", "Again", "one")
    recorder.model("loop", "Again", "two")
    cassette = Cassette.from_calls(recorder.calls)
    cassette.consume([first])
    served = cassette.match("loop", 1, "model", model_request("loop", "Again"))
    assert served is not None and served["response"]["text"] == "two"
    assert cassette.lookups == 2


def test_redacted_recordings_match_requests_holding_the_secret(recorder: Recorder) -> None:
    secret = "sk-live-0123456789"
    recorder.model("deploy", f"Deploy with token {secret}", "ok")
    redactor = Redactor([secret])
    redacted = [redactor.values(call) for call in recorder.calls]  # what the store keeps
    assert "[redacted]" in redacted[0]["request"]["messages"][1]["content"]
    new = model_request("deploy", f"Deploy with token {secret}")
    assert Cassette.from_calls(redacted).match("deploy", 1, "model", new) is None
    assert Cassette.from_calls(redacted, redactor=redactor).match(
        "deploy", 1, "model", new) is not None


# -- divergences --------------------------------------------------------------------------


def test_a_changed_prompt_names_node_step_and_path(recorder: Recorder) -> None:
    recorder.model("plan", "Plan it", "plan")
    long_prompt = "Write the release notes. " * 20 + "Mention the migration."
    recorder.model("draft", long_prompt, "notes")
    cassette = Cassette.from_calls(recorder.calls)
    replayer = Replayer("recorded", cassette)
    assert replayer.lookup("plan", 1, "model", model_request("plan", "Plan it")) is not None
    changed = long_prompt.replace("migration", "new API")
    with pytest.raises(ReplayDivergence) as caught:
        replayer.lookup("draft", 1, "model", model_request("draft", changed))
    error = caught.value
    assert (error.node_id, error.step, error.kind, error.reason) == (
        "draft", 2, "model", "request_changed")
    assert error.recorded_seq == 2
    [difference] = error.differences
    assert difference.path == "messages[1].content"
    assert difference.offset == long_prompt.index("migration")
    # Where they differ, not the common start that both share.
    assert difference.recorded.startswith("…") and "migration" in difference.recorded
    assert "new API" in difference.new and len(difference.new) < 120
    message = str(error)
    assert "'draft'" in message and "step 2" in message and "messages[1].content" in message
    data = error.to_dict()
    assert data["differences"][0]["path"] == "messages[1].content"
    assert data["node_id"] == "draft" and data["message"] == message


def test_the_closest_recorded_call_is_compared(recorder: Recorder) -> None:
    recorder.model("draft", "Write it", "v1", attempt=1, temperature=0.2)
    recorder.model("draft", "Write it again", "v2", attempt=2, temperature=0.2)
    cassette = Cassette.from_calls(recorder.calls)
    error = cassette.divergence("draft", 2, "model",
                                model_request("draft", "Write it again", attempt=2,
                                              temperature=0.9))
    assert error.recorded_seq == 2 and error.recorded_attempt == 2
    assert [d.to_dict() for d in error.differences] == [
        {"path": "params.temperature", "recorded": 0.2, "new": 0.9}]


def test_an_unrecorded_attempt_is_an_extra_call(recorder: Recorder) -> None:
    recorder.model("draft", "Write it", "v1")
    cassette = Cassette.from_calls(recorder.calls)
    error = cassette.divergence("draft", 2, "model", model_request("draft", "Write it"))
    assert error.reason == "extra_call" and error.recorded_attempt == 1
    assert "attempt 1" in str(error) and "attempt 2" in str(error)


def test_a_node_the_recording_never_called(recorder: Recorder) -> None:
    recorder.model("draft", "Write it", "v1")
    cassette = Cassette.from_calls(recorder.calls)
    with pytest.raises(ReplayDivergence) as caught:
        Replayer("recorded", cassette).lookup("review", 1, "tool", {"argv": ["review"]})
    assert caught.value.reason == "no_call_for_node"
    assert str(caught.value) == ("replay diverged at node 'review', step 1 (tool call, "
                                 "attempt 1): the recording has no call for this node")


def test_diff_paths_cover_added_removed_and_retyped_values() -> None:
    recorded = {"messages": [{"role": "user", "content": "a"}], "params": {"top_p": 1}}
    new = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
           "params": {"top_p": 1.0, "max_tokens": 5}}
    assert [d.to_dict() for d in diff_requests(recorded, new)] == [
        {"path": "messages[1]", "new": {"role": "user", "content": "b"}},
        {"path": "params.max_tokens", "new": 5},
        {"path": "params.top_p", "recorded": 1, "new": 1.0}]


# -- modes --------------------------------------------------------------------------------


def test_policy() -> None:
    assert [replay_action(mode, matched)
            for mode, matched in itertools.product(("recorded", "hybrid", "live"),
                                                   (True, False))] == [
        "serve", "diverge", "serve", "live", "live", "live"]


def test_hybrid_serves_matches_and_sends_the_rest_live(recorder: Recorder) -> None:
    recorder.model("draft", "Write it", "v1")
    recorder.tool("lint", ["ruff"], "ok")
    replayer = Replayer("hybrid", Cassette.from_calls(recorder.calls))
    assert replayer.lookup("draft", 1, "model", model_request("draft", "Write it")) is not None
    assert replayer.lookup("draft", 1, "model", model_request("draft", "Changed")) is None
    assert replayer.lookup("lint", 1, "tool", {"argv": ["ruff"]}) is not None
    assert (replayer.served, replayer.live) == (2, 1)


def test_live_mode_leaves_the_cassette_alone(recorder: Recorder) -> None:
    recorder.model("draft", "Write it", "v1")
    cassette = Cassette.from_calls(recorder.calls)
    replayer = Replayer("live", cassette)
    assert replayer.lookup("draft", 1, "model", model_request("draft", "Write it")) is None
    assert len(cassette.remaining()) == 1
    with pytest.raises(ValueError):
        Replayer("recorded")


def test_replayed_responses_cost_nothing(recorder: Recorder) -> None:
    call = recorder.model("draft", "Write it", "v1")
    response = replayed_response(call)
    assert (response.text, response.cost_usd, response.usage.input_tokens) == ("v1", 0.0, 10)
    assert response.context_updates == {"draft": "v1"}
    failed = recorder.model("draft", "Write it", "", attempt=2, error="openai: HTTP 400: bad")
    with pytest.raises(Exception, match="openai: HTTP 400: bad") as caught:
        replayed_response(failed)
    assert type(caught.value).__name__ == "ProviderError"


# -- through the executor -----------------------------------------------------------------

PIPELINE = """\
digraph notes {
    graph [goal="Publish the release notes"]
    start [shape=Mdiamond]
    exit  [shape=Msquare]
    draft [prompt="Draft the notes: $goal", max_retries=2, retry_policy=linear,
           scripted.statuses="fail|success", scripted.responses="(timed out)|First draft",
           scripted.context_updates="{\\"words\\": 120}"]
    translate [prompt="Translate the notes", retry_policy=none, scripted.status=fail]
    english [prompt="Publish in English only"]
    publish [prompt="Publish"]
    start -> draft -> translate
    translate -> publish [condition="outcome=success"]
    translate -> english [condition="outcome=fail"]
    english -> publish -> exit
}
"""


async def run_pipeline(root: Path, source: str, providers: Any) -> tuple[RunResult, list[dict]]:
    graph = load_source(source, "dot").graph
    assert graph is not None
    run_dir = RunDirectory(root)
    run_dir.create()
    calls: list[dict[str, Any]] = []

    class Sink:
        def emit(self, event: Any) -> None:
            pass

        def record_call(self, call: dict[str, Any]) -> None:
            calls.append(call)

        async def stage_done(self, stage: dict[str, Any]) -> None:
            pass

    executor = Executor(run_id=root.name, trace_id=f"trace-{root.name}", graph=graph,
                        run_dir=run_dir, handlers=default_handlers(), providers=providers,
                        interviewer=None, sink=Sink(), settings=SETTINGS)  # type: ignore[arg-type]
    try:
        return await executor.run({"audience": "users"}), calls
    finally:
        run_dir.close()


def offline_pool() -> ProviderPool:
    """A pool whose every model call fails the test: recorded replays must not call it."""
    pool = ProviderPool()

    async def forbidden(request: ModelRequest) -> ModelResponse:
        raise AssertionError(f"live model call in a recorded replay: {request.node_id}")
    pool.complete = forbidden  # type: ignore[method-assign]
    return pool


async def test_a_recorded_replay_reproduces_the_run(tmp_path: Path) -> None:
    original, recorded = await run_pipeline(tmp_path / "original", PIPELINE, ProviderPool())
    assert [c["node_id"] for c in recorded] == ["draft", "draft", "translate", "english",
                                                "publish"]
    cassette = Cassette.from_trace_file(tmp_path / "original" / "trace.jsonl")
    replayer = Replayer("recorded", cassette)
    replay, calls = await run_pipeline(tmp_path / "replay", PIPELINE,
                                       ReplayProviders(offline_pool(), replayer))
    assert (replay.status, replay.outcome, replay.failure_reason) == (
        original.status, original.outcome, original.failure_reason)
    assert replay.completed_nodes == original.completed_nodes
    assert replay.context == original.context
    assert replay.context["words"] == 120
    for node in ("draft", "english", "publish"):
        assert (tmp_path / "replay" / node / "response.md").read_text() == \
            (tmp_path / "original" / node / "response.md").read_text()
    assert cassette.remaining() == [] and replayer.served == 5
    assert [(c["node_id"], c["attempt"], c["finish_reason"]) for c in calls] == \
        [(c["node_id"], c["attempt"], c["finish_reason"]) for c in recorded]
    assert sum(c["cost_usd"] for c in calls) == 0.0


async def test_a_hybrid_replay_goes_live_where_the_pipeline_changed(tmp_path: Path) -> None:
    await run_pipeline(tmp_path / "original", PIPELINE, ProviderPool())
    cassette = Cassette.from_trace_file(tmp_path / "original" / "trace.jsonl")
    changed = PIPELINE.replace('prompt="Publish"', 'prompt="Publish it now"')
    replayer = Replayer("hybrid", cassette)
    result, calls = await run_pipeline(tmp_path / "hybrid", changed,
                                       ReplayProviders(ProviderPool(), replayer))
    assert result.status == "completed"
    assert (replayer.served, replayer.live) == (4, 1)
    assert result.context["last_response"] == "[scripted] Publish it now"
    assert [c["node_id"] for c in cassette.remaining()] == ["publish"]
    # The live call is recorded like any other: the hybrid run is itself a full cassette.
    assert calls[-1]["request"]["messages"][-1]["content"] == "Publish it now"

    strict = Replayer("recorded", Cassette.from_trace_file(
        tmp_path / "original" / "trace.jsonl"))
    with pytest.raises(ReplayDivergence, match=r"'publish'.*messages\[1\]\.content"):
        for call in calls:
            strict.lookup(call["node_id"], call["attempt"], call["kind"], call["request"])
