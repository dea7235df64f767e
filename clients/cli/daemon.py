"""`ostinato daemon start|stop|status`: the home's daemon, managed explicitly (every other
command starts it when none runs)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ostinato.protocol.home import resolve_home

from ..home import DaemonUnavailable, home_socket_path, start_daemon, stop_daemon
from .common import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, print_json
from .failure import TIMEOUT, UNREACHABLE, fail

NAME = "ostinato daemon"


ANSWER_WITHIN_S = 10.0  # a daemon that answers nothing in this time is reported, not awaited


def _status(path: Path, token: str | None) -> dict[str, Any] | None:
    """daemon.status of the daemon on `path`; None when nothing answers there. Raises
    RpcError (a refused token) or TimeoutError (a daemon that does not answer)."""
    from .link import Link, LinkError

    try:
        with Link.connect_unix(path) as link:
            link.initialize("ostinato-daemon", token, ANSWER_WITHIN_S)
            return link.request("daemon.status", timeout=ANSWER_WITHIN_S)
    except LinkError:
        return None


def _guarded(entry: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`entry`, with a refusal or a silent daemon said as the other commands say them."""
    def guarded(args: argparse.Namespace) -> int:
        from ostinato.protocol.errors import RpcError

        try:
            return entry(args)
        except RpcError as exc:
            return fail(NAME, f"the daemon refused: {exc.message}", EXIT_FAILED,
                        json_mode=args.json, code=exc.code, data=exc.data)
        except TimeoutError as exc:
            return fail(NAME, str(exc) or f"the daemon did not answer within "
                        f"{ANSWER_WITHIN_S:g} s", EXIT_UNREACHABLE, json_mode=args.json,
                        code=TIMEOUT)
    guarded.__doc__ = entry.__doc__
    return guarded


def _show(status: dict[str, Any], path: Path, json_mode: bool) -> None:
    if json_mode:
        print_json({"running": True, "socket": str(path), **status})
        return
    print(f"daemon pid {status['pid']} serves {status['home']} (version {status['version']})")
    print(f"  listening on: {', '.join(status['transports'])}")
    print(f"  up {status['uptime_seconds']:.0f} s; {status['connections']} connection(s), "
          f"{status['active_runs']} active run(s)")
    executor = status.get("executor") or {"backend": "inline"}  # an older daemon says none
    if executor["backend"] != "inline":
        busy = sum(worker["runs"] for worker in executor["workers"])
        print(f"  runs execute on {executor['backend']}: {len(executor['workers'])} of "
              f"{executor['size'] or 'one per core'} worker(s) started, {busy} run(s) on them")


def status(args: argparse.Namespace) -> int:
    """Entry of `ostinato daemon status`: 0 when a daemon serves the home, 3 when none."""
    home = resolve_home(args.home)
    path = home_socket_path(home)
    found = _status(path, args.token)
    if found is None:
        return fail(NAME, f"no daemon serves {home}", EXIT_UNREACHABLE,
                    json_mode=args.json, code=UNREACHABLE)
    _show(found, path, args.json)
    return EXIT_OK


def start(args: argparse.Namespace) -> int:
    """Entry of `ostinato daemon start`: start the home's daemon in the background, unless
    one runs already (exit 0 either way)."""
    home = resolve_home(args.home)
    path = home_socket_path(home)
    # Options for serve follow `--`, which argparse's REMAINDER keeps.
    serve_args = args.serve_args[1:] if args.serve_args[:1] == ["--"] else args.serve_args
    found = _status(path, args.token)
    if found is None:
        try:
            path = start_daemon(home, serve_args)
        except DaemonUnavailable as exc:
            return fail(NAME, f"cannot start a daemon for {home}: {exc}", EXIT_UNREACHABLE,
                        json_mode=args.json, code=UNREACHABLE)
        found = _status(path, args.token)
        if found is None:
            return fail(NAME, f"the daemon started for {home} does not answer on {path}",
                        EXIT_UNREACHABLE, json_mode=args.json, code=UNREACHABLE)
    elif serve_args:
        print(f"{NAME}: a daemon already serves {home}; options not applied: "
              f"{' '.join(serve_args)}", file=sys.stderr)
    _show(found, path, args.json)
    return EXIT_OK


def stop(args: argparse.Namespace) -> int:
    """Entry of `ostinato daemon stop`: stop the home's daemon and return once it has closed
    its connections (its active runs become interrupted and resumable)."""
    home = resolve_home(args.home)
    path = home_socket_path(home)
    found = _status(path, args.token)
    if found is None:
        if args.json:
            print_json({"stopped": False, "home": str(home)})
        else:
            print(f"no daemon serves {home}")
        return EXIT_OK
    stop_daemon(home, found["pid"])
    if args.json:
        print_json({"stopped": True, "home": str(home), "pid": found["pid"],
                    "interrupted_runs": found["active_runs"]})
    else:
        print(f"stopped daemon pid {found['pid']} of {home}"
              + (f"; its {found['active_runs']} active run(s) are interrupted and resumable "
                 "(ostinato runs resume RUN)" if found["active_runs"] else ""))
    return EXIT_OK


def add_parsers(commands: Any) -> None:
    """The `daemon` subcommand and its actions."""
    daemon = commands.add_parser(
        "daemon", help="start, stop or look at the home's daemon",
        description="One daemon serves a home; every command connects to it and starts it "
                    "in the background when none runs. Exit codes: 0 done, 3 no daemon "
                    "(status) or it cannot start.")
    actions = daemon.add_subparsers(dest="action", required=True)
    for name, entry, text in (("start", start, "start the daemon in the background"),
                              ("stop", stop, "stop the daemon; active runs become resumable"),
                              ("status", status, "is a daemon serving the home, and how")):
        entry = _guarded(entry)
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("--home", type=Path,
                            help="the home (default $OSTINATO_HOME or ./.ostinato)")
        action.add_argument("--token", default=os.environ.get("OSTINATO_TOKEN"),
                            help="token for initialize (default $OSTINATO_TOKEN)")
        action.add_argument("--json", action="store_true", help="print JSON")
        if name == "start":
            action.add_argument("serve_args", nargs=argparse.REMAINDER, metavar="-- ...",
                                help="after --, options of `ostinato serve` for the new "
                                     "daemon, e.g. -- --tcp 127.0.0.1:7890 --allow-key-env "
                                     "MY_KEY")
        action.set_defaults(func=entry)
