"""The `ostinato` command: serve a daemon, call its methods, validate, plan and run pipelines
(one run or a trial set), replay recorded runs, diff and reeval stored runs."""

from __future__ import annotations

import argparse
import sys

from ostinato.daemon.main import add_serve_arguments, serve

from . import call, daemon, pipelines, snapshots, stored_runs, testing


def build_parser() -> argparse.ArgumentParser:
    """The `ostinato` argument parser."""
    parser = argparse.ArgumentParser(
        prog="ostinato", description="Run LLM pipelines, record every run, test changes.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the daemon")
    add_serve_arguments(serve_parser)
    serve_parser.set_defaults(func=serve)
    call.add_parser(commands)
    daemon.add_parsers(commands)
    pipelines.add_parsers(commands)
    stored_runs.add_parsers(commands)
    snapshots.add_parsers(commands)
    testing.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ostinato` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
