"""`ostinato runs list|show|watch|cancel|resume|trace`: live with the runs of a running
daemon, whoever started them. Built on the blocking link (link.py), not the async client:
these commands must start fast."""

from __future__ import annotations

import argparse
import shlex
import sys

from .answer import question_lines, waiting_hint
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    add_connection_arguments,
    add_input_arguments,
    input_values,
    key_values,
    positive_int,
    print_json,
    text_table,
)
from .link import Link, run_command

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: see docs/cli.md
if TYPE_CHECKING:
    from typing import Any

RUN_STATUSES = ("pending", "running", "waiting", "completed", "failed", "cancelled",
                "interrupted", "budget_exceeded")
_ENDED = ("PipelineCompleted", "PipelineFailed", "PipelineCancelled")
_MARKS = {"StageStarted": "▶", "StageCompleted": "✓", "StageFailed": "✗",
          "StageRetrying": "↻", "ModelRetrying": "↻"}


def _say(line: str) -> None:
    print(line, flush=True)


def _when(iso: str | None) -> str:
    """`2026-01-02T03:04:05.678Z` as `2026-01-02 03:04:05`."""
    return (iso or "")[:19].replace("T", " ")


def _cost(run: dict[str, Any]) -> str:
    return f"${run['cost_usd']:.4f}"


# -- list, show -----------------------------------------------------------------------------


def _list(args: argparse.Namespace, link: Link) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    if args.pipeline:
        params["pipeline"] = args.pipeline
    if args.cursor:
        params["cursor"] = args.cursor
    for bound in ("since", "until"):
        if getattr(args, bound):
            params[bound] = getattr(args, bound)
    result = link.request("run.list", params)
    if args.json:
        print_json(result)
        return EXIT_OK
    runs = result["runs"]
    if not runs:
        _say("no runs")
        return EXIT_OK
    rows = [["RUN", "STATUS", "PIPELINE", "CREATED", "COST"]]
    rows += [[run["run_id"], run["status"], run["pipeline_name"], _when(run["created_at"]),
              _cost(run)] for run in runs]
    for line in text_table(rows, right=frozenset({4})):
        _say(line)
    if result.get("next_cursor"):
        _say(f"more: ostinato runs list --cursor {result['next_cursor']}")
    return EXIT_OK


def _summary_lines(run: dict[str, Any]) -> list[str]:
    outcome = f" ({run['outcome']})" if run.get("outcome") else ""
    reason = f": {run['failure_reason']}" if run.get("failure_reason") else ""
    tokens = run["input_tokens"] + run["output_tokens"]
    lines = [f"run {run['run_id']}  {run['pipeline_name']}  {run['status']}{outcome}{reason}",
             f"  created {_when(run['created_at'])}, started {_when(run['started_at']) or '-'}"
             f", ended {_when(run['ended_at']) or '-'}",
             f"  cost {_cost(run)}; {tokens} tokens ({run['input_tokens']} in, "
             f"{run['output_tokens']} out)",
             f"  run directory: {run['run_dir']}"]
    if run.get("current_node") and run["status"] in ("running", "waiting"):
        lines.append(f"  current node: {run['current_node']}")
    for label, key in (("snapshot", "snapshot_id"), ("parent run", "parent_run_id")):
        if run.get(key):
            lines.append(f"  {label}: {run[key]}")
    if run.get("children"):
        lines.append(f"  child runs: {', '.join(run['children'])}")
    if run.get("resumable") and run["status"] not in ("running", "waiting", "pending"):
        lines.append(f"  resumable: ostinato runs resume {run['run_id']}")
    return lines


def _show(args: argparse.Namespace, link: Link) -> int:
    run = link.request("run.get", {"run_id": args.run})
    if args.json:
        print_json(run)
        return EXIT_OK
    for line in _summary_lines(run):
        _say(line)
    if run["stages"]:
        rows = [["#", "NODE", "ATTEMPT", "STATUS", "TIME"]]
        rows += [[str(stage["seq"]), stage["node_id"] + (f" [{stage['branch']}]"
                                                         if stage.get("branch") else ""),
                  str(stage["attempt"]), stage["status"], f"{stage['duration_ms']:.1f} ms"]
                 for stage in run["stages"]]
        _say("stages:")
        for line in text_table(rows, right=frozenset({0, 2, 4})):
            _say("  " + line)
    if run.get("question"):
        for line in question_lines(run["question"]):
            _say(line)
        _say(waiting_hint(args, run["run_id"], run["question"]))
    return EXIT_OK


# -- watch ----------------------------------------------------------------------------------


def event_line(event: dict[str, Any]) -> str | None:
    """One line for a node's start, end or retry (and the run's own milestones); None for
    events not worth a line."""
    kind, data = event["type"], event["data"]
    name = data.get("name", "")
    branch = f" [{data['branch']}]" if data.get("branch") else ""
    attempt = f" (attempt {data['attempt']})" if data.get("attempt", 1) > 1 else ""
    mark = _MARKS.get(kind, "")
    if kind == "StageStarted":
        return f"  {mark} {name}{branch}{attempt}"
    if kind == "StageCompleted":
        return (f"  {mark} {name}{branch}{attempt}  {data.get('duration_ms', 0):.1f} ms  "
                f"{data.get('status', '')}")
    if kind == "StageFailed":
        retry = ", will retry" if data.get("will_retry") else ""
        return f"  {mark} {name}{branch}{attempt}  {data.get('error', '')}{retry}"
    if kind == "StageRetrying":
        return f"  {mark} {name} retrying{attempt} in {data.get('delay_ms', 0):.0f} ms"
    if kind == "ModelRetrying":
        return (f"  {mark} {name} provider retry {data.get('provider_try')} in "
                f"{data.get('delay_ms', 0):.0f} ms: {data.get('error', '')}")
    if kind == "PipelineResumed":
        return f"  resumed at {data.get('next_node') or data.get('from_node')}"
    if kind == "InterviewCompleted":
        return f"    answered: {data.get('answer')}"
    if kind == "InterviewTimeout":
        return f"    no answer in time at {data.get('stage')}"
    return None


def follow(args: argparse.Namespace, link: Link, run_id: str,
           pending: list[dict[str, Any]] | None = None) -> int:
    """Show the run's events (subscribed already) until it ends; its summary then. Exit 0
    when it succeeded, 1 when it failed, was cancelled or interrupted."""
    pending = list(pending or [])
    while True:
        while pending:
            event = pending.pop(0)
            if event.get("run_id") != run_id:
                continue
            if event["type"] == "InterviewStarted":
                question = event["data"]["question"]
                if args.json:  # stdout is for the JSON result; someone should still know
                    print(waiting_hint(args, run_id, question), file=sys.stderr, flush=True)
                else:
                    for line in question_lines(question):
                        _say(line)
                    _say(waiting_hint(args, run_id, question))
            elif event["type"] in _ENDED:
                return _ended(args, link, run_id)
            elif not args.json and (line := event_line(event)) is not None:
                _say(line)
        notification = link.next_notification()
        if notification is not None and notification[0] == "run/event":
            pending.append(notification[1])


def _ended(args: argparse.Namespace, link: Link, run_id: str) -> int:
    """The end of a run: its summary (the terminal event is published once the end is in
    the store), and the exit code it deserves."""
    run = link.request("run.get", {"run_id": run_id})
    summary = {key: value for key, value in run.items()
               if key not in ("stages", "context", "question")}
    if args.json:
        print_json(summary)
    else:
        for line in _summary_lines(summary):
            _say(line)
    return EXIT_OK if run["outcome"] == "success" else EXIT_FAILED


def _queued_events(link: Link) -> list[dict[str, Any]]:
    """The run/events that arrived while waiting for an answer."""
    events = []
    while (notification := link.next_notification(timeout=0)) is not None:
        if notification[0] == "run/event":
            events.append(notification[1])
    return events


def _watch(args: argparse.Namespace, link: Link) -> int:
    # Subscribe first, then look: an event after the subscription is never missed, and a
    # run that ended before it is seen ended.
    link.request("run.subscribe", {"run_id": args.run})
    run = link.request("run.get", {"run_id": args.run})
    if run["status"] not in ("pending", "running", "waiting"):
        return _ended(args, link, args.run)
    if not args.json:
        _say(f"run {run['run_id']}  {run['pipeline_name']}  {run['status']}")
    events = _queued_events(link)
    if run.get("question") and not any(e["type"] == "InterviewStarted" for e in events):
        events.insert(0, {"run_id": args.run, "type": "InterviewStarted",
                          "data": {"question": run["question"]}})
    return follow(args, link, args.run, events)


# -- cancel, resume, trace ------------------------------------------------------------------


def _cancel(args: argparse.Namespace, link: Link) -> int:
    run = link.request("run.cancel", {"run_id": args.run})
    if args.json:
        print_json(run)
    else:
        _say(f"run {run['run_id']} {run['status']}; resume it with: ostinato runs resume "
             f"{run['run_id']}")
    return EXIT_OK


def _resume(args: argparse.Namespace, link: Link) -> int:
    if args.wait:
        link.request("run.subscribe", {"run_id": args.run})
    # Secret inputs are not kept by a run: a resume gives them again.
    params: dict[str, Any] = {"run_id": args.run, "inputs": input_values(args)}
    if args.set:
        params["variables"] = key_values(args.set, "--set")
    run = link.request("run.resume", params)
    if not args.wait:
        if args.json:
            print_json(run)
        else:
            _say(f"run {run['run_id']} {run['status']}; follow it with: ostinato runs watch "
                 f"{run['run_id']}")
        return EXIT_OK
    if not args.json:
        _say(f"run {run['run_id']}  {run['pipeline_name']}  resumed")
    return follow(args, link, args.run, _queued_events(link))


def _call_line(call: dict[str, Any]) -> list[str]:
    request = call.get("request") or {}
    if call["kind"] == "model":
        what = "/".join(str(request[k]) for k in ("provider", "model") if request.get(k))
    elif call["kind"] == "tool":
        what = shlex.join(str(word) for word in request.get("argv") or [])[:40]
    else:
        what = ""
    end = call.get("error") or call.get("finish_reason") or ""
    return [str(call["seq"]), call["node_id"], call["kind"], what,
            str(call["input_tokens"] + call["output_tokens"]), f"${call['cost_usd']:.4f}",
            f"{call['latency_ms']:.1f} ms", end[:60]]


def _trace(args: argparse.Namespace, link: Link) -> int:
    listed = link.request("trace.list", {"run_id": args.run})
    traces = [link.request("trace.get", {"trace_id": entry["trace_id"]})
              for entry in listed["traces"]]
    if args.json:
        print_json({"run_id": args.run, "traces": traces})
        return EXIT_OK
    for trace in traces:
        totals = trace["totals"]
        _say(f"trace {trace['trace_id']}  run {args.run}  {trace['run']['status']}")
        if trace["calls"]:
            rows = [["#", "NODE", "KIND", "CALL", "TOKENS", "COST", "LATENCY", "END"]]
            rows += [_call_line(call) for call in trace["calls"]]
            for line in text_table(rows, right=frozenset({0, 4, 5, 6})):
                _say("  " + line)
        _say(f"  {totals['calls']} calls ({totals['model_calls']} model, "
             f"{totals['tool_calls']} tool, {totals['error_calls']} failed); "
             f"{totals['input_tokens'] + totals['output_tokens']} tokens, "
             f"${totals['cost_usd']:.4f}, {totals['latency_ms']:.1f} ms of calls")
    return EXIT_OK


_ACTIONS = {"list": _list, "show": _show, "watch": _watch, "cancel": _cancel,
            "resume": _resume, "trace": _trace}


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato runs …`."""
    action = _ACTIONS[args.runs_command]
    return run_command(args, f"ostinato runs {args.runs_command}",
                       lambda link: action(args, link))


_EXITS = "2 usage, 3 unreachable, 130 interrupted"
_COMMANDS = (
    ("list", "list runs, newest first", "0 listed, 1 refused"),
    ("show", "a run: its summary, stages and waiting question", "0 shown, 1 no such run"),
    ("watch", "follow a run, whoever started it, until it ends: one line per node start, "
              "end and retry; a waiting question with the command that answers it",
     "0 the run succeeded, 1 it failed, was cancelled or interrupted (or no such run)"),
    ("cancel", "cancel a running run (it stays resumable)",
     "0 cancelled, 1 no such run or not running"),
    ("resume", "resume an interrupted, cancelled or budget_exceeded run",
     "0 resumed (with --wait: it then succeeded), 1 refused (with --wait: it failed)"),
    ("trace", "a run's model and tool calls in order, with tokens, cost and latency",
     "0 shown, 1 no such run"),
)


def add_parsers(commands: Any) -> None:
    """The `runs` subcommands."""
    runs = commands.add_parser("runs", help="list, show, watch, cancel, resume and trace runs",
                               description="The runs of the daemon, whoever started them.")
    verbs = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    for name, summary, exits in _COMMANDS:
        parser = verbs.add_parser(name, help=summary, description=f"{summary[0].upper()}"
                                  f"{summary[1:]}. Exit codes: {exits}, {_EXITS}.")
        if name == "list":
            parser.add_argument("--status", action="append", choices=RUN_STATUSES,
                                metavar="STATUS", help="only runs with this status; "
                                "repeatable (" + ", ".join(RUN_STATUSES) + ")")
            parser.add_argument("--pipeline", help="only runs of this pipeline (name or hash)")
            parser.add_argument("--limit", type=positive_int, default=50, metavar="N",
                                help="at most N runs (default 50, at most 1000)")
            parser.add_argument("--cursor", help="the page after the one that printed it")
            parser.add_argument("--since", metavar="TIME",
                                help="only runs created at or after this ISO date or time")
            parser.add_argument("--until", metavar="TIME",
                                help="only runs created before this ISO date or time")
        else:
            parser.add_argument("run", metavar="RUN", help="the run's id")
        if name == "resume":
            parser.add_argument("--wait", action="store_true",
                                help="follow the run until it ends, as `runs watch` does")
            add_input_arguments(parser, "an input given again (a secret one is not kept by "
                                        "the run)")
            parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                                help="a variable given again; repeatable")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        add_connection_arguments(parser)
        parser.set_defaults(func=run)
