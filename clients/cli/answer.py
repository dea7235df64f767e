"""`ostinato answer RUN [QUESTION] ANSWER`: answer a waiting run's human gate from any
terminal; and the hint that names this command wherever a run waits (`runs show`, `runs
watch`, `ostinato run` without a terminal)."""

from __future__ import annotations

import argparse
import os
import re
import shlex

from ostinato.protocol.errors import ErrorCode, RpcError

from .common import EXIT_OK, UsageError, add_connection_arguments, print_json
from .link import Link, run_command

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: see docs/cli.md
if TYPE_CHECKING:
    from typing import Any

# -- the hint a waiting run needs -----------------------------------------------------------


def connection_words(args: argparse.Namespace) -> list[str]:
    """The options that reach the same daemon as `args` did, from any directory: a command
    printed for another terminal."""
    from ostinato.protocol.home import resolve_home

    if getattr(args, "socket", None):
        return ["--socket", os.path.abspath(args.socket)]
    words = ["--tcp", args.tcp] if getattr(args, "tcp", None) else []
    if getattr(args, "home", None) or not words:  # the home: its daemon, or its token file
        words += ["--home", str(resolve_home(getattr(args, "home", None)))]
    return words


def answer_command(args: argparse.Namespace, run_id: str, question_id: str) -> str:
    """The exact `ostinato answer` command that answers a question (ANSWER to fill in)."""
    words = ["ostinato", "answer", *connection_words(args), run_id, question_id]
    return shlex.join(words) + " ANSWER"


def accepted_answers(question: dict[str, Any]) -> str:
    """What `human.answer` takes for this question, in words."""
    kind = question.get("type", "multiple_choice")
    if kind in ("yes_no", "confirmation"):
        return "yes, y, true or no, n, false"
    if kind == "freeform":
        return "any text"
    keys = ", ".join(option["key"] for option in question["options"])
    return f"an option key ({keys}), its label or its target node"


def waiting_hint(args: argparse.Namespace, run_id: str, question: dict[str, Any]) -> str:
    """`waiting for an answer (what it takes): ostinato answer RUN QUESTION ANSWER …`."""
    return (f"waiting for an answer ({accepted_answers(question)}): "
            f"{answer_command(args, run_id, question['question_id'])}")


_HAS_KEY = re.compile(r"^\s*(?:\[\w\]|\w\)|\w\s+-\s)")  # an accelerator (attractor §4.6)


def option_label(option: dict[str, Any]) -> str:
    """A multiple choice option as `[K] Label`: `[A] Approve` says its key itself."""
    label = option["label"]
    return label if _HAS_KEY.match(label) else f"[{option['key']}] {label}"


def question_lines(question: dict[str, Any]) -> list[str]:
    """A question and its options, indented as the run's lines are."""
    return [f"  ? {question['text']}",
            *(f"      {option_label(option)}" for option in question["options"])]


# -- the command ----------------------------------------------------------------------------


def _answer(args: argparse.Namespace, link: Link) -> int:
    if len(args.words) > 2:
        raise UsageError("expected RUN [QUESTION] ANSWER: quote an answer that has spaces")
    if len(args.words) == 2:
        question_id, answer = args.words
    else:
        run = link.request("run.get", {"run_id": args.run})
        if not run.get("question"):
            raise RpcError(ErrorCode.CONFLICT, f"run {args.run} is not waiting on a question "
                           f"(it is {run['status']})", {"status": run["status"]})
        question_id, answer = run["question"]["question_id"], args.words[0]
    link.request("human.answer", {"run_id": args.run, "question_id": question_id,
                                  "answer": answer})
    if args.json:
        print_json({"run_id": args.run, "question_id": question_id, "answer": answer})
    else:
        print(f"answered {question_id} of run {args.run}: {answer}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Entry of `ostinato answer`."""
    return run_command(args, "ostinato answer", lambda link: _answer(args, link))


def add_parsers(commands: Any) -> None:
    """The `answer` subcommand."""
    summary = "answer the question a waiting run asks"
    answer = commands.add_parser(
        "answer", help=summary, usage="ostinato answer [options] RUN [QUESTION] ANSWER",
        description=f"{summary[0].upper()}{summary[1:]} (a human gate), from any terminal. "
                    "QUESTION may be left out: the run's open question is answered. Exit "
                    "codes: 0 answered, 1 no such run, or it is not waiting on that question, "
                    "2 usage or an answer the question cannot take, 3 unreachable.")
    answer.add_argument("run", metavar="RUN", help="the waiting run's id")
    answer.add_argument("words", nargs="+", metavar="[QUESTION] ANSWER",
                        help="the question's id (optional) and the answer: an option key or "
                             "label, yes/no, or free text")
    answer.add_argument("--json", action="store_true", help="print the result as JSON")
    add_connection_arguments(answer)
    answer.set_defaults(func=run)
