"""Context fidelity and threads (attractor §5.4) on the wire: what each mode sends a real
model, through the official openai SDK against the fake API on 127.0.0.1; a recorded replay
sends none of it again, and a resumed run continues its thread exactly."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .fakes.llm_server import FakeLLMServer, Reply, SeenRequest
from .inprocess import InProcessDaemon
from .runs_support import FAST, dot, make_fifo, read_fifo, run_to_end
from .support import start_daemon

GOAL = "Write a haiku about rain"


def answering(seen: SeenRequest) -> Reply:
    """The model's answer names the prompt it answered."""
    return Reply(text="re: " + seen.body["messages"][-1]["content"])


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(responder=answering) as server:
        yield server


def settings(server: FakeLLMServer) -> dict[str, Any]:
    return {**FAST, "default_provider": "openai", "providers": {"openai": {
        "base_url": server.url + "/v1", "api_key_env": None, "model": "gpt-4o-mini"}}}


def sent(server: FakeLLMServer) -> dict[str, list[dict[str, Any]]]:
    """Each node's messages as the vendor received them (the node is the last user
    message's first word)."""
    return {seen.body["messages"][-1]["content"].split()[0]: seen.body["messages"]
            for seen in server.requests}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


MODES = dot(f"""\
    digraph modes {{
        graph [goal="{GOAL}"]
        start [shape=Mdiamond]
        done [shape=Msquare]
        a [prompt="a: first line", scripted.x=1]
        b [prompt="b: second line", fidelity=truncate]
        c [prompt="c: third line", fidelity="summary:low"]
        d [prompt="d: fourth line", fidelity="summary:medium", context_keys="mood"]
        e [prompt="e: fifth line", fidelity="summary:high"]
        f [prompt="f: sixth line", fidelity=full, thread_id=poem]
        g [prompt="g: seventh line", fidelity=full, thread_id=poem]
        h [prompt="h: a title", fidelity=compact]
        start -> a -> b -> c -> d -> e -> f -> g -> h -> done
    }}""")


@pytest.mark.in_process
async def test_each_mode_sends_what_it_promises(daemon: InProcessDaemon,
                                                fake_api: FakeLLMServer) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, MODES, settings=settings(fake_api),
                              inputs={"meter": "5-7-5"})
    assert detail["status"] == "completed", detail["failure_reason"]
    goal = f"Goal: {GOAL}"
    messages = sent(fake_api)
    # compact (the default): the goal and the completed nodes; inputs are not repeated.
    assert messages["a:"] == [system(f"{goal}\n- start: success"), user("a: first line")]
    # truncate: the goal only (no run id: a request naming its run could never replay).
    assert messages["b:"] == [system(goal), user("b: second line")]
    # summary:low: counts and the recent path, no answers.
    assert messages["c:"] == [
        system(f"{goal}\nThe run so far: 3 nodes completed; of the last 3, 3 succeeded "
               "and 0 failed.\nRecent: start (success) → a (success) → b (success)"),
        user("c: third line")]
    # summary:medium: recent stages with what they answered, and the context values
    # (inputs included).
    assert messages["d:"] == [
        system(f"{goal}\nThe run so far: 4 nodes completed; of the last 4, 4 succeeded "
               "and 0 failed.\nRecent stages:\n- start: success\n- a: success: re: a: "
               "first line\n- b: success: re: b: second line\n- c: success: re: c: third "
               "line\nContext:\n- meter: 5-7-5"),
        user("d: fourth line")]
    # summary:high: the same at more length, over more stages.
    assert messages["e:"][0]["content"].startswith(
        f"{goal}\nThe run so far: 5 nodes completed; of the last 5, 5 succeeded and 0 "
        "failed.\nRecent stages:\n- start: success\n- a: success: re: a: first line")
    assert messages["e:"][0]["content"].endswith(
        "- d: success: re: d: fourth line\nContext:\n- meter: 5-7-5")
    # full: f opens the thread `poem`; g continues it with f's turn as history.
    assert messages["f:"] == [system(goal), user("f: sixth line")]
    assert messages["g:"] == [system(goal), user("f: sixth line"),
                              assistant("re: f: sixth line"), user("g: seventh line")]
    # compact again: a fresh session, the goal and the last 20 completed nodes.
    assert messages["h:"] == [
        system(f"{goal}\n- start: success\n- a: success\n- b: success\n- c: success\n"
               "- d: success\n- e: success\n- f: success\n- g: success"),
        user("h: a title")]


THREADS = dot(f"""\
    digraph threads {{
        graph [goal="{GOAL}", default_fidelity=full]
        start [shape=Mdiamond]
        done [shape=Msquare]
        subgraph cluster_draft {{
            label="Draft"
            one [prompt="one"]
            two [prompt="two"]
        }}
        three [prompt="three", thread_id=side]
        four [prompt="four"]
        five [prompt="five"]
        six [prompt="six"]
        start -> one -> two -> three -> four
        four -> five [thread_id=side]
        five -> six [fidelity=truncate]
        six -> done
    }}""")


@pytest.mark.in_process
async def test_threads_resolve_by_node_edge_subgraph_and_the_last_thread(
        daemon: InProcessDaemon, fake_api: FakeLLMServer) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, THREADS, settings=settings(fake_api))
    assert detail["status"] == "completed", detail["failure_reason"]
    messages = sent(fake_api)
    goal = system(f"Goal: {GOAL}")
    assert messages["one"] == [goal, user("one")]  # thread `draft`, from its subgraph
    assert messages["two"] == [goal, user("one"), assistant("re: one"), user("two")]
    assert messages["three"] == [goal, user("three")]  # its own thread_id: `side`
    # No thread of its own: the thread the last full node used (`side`).
    assert messages["four"] == [goal, user("three"), assistant("re: three"), user("four")]
    # The edge's thread_id (`side` again) continues it.
    assert messages["five"] == [goal, user("three"), assistant("re: three"), user("four"),
                                assistant("re: four"), user("five")]
    # The edge's fidelity beats the graph's default.
    assert messages["six"] == [goal, user("six")]


COMPACTED = dot(f"""\
    digraph compacted {{
        graph [goal="{GOAL}", default_fidelity=full, thread_id=t, thread_turns=2]
        start [shape=Mdiamond]
        done [shape=Msquare]
        p1 [prompt="p1"]
        p2 [prompt="p2"]
        p3 [prompt="p3"]
        p4 [prompt="p4", thread_budget=30]
        p5 [prompt="p5"]
        start -> p1 -> p2 -> p3 -> p4 -> p5 -> done
    }}""")


@pytest.mark.in_process
async def test_a_thread_is_compacted_deterministically(daemon: InProcessDaemon,
                                                       fake_api: FakeLLMServer) -> None:
    fake_api.queue(Reply(text="one"), Reply(text="two"), Reply(text="three"),
                   Reply(text="x" * 200))
    wire = await daemon.connect()
    detail = await run_to_end(wire, COMPACTED, settings=settings(fake_api))
    assert detail["status"] == "completed", detail["failure_reason"]
    messages = sent(fake_api)
    goal = f"Goal: {GOAL}"
    # Two turns kept (thread_turns=2): p3 sees p1 and p2, p4 sees p2 and p3 (p1 compacted).
    assert messages["p3"] == [system(goal), user("p1"), assistant("one"), user("p2"),
                              assistant("two"), user("p3")]
    assert messages["p4"] == [
        system(f"{goal}\nEarlier in this conversation, 1 turns were compacted (the most "
               "recent last):\n- p1: success: one"),
        user("p2"), assistant("two"), user("p3"), assistant("three"), user("p4")]
    # p4's budget (30 tokens, 120 characters) keeps one turn, its own, cut to the head
    # and tail of its 200-character answer.
    p5 = messages["p5"]
    assert p5[0] == system(
        f"{goal}\nEarlier in this conversation, 3 turns were compacted (the most recent "
        "last):\n- p1: success: one\n- p2: success: two\n- p3: success: three")
    assert p5[1:3] == [user("p4"), assistant(p5[2]["content"])]
    assert len(p5[2]["content"]) <= 120 and "characters compacted]" in p5[2]["content"]
    assert p5[3] == user("p5")


@pytest.mark.in_process
async def test_a_recorded_replay_sends_every_mode_exactly_as_recorded(
        daemon: InProcessDaemon, fake_api: FakeLLMServer) -> None:
    wire = await daemon.connect()
    detail = await run_to_end(wire, MODES, settings=settings(fake_api),
                              inputs={"meter": "5-7-5"})
    calls = len(fake_api.requests)
    replay = await wire.result("run.start", {"replay": {"from_run": detail["run_id"],
                                                        "mode": "recorded"}, "wait": True})
    assert (replay["status"], replay["cost_usd"]) == ("completed", 0.0)
    assert len(fake_api.requests) == calls
    diff = await wire.result("run.diff", {"a": detail["run_id"], "b": replay["run_id"]})
    assert diff["identical"] is True, diff["first_divergence"]


def thread_with_a_pause(go: Path, fifo: Path) -> dict[str, str]:
    """A `full` thread with a tool in the middle that blocks until `go` exists."""
    return dot(f"""\
        digraph paused {{
            graph [goal="{GOAL}", default_fidelity=full, thread_id=t]
            start [shape=Mdiamond]
            done [shape=Msquare]
            one [prompt="one"]
            two [prompt="two"]
            wait [shape=parallelogram,
                  tool_command="test -e {go} && exit 0; echo $$ > {fifo}; exec sleep 30"]
            three [prompt="three"]
            start -> one -> two -> wait -> three -> done
        }}""")


async def test_a_resumed_run_continues_its_thread_as_if_never_interrupted(
        short_tmp: Path, fake_api: FakeLLMServer) -> None:
    home, socket = short_tmp / "home", str(short_tmp / "d.sock")
    go, fifo = short_tmp / "go", make_fifo(short_tmp / "announce")
    pipeline = thread_with_a_pause(go, fifo)
    first = await start_daemon(home, "--socket", socket)
    wire = await first.connect()
    started = await wire.result("run.start", {"pipeline": pipeline,
                                              "settings": settings(fake_api)})
    pid = int(await read_fifo(fifo))  # one and two answered, the tool blocks
    first.process.kill()
    assert await first.stop() == -signal.SIGKILL
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    go.touch()
    second = await start_daemon(home, "--socket", socket)
    try:
        wire = await second.connect()
        resumed = await wire.result("run.resume", {"run_id": started["run_id"], "wait": True})
        assert resumed["status"] == "completed"
    finally:
        assert await second.stop() == 0
    # `three`, sent by the new daemon, carries the thread the killed one had built.
    assert sent(fake_api)["three"] == [
        system(f"Goal: {GOAL}"), user("one"), assistant("re: one"), user("two"),
        assistant("re: two"), user("three")]
