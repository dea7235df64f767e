"""Parallel fan-out (attractor §4.8); the fan-in is fan_in.py.

Each outgoing edge of a parallel node starts a branch: a traversal on a clone of the context
that stops before a fan-in node (or at an exit, or where no edge leads on). The branches'
results go into `parallel.results`; traversal continues at the fan-in node they reached.
Every finished branch is recorded (branches.jsonl) and checkpointed, so that a run resumed
after a crash runs only the branches that had not finished.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ..context import Context
from ..graph import Edge
from ..outcome import Outcome, Status
from ..rundir import BRANCHES
from .base import NodeRun

if TYPE_CHECKING:
    from ..executor import Executor

class ParallelHandler:
    """Runs every branch, at most `max_parallel` at a time, and joins them."""

    async def execute(self, run: NodeRun) -> Outcome:
        """Fan out; `join_policy` wait_all (default) or first_success."""
        executor = run.executor
        edges = run.graph.outgoing(run.node.id)
        if not edges:
            return Outcome(Status.FAIL, failure_reason="parallel node without branches")
        policy = str(run.node.get("join_policy", "wait_all"))
        default_limit = getattr(executor.settings, "max_parallel", 4)
        limit = asyncio.Semaphore(int(run.node.get("max_parallel", default_limit)))
        executor.emit("ParallelStarted", name=run.node.id, branch_count=len(edges))
        # Branches that finished before the daemon died are not run (nor paid for) again.
        recorded = recorded_branches(executor, run.node.id, run.branch)
        done = 0
        works: list[list[int]] = []  # each branch's calls (Executor.open_work)

        async def branch(index: int, edge: Edge) -> dict[str, Any]:
            nonlocal done
            target = edge.target
            if target in recorded:
                done += 1
                return recorded[target]
            async with limit:
                executor.emit("ParallelBranchStarted", branch=target, index=index)
                started = time.monotonic()
                calls = executor.open_work()
                works.append(calls)
                result = await run_branch(executor, edge, run.context.clone())
                done += 1
                executor.close_work(calls)
                branch_done(executor, run.node.id, run.branch, result, done, len(edges))
                executor.emit("ParallelBranchCompleted", branch=target, index=index,
                              duration_ms=round((time.monotonic() - started) * 1000, 3),
                              success=result["status"] in ("success", "partial_success"))
                return result

        tasks = [asyncio.ensure_future(branch(i, e)) for i, e in enumerate(edges)]
        results: list[dict[str, Any]] = []
        try:
            for finished in asyncio.as_completed(tasks):
                result = await finished
                results.append(result)
                if policy == "first_success" and result["status"] == "success":
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Branches cut short (first_success, the node's timeout) will not run again;
            # after a cancel or a stop no checkpoint is written any more.
            for calls in works:
                executor.close_work(calls)
        order = {edge.target: i for i, edge in enumerate(edges)}
        results.sort(key=lambda r: order[r["id"]])
        successes = sum(r["status"] in ("success", "partial_success") for r in results)
        failures = sum(r["status"] == "fail" for r in results)
        executor.emit("ParallelCompleted", name=run.node.id, success_count=successes,
                      failure_count=failures)
        joins = {r["stopped_at"] for r in results if r["stopped_at"]}
        if policy == "first_success":
            status = Status.SUCCESS if successes else Status.FAIL
        else:
            status = Status.SUCCESS if failures == 0 else Status.PARTIAL_SUCCESS
        return Outcome(status, context_updates={"parallel.results": results},
                       jump_to=min(joins) if joins else None,
                       notes=f"{successes} of {len(results)} branches succeeded")


async def run_branch(executor: Executor, edge: Edge, context: Context) -> dict[str, Any]:
    """One branch, from the fan-out `edge`, on its own context, up to a fan-in or an end;
    its result (which holds no timings: a replay must reproduce the context exactly)."""
    before = dict(context.values)
    start = edge.target
    node_id: str | None = start
    via: Edge | None = edge
    stopped_at: str | None = None
    last: Outcome | None = None
    while node_id is not None:
        node = executor.graph.nodes[node_id]
        if node.type in ("parallel.fan_in", "exit"):
            stopped_at = node_id
            break
        last = await executor.execute_node(node, context, branch=start, via=via)
        executor.apply_outcome(node, last, context)
        node_id, via, _ = executor.next_node(node, last, context)
    result = {"id": start, "status": last.status.value if last is not None else "success",
            "stopped_at": stopped_at, "notes": last.notes if last else "",
            "failure_reason": last.failure_reason if last else "",
            "score": last.score if last and last.score is not None else context.get("score"),
            "context_updates": {k: v for k, v in context.values.items()
                                if before.get(k) != v and k != "outcome"}}
    if last is not None and last.answer is not None:  # what a fan-in's model ranks
        result["answer"] = last.answer
    return result


def recorded_branches(executor: Executor, parallel_id: str,
                      within: str | None) -> dict[str, Any]:
    """Results of the branches of `parallel_id` that finished before the run was resumed,
    by branch; empty unless that node is where the run was interrupted."""
    visit = len(executor.state.completed_nodes)
    if visit != executor.resumed_at:
        return {}
    return {entry["branch"]: entry["result"] for entry in executor.run_dir.read_branches()
            if entry["visit"] == visit and entry["node"] == parallel_id
            and entry["within"] == within}


def branch_done(executor: Executor, parallel_id: str, within: str | None,
                result: dict[str, Any], done: int, total: int) -> None:
    """A branch finished: a line of branches.jsonl, then the checkpoint rewritten with the
    parallel node's progress (a checkpoint after every node, branches included)."""
    visit = len(executor.state.completed_nodes)
    executor.run_dir.append_branch({"visit": visit, "node": parallel_id, "within": within,
                                    "branch": result["id"], "result": result})
    checkpoint = executor.checkpoint()
    checkpoint["parallel"] = {"node": parallel_id, "branches_done": done, "branches": total,
                              "journal": BRANCHES}
    executor.write_checkpoint(checkpoint)
