"""`ostinato validate | plan | run PIPELINE`: the pipeline methods with human output."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from ostinato.protocol.errors import RpcError

from ..python import AsyncClient, DaemonConnectionError
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
    add_connection_arguments,
    connect,
    key_values,
    pipeline_ref,
    print_json,
)
from .progress import RunDisplay


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
    if getattr(args, "input", None):
        params["inputs"] = key_values(args.input, "--input")
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
        text = args.settings
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text()
        try:
            settings = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"--settings is not JSON: {exc}") from None
    if args.provider:
        settings["default_provider"] = args.provider
    human = settings.setdefault("human", {})
    if args.answer:
        human["answers"] = [*human.get("answers", []), *args.answer]
    if args.auto_approve:
        human["auto_approve"] = True
    return settings


async def _run(args: argparse.Namespace, client: AsyncClient) -> int:
    display = RunDisplay(sys.stdout, quiet=args.json)
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on_notification("run/event", lambda _method, params: events.put_nowait(params))
    await client.request("run.subscribe", {"run_id": "*"})
    params = {**_params(args), "settings": _settings(args)}
    started = await client.request("run.start", params)
    run_id = started["run_id"]
    display.started(started)
    while True:
        event = await events.get()
        if event["run_id"] != run_id:
            continue
        display.event(event)
        if event["type"] == "InterviewStarted":
            await _ask(client, run_id, event["data"]["question"], display)
        if event["type"] in ("PipelineCompleted", "PipelineFailed", "PipelineCancelled"):
            break
    # The terminal event is published only once the run's end is in the store.
    summary = await client.request("run.get", {"run_id": run_id})
    summary = {k: v for k, v in summary.items() if k not in ("stages", "context", "question")}
    if args.json:
        print_json(summary)
    else:
        display.finished(summary)
    return EXIT_OK if summary["outcome"] == "success" else EXIT_FAILED


async def _ask(client: AsyncClient, run_id: str, question: dict[str, Any],
               display: RunDisplay) -> None:
    """A human gate: ask on the terminal when there is one; else leave it to others."""
    if not sys.stdin.isatty():
        display.note(f"waiting for an answer: ostinato call human.answer "
                     f"'{{\"run_id\": \"{run_id}\", \"question_id\": "
                     f"\"{question['question_id']}\", \"answer\": \"…\"}}'")
        return
    print(f"? {question['text']}")
    for option in question["options"]:
        print(f"  [{option['key']}] {option['label']}")
    answer = await asyncio.to_thread(input, "Select: ")
    await client.request("human.answer", {"run_id": run_id,
                                          "question_id": question["question_id"],
                                          "answer": answer.strip()})


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato validate`, `plan` and `run`."""
    async def main() -> int:
        client = await connect(args, "ostinato-cli")
        try:
            if args.command == "run":
                return await _run(args, client)
            return await _validate(args, client)
        finally:
            await client.close()

    name = f"ostinato {args.command}"
    try:
        return asyncio.run(main())
    except UsageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RpcError as exc:
        if exc.data and isinstance(exc.data, dict) and "diagnostics" in exc.data:
            for diagnostic in exc.data["diagnostics"]:
                print(_format_diagnostic(args.pipeline, diagnostic), file=sys.stderr)
            return EXIT_USAGE
        print(f"{name}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except (DaemonConnectionError, OSError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130


def add_parsers(commands: Any) -> None:
    """The `validate`, `plan` and `run` subcommands."""
    for name, summary in (("validate", "parse and lint a pipeline"),
                          ("plan", "show the resolved plan of a pipeline, running nothing"),
                          ("run", "run a pipeline and show its nodes as they run")):
        parser = commands.add_parser(name, help=summary, description=summary + ". Exit "
                                     "codes: 0 ok, 1 invalid or failed, 2 usage, "
                                     "3 unreachable.")
        parser.add_argument("pipeline", help="a .dot file, a .yaml recipe, or - for stdin")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="a variable for $KEY in prompts; repeatable")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        add_connection_arguments(parser)
        if name in ("plan", "run"):
            parser.add_argument("--input", action="append", default=[], metavar="KEY=VALUE",
                                help="an initial context value; repeatable")
        if name == "run":
            parser.add_argument("--settings", help="run settings: JSON, or a JSON file")
            parser.add_argument("--provider", help="default model provider (e.g. openai)")
            parser.add_argument("--answer", action="append", default=[],
                                help="a preset answer for the next human gate; repeatable")
            parser.add_argument("--auto-approve", action="store_true",
                                help="answer every human gate with its first option")
        parser.set_defaults(func=run)
