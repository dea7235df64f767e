"""`ostinato diff A B` and `ostinato reeval RUN`: look at stored runs, executing nothing.
The diff's per-node table is drawn with rich (clients/cli/progress.py `console`)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from .common import (
    EXIT_FAILED,
    EXIT_OK,
    add_connection_arguments,
    add_input_arguments,
    input_values,
    load_invariants,
    pipeline_ref,
    print_json,
    run_client,
)

if TYPE_CHECKING:  # the command line starts light: see common.py
    from ..python import AsyncClient

_MARKS = {"passed": "✓", "failed": "✗", "error": "!", "skipped": "-"}


def _short(value: Any) -> str:
    import orjson

    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:79] + "…"


def _signed(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "?"
    if digits:
        return f"{value:+.{digits}f}{unit}"
    return f"{value:+}{unit}"


# -- diff ---------------------------------------------------------------------------------


def _print_diff(diff: dict[str, Any]) -> None:
    print(f"a {diff['a']}  {_totals_line(diff['totals']['a'])}")
    print(f"b {diff['b']}  {_totals_line(diff['totals']['b'])}")
    scenario = diff["scenario"]
    if scenario["pipeline_changed"]:
        print("scenario: the pipelines differ")
    for part in ("inputs", "settings"):
        for entry in scenario[part]:
            print(f"scenario: {part} {entry['path']}: {_short(entry['a'])} → "
                  f"{_short(entry['b'])}")
    divergence = diff["first_divergence"]
    if divergence is None:
        print("identical: same path, calls, responses and outcomes")
    else:
        node = divergence["node_id"] or "(end of run)"
        if divergence["b_node_id"] not in (None, divergence["node_id"]):
            node += f" / b: {divergence['b_node_id']}"
        branch = f" [{divergence['branch']}]" if divergence["branch"] else ""
        # An agent node's call: which turn, which tool (absent from older daemons' answers).
        if divergence.get("turn") is not None:
            branch += f", turn {divergence['turn']}"
        if divergence.get("tool"):
            branch += f", tool {divergence['tool']}"
        print(f"first divergence at step {divergence['step']}, node {node}{branch}: "
              f"{divergence['kind']}")
        for entry in divergence["differences"]:
            where = f" (at {entry['at']})" if entry.get("at") else ""
            print(f"  {entry['path'] or '(value)'}{where}: {_short(entry['a'])} → "
                  f"{_short(entry['b'])}")
        if divergence["more"]:
            print(f"  … and {divergence['more']} more")
        if not divergence["differences"]:  # `status`: the same stages, another end
            print(f"  a: {_short(divergence['a'])}")
            print(f"  b: {_short(divergence['b'])}")
    from .progress import console

    out = console(sys.stdout)
    out.print(_nodes_table(diff["nodes"], styled=out.is_terminal))
    delta = diff["totals"]["delta"]
    print(f"total: tokens {_signed(delta['tokens'])}, cost {_signed(delta['cost_usd'], 6)} USD, "
          f"time {_signed(delta['duration_ms'], 1, ' ms')}, stages {_signed(delta['stages'])}, "
          f"calls {_signed(delta['calls'])}")


def _nodes_table(nodes: dict[str, Any], styled: bool) -> Any:
    """Per-node statuses and deltas as a rich Table; `*` marks a node whose outcome
    changed."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("node")
    table.add_column("", width=1)  # the outcome-changed mark
    for column in ("a", "b"):
        table.add_column(column)
    for column in ("tokens Δ", "cost Δ", "time Δ"):
        table.add_column(column, justify="right")
    for name, node in nodes.items():
        delta = node["delta"]
        changed = node["outcome_changed"]
        table.add_row(name, "*" if changed else "", (node["a"] or {}).get("status") or "—",
                      (node["b"] or {}).get("status") or "—", _signed(delta["tokens"]),
                      _signed(delta["cost_usd"], 6), _signed(delta["duration_ms"], 1, " ms"),
                      style="yellow" if changed and styled else None)
    return table


def _totals_line(totals: dict[str, Any]) -> str:
    outcome = f" ({totals['outcome']})" if totals["outcome"] else ""
    return (f"{totals['status']}{outcome}, {totals['stages']} stages, {totals['calls']} calls, "
            f"{totals['input_tokens'] + totals['output_tokens']} tokens, "
            f"${totals['cost_usd']:.4f}")


async def _diff(args: argparse.Namespace, client: AsyncClient) -> int:
    diff = await client.request("run.diff", {"a": args.a, "b": args.b})
    if args.json:
        print_json(diff)
    else:
        _print_diff(diff)
    return EXIT_OK if diff["identical"] else EXIT_FAILED


# -- reeval -------------------------------------------------------------------------------


def _print_reeval(result: dict[str, Any]) -> None:
    counts = result["counts"]
    summary = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped")
                        if counts[k])
    print(f"run {result['run_id']}: {result['verdict']} ({summary or 'no checks'})")
    for check in result["results"]:
        label = check["type"] + (f" ({check['description']})" if check["description"] else "")
        print(f"  {_MARKS[check['status']]} {label:<24} {check['message']}")
    for warning in result["warnings"]:
        print(f"warning: {warning}")


async def _reeval(args: argparse.Namespace, client: AsyncClient) -> int:
    params: dict[str, Any] = {"run_id": args.run, "invariants": load_invariants(args.invariants),
                              "allow_partial": args.allow_partial,
                              "strict_scenario": args.strict_scenario}
    if args.pipeline:
        params["pipeline"] = pipeline_ref(args.pipeline)
    inputs = input_values(args)
    if inputs:
        params["inputs"] = inputs
    result = await client.request("run.reeval", params)
    if args.json:
        print_json(result)
    else:
        _print_reeval(result)
    return EXIT_OK if result["verdict"] == "passed" else EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato diff` and `ostinato reeval`."""
    action = _diff if args.command == "diff" else _reeval
    return run_client(args, f"ostinato {args.command}", lambda client: action(args, client))


def add_parsers(commands: Any) -> None:
    """The `diff` and `reeval` subcommands."""
    diff = commands.add_parser(
        "diff", help="compare two stored runs",
        description="Compare two stored runs: the first divergence (node, step, what "
                    "differed) and per-node and whole-run metric deltas. Exit codes: 0 "
                    "identical, 1 different (or the daemon refused), 2 usage, 3 unreachable.")
    diff.add_argument("a", help="the baseline run's id")
    diff.add_argument("b", help="the id of the run compared with it")
    diff.add_argument("--json", action="store_true", help="print the result as JSON")
    add_connection_arguments(diff)
    diff.set_defaults(func=run)

    reeval = commands.add_parser(
        "reeval", help="check invariants against a stored run",
        description="Evaluate invariants against a stored run without executing anything. "
                    "Exit codes: 0 passed, 1 failed (or the daemon refused), 2 usage or "
                    "invalid invariants, 3 unreachable.")
    reeval.add_argument("run", help="the run's id")
    reeval.add_argument("--invariants", required=True, metavar="FILE_OR_JSON",
                        help='a JSON (or YAML) list of invariants, e.g. \'[{"type": '
                             '"run_status", "value": "completed"}]\', or a file holding one')
    reeval.add_argument("--allow-partial", action="store_true",
                        help="skip content checks on a run recorded metadata_only")
    reeval.add_argument("--strict-scenario", action="store_true",
                        help="fail when the pipeline or inputs given drifted from the run's")
    reeval.add_argument("--pipeline", help="check the run's pipeline against this file")
    add_input_arguments(reeval, "check the run's inputs against these")
    reeval.add_argument("--json", action="store_true", help="print the result as JSON")
    add_connection_arguments(reeval)
    reeval.set_defaults(func=run)
