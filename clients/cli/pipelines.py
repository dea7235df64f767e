"""`ostinato validate | plan | run PIPELINE` and `ostinato replay RUN`: the pipeline methods
and run.start (one run, a trial set, a replay) with human output."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ostinato.protocol.errors import ErrorCode, RpcError

from .answer import option_label, waiting_hint
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_connection_arguments,
    add_input_arguments,
    input_values,
    json_object_option,
    key_values,
    pipeline_ref,
    positive_int,
    print_json,
    report_rpc_error,
    run_client,
)
from .failure import fail
from .interrupt import CancelOnInterrupt, Interrupted, cancel_work, detached
from .progress import PLAIN_EVERY_S, RunDisplay, TrialDisplay

if TYPE_CHECKING:  # the command line starts light: see common.py
    import asyncio

    from ..python import AsyncClient

PROGRESS_EVERY_S = 0.25  # how often a trial set's bar is redrawn on a terminal


def _format_diagnostic(path: str, diagnostic: dict[str, Any]) -> str:
    where = path
    if diagnostic.get("line"):
        where += f":{diagnostic['line']}:{diagnostic.get('col') or 1}"
    subject = diagnostic.get("node") or "->".join(diagnostic.get("edge") or []) or ""
    subject = f" ({subject})" if subject else ""
    return (f"{where}: {diagnostic['severity']}: {diagnostic['message']}{subject} "
            f"[{diagnostic['rule']}]")


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"pipeline": pipeline_ref(args.pipeline),
                              "variables": key_values(args.set, "--set")}
    inputs = input_values(args)
    if inputs:
        params["inputs"] = inputs
    return params


async def _validate(args: argparse.Namespace, client: AsyncClient) -> int:
    method = "pipeline.plan" if args.command == "plan" else "pipeline.validate"
    result = await client.request(method, _params(args))
    if args.json:
        print_json(result)
    else:
        for diagnostic in result["diagnostics"]:
            print(_format_diagnostic(args.pipeline, diagnostic))
        if args.command == "plan" and result.get("plan"):
            plan = result["plan"]
            print(f"{plan['name']} ({plan['format']}{', dag' if plan['dag'] else ''}), "
                  f"{len(plan['nodes'])} nodes, {len(plan['edges'])} edges, "
                  f"hash {plan['pipeline_hash'][:12]}")
            for node in plan["nodes"]:
                model = node["attrs"].get("llm_model")
                print(f"  {node['id']:<24} {node['type']:<16} {model or ''}".rstrip())
        elif result["valid"]:
            print(f"{args.pipeline}: valid")
    return EXIT_OK if result["valid"] else EXIT_FAILED


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.settings:
        settings = json_object_option(args.settings, "--settings")
    if args.provider:
        settings["default_provider"] = args.provider
    human = settings.setdefault("human", {})
    if args.answer:
        human["answers"] = [*human.get("answers", []), *args.answer]
    if args.auto_approve:
        human["auto_approve"] = True
    return settings


async def _run(args: argparse.Namespace, client: AsyncClient) -> int:
    """`ostinato run`: one run, or with --trials a trial set."""
    params: dict[str, Any] = {**_params(args), "settings": _settings(args)}
    if args.record:
        params["record"] = args.record
    trial_options = {"concurrency": args.concurrency, "pass_threshold": args.pass_threshold,
                     "early_stop": args.early_stop or None}
    given = {name: value for name, value in trial_options.items() if value is not None}
    if args.trials is None:
        if given:
            raise UsageError("--concurrency, --early-stop and --pass-threshold need --trials")
        return await _follow(args, client, params)
    return await _trial_set(args, client, {**params, "trials": args.trials, **given})


async def _replay(args: argparse.Namespace, client: AsyncClient) -> int:
    """`ostinato replay RUN`: the run again, its calls served from its recording."""
    params: dict[str, Any] = {"replay": {"from_run": args.run, "mode": args.mode}}
    if args.pipeline:
        params["pipeline"] = pipeline_ref(args.pipeline)
    return await _follow(args, client, params)


async def _follow(args: argparse.Namespace, client: AsyncClient, params: dict[str, Any]) -> int:
    """Start one run and show its nodes as they run; its summary once it ended. Ctrl-C
    cancels the run; `--detach` leaves it running."""
    import asyncio  # here, not at the top: the command line starts light

    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on_notification("run/event", lambda _method, params: events.put_nowait(params))
    name = f"ostinato {args.command}"
    async with CancelOnInterrupt(name) as interrupts:
        if not args.detach:  # every run until ours is known: its first events come at once
            await client.request("run.subscribe", {"run_id": "*"})
        started = await client.request("run.start", params)
        run_id = started["run_id"]
        if args.detach:
            return detached(args, started)
        # Ours only from now on: a shared daemon's other runs are not this command's.
        await client.request("run.subscribe", {"run_id": run_id})
        await client.request("run.unsubscribe", {"run_id": "*"})
        with RunDisplay(sys.stdout, quiet=args.json) as display:
            display.started(started, params.get("replay"))
            try:
                await interrupts.guard(_events(args, client, run_id, events, display))
            except Interrupted:
                display.stop()
                return await cancel_work(name, "run", run_id, lambda: client.request(
                    "run.cancel", {"run_id": run_id}), args.json)
            # The terminal event is published only once the run's end is in the store.
            summary = await client.request("run.get", {"run_id": run_id})
            summary = {k: v for k, v in summary.items()
                       if k not in ("stages", "context", "question")}
            if args.json:
                print_json(summary)
            else:
                display.finished(summary)
    return EXIT_OK if summary["outcome"] == "success" else EXIT_FAILED


async def _events(args: argparse.Namespace, client: AsyncClient, run_id: str,
                  events: asyncio.Queue[dict[str, Any]], display: RunDisplay) -> None:
    """Show the run's events until its terminal one; without a terminal, a status line when
    nothing was said for a while."""
    import asyncio  # here, not at the top: the command line starts light

    while True:
        try:
            event = await asyncio.wait_for(events.get(), PLAIN_EVERY_S)
        except TimeoutError:
            display.heartbeat()
            continue
        if event["run_id"] != run_id:
            continue
        display.event(event)
        if event["type"] == "InterviewStarted":
            await _ask(args, client, run_id, event["data"]["question"], display)
        if event["type"] in ("PipelineCompleted", "PipelineFailed", "PipelineCancelled"):
            return


async def _trial_set(args: argparse.Namespace, client: AsyncClient,
                     params: dict[str, Any]) -> int:
    """Start a trial set; show its progress from `trials.get` until it ended (a bar on a
    terminal, a plain line every PLAIN_EVERY_S elsewhere); print its summary. Exit 0 when
    the verdict is `passed`. Ctrl-C cancels the set; `--detach` leaves it running."""
    name = f"ostinato {args.command}"
    async with CancelOnInterrupt(name) as interrupts:
        started = await client.request("run.start", params)
        set_id = started["trial_set_id"]
        if args.detach:
            return detached(args, started)
        with TrialDisplay(sys.stdout, quiet=args.json) as display:
            display.started(started, params.get("replay"))
            try:
                summary = await interrupts.guard(_watch_set(client, set_id, started, display))
            except Interrupted:
                display.stop()
                return await cancel_work(name, "trial set", set_id, lambda: client.request(
                    "trials.cancel", {"trial_set_id": set_id}), args.json)
            if args.json:
                print_json(summary)
            else:
                display.finished(summary)
    return EXIT_OK if summary["verdict"] == "passed" else EXIT_FAILED


async def _watch_set(client: AsyncClient, set_id: str, started: dict[str, Any],
                     display: TrialDisplay) -> dict[str, Any]:
    """Redraw the set's progress until it ended; its final summary."""
    import asyncio  # here, not at the top: the command line starts light

    ended = asyncio.ensure_future(client.request("trials.get", {"trial_set_id": set_id,
                                                                "wait": True}))
    every = PROGRESS_EVERY_S if display.live else PLAIN_EVERY_S
    try:
        if not display.quiet:
            display.progress(started)
            while not ended.done():
                await asyncio.wait({ended}, timeout=every)
                if not ended.done():
                    display.progress(await client.request("trials.get",
                                                          {"trial_set_id": set_id}))
        return await ended
    finally:
        ended.cancel()


_PROMPTS = {"multiple_choice": "Select: ", "yes_no": "[y/n]: ", "confirmation": "[y/n]: ",
            "freeform": "> "}


def _read_line(prompt: str) -> asyncio.Future[str]:
    """`input(prompt)` in a daemon thread: unlike asyncio.to_thread, a Ctrl-C that cancels
    the run while the prompt waits does not leave the exit waiting for a line."""
    import asyncio  # here, not at the top: the command line starts light
    import contextlib
    import threading

    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def settle(value: str | None, error: BaseException | None) -> None:
        if line.done():
            return
        if error is not None:
            line.set_exception(error)
        else:
            line.set_result(value or "")

    def read() -> None:
        try:
            value, error = input(prompt), None
        except BaseException as exc:  # EOFError: the terminal closed
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=read, name="prompt", daemon=True).start()
    return line


async def _ask(args: argparse.Namespace, client: AsyncClient, run_id: str,
               question: dict[str, Any], display: RunDisplay) -> None:
    """A human gate: ask on the terminal when there is one; else leave it to others."""
    waiting = waiting_hint(args, run_id, question)

    def say_how_to_answer() -> None:
        if display.quiet:  # --json keeps stdout for the result: the hint goes to stderr
            print(f"? {question['text']}\n{waiting}", file=sys.stderr, flush=True)
        else:
            display.note(waiting)

    if not sys.stdin.isatty():
        say_how_to_answer()
        return
    kind = question.get("type", "multiple_choice")
    if display.quiet:  # else the display has shown the question's text already
        print(f"? {question['text']}")
    if kind == "multiple_choice":
        for option in question["options"]:
            print(f"  {option_label(option)}")
    while True:
        try:
            answer = await _read_line(_PROMPTS.get(kind, "Select: "))
        except EOFError:  # the terminal closed: someone else may still answer
            say_how_to_answer()
            return
        try:
            await client.request("human.answer", {
                "run_id": run_id, "question_id": question["question_id"],
                # Free text is sent as typed; a key or yes/no without the newline's spaces.
                "answer": answer if kind == "freeform" else answer.strip()})
            return
        except RpcError as error:
            if error.code == ErrorCode.INVALID_PARAMS:  # not yes or no: ask again
                print(error.message)
            elif error.code == ErrorCode.CONFLICT:
                # Answered elsewhere, or its timeout took the default meanwhile.
                display.note(f"the question was closed: {error.message}")
                return
            else:
                raise


_ACTIONS = {"run": _run, "replay": _replay, "validate": _validate, "plan": _validate}


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato validate`, `plan`, `run` and `replay`."""
    name = f"ostinato {args.command}"

    def refused(error: RpcError) -> int:
        """An invalid pipeline's diagnostics as `file:line:col: …` lines; else as usual."""
        if isinstance(error.data, dict) and "diagnostics" in error.data:
            lines = tuple(_format_diagnostic(args.pipeline or "pipeline", diagnostic)
                          for diagnostic in error.data["diagnostics"])
            return fail(name, error.message, EXIT_USAGE, json_mode=args.json,
                        code=error.code, data=error.data, details=lines)
        return report_rpc_error(name, error, json_mode=args.json)

    action = _ACTIONS[args.command]
    return run_client(args, name, lambda client: action(args, client), on_rpc_error=refused)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


_RECORD_HELP = ("what the run's records keep: full (default), or metadata_only: no prompt "
                "or response content (sizes and sha256 instead), no prompt.md, response.md "
                "or stdout.txt")


DETACH_HELP = ("start, print the id and how to follow and cancel it, and exit 0, leaving "
               "it running (without --detach, Ctrl-C cancels it)")


def add_parsers(commands: Any) -> None:
    """The `validate`, `plan`, `run` and `replay` subcommands."""
    for name, summary in (("validate", "parse and lint a pipeline"),
                          ("plan", "show the resolved plan of a pipeline, running nothing"),
                          ("run", "run a pipeline (or a trial set of runs) and show its "
                                  "progress")):
        exits = ("0 ok, 1 invalid or failed, 2 usage, 3 unreachable" if name != "run" else
                 "0 the run succeeded (with --trials: the verdict is passed; with --detach: "
                 "it started), 1 it failed, 2 usage, 3 unreachable, 130 interrupted (Ctrl-C "
                 "cancels the run or trial set)")
        parser = commands.add_parser(name, help=summary, description=summary + ". Exit "
                                     f"codes: {exits}.")
        parser.add_argument("pipeline", help="a .dot file, a .yaml recipe, or - for stdin")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="a variable for $KEY in prompts; repeatable")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        add_connection_arguments(parser)
        add_input_arguments(parser, "an initial context value (`${KEY}` in prompts)")
        if name == "run":
            parser.add_argument("--settings", metavar="FILE_OR_OBJECT",
                                help="run settings: a JSON or YAML object, inline or in a "
                                     "file")
            parser.add_argument("--provider", help="default model provider (e.g. openai)")
            parser.add_argument("--answer", action="append", default=[],
                                help="a preset answer for the next human gate (an option "
                                     "key or label, yes/no, or free text); repeatable")
            parser.add_argument("--auto-approve", action="store_true",
                                help="answer every human gate: its first option, yes, "
                                     "or `auto-approved` for free text")
            parser.add_argument("--record", choices=("full", "metadata_only"),
                                metavar="full|metadata_only", help=_RECORD_HELP)
            parser.add_argument("--detach", action="store_true", help=DETACH_HELP)
            trials = parser.add_argument_group(
                "trial sets", "run the pipeline N times and judge the set: its verdict is "
                              "passed when at least the pass threshold of all N trials pass")
            trials.add_argument("--trials", type=positive_int, metavar="N",
                                help="run a trial set of N runs")
            trials.add_argument("--concurrency", type=positive_int, metavar="K",
                                help="trials running at once (default 4)")
            trials.add_argument("--early-stop", action="store_true",
                                help="end the set once its verdict is settled: skip trials "
                                     "not started, cancel running ones")
            trials.add_argument("--pass-threshold", type=_share, metavar="P",
                                help="share of the N trials that must pass, 0 to 1 "
                                     "(default 1: all)")
        parser.set_defaults(func=run)

    summary = "run a recorded run again, its calls served from its recording"
    replay = commands.add_parser(
        "replay", help=summary,
        description=summary + " (its cassette): with the run's pipeline, inputs and "
                    "settings, or an edited pipeline file. A call the recording does not "
                    "hold is a divergence that stops the run (mode recorded), or goes live "
                    "(hybrid). Exit codes: 0 the replay succeeded (with --detach: it "
                    "started), 1 it failed or diverged, 2 usage, 3 unreachable, 130 "
                    "interrupted (Ctrl-C cancels the replay).")
    replay.add_argument("run", metavar="RUN", help="the recorded run's id")
    replay.add_argument("--mode", choices=("recorded", "hybrid", "live"), default="recorded",
                        metavar="recorded|hybrid|live",
                        help="recorded (default): every call from the recording, an "
                             "unmatched one diverges; hybrid: unmatched calls go live; "
                             "live: every call live")
    replay.add_argument("--pipeline", metavar="FILE",
                        help="run this pipeline file (e.g. an edited copy) instead of the "
                             "recorded run's pipeline; the recorded inputs and settings are "
                             "then not used")
    replay.add_argument("--detach", action="store_true", help=DETACH_HELP)
    replay.add_argument("--json", action="store_true", help="print the result as JSON")
    add_connection_arguments(replay)
    replay.set_defaults(func=run)
