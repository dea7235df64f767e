"""Recipe DAGs (docs/pipelines.md "DAG recipes"): every stage whose needs are done runs,
`max_parallel` at a time.

Updates reach the shared context as stages finish; a stage sees the context as it was when
it started. A failed stage lets the running ones finish, starts no more, and fails the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .context import Context
from .graph import Node
from .outcome import Outcome, Status
from .run_state import RunResult

if TYPE_CHECKING:
    from .executor import Executor


async def traverse_dag(executor: Executor) -> RunResult:
    """Run the DAG from the executor's state (a resume's completed stages are done)."""
    started = time.monotonic()
    graph, state = executor.graph, executor.state
    needs = {node_id: {e.source for e in graph.incoming(node_id)} for node_id in graph.nodes}
    done = set(state.completed_nodes)
    running: dict[asyncio.Task[tuple[list[int], Outcome]], str] = {}
    limit = int(getattr(executor.settings, "max_parallel", 4))
    failure = ""
    try:
        while True:
            if not failure:
                ready = sorted(n for n in graph.nodes if n not in done
                               and n not in running.values() and needs[n] <= done)
                for node_id in ready[:max(0, limit - len(running))]:
                    task = asyncio.ensure_future(
                        _stage(executor, graph.nodes[node_id], state.context))
                    running[task] = node_id
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(finished, key=lambda t: running[t]):
                node = graph.nodes[running.pop(task)]
                calls, outcome = task.result()
                executor.record_node(node, outcome, state.context)
                executor.close_work(calls)
                done.add(node.id)
                state.current_node = node.id
                if outcome.status is Status.FAIL and not failure:
                    failure = outcome.failure_reason or f"node {node.id} failed"
                await executor.save_checkpoint(node, finished=False)
                if executor.supervisor is not None:
                    await executor.supervised_boundary()
    finally:
        for task in running:
            task.cancel()
    if failure:
        return await executor.finish(Status.FAIL, failure, started)
    return await executor.finish(Status.SUCCESS, "", started)


async def _stage(executor: Executor, node: Node, context: Context) -> tuple[list[int], Outcome]:
    """A DAG stage, in its own task: its calls, and its outcome."""
    calls = executor.open_work()
    return calls, await executor.execute_node(node, context)
