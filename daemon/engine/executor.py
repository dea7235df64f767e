"""The execution engine (attractor §3): traversal, retries, goal gates, checkpoints, resume.

One `Executor` runs one run. It writes the run directory itself and reports stages, calls
and events to a `RunSink`, which the daemon backs with the store; a node counts as done only
once the sink has durably recorded it and the checkpoint has been rewritten.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from ..disk import disk_full
from ..ids import utc_now, uuid7
from .budget import Budget, BudgetExceeded
from .context import Context
from .dag import traverse_dag
from .edges import select_edge
from .events import Event, EventType
from .fidelity import thread_limits
from .graph import Edge, Graph, Node
from .handlers.base import HandlerRegistry, Interviewer, NodeRun
from .outcome import Outcome, Status
from .recording import RUN_END, RecordMode, without_content
from .replay import Journal, ReplayDivergence, Replayer, recorded_call
from .retry import PRESETS, RetryPolicy, backoff_delay_ms
from .run_state import (
    HISTORY,
    LOG_HISTORY,
    NOTE_CHARS,
    RunResult,
    RunState,
    completed_nodes,
    edge_index,
    find_start,
)
from .rundir import JOURNAL, RunDirectory
from .sink import NullSink, RunSink
from .supervision import INSTRUCTIONS, ChildReport, ChildRuns, Supervision
from .threads import Thread
from .tools.runtime import AgentRuntime

# The calls of the unit of concurrent work (a parallel branch, a DAG stage) that the current
# task runs; None outside one.
_WORK: ContextVar[list[int] | None] = ContextVar("ostinato_work_calls", default=None)


class Executor:
    """Runs one pipeline run to its end."""

    def __init__(self, *, run_id: str, trace_id: str, graph: Graph, run_dir: RunDirectory,
                 handlers: HandlerRegistry, providers: Any, interviewer: Interviewer,
                 sink: RunSink | None = None, settings: Any = None,
                 rng: random.Random | None = None, recorded_stages: int = 0,
                 record: RecordMode = "full", replayer: Replayer | None = None,
                 trial_index: int | None = None, budget: Budget | None = None,
                 children: ChildRuns | None = None,
                 supervisor: Supervision | None = None,
                 agent: AgentRuntime | None = None) -> None:
        self.run_id = run_id
        self.trace_id = trace_id
        self.graph = graph
        self.run_dir = run_dir
        self.handlers = handlers
        self.providers = providers
        self.interviewer = interviewer
        self.sink: RunSink = sink or NullSink()
        # Where checkpoints go: checkpoint.json now (inline); a worker's go to the daemon,
        # which writes each after the commit that holds its stage (decision 0007).
        self.write_checkpoint: Callable[[dict[str, Any]], None] = self._checkpoint_file
        # Makes what the sink holds durable, checkpoint included: the daemon's sink commits
        # in batches (runs/sink.py), so before the run shows its progress to something that
        # outlives a crash (a tool process, its manager) it commits. Nothing to do by default.
        self.commit_records: Callable[[], Awaitable[None]] = _nothing
        self.settings = settings
        self.rng = rng  # retry jitter; None: the random module's own generator
        self.state = RunState(Context())
        self.inputs: dict[str, Any] = {}  # the run's inputs: the context a restart begins with
        self.call_seq = 0
        # Calls of concurrent work not finished yet: a checkpoint names them (`open_calls`),
        # for a resume runs that work again and makes them again.
        self._open_work: list[list[int]] = []
        # Calls an earlier interruption cut short (open in the checkpoint resumed from): the
        # work runs again under new numbers, so they stay open in every later checkpoint.
        self._abandoned: list[int] = []
        self.last_call_failed = False  # the trace so far ends with a failed call
        self.resumed_at: int | None = None  # completed nodes when this run was resumed
        self.record: RecordMode = record
        # Consulted before every model and tool call when the run replays a recording.
        self.replayer = replayer
        # A resumed run's calls finished after its checkpoint: served before the replayer.
        self.journal: Journal | None = None
        self.divergence: ReplayDivergence | None = None
        self.trial_index = trial_index  # this run's place in its trial set, if any
        self.budget = budget  # a test run's cost limit, shared with its other runs
        self.children = children  # starts the child runs of manager nodes
        self.supervisor = supervisor  # a manager supervises this run: lockstep per node
        self.supervised = 0  # completed nodes when the manager last let this run go on
        # Stages the sink already holds for this run. A run resumed after a crash between a
        # stage's record and the checkpoint after it numbers its next stages after them.
        self.recorded_stages = recorded_stages
        # The workspace, secrets and processes of the run's agent nodes.
        self.agent = agent or AgentRuntime(run_dir.root, run_id, settings=settings)
        self.agent.on_spawn = lambda kind, program, node_id: self.emit(
            "ToolProcessStarted", node_id=node_id, kind=kind, program=program)

    # -- entry points ---------------------------------------------------------------------

    async def run(self, inputs: dict[str, Any] | None = None) -> RunResult:
        """Execute from the start node with a fresh context."""
        self.inputs = dict(inputs or {})
        self.state = RunState(self.initial_context(), next_node=find_start(self.graph),
                            stage_seq=self.recorded_stages)
        self.emit("PipelineStarted", name=self.graph.name, id=self.run_id)
        return await self._traverse_or_diverge()

    async def resume(self, checkpoint: dict[str, Any], inputs: dict[str, Any] | None = None,
                     initial: dict[str, Any] | None = None) -> RunResult:
        """Continue an interrupted run from its checkpoint; `inputs` given again (secrets the
        checkpoint could not keep) replace the recorded context values; `initial` are all
        the run's inputs (those given again included)."""
        self.inputs = dict(initial or inputs or {})
        self.state = RunState.from_checkpoint(checkpoint, self.graph, self.run_dir,
                                              self.recorded_stages)
        self.call_seq = int(checkpoint.get("call_seq", 0))
        self._abandoned = [int(seq) for seq in checkpoint.get("open_calls", ())]
        self.resumed_at = len(self.state.completed_nodes)
        self.state.context.apply(inputs or {})
        if "completed_count" in checkpoint:
            # Lines the journal got after this checkpoint belong to work that runs again.
            self.run_dir.truncate_journal(len(self.state.completed_nodes))
        if checkpoint.get("result") is not None:
            return self._result_from_checkpoint(checkpoint)
        self.emit("PipelineResumed", id=self.run_id, from_node=self.state.current_node,
                  next_node=self.state.next_node)
        self.supervised = int(checkpoint.get("supervised", 0))
        if self.supervisor is not None and self.supervised < len(self.state.completed_nodes):
            await self.supervised_boundary()  # the manager's cycle the interruption cut short
        return await self._traverse_or_diverge()

    # -- traversal ------------------------------------------------------------------------

    async def _traverse_or_diverge(self) -> RunResult:
        """Traverse; a recorded replay that meets a call its recording cannot serve fails
        the run at once (no retry, no failure routing: the recording ends there)."""
        started = time.monotonic()
        try:
            return await self._traverse()
        except ReplayDivergence as exc:
            content = self.record == "full"
            self.emit("ReplayDiverged", **exc.to_dict(content))
            return await self.finish(Status.FAIL, str(exc) if content
                                      else exc.without_content(), started)
        except BudgetExceeded as exc:
            # No final checkpoint: the run stops where it was, and can be resumed.
            self.emit("BudgetExceeded", spent_usd=exc.spent_usd, limit_usd=exc.limit_usd)
            self.emit("PipelineFailed", error=str(exc),
                      duration_ms=round((time.monotonic() - started) * 1000, 3))
            return RunResult("budget_exceeded", Status.FAIL, str(exc),
                             list(self.state.completed_nodes), self.state.context.snapshot())

    async def _traverse(self) -> RunResult:
        if self.graph.dag:
            return await traverse_dag(self)
        started = time.monotonic()
        graph, state = self.graph, self.state
        limit = int(getattr(self.settings, "max_steps", 0) or 0)
        while True:
            node_id = state.next_node
            if node_id is None:  # nothing left to do: a node without a usable edge
                return await self.finish(Status.SUCCESS, "", started)
            if limit and state.stage_seq >= limit:  # a loop that never ends costs money
                return await self.finish(Status.FAIL, self._step_limit(limit), started)
            node = graph.nodes[node_id]
            is_exit = node.type == "exit"
            if is_exit:
                jump = self._unsatisfied_gate_target()
                if jump is not None:
                    if jump == "":
                        return await self.finish(
                            Status.FAIL, "goal gate unsatisfied and no retry target", started)
                    state.next_node, state.via = jump, None
                    continue
            outcome = await self.execute_node(node, state.context, via=state.via)
            self.record_node(node, outcome, state.context)
            next_node, via, reason = self.next_node(node, outcome, state.context)
            gate_failed = False
            if next_node is None and not is_exit and outcome.status is not Status.FAIL:
                # A dead end ends the run like an exit does: goal gates apply (§3.4).
                jump = self._unsatisfied_gate_target()
                if jump == "":
                    gate_failed = True
                elif jump is not None:
                    next_node = jump
            state.current_node = node_id
            state.next_node, state.via = next_node, via
            if is_exit:  # one checkpoint after it: the final one, with the result
                return await self.finish(Status.SUCCESS, "", started)
            if via is not None and via.attrs.get("loop_restart") is True:
                self._restart(node, via)
            await self.save_checkpoint(node, finished=next_node is None)
            if self.supervisor is not None and next_node is not None:
                await self.supervised_boundary()
            if next_node is None:
                if gate_failed:
                    return await self.finish(
                        Status.FAIL, "goal gate unsatisfied and no retry target", started)
                if outcome.status is Status.FAIL:
                    return await self.finish(Status.FAIL, reason or outcome.failure_reason
                                              or f"node {node_id} failed", started)
                return await self.finish(Status.SUCCESS, "", started)

    def _step_limit(self, limit: int) -> str:
        """Why a run stopped at settings.max_steps, naming the node that ran most often."""
        counts = self.state.context.calls
        busiest = max(counts, key=lambda n: counts[n]) if counts else None
        where = (f"; node {busiest!r} ran {counts[busiest]} times (a loop whose exit "
                 "condition never holds?)" if busiest else "")
        return (f"step limit reached: {limit} node executions (settings.max_steps){where}; "
                "raise settings.max_steps (0: no limit) if the pipeline needs more")

    async def supervised_boundary(self) -> None:
        """A node boundary of a supervised run: wait for the manager's cycle, and take its
        instructions into the context (the next requests carry them)."""
        assert self.supervisor is not None
        await self.commit_records()  # what the manager sees of the run is in its record
        message = await self.supervisor.boundary(self.report("running"))
        if message is not None:
            self.state.context.set(INSTRUCTIONS, message)
            self.emit("ManagerSteered", message=message)
        # The checkpoint says the cycle was had: a resume does not ask for it again.
        self.supervised = len(self.state.completed_nodes)
        self.write_checkpoint(self.checkpoint())

    def report(self, status: str, outcome: str | None = None,
               failure_reason: str | None = None) -> ChildReport:
        """This run as its manager sees it."""
        state = self.state
        return ChildReport(self.run_id, status, outcome, len(state.completed_nodes),
                           state.current_node, str(state.context.get("outcome", "")) or None,
                           state.next_node, failure_reason)

    def initial_context(self) -> Context:
        """The context a run starts with: the graph's scalar attributes and the inputs."""
        context = Context({f"graph.{k}": v for k, v in self.graph.attrs.items()
                           if isinstance(v, str | int | float | bool)})
        context.apply(self.inputs)
        return context

    def _restart(self, node: Node, edge: Edge) -> None:
        """A `loop_restart` edge: the run goes on at its target in a fresh context, as a run
        started there would (attractor §3.2 step 7, docs/pipelines.md "loop_restart"): the
        initial values, no threads, no goal-gate outcomes or retry counters. The run's
        record, and how often each node was called, carry on."""
        state = self.state
        restarts = int(state.context.get("internal.restarts", 0)) + 1
        context = self.initial_context()
        context.calls, context.repeated = state.context.calls, state.context.repeated
        context.set("internal.restarts", restarts)
        state.context = context
        state.node_outcomes, state.node_retries = {}, {}
        state.via = None
        self.emit("LoopRestarted", from_node=node.id, to_node=edge.target, restart=restarts)

    def open_work(self) -> list[int]:
        """Begin a unit of concurrent work in the current task (a parallel branch, a DAG
        stage): the calls it makes stay open until `close_work`, which comes once its
        result is recorded."""
        calls: list[int] = []
        self._open_work.append(calls)
        _WORK.set(calls)
        return calls

    def close_work(self, calls: list[int]) -> None:
        """The work whose calls these are has its result recorded: checkpoints cover them."""
        self._open_work = [open_ for open_ in self._open_work if open_ is not calls]

    def record_node(self, node: Node, outcome: Outcome, context: Context) -> None:
        """Steps 3 and 4 of §3.2: completion, context updates, built-in keys."""
        state = self.state
        state.completed_nodes.append(node.id)
        if node.get("goal_gate", False):  # all that routing needs of the past (§3.4)
            state.node_outcomes[node.id] = outcome.status.value
        self.apply_outcome(node, outcome, context)
        context.set("current_node", node.id)
        # Always set, so that a label from an earlier node never steers a later edge.
        context.set("preferred_label", outcome.preferred_label)
        entry = {"node": node.id, "outcome": outcome.status.value, "timestamp": utc_now()}
        note = outcome.answer if outcome.status.succeeded and outcome.answer else \
            (outcome.failure_reason or outcome.notes)
        if note:  # what summary fidelity modes tell of the node
            entry["note"] = note[:NOTE_CHARS]
        context.logs.append(entry)
        if len(context.logs) > LOG_HISTORY:  # as a resume would read it back: the same window
            del context.logs[0]
        # The whole history goes to an append-only journal; the checkpoint keeps the recent
        # part, so that rewriting it after every node costs the same at node 10 and 10,000.
        self.run_dir.append_journal(self._kept({"n": len(state.completed_nodes), **entry}))

    def apply_outcome(self, node: Node, outcome: Outcome, context: Context) -> None:
        """A finished node's context updates and outcome (§3.2 step 4), and its turn in a
        `full` thread (compacted to the node's thread limits)."""
        context.apply(self.run_dir.externalize(outcome.context_updates))
        context.set("outcome", outcome.status.value)
        turn = outcome.turn
        if turn is not None:
            key = turn["thread"]
            thread = context.threads.get(key)
            if thread is None:
                thread = context.threads[key] = Thread()
            thread.add({k: v for k, v in turn.items() if k != "thread"},
                       *thread_limits(self.graph, node))
            context.last_thread = key

    def next_node(self, node: Node, outcome: Outcome,
                  context: Context) -> tuple[str | None, Edge | None, str]:
        """Where to go after `node`, by which edge (None for a jump), and why nowhere: its
        fan-in, an edge, or failure routing (§3.7)."""
        kind = node.type
        if kind == "exit":
            return None, None, ""
        if outcome.jump_to is not None:
            return outcome.jump_to, None, ""
        if kind == "parallel":  # its edges are the branches, already run
            return None, None, ""
        edge = select_edge(self.graph, node, outcome, context)
        if outcome.status is Status.FAIL:
            # A failed node follows only an edge whose condition matched (a fail edge);
            # otherwise its retry targets; otherwise the run fails (docs/pipelines.md).
            if edge is not None and edge.condition:
                return edge.target, edge, ""
            for attr in ("retry_target", "fallback_retry_target"):
                target = str(node.get(attr, "") or "")
                if target in self.graph.nodes:
                    return target, None, ""
            return None, None, outcome.failure_reason or f"node {node.id} failed"
        return (edge.target, edge, "") if edge is not None else (None, None, "")

    def _unsatisfied_gate_target(self) -> str | None:
        """None if every visited goal gate succeeded; else its retry target, or ""."""
        for node_id, status in self.state.node_outcomes.items():
            node = self.graph.nodes.get(node_id)
            if node is None or not node.get("goal_gate", False):
                continue
            if Status(status).succeeded:
                continue
            for source in (node.attrs, self.graph.attrs):
                for attr in ("retry_target", "fallback_retry_target"):
                    target = str(source.get(attr, "") or "")
                    if target in self.graph.nodes:
                        return target
            return ""
        return None

    # -- one node -------------------------------------------------------------------------

    async def execute_node(self, node: Node, context: Context, branch: str | None = None,
                           via: Edge | None = None) -> Outcome:
        """Run one node, reached by `via` (None: a jump), with its retry policy (§3.5);
        every attempt is a recorded stage."""
        type_name, handler = self.handlers.resolve(node)
        policy = self._policy(node) if getattr(handler, "retryable", True) else PRESETS["none"]
        attempt = 0
        while True:
            # Once the budget is spent nothing new starts (start and exit do no work).
            if self.budget is not None and node.type not in ("start", "exit"):
                self.budget.check()
            attempt += 1
            index = self.state.stage_seq
            self.emit("StageStarted", name=node.id, index=index, attempt=attempt,
                      handler=type_name, branch=branch)
            started_at, started = utc_now(), time.monotonic()
            context.count_call(node.id)
            outcome = await self._attempt(handler, node, context, attempt, branch, via)
            duration_ms = (time.monotonic() - started) * 1000
            retrying = (outcome.status in (Status.RETRY, Status.FAIL) and outcome.retryable
                        and attempt < policy.max_attempts)
            if not retrying and outcome.status is Status.RETRY:
                outcome = (Outcome(Status.PARTIAL_SUCCESS, notes="retries exhausted, partial "
                                   "accepted", context_updates=outcome.context_updates)
                           if node.get("allow_partial", False)
                           else Outcome(Status.FAIL, failure_reason="max retries exceeded",
                                        context_updates=outcome.context_updates))
            self.run_dir.write_status(node.id, self._kept(outcome.to_status_file()))
            if outcome.status.succeeded:
                self.emit("StageCompleted", name=node.id, index=index, attempt=attempt,
                          duration_ms=round(duration_ms, 3), status=outcome.status.value)
            else:
                self.emit("StageFailed", name=node.id, index=index, attempt=attempt,
                          error=outcome.failure_reason, will_retry=retrying)
            await self._stage_done(node, type_name, attempt, outcome, branch, started_at,
                                   duration_ms)
            if self.divergence is not None:
                raise self.divergence
            if not retrying:
                if outcome.status.succeeded:  # §3.5: success resets the retry counter
                    self.state.node_retries.pop(node.id, None)
                    context.values.pop(f"internal.retry_count.{node.id}", None)
                return outcome
            self.state.node_retries[node.id] = attempt
            context.set(f"internal.retry_count.{node.id}", attempt)
            delay_ms = backoff_delay_ms(attempt, policy, self.rng) * self._delay_scale()
            self.emit("StageRetrying", name=node.id, index=index, attempt=attempt + 1,
                      delay_ms=round(delay_ms, 1))
            if delay_ms > 0:
                await asyncio.sleep(delay_ms / 1000)

    async def _attempt(self, handler: Any, node: Node, context: Context, attempt: int,
                       branch: str | None, via: Edge | None) -> Outcome:
        """One handler call; exceptions and timeouts become FAIL outcomes (§4.12)."""
        run = NodeRun(node=node, graph=self.graph, context=context, attempt=attempt,
                      executor=self, branch=branch, via=via)
        # A handler that honours `timeout` itself (a human gate's default choice) gets it.
        timeout = None if getattr(handler, "handles_timeout", False) else node.get("timeout")
        try:
            if timeout is not None:
                async with asyncio.timeout(timeout.seconds):
                    return await handler.execute(run)
            return await handler.execute(run)
        except TimeoutError:
            after = f" after {timeout.seconds:g}s" if timeout is not None else ""
            return Outcome(Status.FAIL, failure_reason=f"timed out{after}")
        except ReplayDivergence as exc:
            # The trace of the replay ends with the call that could not be served, and the
            # node with a failed stage; then the run stops (execute_node raises it again).
            message = str(exc) if self.record == "full" else exc.without_content()
            self.record_call(node_id=node.id, attempt=attempt, kind=exc.kind,
                             request=exc.request or {}, response=None, error=message,
                             finish_reason="error")
            self.divergence = exc
            return Outcome(Status.FAIL, failure_reason=message, retryable=False)
        except (asyncio.CancelledError, BudgetExceeded):  # a branch met the spent budget
            raise
        except Exception as exc:
            if disk_full(exc):  # not the node's failure: the run stops, resumable
                raise
            return Outcome(Status.FAIL, failure_reason=f"{type(exc).__name__}: {exc}")

    def _policy(self, node: Node) -> RetryPolicy:
        """The node's preset backoff (`retry_policy`, default standard) over
        `max_retries + 1` attempts (falling back to the graph's `default_max_retries`)."""
        jitter = getattr(getattr(self.settings, "retry", None), "jitter", True)
        # Kept with the graph, which every run of the pipeline shares and none changes.
        return self.graph.per_node(f"retry_policy.{jitter}", node,
                                   lambda graph, node: _node_policy(graph, node, jitter))

    def _delay_scale(self) -> float:
        return float(getattr(getattr(self.settings, "retry", None), "delay_scale", 1.0))

    # -- records --------------------------------------------------------------------------

    def emit(self, type_: EventType, **data: Any) -> None:
        """Report an event to the sink."""
        self.sink.emit(Event(type_, {k: v for k, v in data.items() if v is not None},
                             time=utc_now()))

    def record_call(self, *, node_id: str, attempt: int, kind: str, request: dict[str, Any],
                    response: dict[str, Any] | None, error: str | None = None,
                    input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0.0,
                    latency_ms: float = 0.0, finish_reason: str | None = None) -> None:
        """A model or tool call: one line of trace.jsonl, and a row via the sink."""
        self.call_seq += 1
        self.last_call_failed = finish_reason == "error"
        if self.budget is not None:
            self.budget.charge(cost_usd)
        if self.record == "metadata_only":
            request, response = without_content(request), without_content(response)
        call = {"id": uuid7(), "run_id": self.run_id, "trace_id": self.trace_id,
                "seq": self.call_seq, "node_id": node_id, "attempt": attempt, "kind": kind,
                "request": request, "response": response, "error": error,
                "input_tokens": input_tokens, "output_tokens": output_tokens,
                "cost_usd": cost_usd, "latency_ms": round(latency_ms, 3),
                "finish_reason": finish_reason, "created_at": utc_now()}
        self.run_dir.append_trace(call)
        self.sink.record_call(call)
        work = _WORK.get()
        if work is not None:
            work.append(self.call_seq)

    def recorded(self, node_id: str, attempt: int, kind: str,
                 request: dict[str, Any]) -> dict[str, Any] | None:
        """The recorded call to serve instead of making this tool (or hook) call: one the
        run finished before it was interrupted, else the replayed recording's."""
        return recorded_call(self.journal, self.replayer, node_id, attempt, kind, request)[0]

    def end_failed_trace(self, reason: str) -> None:
        """A run that failed without a failing call (no edge to follow, max_steps, a goal
        gate, an engine error) ends its trace with an entry of kind `run` that says why, so
        that every failed run's trace ends with `finish_reason: "error"`."""
        if not self.last_call_failed:
            self.record_call(node_id=self.state.current_node or "", attempt=0, kind=RUN_END,
                             request={}, response=None, error=reason or "failed",
                             finish_reason="error")

    def _kept(self, record: dict[str, Any]) -> dict[str, Any]:
        """What the record mode keeps of a stage record."""
        return without_content(record) if self.record == "metadata_only" else record

    async def _stage_done(self, node: Node, type_name: str, attempt: int, outcome: Outcome,
                          branch: str | None, started_at: str, duration_ms: float) -> None:
        self.state.stage_seq += 1
        stage = {"seq": self.state.stage_seq, "node_id": node.id, "attempt": attempt,
                 "status": outcome.status.value, "handler": type_name, "branch": branch,
                 "started_at": started_at, "ended_at": utc_now(),
                 "duration_ms": round(duration_ms, 3), "outcome": self._kept(outcome.to_dict())}
        await self.sink.stage_done(stage)

    async def save_checkpoint(self, node: Node, finished: bool) -> None:
        """Rewrite checkpoint.json (step 5 of §3.2)."""
        self.write_checkpoint(self.checkpoint(finished))
        self.emit("CheckpointSaved", node_id=node.id)

    def _checkpoint_file(self, checkpoint: dict[str, Any]) -> None:
        self.run_dir.write_json("checkpoint.json", data=checkpoint)

    def checkpoint(self, finished: bool = False) -> dict[str, Any]:
        """The checkpoint as it stands (attractor §5.3 schema plus next_node and counters)."""
        state = self.state
        return {
            "pipeline_name": self.graph.name,
            "run_id": self.run_id,
            "timestamp": utc_now(),
            "current_node": state.current_node,
            "next_node": state.next_node,
            "finished": finished,
            "completed_count": len(state.completed_nodes),
            "completed_nodes": state.completed_nodes[-HISTORY:],  # all: journal.jsonl
            "journal": JOURNAL,
            "node_outcomes": state.node_outcomes,  # the goal gates' latest outcomes
            "node_retries": state.node_retries,
            "stage_seq": state.stage_seq,
            "call_seq": self.call_seq,
            # Of those, the calls of work still running: a resume makes them again.
            "open_calls": sorted({*self._abandoned,
                                  *(seq for calls in self._open_work for seq in calls)}),
            "via": None if state.via is None else edge_index(self.graph)[id(state.via)],
            "context": state.context.values,
            "logs": state.context.logs,
            "threads": state.context.threads,
            "last_thread": state.context.last_thread,
            "calls": state.context.repeated,  # the others: once each completed node
            "supervised": self.supervised,
        }

    async def finish(self, status: Status, reason: str, started: float) -> RunResult:
        """End the run: the final checkpoint, with its result, and the end's event."""
        duration_ms = round((time.monotonic() - started) * 1000, 3)
        self.state.next_node = None
        checkpoint = self.checkpoint(finished=True)
        checkpoint["result"] = {"outcome": status.value, "failure_reason": reason}
        self.write_checkpoint(checkpoint)
        self.emit("CheckpointSaved", node_id=self.state.current_node)
        if status.succeeded:
            self.emit("PipelineCompleted", duration_ms=duration_ms,
                      completed_nodes=len(self.state.completed_nodes))
        else:
            self.emit("PipelineFailed", error=reason, duration_ms=duration_ms)
        return RunResult("completed" if status.succeeded else "failed", status, reason,
                         list(self.state.completed_nodes), self.state.context.snapshot())

    def _result_from_checkpoint(self, checkpoint: dict[str, Any]) -> RunResult:
        """A run that had already finished when the daemon died: report how, with the end
        event the dead daemon never recorded (it is committed with the run's end)."""
        result = checkpoint.get("result") or {"outcome": "success"}
        status = Status(result["outcome"])
        reason = result.get("failure_reason", "")
        done = completed_nodes(self.run_dir, checkpoint)
        if status.succeeded:
            self.emit("PipelineCompleted", duration_ms=0.0, completed_nodes=len(done))
        else:
            self.emit("PipelineFailed", error=reason, duration_ms=0.0)
        return RunResult("completed" if status.succeeded else "failed", status, reason, done,
                         dict(checkpoint.get("context", {})))


async def _nothing() -> None:
    """A run whose records need no commit (Executor.commit_records)."""


def _node_policy(graph: Graph, node: Node, jitter: bool) -> RetryPolicy:
    """See Executor._policy."""
    retries = node.get("max_retries")
    if retries is None:
        retries = graph.attrs.get("default_max_retries", graph.attrs.get("default_max_retry", 0))
    preset = PRESETS.get(str(node.get("retry_policy", "standard")), PRESETS["standard"])
    if preset.max_attempts == 1:  # `none`
        return preset
    return replace(preset, max_attempts=max(1, int(retries) + 1), jitter=jitter)
