"""Provider benchmark: what a real model's provider adds to a run, against a bare call of the
same official SDK.

Run it with `.venv/bin/python bench/providers.py`; options:

    .venv/bin/python bench/providers.py [--rounds 3] [--runs 30] [--executor inline]
        [--json] [--no-uvloop]

Every side talks to the fake API of the tests (tests/fakes/llm_server.py) on 127.0.0.1 at
zero latency, in this process, so the fake's own CPU is in every figure alike. Per vendor
(`openai` through Chat Completions, `anthropic` through Messages), interleaved in each round:

* run: `--runs` runs, one after another, of start -> ask -> exit where `ask` is an LLM
  node of that vendor, through `Runner.start` of the daemon's real services over a bench
  host and the real sqlite store (as bench/engine.py), each awaited to its end, executing
  where `--executor` says (on processes: two workers, a run going to an idle one);
* scripted: the same runs with the scripted provider: what the run itself costs;
* bare: `--runs` calls of the SDK's create with one client, as a script would make them,
  sending what a run sent (its system and user messages, and whatever else).

The ratio is a run against a scripted run and a bare call together (target at most 1.5x:
what the provider adds to a run beyond the SDK's own call is building it, its request and
response records and its trace line; a new SDK client per run, 18 ms of CPU for its TLS
context, would read about 10x). The connections the fake accepted
during the timed rounds are reported too: none, when runs reuse their process's
connections (the warm-up opened them).

Method: every run directory stays until the benchmark ends (one temporary directory,
removed at exit), each round runs the sides interleaved, and the summary takes the best
round of each (other load only ever adds time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anthropic
import openai
from common import loop_choice, run_in_temporary_directory  # bench/ is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ostinato.daemon.host import Host, Settings
from ostinato.daemon.runs.options import RunOptions
from ostinato.daemon.services import Services, start
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings
from tests.fakes.llm_server import FakeLLMServer, Reply

TARGET = 1.5  # a run with the vendor's provider / (a scripted run + a bare SDK call)
PIPELINE = PipelineRef(source="""digraph once {
    start [shape=Mdiamond]
    done [shape=Msquare]
    ask [prompt="Say hi"]
    start -> ask -> done
}""", format="dot")
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
SIDES = ("run", "scripted", "bare")


def vendor_settings(vendor: str, url: str) -> RunSettings:
    """The fake as the default provider, through the vendor's SDK."""
    base_url = url + ("/v1" if vendor == "openai" else "")
    return RunSettings(default_provider=vendor, providers={vendor: {
        "type": vendor, "base_url": base_url, "api_key_env": None, "model": MODELS[vendor]}})


def bare_call(vendor: str, url: str,
              body: dict[str, Any]) -> tuple[Callable[[], Awaitable[Any]], Any]:
    """The SDK call a script would make to send `body` (what a run sent), and its client
    (to close)."""
    if vendor == "openai":
        client: Any = openai.AsyncOpenAI(api_key="none", base_url=url + "/v1", max_retries=0)
        return lambda: client.chat.completions.create(**body), client
    client = anthropic.AsyncAnthropic(api_key="none", base_url=url, max_retries=0)
    return lambda: client.messages.create(**body), client


async def runs(services: Services, settings: RunSettings, count: int) -> float:
    """Seconds for `count` runs one after another; each must complete."""

    async def run() -> None:
        active = await services.runner.start(PIPELINE, {}, {}, settings, RunOptions())
        result = await active.done
        if result is None or result.status != "completed":
            raise RuntimeError(f"run {active.run_id}: {getattr(result, 'failure_reason', None)}")

    return await timed(count, run)


async def timed(count: int, call: Callable[[], Awaitable[Any]]) -> float:
    """Seconds for `count` calls one after another."""
    started = time.perf_counter()
    for _ in range(count):
        await call()
    return time.perf_counter() - started


async def measure_vendor(services: Services, vendor: str,
                         args: argparse.Namespace) -> dict[str, Any]:
    """Each side's ms per unit in every round, and the connections the timed rounds
    opened."""
    async with FakeLLMServer(Reply(text="hi")) as server:
        settings = vendor_settings(vendor, server.url)
        await runs(services, settings, 1)  # what a run sends, the bare call sends
        call, client = bare_call(vendor, server.url, server.requests[-1].body)
        sides: dict[str, Callable[[], Awaitable[float]]] = {
            "run": lambda: runs(services, settings, args.runs),
            "scripted": lambda: runs(services, RunSettings(), args.runs),
            "bare": lambda: timed(args.runs, call)}
        for side in SIDES:  # warm-up: imports, the pipeline kept, the connections
            await sides[side]()
        rows: dict[str, list[float]] = {side: [] for side in SIDES}
        accepted = server.connections_accepted
        for round_no in range(1, args.rounds + 1):
            for side in SIDES if round_no % 2 else SIDES[::-1]:
                rows[side].append(await sides[side]() / args.runs * 1000)
            print(f"{vendor:<10} round {round_no}: " + ", ".join(
                f"{side} {rows[side][-1]:.2f}" for side in SIDES) + " ms", flush=True)
        await client.close()
        return {"ms": rows, "connections": server.connections_accepted - accepted}


async def measure(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Every vendor, with the daemon's services over a home in `tmp`."""
    (tmp / "home").mkdir()
    services = await start(Host(tmp / "home", settings=Settings(executor=args.executor,
                                                                 workers=2)))
    try:
        return {vendor: await measure_vendor(services, vendor, args) for vendor in MODELS}
    finally:
        await services.stop()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--executor", choices=["inline", "processes"], default="inline",
                        help="where the runs execute (processes: two worker processes)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the summary; 0 when every vendor meets the target."""
    args = parse_args(argv)
    loop_name, _ = loop_choice(not args.no_uvloop)
    found = run_in_temporary_directory("providers", not args.no_uvloop,
                                       lambda tmp: measure(tmp, args))
    summary: dict[str, Any] = {"loop": loop_name, "runs": args.runs,
                               "executor": args.executor, "vendors": {}}
    print(f"\n{loop_name}; {args.executor}; best of {args.rounds} rounds of {args.runs} each")
    for vendor, measured in found.items():
        best = {side: min(rows) for side, rows in measured["ms"].items()}
        added = best["run"] - best["scripted"]
        ratio = best["run"] / (best["scripted"] + best["bare"])
        summary["vendors"][vendor] = {**{f"{side}_ms": round(ms, 3) for side, ms in best.items()},
                                      "added_ms": round(added, 3), "ratio": round(ratio, 3),
                                      "connections": measured["connections"]}
        print(f"{vendor}: a run {best['run']:.2f} ms against a scripted run "
              f"{best['scripted']:.2f} + a bare SDK call {best['bare']:.2f}: {ratio:.2f}x "
              f"(target <= {TARGET:g}x; the provider adds {added:.2f} ms) "
              f"{'OK' if ratio <= TARGET else 'MISSED'}; new connections in the timed "
              f"rounds ({args.rounds * args.runs} runs): {measured['connections']}")
    if args.json:
        print(json.dumps(summary))
    return 0 if all(v["ratio"] <= TARGET for v in summary["vendors"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
