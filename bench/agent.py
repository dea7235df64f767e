"""Agent-loop benchmark: the cost of one turn of an agent node (a model turn and one tool
call) against a bare loop of the same official SDK calls and the same tool process, and a
recorded replay of a long agent run against the live run.

Run it with `.venv/bin/python bench/agent.py`; options:

    .venv/bin/python bench/agent.py [--rounds 3] [--turns 20] [--replay-turns 100]
        [--json] [--no-uvloop]

Both sides talk to the fake OpenAI API of the tests (tests/fakes/llm_server.py) on
127.0.0.1 at zero latency, in this process, through the official `openai` SDK (Chat
Completions). The fake answers each request by its turn: a call of the tool `echo` with
`{"text": "turn k"}` until the last turn, then a plain answer.

* agent-T (`--turns`, default 20): one run of start -> work -> exit where `work` is an
  agent node offering `echo` (argv `["echo", "{text}"]`), max_turns T+1, through
  `Runner.start` of the daemon's real services over a bench host and the real sqlite store
  (as bench/engine.py): load, config, manifest, then T turns of model call + tool process,
  each turn and call recorded (trace.jsonl, the transcript, the store rows), and the final
  answer. Timed from `Runner.start` until done.
* bare-T: the same conversation with nothing recorded: `chat.completions.create` with the
  same tools and the growing history, then `echo turn k` through
  `asyncio.create_subprocess_exec` (output read), T times, then the final call.

Per turn = time / (T + 1 model calls); the ratio is agent per turn / bare per turn, in the
same round (target at most 1.5x).

* replay-R (`--replay-turns`, default 100): a live agent run of R turns (as above), then a
  recorded replay of it (`RunOptions(replay_of=..., replay_mode="recorded")`): no request
  to the fake and no process (checked); target at most 0.2x the live run's time. The bare
  loop of R turns is timed beside it: every turn resends the whole history, so a turn
  costs more the later it comes, on both sides.

Method: every run directory stays until the benchmark ends (one temporary directory,
removed at exit), each round runs the sides interleaved, and the summary takes the best
round of each (other load only ever adds time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import openai
import orjson
from common import (  # bench/ is on sys.path
    loop_choice,
    run_in_temporary_directory,
)
from engine import bench_services

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ostinato.daemon.runs.options import RunOptions
from ostinato.daemon.services import Services
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings
from tests.fakes.llm_server import FakeLLMServer, Reply, SeenRequest

MODEL = "gpt-4o-mini"
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
          "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "echo", "description": "Echo the text",
                                           "parameters": SCHEMA}}]


def model(turns: int) -> Callable[[SeenRequest], Reply]:
    """The fake's responder: the echo tool until turn `turns`, then an answer."""
    def respond(seen: SeenRequest) -> Reply:
        turn = seen.turn()
        if turn <= turns:
            return Reply(tool_calls=[("echo", {"text": f"turn {turn}"})])
        return Reply(text="done")
    return respond


def agent_dot(turns: int) -> str:
    """One agent node offering `echo`, with room for `turns` tool turns and the answer."""
    argv = json.dumps(["echo", "{text}"])
    return f"""digraph agent {{
        graph [tool.echo.description="Echo the text", tool.echo.schema={json.dumps(
            json.dumps(SCHEMA))}, tool.echo.argv={json.dumps(argv)}]
        start [shape=Mdiamond]; exit [shape=Msquare]
        work [prompt="Echo until told to stop", tools="echo", max_turns={turns + 1},
              max_tool_calls={turns + 1}]
        start -> work -> exit
    }}"""


def settings(url: str) -> RunSettings:
    """The fake as the default provider, through the openai SDK."""
    return RunSettings(default_provider="openai", providers={"openai": {
        "type": "openai", "base_url": url + "/v1", "api_key_env": None, "model": MODEL}})


async def agent_run(services: Services, url: str, turns: int,
                    options: RunOptions | None = None) -> tuple[float, str]:
    """Seconds of one agent run, and its id; it must complete."""
    started = time.perf_counter()
    active = await services.runner.start(PipelineRef(source=agent_dot(turns), format="dot"),
                                         {}, {}, settings(url), options or RunOptions())
    result = await active.done
    seconds = time.perf_counter() - started
    if result is None or result.status != "completed":
        raise RuntimeError(f"run {active.run_id}: {getattr(result, 'failure_reason', None)}")
    return seconds, active.run_id


async def bare_loop(client: openai.AsyncOpenAI, turns: int) -> float:
    """Seconds of the same conversation with no record: SDK calls and tool processes."""
    started = time.perf_counter()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Echo until told to stop"}]
    while True:
        completion = await client.chat.completions.create(model=MODEL, messages=messages,
                                                          tools=TOOLS)
        message = completion.choices[0].message
        if not message.tool_calls:
            break
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            text = orjson.loads(call.function.arguments)["text"]
            process = await asyncio.create_subprocess_exec(
                "echo", text, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, _ = await process.communicate()
            messages.append({"role": "tool", "tool_call_id": call.id, "content": out.decode()})
    return time.perf_counter() - started


async def measure(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds of both sides, then the replay pair."""
    (tmp / "home").mkdir()
    services = await bench_services(tmp / "home")
    rows: dict[str, list[float]] = {"agent": [], "bare": []}
    try:
        async with FakeLLMServer(responder=model(args.turns)) as server:
            client = openai.AsyncOpenAI(api_key="none", base_url=server.url + "/v1",
                                        max_retries=0)
            await agent_run(services, server.url, args.turns)  # warm-up: imports, files
            await bare_loop(client, args.turns)
            for round_ in range(1, args.rounds + 1):
                seconds, _ = await agent_run(services, server.url, args.turns)
                rows["agent"].append(seconds)
                rows["bare"].append(await bare_loop(client, args.turns))
                print(f"round {round_}: agent {per_turn(seconds, args.turns):.2f} ms/turn, "
                      f"bare {per_turn(rows['bare'][-1], args.turns):.2f} ms/turn",
                      flush=True)
            await client.close()
        replays: list[tuple[float, float]] = []
        long_bare: list[float] = []
        async with FakeLLMServer(responder=model(args.replay_turns)) as server:
            client = openai.AsyncOpenAI(api_key="none", base_url=server.url + "/v1",
                                        max_retries=0)
            for _ in range(args.rounds):
                long_bare.append(await bare_loop(client, args.replay_turns))
                live, run_id = await agent_run(services, server.url, args.replay_turns)
                before = len(server.requests)
                replay, replay_id = await agent_run(
                    services, server.url, args.replay_turns,
                    RunOptions(replay_of=run_id, replay_mode="recorded"))
                manifest = orjson.loads((tmp / "home" / "runs" / replay_id /
                                         "manifest.json").read_bytes())
                if len(server.requests) != before or manifest["processes_started"] != 0:
                    raise RuntimeError("the replay made a request or started a process")
                replays.append((live, replay))
                print(f"replay-{args.replay_turns}: live {live * 1000:.0f} ms, replay "
                      f"{replay * 1000:.0f} ms ({replay / live:.3f}x); the bare loop "
                      f"{long_bare[-1] * 1000:.0f} ms", flush=True)
            await client.close()
    finally:
        await services.stop()
    return {"rows": rows, "replays": replays, "long_bare": long_bare}


def per_turn(seconds: float, turns: int) -> float:
    """Milliseconds per model call (turns with a tool call, and the answer)."""
    return seconds * 1000 / (turns + 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--replay-turns", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the summary; 0 when both targets are met."""
    args = parse_args(argv)
    loop_name, _ = loop_choice(not args.no_uvloop)
    found = run_in_temporary_directory("agent", not args.no_uvloop,
                                       lambda tmp: measure(tmp, args))
    agent = min(found["rows"]["agent"])
    bare = min(found["rows"]["bare"])
    live, replay = min(found["replays"], key=lambda pair: pair[1] / pair[0])
    summary = {
        "loop": loop_name, "turns": args.turns,
        "agent_ms_per_turn": round(per_turn(agent, args.turns), 3),
        "bare_ms_per_turn": round(per_turn(bare, args.turns), 3),
        "ratio": round(agent / bare, 3),
        "replay_turns": args.replay_turns, "live_ms": round(live * 1000, 1),
        "replay_ms": round(replay * 1000, 1), "replay_ratio": round(replay / live, 3),
        "long_bare_ms": round(min(found["long_bare"]) * 1000, 1)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"\n{loop_name}; best of {args.rounds} rounds")
        print(f"agent-{args.turns}: {summary['agent_ms_per_turn']:.2f} ms/turn against the "
              f"bare loop's {summary['bare_ms_per_turn']:.2f}: {summary['ratio']:.2f}x "
              f"(target <= 1.5x) {'OK' if summary['ratio'] <= 1.5 else 'MISSED'}")
        print(f"replay-{args.replay_turns}: {summary['replay_ms']:.0f} ms against the live "
              f"run's {summary['live_ms']:.0f} ms: {summary['replay_ratio']:.3f}x "
              f"(target <= 0.2x) {'OK' if summary['replay_ratio'] <= 0.2 else 'MISSED'}")
        print(f"  (the live run against the bare loop of as many turns: "
              f"{live * 1000 / summary['long_bare_ms']:.2f}x; each turn resends the history)")
    return 0 if summary["ratio"] <= 1.5 and summary["replay_ratio"] <= 0.2 else 1


if __name__ == "__main__":
    sys.exit(main())
