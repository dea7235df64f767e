"""The `ostinato` command: serve a daemon, call its methods, validate, plan and run pipelines
(one run or a trial set), replay recorded runs, diff and reeval stored runs, live with the
runs of a running daemon, prune old ones.

It starts light (docs/cli.md): this module and the command modules import only the standard
library at module level; the daemon, pydantic, asyncio, orjson and yaml are imported by the
commands that use them."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .failure import USAGE, fail

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: see docs/cli.md
if TYPE_CHECKING:
    from typing import Any, NoReturn

# The module that defines each command: only the one a command line names is imported, and
# only its parsers are built (the whole tree costs ~25 ms to build, as much as to import).
_COMMANDS = {"call": "call", "daemon": "daemon", "validate": "pipelines", "plan": "pipelines",
             "run": "pipelines", "replay": "pipelines", "diff": "stored_runs",
             "reeval": "stored_runs", "snapshot": "snapshots", "test": "testing",
             "runs": "runs", "answer": "answer", "tests": "stored_tests", "prune": "prune",
             "mcp": "mcp"}


class _Version(argparse.Action):
    """`--version`: importlib.metadata is imported only when it is asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from importlib.metadata import version

        from ostinato.protocol import PROTOCOL_VERSION

        print(f"ostinato {version('ostinato')} (protocol {PROTOCOL_VERSION})")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are, with `--json`, a JSON error object on stdout
    too (the subcommands' parsers are of the same class), and whose help formatter learns the
    terminal's width without importing shutil (argparse imports it whenever an argument is
    added: ~2 ms)."""

    json_mode = False  # set by main() from the command line, before parsing

    def error(self, message: str) -> NoReturn:
        """Print the usage and the error (as failure.fail does) and exit 2."""
        self.print_usage(sys.stderr)
        sys.exit(fail(self.prog, message, 2, json_mode=_Parser.json_mode, code=USAGE))

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_columns() - 2)


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size finds it: $COLUMNS, the terminal
    on stdout, else 80."""
    if os.environ.get("COLUMNS", "").isdigit() and int(os.environ["COLUMNS"]) > 0:
        return int(os.environ["COLUMNS"])
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def _serve(args: argparse.Namespace) -> int:
    from ostinato.daemon.main import serve

    return serve(args)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `ostinato` argument parser: with `command` (the first word of a command line),
    only what parsing that command line needs; the whole tree without."""
    parser = _Parser(
        prog="ostinato", description="Run LLM pipelines, record every run, test changes.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    if command not in _COMMANDS:
        serve_parser = commands.add_parser("serve", help="run the daemon")
        # The daemon's modules define serve's options: only `serve` imports them.
        if command == "serve" or command is None:
            from ostinato.daemon.main import add_serve_arguments

            add_serve_arguments(serve_parser)
        serve_parser.set_defaults(func=_serve)
    names = [_COMMANDS[command]] if command in _COMMANDS else dict.fromkeys(_COMMANDS.values())
    for name in names:
        importlib.import_module(f"{__name__}.{name}").add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ostinato` command."""
    argv = sys.argv[1:] if argv is None else argv
    # `ostinato --help` (or a typo) gets the whole tree, but not the daemon's modules.
    command = argv[0] if argv and not argv[0].startswith("-") else ""
    # `call` prints JSON whatever the flags (call.py), its usage errors included.
    _Parser.json_mode = "--json" in argv or command == "call"
    args = build_parser(command).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
