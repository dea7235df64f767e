"""Trajectory checks: `node_visited`, `node_sequence`, `tool_called`, read from the run's
stages (one per node attempt) and its tool calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ostinato.protocol.invariants import (
    NodeSequenceInvariant,
    NodeVisitedInvariant,
    ToolCalledInvariant,
    argument_operator,
)
from ostinato.protocol.patterns import compile_pattern

from .evaluate import evaluator
from .model import NotRecorded, StoredRun, result, to_json

TIMES = "\N{MULTIPLICATION SIGN}"  # in "word_count x2"
SHELL = ("/bin/sh", "-c")  # how the tool handler runs a `tool_command`


def visits(run: StoredRun) -> list[str]:
    """The nodes the run visited in order, a node's consecutive stages (retries) once."""
    out: list[str] = []
    for stage in run.stages:
        node = str(stage.get("node_id"))
        if not out or out[-1] != node:
            out.append(node)
    return out


@evaluator("node_visited")
def node_visited(invariant: NodeVisitedInvariant, run: StoredRun,
                 _judge: Any) -> dict[str, Any]:
    """The node has a stage."""
    times = sum(1 for stage in run.stages if stage.get("node_id") == invariant.node)
    return result(times > 0, invariant.node, times,
                  f"node {invariant.node!r} " + (f"ran ({times} stage(s))" if times
                                                 else "did not run"))


def _in_order(wanted: list[str], seen: list[str]) -> int:
    """How many of `wanted` occur in `seen` in that order (a greedy subsequence match)."""
    matched = 0
    for node in seen:
        if matched < len(wanted) and node == wanted[matched]:
            matched += 1
    return matched


@evaluator("node_sequence")
def node_sequence(invariant: NodeSequenceInvariant, run: StoredRun,
                  _judge: Any) -> dict[str, Any]:
    """The visits against the wanted nodes, by mode."""
    seen, wanted = visits(run), invariant.nodes
    if invariant.mode == "exact":
        ok = seen == wanted
        why = "" if ok else ": the visits differ"
    elif invariant.mode == "in_order":
        matched = _in_order(wanted, seen)
        ok = matched == len(wanted)
        why = "" if ok else f": {wanted[matched]!r} not found after {matched} in order"
    else:
        missing = [node for node in wanted if node not in seen]
        ok = not missing
        why = "" if ok else f": never visited {', '.join(map(repr, missing))}"
    return result(ok, {"nodes": wanted, "mode": invariant.mode}, seen,
                  f"visits {' → '.join(seen) or '(none)'} "
                  + ("match" if ok else "do not match") + f" ({invariant.mode}){why}")


def command_line(call: dict[str, Any]) -> str:
    """A tool call's command line: its argv joined, a shell command as itself. The tool
    node records `argv`; an agent's command tool records the argv it ran in `metadata`;
    an MCP tool has none ('')."""
    request = call.get("request") or {}
    argv = request.get("argv")
    if argv is None and isinstance(request.get("metadata"), dict):
        argv = request["metadata"].get("argv")
    argv = [str(a) for a in argv] if isinstance(argv, list) else [] if argv is None \
        else [str(argv)]
    if tuple(argv[:2]) == SHELL and len(argv) == 3:
        return argv[2]
    return " ".join(argv)


def tool_name(call: dict[str, Any]) -> str:
    """What a tool call is called in messages: the tool the model called, else (the tool
    node) its command line."""
    tool = (call.get("request") or {}).get("tool")
    return tool if isinstance(tool, str) else command_line(call)


def _tool_matches(invariant: ToolCalledInvariant, call: dict[str, Any]) -> bool:
    """`tool` and `server` against the recorded name and server; `server/tool` also
    matches the name the model used for it (`server__tool`)."""
    request = call.get("request") or {}
    recorded, server = request.get("tool"), request.get("server")
    wanted, wanted_server = invariant.tool, invariant.server
    if wanted is not None and "/" in wanted:
        wanted_server, _, wanted = wanted.partition("/")
    if wanted is not None and recorded != wanted and (
            wanted_server is None or recorded != f"{wanted_server}__{wanted}"):
        return False
    return wanted_server is None or server == wanted_server


def _value_matches(wanted: Any, recorded: Any) -> bool:
    operator = argument_operator(wanted)
    if operator is not None:
        name, operand = operator
        if not isinstance(recorded, str):
            return False
        if name == "$contains":
            return operand in recorded
        return compile_pattern(operand).search(recorded) is not None
    # Equal, and of the same JSON type (true is not 1).
    return wanted == recorded and isinstance(wanted, bool) == isinstance(recorded, bool)


def _arguments_match(wanted: dict[str, Any], call: dict[str, Any]) -> bool:
    recorded = (call.get("request") or {}).get("arguments")
    if not isinstance(recorded, dict):
        return False  # no arguments, or the raw text the model wrote that was not JSON
    return all(key in recorded and _value_matches(value, recorded[key])
               for key, value in wanted.items())


def _filters(invariant: ToolCalledInvariant) -> list[tuple[str, Callable[[dict[str, Any]],
                                                                          bool]]]:
    """(what it asks, the test) for each field given, in the order messages name them."""
    found: list[tuple[str, Callable[[dict[str, Any]], bool]]] = []
    if invariant.node is not None:
        found.append((f"node {invariant.node!r}",
                      lambda c: c.get("node_id") == invariant.node))
    if invariant.command is not None:
        command = invariant.command
        found.append((f"command {command!r}", lambda c: command in command_line(c)))
    if invariant.tool is not None or invariant.server is not None:
        what = " ".join(f"{k} {v!r}" for k, v in (("tool", invariant.tool),
                                                   ("server", invariant.server)) if v)
        found.append((what, lambda c: _tool_matches(invariant, c)))
    if invariant.arguments is not None:
        wanted = dict(invariant.arguments)
        found.append((f"arguments {to_json(wanted)}", lambda c: _arguments_match(wanted, c)))
    if invariant.exit_code is not None:
        code = invariant.exit_code
        found.append((f"exit_code {code}",
                      lambda c: (c.get("response") or {}).get("exit_code") == code))
    if invariant.is_error is not None:
        erred = invariant.is_error
        found.append(("a tool error" if erred else "no tool error",
                      lambda c: bool(c.get("error")) == erred))
    return found


def _tally(calls: list[dict[str, Any]]) -> str:
    """`word_count x2, files__read_text_file`: each name once, with its count, in order."""
    counts: dict[str, int] = {}
    for call in calls:
        name = tool_name(call) or "(no command)"
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(name if n == 1 else f"{name} {TIMES}{n}" for name, n in counts.items())


def _bounds(least: int, most: int | None) -> str:
    if most is None:
        return f"at least {least}"
    if most == 0:
        return "none"
    return f"exactly {least}" if least == most else f"between {least} and {most}"


@evaluator("tool_called")
def tool_called(invariant: ToolCalledInvariant, run: StoredRun,
                _judge: Any) -> dict[str, Any]:
    """The number of tool calls that match every field given, against the counts."""
    if invariant.arguments is not None and run.record != "full":
        raise NotRecorded(f"the run was recorded `{run.record}`: tool call arguments were "
                          "not kept")
    tools = [c for c in run.work_calls() if c.get("kind") == "tool"]
    filters = _filters(invariant)
    matching = [c for c in tools if all(test(c) for _, test in filters)]
    least, most = invariant.least(), invariant.max_count
    count = len(matching)
    ok = count >= least and (most is None or count <= most)
    expected = invariant.model_dump(mode="json", exclude_none=True,
                                    exclude={"type", "description"})
    what = " ".join(asked for asked, _ in filters)
    said = f"{what}: {count} call{'' if count == 1 else 's'}, expected {_bounds(least, most)}"
    if ok:
        return result(True, expected, [tool_name(c) for c in matching], said)
    return result(False, expected, [tool_name(c) for c in matching],
                  said + _what_it_did(invariant, filters, tools, count))


def _what_it_did(invariant: ToolCalledInvariant,
                 filters: list[tuple[str, Callable[[dict[str, Any]], bool]]],
                 tools: list[dict[str, Any]], count: int) -> str:
    """What the run did instead: the calls that had the right node, command and tool but
    not the rest (arguments, exit code, error), else the calls of the node (or run)."""
    if count:  # too many: the count says it
        return ""
    naming = sum(1 for field in (invariant.node, invariant.command,
                                 invariant.tool or invariant.server) if field is not None)
    named = [c for c in tools if all(test(c) for _, test in filters[:naming])]
    if named:
        near = named
        for asked, test in filters[naming:]:
            kept = [c for c in near if test(c)]
            if not kept:
                return (f"; {len(named)} call{'' if len(named) == 1 else 's'} "
                        f"({_tally(named)}), none also with {asked}")
            near = kept
    scope = [c for c in tools if invariant.node is None or c.get("node_id") == invariant.node]
    who = f"node {invariant.node!r}" if invariant.node is not None else "the run"
    called = _tally(scope)
    return f"; {who} called: {called}" if called else f"; {who} made no tool call"
