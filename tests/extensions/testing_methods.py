"""Test-only methods, loaded with `--extension tests/extensions/testing_methods.py`.

They exist so that tests can drive cancellation, progress, subscriptions and internal
errors deterministically; the shipped daemon never registers them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from pydantic import BaseModel

from ostinato.daemon.server.dispatch import Dispatcher
from ostinato.daemon.services.base import RequestContext
from ostinato.protocol.base import Params
from ostinato.protocol.registry import MethodSpec


class SlowParams(Params):
    steps: int = 3
    gate: str | None = None  # wait for test.release with this name between steps


class SlowResult(BaseModel):
    steps_done: int


class GateParams(Params):
    name: str


class TopicParams(Params):
    topic: str
    payload: dict | None = None


class FreezeParams(Params):
    until: str  # a file the test creates to unfreeze the daemon


class Count(BaseModel):
    count: int


class Modules(BaseModel):
    names: list[str]


_gates: dict[str, asyncio.Event] = {}


def _gate(name: str) -> asyncio.Event:
    return _gates.setdefault(name, asyncio.Event())


async def slow(params: SlowParams, ctx: RequestContext) -> SlowResult:
    """Reports progress per step; with a gate, waits for `test.release` before each step."""
    ctx.progress.begin("slow work", percentage=0)
    for step in range(params.steps):
        if params.gate is not None:
            event = _gate(f"{params.gate}:{step}")
            await event.wait()
        else:
            await asyncio.sleep(0)
        ctx.progress.report(f"step {step + 1}", percentage=(step + 1) * 100 // params.steps)
    ctx.progress.end("done")
    return SlowResult(steps_done=params.steps)


def release(params: GateParams, ctx: RequestContext) -> Count:
    """Open one gate of `test.slow`."""
    _gate(params.name).set()
    return Count(count=1)


def fail(params: Params, ctx: RequestContext) -> Count:
    """Raises an unexpected exception: the daemon must answer -32603 and keep going."""
    raise RuntimeError("deliberate failure with a secret-looking detail")


_kept: list[RequestContext] = []


def keep_context(params: Params, ctx: RequestContext) -> Count:
    """A sync handler that keeps its request context past its call, which one answered
    inline must not do: strict mode (the tests') turns that into an internal error."""
    _kept.append(ctx)
    return Count(count=len(_kept))


def subscribe(params: TopicParams, ctx: RequestContext) -> Count:
    ctx.connection.subscriptions.add(params.topic)
    return Count(count=len(ctx.connection.subscriptions))


def publish(params: TopicParams, ctx: RequestContext) -> Count:
    return Count(count=ctx.services.host.publish(params.topic, "test/event",
                                                 {"topic": params.topic,
                                                  "payload": params.payload}))


def freeze(params: FreezeParams, ctx: RequestContext) -> Count:
    """Blocks the whole daemon (the event loop) until the file `until` exists, at most 30 s:
    a daemon that does not answer at all."""
    deadline = time.monotonic() + 30
    while not os.path.exists(params.until) and time.monotonic() < deadline:
        time.sleep(0.05)  # deliberately on the loop
    return Count(count=1)


def modules(params: Params, ctx: RequestContext) -> Modules:
    """The modules the daemon has imported so far (what starting it cost)."""
    return Modules(names=sorted(sys.modules))


def register(dispatcher: Dispatcher) -> None:
    """Called by the daemon's --extension loader."""
    dispatcher.register(MethodSpec("test.slow", SlowParams, SlowResult, "slow"), slow)
    dispatcher.register(MethodSpec("test.release", GateParams, Count, "release"), release)
    dispatcher.register(MethodSpec("test.fail", Params, Count, "fail"), fail)
    dispatcher.register(MethodSpec("test.keep_context", Params, Count, "keep"), keep_context)
    dispatcher.register(MethodSpec("test.subscribe", TopicParams, Count, "sub"), subscribe)
    dispatcher.register(MethodSpec("test.publish", TopicParams, Count, "pub"), publish)
    dispatcher.register(MethodSpec("test.freeze", FreezeParams, Count, "freeze"), freeze)
    dispatcher.register(MethodSpec("test.modules", Params, Modules, "modules"), modules)
