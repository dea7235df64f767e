"""The manager loop (attractor §4.11): a node that supervises a child pipeline's run.

The child is a run of its own (its directory, its rows, its trace), linked to its parent
both ways. It pauses after each of its nodes until the manager has done one cycle
(supervision.py): observe (the child's state into the context as `stack.child.*`), steer
(with a `prompt`, the node's model decides to continue, to stop the child, or to send it
instructions, which the child's next requests carry), then the stop condition and
`manager.max_cycles`. The node succeeds when the child completes with success or the stop
condition (or the model) ends it, and fails when the child fails or cycles run out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import orjson

from ..conditions import ConditionError, parse_condition
from ..outcome import Outcome, Status
from ..supervision import ChildLink, ChildReport, ChildRunError, ParentRun
from ..verdict import AnswerSpec, strict_object
from .base import NodeRun
from .llm import PromptError, ask_structured, render_prompt

DECISION = "manager_decision"
DEFAULT_ACTIONS = "observe,wait"
DEFAULT_MAX_CYCLES = 1000


def child_pipeline(run: NodeRun) -> str:
    """The child pipeline's path: the node's `stack.child_dotfile`, else the graph's."""
    return str(run.node.get("stack.child_dotfile")
               or run.graph.attrs.get("stack.child_dotfile") or "")


DECISION_SPEC = AnswerSpec(
    DECISION, "Decide how the supervised run goes on.",
    strict_object({
        "action": {"type": "string", "enum": ["continue", "steer", "stop"]},
        "message": {"type": "string",
                    "description": "With steer: the instructions for the child's next steps."},
        "reason": {"type": "string"},
    }),
    f"Answer with the {DECISION} structure: action `continue` to let the run go on as it "
    "is, `steer` to send it the instructions in `message` (its next steps see them), or "
    "`stop` to end it now as done; reason, why.")


def observed(report: ChildReport, cycle: int) -> dict[str, Any]:
    """The context values a cycle's observation sets."""
    return {"stack.child.status": report.status,
            "stack.child.outcome": report.outcome or "",
            "stack.child.current_node": report.current_node or "",
            "stack.child.completed_nodes": report.completed_nodes,
            "stack.child.failure_reason": report.failure_reason or "",
            "stack.manager.cycles": cycle}


def _telemetry(report: ChildReport, cycle: int) -> str:
    """What the model is told of the child: no run id, which a replay's child does not
    share with the recorded one (its request would not match the recording)."""
    last = (f"{report.current_node} ({report.node_outcome})" if report.current_node
            else "none yet")
    return (f"The supervised run, cycle {cycle}: {report.completed_nodes} nodes "
            f"completed; the last was {last}; next is {report.next_node or 'none'}.")


class ManagerLoopHandler:
    """Starts (or, after a resume, finds again) the child run and supervises it."""

    async def execute(self, run: NodeRun) -> Outcome:
        """Cycle until the child ends, the stop condition holds or cycles run out."""
        executor, node = run.executor, run.node
        pipeline = child_pipeline(run)
        if not pipeline:
            return _fail("no child pipeline: set stack.child_dotfile on the graph or the node")
        if node.get("stack.child_autostart", True) is False:
            return _fail("stack.child_autostart=false (supervising a run started elsewhere) "
                         "is not supported: let the manager start its child")
        if executor.children is None:
            return _fail("this engine has no way to start child runs")
        actions = {a.strip() for a in str(node.get("manager.actions", DEFAULT_ACTIONS))
                   .split(",") if a.strip()}
        try:
            stop = parse_condition(str(node.get("manager.stop_condition", "") or ""))
        except ConditionError as exc:
            return _fail(f"manager.stop_condition: {exc}")
        try:
            link = await executor.children.attach(parent_run(run), pipeline)
        except ChildRunError as exc:  # trying again would not help
            return _fail(f"child run of {pipeline}: {exc}")
        run.write_file("child.json", orjson.dumps(
            {"run_id": link.run_id, "run_dir": link.run_dir}).decode())
        executor.emit("ChildRunStarted", name=node.id, child_run_id=link.run_id,
                      run_dir=link.run_dir)
        try:
            return await _cycles(run, link, actions, stop.evaluate if stop.clauses else None,
                                 first_call=run.call)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(link.cancel())
            raise


async def _cycles(run: NodeRun, link: ChildLink, actions: set[str], stop: Any,
                  first_call: int) -> Outcome:
    node = run.node
    max_cycles = int(node.get("manager.max_cycles", DEFAULT_MAX_CYCLES))
    updates: dict[str, Any] = {}
    if link.instructions:  # given before a resume: the child still follows them
        updates["stack.manager.message"] = link.instructions
    cycle = 0
    while True:
        report = await link.supervision.next_report()
        # A cycle is one node of the child: a child resumed (or found ended) after an
        # interruption is at the cycle an uninterrupted run would be at. The end of a run
        # that recorded no node at its end (a step limit) is one cycle more.
        cycle = max(cycle + 1, report.completed_nodes)
        if "observe" in actions or report.ended:
            updates.update(observed(report, cycle))
        run.executor.emit("ManagerCycle", name=node.id, cycle=cycle, child_status=report.status,
                          completed_nodes=report.completed_nodes)
        if report.ended:
            return _ended(report, updates)
        view: Mapping[str, Any] = {**run.context.values, **updates}
        if stop is not None and stop(report.node_outcome or "", "", view):
            await link.cancel()
            return Outcome(Status.SUCCESS, context_updates=updates,
                           notes="stop condition satisfied")
        if cycle >= max_cycles:
            await link.cancel()
            return Outcome(Status.FAIL, context_updates=updates,
                           failure_reason=f"max cycles exceeded ({max_cycles})")
        message = None
        if "steer" in actions and node.get("prompt"):
            decision = await _decide(run, report, cycle, first_call)
            if isinstance(decision, Outcome):
                await link.cancel()
                decision.context_updates = {**updates, **decision.context_updates}
                return decision
            if decision["action"] == "stop":
                await link.cancel()
                return Outcome(Status.SUCCESS, context_updates=updates,
                               notes=f"stopped by the manager: {decision['reason']}")
            if decision["action"] == "steer" and decision["message"]:
                message = str(decision["message"])
                updates["stack.manager.message"] = message
        link.supervision.release(message)


def _ended(report: ChildReport, updates: dict[str, Any]) -> Outcome:
    if report.status == "completed" and report.outcome == "success":
        return Outcome(Status.SUCCESS, context_updates=updates, notes="Child completed")
    reason = f"child run {report.run_id} {report.status}"
    if report.failure_reason:
        reason += f": {report.failure_reason}"
    return Outcome(Status.FAIL, context_updates=updates, failure_reason=reason)


async def _decide(run: NodeRun, report: ChildReport, cycle: int,
                  first_call: int) -> dict[str, Any] | Outcome:
    """The node's model's decision for this cycle (each cycle is one more call of it)."""
    try:
        prompt = render_prompt(run, str(run.node.get("prompt")))
    except PromptError as exc:
        return Outcome(Status.FAIL, failure_reason=str(exc), retryable=False)
    # The scripted provider's n-th answer is the node's n-th call: numbered by cycle, so
    # that a manager resumed at cycle n asks as the n-th call, as it would have.
    run.context.count_call(run.node.id, first_call + cycle - 1)
    answer = await ask_structured(run, f"{prompt}\n\n{_telemetry(report, cycle)}",
                                  DECISION_SPEC)
    if isinstance(answer, Outcome):
        return answer
    if answer.fields["action"] == "steer":
        run.executor.emit("ManagerSteered", name=run.node.id, cycle=cycle,
                          message=answer.fields["message"])
    return answer.fields


def parent_run(run: NodeRun) -> ParentRun:
    """The parent's side of a child run: the node's key is its visit and attempt, in a
    parallel branch also the branch and the parallel node's visit (each its own child)."""
    executor, node = run.executor, run.node
    done = executor.state.completed_nodes
    visit = f"{run.branch}@{len(done)}" if run.branch else str(done.count(node.id) + 1)
    replayer = executor.replayer
    return ParentRun(executor.run_id, node.id, f"{node.id}:{visit}:{run.attempt}",
                     executor.inputs, executor.record, executor.trial_index,
                     executor.budget, None if replayer is None else replayer.mode)


def _fail(reason: str) -> Outcome:
    return Outcome(Status.FAIL, failure_reason=reason, retryable=False)
