"""Trajectory checks: `node_visited`, `node_sequence`, `tool_called`, read from the run's
stages (one per node attempt) and its tool calls."""

from __future__ import annotations

from typing import Any

from ostinato.protocol.invariants import (
    NodeSequenceInvariant,
    NodeVisitedInvariant,
    ToolCalledInvariant,
)

from .evaluate import evaluator
from .model import StoredRun, result

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
    """A tool call's command line: its argv joined, a shell command as itself."""
    argv = (call.get("request") or {}).get("argv") or []
    argv = [str(a) for a in argv] if isinstance(argv, list) else [str(argv)]
    if tuple(argv[:2]) == SHELL and len(argv) == 3:
        return argv[2]
    return " ".join(argv)


@evaluator("tool_called")
def tool_called(invariant: ToolCalledInvariant, run: StoredRun,
                _judge: Any) -> dict[str, Any]:
    """A tool call by the node and/or with the command, and the exit code if asked."""
    tools = [c for c in run.work_calls() if c.get("kind") == "tool"]
    lines = [command_line(c) for c in tools]
    matching = [c for c, line in zip(tools, lines, strict=True)
                if (invariant.node is None or c.get("node_id") == invariant.node)
                and (invariant.command is None or invariant.command in line)]
    if invariant.exit_code is not None:
        codes = [(c.get("response") or {}).get("exit_code") for c in matching]
        exited = [c for c, code in zip(matching, codes, strict=True)
                  if code == invariant.exit_code]
    else:
        exited = matching
    expected = {k: v for k, v in (("node", invariant.node), ("command", invariant.command),
                                  ("exit_code", invariant.exit_code)) if v is not None}
    what = " ".join(f"{k} {v!r}" for k, v in expected.items())
    if exited:
        return result(True, expected, [command_line(c) for c in exited],
                      f"{len(exited)} tool call(s) with {what}")
    why = (f"{len(matching)} call(s) matched but none exited {invariant.exit_code}"
           if matching else f"none of the run's {len(tools)} tool call(s) has {what}")
    return result(False, expected, lines, why)
