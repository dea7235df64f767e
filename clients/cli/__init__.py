"""The `ostinato` command: serve a daemon, call its methods, validate, plan and run pipelines
(one run or a trial set), replay recorded runs, diff and reeval stored runs, prune old ones."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from ostinato.daemon.main import add_serve_arguments, serve

from . import call, daemon, pipelines, prune, snapshots, stored_runs, stored_tests, testing
from .failure import USAGE, fail


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are, with `--json`, a JSON error object on
    stdout too (the subcommands' parsers are of the same class)."""

    json_mode = False  # set by main() from the command line, before parsing

    def error(self, message: str) -> NoReturn:
        """Print the usage and the error (as failure.fail does) and exit 2."""
        self.print_usage(sys.stderr)
        sys.exit(fail(self.prog, message, 2, json_mode=_Parser.json_mode, code=USAGE))


def build_parser() -> argparse.ArgumentParser:
    """The `ostinato` argument parser."""
    parser = _Parser(
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
    stored_tests.add_parsers(commands)
    prune.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ostinato` command."""
    argv = sys.argv[1:] if argv is None else argv
    # `call` prints JSON whatever the flags (call.py), its usage errors included.
    _Parser.json_mode = "--json" in argv or argv[:1] == ["call"]
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
