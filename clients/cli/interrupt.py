"""Cancel means cancel: Ctrl-C on a command that started work (a run, a trial set, a test
run) cancels that work, says so and exits 130; a second Ctrl-C exits at once. `--detach`
leaves the work running instead: the command prints how to follow and cancel it."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .common import EXIT_INTERRUPTED, EXIT_OK, print_json
from .failure import INTERRUPTED, fail

T = TypeVar("T")


class Interrupted(Exception):
    """Ctrl-C was pressed while the command followed its work."""


class CancelOnInterrupt:
    """While entered, SIGINT no longer raises KeyboardInterrupt: the first one is recorded
    (and ends `guard`), a second one exits the process at once with 130."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits = 0
        self._waiter: Any = None  # an asyncio.Future that the first Ctrl-C resolves

    async def __aenter__(self) -> CancelOnInterrupt:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGINT, self._hit)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._loop.remove_signal_handler(signal.SIGINT)

    @property
    def hit(self) -> bool:
        """Ctrl-C was pressed."""
        return self.hits > 0

    def _hit(self) -> None:
        self.hits += 1
        if self.hits > 1:
            # The cancel request is on its way (or the daemon got it): leave it to finish.
            sys.stdout.flush()
            print(f"{self.name}: interrupted again: exiting without waiting for the cancel",
                  file=sys.stderr, flush=True)
            os._exit(EXIT_INTERRUPTED)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def guard(self, work: Coroutine[Any, Any, T]) -> T:
        """`work`'s result; Interrupted (and `work` cancelled) at the first Ctrl-C."""
        import asyncio

        if self.hit:
            work.close()
            raise Interrupted
        task = asyncio.ensure_future(work)
        self._waiter = self._loop.create_future()
        try:
            await asyncio.wait({task, self._waiter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise Interrupted


async def cancel_work(name: str, what: str, work_id: str,
                      cancel: Callable[[], Awaitable[Any]], json_mode: bool) -> int:
    """After a Ctrl-C: cancel the work with `cancel()`, say so on stderr (and with
    `json_mode` as an error object on stdout) and return 130."""
    from ostinato.protocol.errors import RpcError

    print(f"{name}: cancelling {what} {work_id} (Ctrl-C again to exit at once)",
          file=sys.stderr, flush=True)
    detach = f"to leave a {what} running instead, start it with --detach"
    try:
        summary = await cancel()
    except RpcError as error:  # it ended meanwhile: nothing was left to cancel
        return fail(name, f"interrupted; {what} {work_id} was not cancelled: {error.message}",
                    EXIT_INTERRUPTED, json_mode=json_mode, code=INTERRUPTED,
                    details=(detach,))
    return fail(name, f"cancelled {what} {work_id}", EXIT_INTERRUPTED, json_mode=json_mode,
                code=INTERRUPTED, data=summary, details=(detach,))


def _where(args: argparse.Namespace) -> str:
    """The connection options the command was given, to repeat in the commands shown."""
    parts = []
    for option in ("socket", "tcp", "home"):
        value = getattr(args, option, None)
        if value is not None:
            parts += [f"--{option}", str(value)]
    return "".join(f" {shlex.quote(part)}" for part in parts)


def _call(method: str, params: dict[str, Any], where: str) -> str:
    return f"ostinato call {method} {shlex.quote(json.dumps(params))}{where}"


def detached(args: argparse.Namespace, started: dict[str, Any]) -> int:
    """`--detach`: the work started; print its id (with `--json` what the start answered)
    and the commands to follow and cancel it. Exit 0."""
    if args.json:
        print_json(started)
        return EXIT_OK
    where = _where(args)
    if "run_id" in started:
        what, work_id = "run", started["run_id"]
        follow = f"ostinato runs watch {work_id}{where}"
        cancel = f"ostinato runs cancel {work_id}{where}"
    elif "trial_set_id" in started:
        what, work_id = "trial set", started["trial_set_id"]
        key = {"trial_set_id": work_id}
        follow = _call("trials.get", {**key, "wait": True}, where)
        cancel = _call("trials.cancel", key, where)
    else:
        what, work_id = "test run", started["test_run_id"]
        key = {"test_run_id": work_id}
        follow = _call("tests.get", {**key, "wait": True}, where)
        cancel = _call("tests.cancel", key, where)
    print(f"{what} {work_id} started (detached: it goes on without this command)")
    print(f"  follow it: {follow}")
    print(f"  cancel it: {cancel}")
    return EXIT_OK
