"""`ostinato snapshot create | list | show | delete | replay`: the snapshot methods with human
output, or their results as JSON with --json."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_connection_arguments,
    add_input_arguments,
    input_values,
    json_object_option,
    key_values,
    load_invariants,
    pipeline_ref,
    positive_int,
    print_json,
    run_client,
)

if TYPE_CHECKING:  # the command line starts light: see common.py
    from ..python import AsyncClient


def _label(snapshot: dict[str, Any]) -> str:
    return f"{snapshot['name']} v{snapshot['version']} ({snapshot['id']})"


# -- create -------------------------------------------------------------------------------


def _create_params(args: argparse.Namespace) -> dict[str, Any]:
    if (args.run is None) == (args.pipeline is None):
        raise UsageError("give a PIPELINE file or --run RUN_ID (one of them)")
    params: dict[str, Any] = {"name": args.name, "description": args.description,
                              "tags": args.tag}
    if args.invariants:
        params["invariants"] = load_invariants(args.invariants)
    if args.run is not None:
        if args.input or args.inputs or args.set or args.settings:
            raise UsageError("--input(s), --set and --settings go with a PIPELINE; a snapshot "
                             "of a run copies the run's")
        params["run_id"] = args.run
        if args.no_cassette:
            params["with_cassette"] = False
        return params
    if args.no_cassette:
        raise UsageError("--no-cassette goes with --run: a pipeline alone has no cassette")
    params.update(pipeline=pipeline_ref(args.pipeline),
                  inputs=input_values(args),
                  variables=key_values(args.set, "--set"))
    if args.settings:
        params["settings"] = json_object_option(args.settings, "--settings")
    return params


async def _create(args: argparse.Namespace, client: AsyncClient) -> int:
    snapshot = await client.request("snapshot.create", _create_params(args))
    if args.json:
        print_json(snapshot)
        return EXIT_OK
    print(f"created snapshot {_label(snapshot)}")
    _print_facts(snapshot)
    for warning in snapshot["warnings"]:
        print(f"warning: {warning}")
    return EXIT_OK


def _print_facts(snapshot: dict[str, Any]) -> None:
    pipeline = snapshot["pipeline"]
    cassette = (f"{snapshot['cassette_calls']} calls" if snapshot["has_cassette"]
                else "none (replays live or hybrid only)")
    print(f"  pipeline   {pipeline['name']} ({pipeline['format']}, {pipeline['hash'][:12]})")
    print(f"  tags       {', '.join(snapshot['tags']) or '-'}")
    print(f"  invariants {len(snapshot['invariants'])}")
    print(f"  cassette   {cassette}")
    reference = snapshot["reference"]
    if reference is not None:
        metrics = reference.get("metrics") or {}
        print(f"  reference  run {reference['run_id']}: {metrics.get('status')}, "
              f"{metrics.get('calls')} calls, {metrics.get('tokens')} tokens, "
              f"${metrics.get('cost_usd') or 0:.4f}")


# -- list, show, delete -------------------------------------------------------------------


async def _list(args: argparse.Namespace, client: AsyncClient) -> int:
    params: dict[str, Any] = {"limit": args.limit or 200, "latest": args.latest}
    for key in ("name", "pipeline"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.tag:
        params["tags"] = args.tag
    snapshots, cursor = [], None
    while True:  # every page, or the first with --limit
        page = await client.request("snapshot.list",
                                    {**params, **({"cursor": cursor} if cursor else {})})
        snapshots += page["snapshots"]
        cursor = page["next_cursor"]
        if cursor is None or args.limit:
            break
    if args.json:
        print_json({"snapshots": snapshots, "next_cursor": cursor})
        return EXIT_OK
    if not snapshots:
        print("no snapshots")
    for s in snapshots:
        cassette = f"{s['cassette_calls']} calls" if s["has_cassette"] else "no cassette"
        print(f"{s['id']}  {s['name']} v{s['version']}  [{', '.join(s['tags'])}]  "
              f"{s['pipeline']['name']}  {s['invariants']} invariants  {cassette}  "
              f"{s['created_at']}")
    if cursor:
        print(f"more: --limit {args.limit} showed the first page")
    return EXIT_OK


async def _show(args: argparse.Namespace, client: AsyncClient) -> int:
    import orjson

    snapshot = await client.request("snapshot.get", {"id": args.id,
                                                     "include_cassette": args.cassette})
    if args.json:
        print_json(snapshot)
        return EXIT_OK
    print(f"snapshot {_label(snapshot)}, created {snapshot['created_at']}")
    if snapshot["description"]:
        print(f"  {snapshot['description']}")
    _print_facts(snapshot)
    print(f"  inputs     {orjson.dumps(snapshot['inputs']).decode()}")
    if snapshot["variables"]:
        print(f"  variables  {orjson.dumps(snapshot['variables']).decode()}")
    for invariant in snapshot["invariants"]:
        print(f"  - {orjson.dumps(invariant).decode()}")
    for call in snapshot.get("cassette") or []:
        print(f"  #{call['seq']} {call['node_id']} ({call['kind']}, attempt {call['attempt']})")
    return EXIT_OK


async def _delete(args: argparse.Namespace, client: AsyncClient) -> int:
    if not args.yes:
        raise UsageError(f"deleting snapshot {args.id} cannot be undone; add --yes to delete "
                         "it (its runs are kept)")
    deleted = await client.request("snapshot.delete", {"id": args.id, "confirm": True})
    if args.json:
        print_json(deleted)
    else:
        print(f"deleted snapshot {_label(deleted)} and its cassette "
              f"({deleted['cassette_calls']} calls); {deleted['runs_kept']} run(s) kept")
    return EXIT_OK


# -- replay -------------------------------------------------------------------------------


async def _replay(args: argparse.Namespace, client: AsyncClient) -> int:
    params: dict[str, Any] = {"id": args.id, "mode": args.mode, "trials": args.trials,
                              "concurrency": args.concurrency, "wait": True}
    if args.override:
        params["overrides"] = json_object_option(args.override, "--override")
    inputs = input_values(args)
    if inputs:
        params["inputs"] = inputs
    result = await client.request("snapshot.replay", params)
    trial_set = "trial_set_id" in result
    ok = result["verdict"] == "passed" if trial_set else result["outcome"] == "success"
    if args.json:
        print_json(result)
    elif trial_set:
        print(f"trial set {result['trial_set_id']} ({args.mode}): {result['passed']}/"
              f"{result['trials']} passed, verdict {result['verdict']}, "
              f"cost ${result['cost_usd']:.4f}")
    else:
        outcome = f" ({result['outcome']})" if result["outcome"] else ""
        print(f"run {result['run_id']} ({args.mode}): {result['status']}{outcome}, "
              f"cost ${result['cost_usd']:.4f}")
        if result["failure_reason"]:
            print(f"  {result['failure_reason']}")
    return EXIT_OK if ok else EXIT_FAILED


_ACTIONS = {"create": _create, "list": _list, "show": _show, "delete": _delete,
            "replay": _replay}


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato snapshot ACTION`."""
    action = _ACTIONS[args.action]
    return run_client(args, f"ostinato snapshot {args.action}",
                      lambda client: action(args, client))


_SNAPSHOT = "an id, a name (its latest version) or name@version"
_EXITS = "Exit codes: 0 ok, 1 the daemon refused (or the replay failed), 2 usage, 3 unreachable."


def add_parsers(commands: Any) -> None:
    """The `snapshot` command and its actions."""
    snapshot = commands.add_parser(
        "snapshot", help="create, list, show, delete and replay snapshots",
        description="Snapshots: immutable, versioned captures of a scenario (pipeline, "
                    "inputs, settings, invariants, reference metrics, a cassette). " + _EXITS)
    actions = snapshot.add_subparsers(dest="action", required=True)
    parsers = [_create_parser(actions), *_reading_parsers(actions), _replay_parser(actions)]
    for parser in parsers:
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        add_connection_arguments(parser)
        parser.set_defaults(func=run)


def _create_parser(actions: Any) -> argparse.ArgumentParser:
    create = actions.add_parser(
        "create", help="capture a run's or a pipeline's scenario",
        description="Capture a stored run (--run) or a pipeline file with its inputs as a "
                    "snapshot; an existing --name makes its next version. " + _EXITS)
    create.add_argument("pipeline", nargs="?", help="a .dot or .yaml pipeline file (or -)")
    create.add_argument("--run", metavar="RUN_ID", help="snapshot this stored run")
    create.add_argument("--name", required=True)
    create.add_argument("--description", default="")
    create.add_argument("--tag", action="append", default=[], help="repeatable")
    create.add_argument("--invariants", metavar="FILE_OR_JSON",
                        help="a JSON or YAML list of invariants, inline or in a file")
    add_input_arguments(create, "with PIPELINE: an input")
    create.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="with PIPELINE: a variable; repeatable")
    create.add_argument("--settings", metavar="FILE_OR_OBJECT",
                        help="with PIPELINE: run settings, a JSON or YAML object, inline or "
                             "in a file")
    create.add_argument("--no-cassette", action="store_true",
                        help="with --run: keep no cassette (replays go live)")
    return create


def _reading_parsers(actions: Any) -> list[argparse.ArgumentParser]:
    listing = actions.add_parser("list", help="list snapshots, newest first",
                                 description="List snapshots newest first. " + _EXITS)
    listing.add_argument("--tag", action="append", default=[],
                         help="only snapshots with this tag; repeatable, all must match")
    listing.add_argument("--name")
    listing.add_argument("--pipeline", help="a pipeline name or hash")
    listing.add_argument("--latest", action="store_true", help="each name's latest version")
    listing.add_argument("--limit", type=positive_int, metavar="N",
                         help="show the first N (default: all)")

    show = actions.add_parser("show", help="show a whole snapshot",
                              description="Show a snapshot. " + _EXITS)
    show.add_argument("id", metavar="SNAPSHOT", help=_SNAPSHOT)
    show.add_argument("--cassette", action="store_true", help="list the cassette's calls")

    delete = actions.add_parser("delete", help="delete a snapshot and its cassette",
                                description="Delete a snapshot and its cassette; runs are "
                                            "kept. " + _EXITS)
    delete.add_argument("id", metavar="SNAPSHOT", help=_SNAPSHOT)
    delete.add_argument("--yes", action="store_true", help="confirm: required")
    return [listing, show, delete]


def _replay_parser(actions: Any) -> argparse.ArgumentParser:
    replay = actions.add_parser(
        "replay", help="run a snapshot again",
        description="Replay a snapshot as a new run (or a trial set with --trials) and wait "
                    "for it. Exit codes: 0 it succeeded (trial sets: verdict passed), 1 it "
                    "failed or the daemon refused, 2 usage, 3 unreachable.")
    replay.add_argument("id", metavar="SNAPSHOT", help=_SNAPSHOT)
    replay.add_argument("--mode", choices=("recorded", "hybrid", "live"), default="recorded",
                        metavar="recorded|hybrid|live",
                        help="recorded (default): every call from the snapshot's cassette, "
                             "at zero cost; hybrid: unmatched calls go live; live: all live")
    replay.add_argument("--trials", type=positive_int, default=1, metavar="N")
    replay.add_argument("--concurrency", type=positive_int, default=4, metavar="K")
    replay.add_argument("--override", metavar="FILE_OR_OBJECT",
                        help='settings merged over the stored ones, a JSON or YAML object, '
                             'e.g. \'{"max_parallel": 1}\'')
    add_input_arguments(replay, "an input replacing the stored one")
    return replay
