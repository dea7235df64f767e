"""Starting, resuming and ending runs: the engine's executor wired to the store, the run
directory, subscribers and human answers. `launch.py` and the `runs` service module call into
this; nothing here speaks JSON-RPC. A run's handle is `active.py`'s, what it writes to the
home besides its records `files.py`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.pipelines import PipelineRef
from ostinato.protocol.runs import RunSettings

from ..disk import DamagedFile, disk_full, full_reason
from ..engine.budget import Budget
from ..engine.executor import Executor
from ..engine.graph import Graph
from ..engine.handlers.base import HandlerRegistry
from ..engine.handlers.registry import default_handlers
from ..engine.load import load_pipeline_async
from ..engine.providers.connections import SharedConnections
from ..engine.providers.runtime import ProviderPool, open_pool
from ..engine.recording import RecordMode
from ..engine.redact import Redactor, run_secrets
from ..engine.replay import Cassette, Journal, Replayer, ReplayProviders
from ..engine.run_state import RunResult
from ..engine.rundir import TRACE, RunDirectory, dump_json, remove_temporary_files, run_index
from ..engine.supervision import Supervision
from ..engine.tools.agent_spec import has_agents
from ..engine.tools.processes import sweep
from ..engine.tools.runtime import AgentRuntime
from ..engine.transforms import registered_transforms
from ..host import Host
from ..ids import utc_now, uuid7
from ..store.records import Call, RunRecord
from ..store.runs import ACTIVE, RunStore
from ..store.snapshots import SnapshotStore
from ..store.traces import TraceStore
from ..workers.backends import worker_pool
from ..workers.messages import Job
from ..workers.pool import WorkerLost, on_worker
from .active import ActiveRun
from .children import ChildRunner
from .files import index_run, new_manifest, plan_file, unless_full, write_config
from .options import Prepared, RunOptions
from .sink import DaemonInterviewer, StoreSink

log = logging.getLogger("ostinato.runs")

SOURCE_NAMES = {"dot": "pipeline.dot", "recipe": "pipeline.yaml"}
# Runs stopped before their end: a resume continues them from their checkpoint.
RESUMABLE = frozenset({"interrupted", "cancelled", "budget_exceeded"})
# The failure_reason of a run whose files cannot be read (it is not resumable any more).
DAMAGED = "damaged: "


def is_damaged(run: RunRecord) -> bool:
    """True for a run marked damaged (see Runner.mark_damaged)."""
    return not run.resumable and (run.failure_reason or "").startswith(DAMAGED)


class Runner:
    """Starts, resumes, cancels and answers runs; owns the daemon's active runs."""

    def __init__(self, host: Host, store: RunStore) -> None:
        self.host = host
        self.store = store
        self.home = host.home
        self.active: dict[str, ActiveRun] = {}
        self.index = run_index(self.home)  # run_manifest.jsonl
        self.handlers: HandlerRegistry = default_handlers()
        self.children = ChildRunner(self)
        self.stopping = False
        self._finishing: set[asyncio.Future[None]] = set()  # runs ended without their task
        self.workers = worker_pool(host.settings.executor, host.settings.workers,
                                   host.settings.ray_address)
        # The SDK providers' HTTP connections, shared by the runs (and judges) of this
        # daemon; a worker has its own (connections.py).
        self.connections = SharedConnections()
        self._extensions: bool | None = None  # see _extended

    # -- starting -------------------------------------------------------------------------

    async def load(self, ref: PipelineRef, variables: dict[str, str]) -> Graph:
        """A valid graph, or an RpcError carrying the diagnostics."""
        result = await load_pipeline_async(ref, Path.cwd(), variables,
                                           known_types=self.handlers.known_types(),
                                           max_bytes=self.host.settings.max_pipeline_bytes)
        if result.graph is None or not result.valid:
            errors = [d for d in result.diagnostics if d.severity == "error"]
            first = errors[0] if errors else None
            where = f" at {first.line}:{first.col}" if first and first.line else ""
            raise RpcError(ErrorCode.INVALID_PIPELINE,
                           f"invalid pipeline{where}: {first.message if first else ''}",
                           {"diagnostics": [d.model_dump(exclude_none=True)
                                            for d in result.diagnostics]})
        return result.graph

    async def prepare(self, ref: PipelineRef, inputs: dict[str, Any], variables: dict[str, str],
                settings: RunSettings) -> Prepared:
        """Load the pipeline, build the provider pool and the redacted config/ files."""
        string_inputs = {k: v for k, v in inputs.items() if isinstance(v, str)}
        graph = await self.load(ref, {**string_inputs, **variables})
        pool = await self._pool(settings)
        redactor = Redactor(run_secrets({**inputs, **variables}, self._keys(pool)))
        dumped = settings.model_dump(mode="json")
        digest = graph.digest()
        config = {
            SOURCE_NAMES[graph.source_format]: redactor.text(graph.source).encode("utf-8"),
            "plan.json": redactor.encoded(plan_file(graph)),
            "settings.json": dump_json(redactor.data(dumped)),
            "providers.json": dump_json(redactor.data(pool.describe())),
            "pricing.json": redactor.encoded(dump_json(pool.pricing.to_dict())),
        }
        return Prepared(graph, digest, pool, redactor, config, dumped, redactor.data(inputs),
                        redactor.data(dumped), redactor.text(graph.source))

    async def start(self, ref: PipelineRef, inputs: dict[str, Any], variables: dict[str, str],
                    settings: RunSettings, options: RunOptions | None = None) -> ActiveRun:
        """Create a run (directory, rows) and start executing it."""
        options = options or RunOptions()
        if options.pipeline_dir is None:
            options = options.with_pipeline_dir(ref)
        prepared = options.prepared or await self.prepare(ref, inputs, variables, settings)
        graph = prepared.graph
        run_id, trace_id = uuid7(), uuid7()
        redactor = prepared.redactor
        try:
            replayer = await self._replayer(options, redactor) if options.replay_mode else None
        except BaseException:
            if options.prepared is None:
                await prepared.pool.aclose()
            raise
        run_dir = RunDirectory(self.home / "runs" / run_id, redactor,
                               content=options.record == "full")
        created = utc_now()
        manifest = new_manifest(run_id, trace_id, prepared, created, options)
        try:
            run_dir.create()
            # Redacted as launch.json keeps it, from what the prepared pipeline redacted.
            launch = {"pipeline_format": graph.source_format,
                      "inputs": prepared.stored_inputs, "variables": redactor.data(variables),
                      "settings": prepared.stored_settings,
                      **redactor.data(options.launch())}
            write_config(run_dir, prepared, launch)
            run_dir.write_json("manifest.json", data=manifest, fresh=True)
            try:
                await self.store.add_run(
                    pipeline_hash=prepared.digest, pipeline_name=graph.name,
                    pipeline_format=graph.source_format, source=prepared.stored_source,
                    run={"id": run_id, "status": "running", "run_dir": f"runs/{run_id}",
                         "trace_id": trace_id, "inputs": prepared.stored_inputs,
                         "settings": prepared.stored_settings, "created_at": created,
                         "started_at": created, **options.launch()},
                    concurrent=options.trial_set_id is not None or bool(self.active),
                    pipeline_stored=prepared.pipeline_stored)
            except asyncio.CancelledError:
                await self._cancelled_while_added(run_id, run_dir, manifest)
                raise
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):  # (a joined write may commit)
                # The run never existed (no row): a full disk leaves no directory behind.
                shutil.rmtree(run_dir.root, ignore_errors=True)
            if options.prepared is None:
                await prepared.pool.aclose()
            raise
        index_run(self.index, run_id, trace_id, prepared, created)
        active = self._activate(run_id, trace_id, graph, run_dir, prepared.pool, settings,
                                next_event=1, record=options.record, replayer=replayer,
                                trial_index=options.trial_index, budget=options.budget,
                                supervisor=options.supervisor,
                                pipeline_dir=options.pipeline_dir)
        active.owns_pool = options.prepared is None
        active.trial_set_id = options.trial_set_id
        active.manifest = manifest
        active.pipeline_dir = options.pipeline_dir
        if self._on_worker(graph, settings, options):
            active.job = self._job(active, inputs, variables, prepared.settings, options,
                                   replayer)
        self._launch(active, inputs, checkpoint=None)
        return active

    async def _cancelled_while_added(self, run_id: str, run_dir: RunDirectory,
                                     manifest: dict[str, Any]) -> None:
        """`start`'s caller was cancelled while the run's row was being written. A write
        that joined a group commit is committed all the same, so the run, which will never
        execute, ends `cancelled` (resumable: it starts over) rather than stay `running`
        where nothing would ever end it. Its end joins the group commit its row joined (or a
        later one), so it is written after the row; without a row it changes nothing."""
        with contextlib.suppress(Exception):  # e.g. a full disk: the next start marks it
            ended = utc_now()
            reason = "cancelled before it started"
            manifest.update(status="cancelled", end_time=ended, failure_reason=reason,
                            resumable=True)
            run_dir.write_json("manifest.json", data=manifest)  # before the row, as _finish
            await self.store.update_run(run_id, concurrent=True, status="cancelled",
                                        failure_reason=reason, ended_at=ended, resumable=1)

    def _on_worker(self, graph: Graph, settings: RunSettings, options: RunOptions) -> bool:
        """Whether a new run executes on a worker (decision 0007): with a pool, and not
        when it needs the daemon as it runs (a manager's supervision, or on_worker's
        reasons), nor when a worker would not run it as the daemon would: node types or
        transforms an extension added here."""
        if self.workers is None or options.supervisor is not None:
            return False
        return not self._extended() and on_worker(graph, settings)

    def _extended(self) -> bool:
        """Whether extensions added node types or transforms (workers load none); asked
        once: extensions register before the first run starts."""
        if self._extensions is None:
            self._extensions = (set(self.handlers.known_types())
                                != set(default_handlers().known_types())
                                or bool(registered_transforms()))
        return self._extensions

    def _job(self, active: ActiveRun, inputs: dict[str, Any], variables: dict[str, str],
             settings: dict[str, Any], options: RunOptions, replayer: Replayer | None,
             checkpoint: dict[str, Any] | None = None) -> Job:
        """What a worker needs to execute the run `active` is the daemon's side of: a
        replay's cassette (the worker serves its calls), a resume's checkpoint."""
        executor = active.executor
        return Job(run_id=active.run_id, trace_id=executor.trace_id,
                   run_dir=str(executor.run_dir.root), source=executor.graph.source,
                   source_format=executor.graph.source_format,
                   variables={**{k: v for k, v in inputs.items() if isinstance(v, str)},
                              **variables},
                   inputs=inputs, settings=settings, record=options.record,
                   trial_index=options.trial_index, pipeline_dir=options.pipeline_dir,
                   allowed_key_env=sorted(self.host.settings.allowed_key_env),
                   max_pipeline_bytes=self.host.settings.max_pipeline_bytes,
                   replay_mode=None if replayer is None else replayer.mode,
                   cassette=None if replayer is None or replayer.mode == "live"
                   else replayer.cassette.recorded(),
                   checkpoint=checkpoint, resume_inputs=active.resume_inputs,
                   recorded_stages=executor.recorded_stages,
                   budget=None if executor.budget is None else executor.budget.to_dict(),
                   # A scripted pool's limits protect no service: its runs keep their own.
                   shared_limits=options.prepared is not None
                   and not options.prepared.pool.offline())

    async def recorded_launch(self, run_id: str) -> tuple[dict[str, Any], str, Path]:
        """A stored run's launch record, pipeline source and directory."""
        run = await self.store.get_run(run_id)
        if run is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no run {run_id}")
        root = self.home / run.run_dir
        launch = RunDirectory(root).read_json("config", "launch.json")
        if launch is None:
            raise RpcError(ErrorCode.CONFLICT, f"run {run_id} has no launch record")
        source = (root / "config" / SOURCE_NAMES[launch["pipeline_format"]]).read_text()
        return launch, source, root

    async def _replayer(self, options: RunOptions, redactor: Redactor) -> Replayer:
        """The cassette of `options.replay_of` in `options.replay_mode`; requests are matched
        redacted, as they were recorded."""
        mode = options.replay_mode
        assert mode is not None
        if mode == "live":
            return Replayer("live")
        if options.snapshot_id is not None:  # the snapshot's own cassette
            calls = options.cassette
            if calls is None:  # a resumed replay: read again through the snapshot
                snapshots = SnapshotStore(self.store.db)
                if await snapshots.get(options.snapshot_id) is None:
                    raise RpcError(ErrorCode.CONFLICT, f"snapshot {options.snapshot_id} was "
                                   "deleted: its cassette is gone; resume cannot replay it")
                calls = await snapshots.cassette(options.snapshot_id)
            return Replayer(mode, Cassette.from_calls(calls, redactor=redactor))
        if options.replay_of is None:
            raise RpcError(ErrorCode.INVALID_PARAMS,
                           f"Invalid params: replay mode {mode!r} needs replay.from_run")
        recorded = await self.store.get_run(options.replay_of)
        if recorded is not None and recorded.status in ACTIVE:
            raise RpcError(ErrorCode.CONFLICT,
                           f"run {options.replay_of} is {recorded.status}: its recording is not "
                           "complete yet; replay it once it has ended",
                           {"run_id": options.replay_of})
        launch, _, _ = await self.recorded_launch(options.replay_of)
        if launch.get("record", "full") != "full":
            raise RpcError(ErrorCode.CONFLICT,
                           f"run {options.replay_of} was recorded metadata_only: it has no "
                           "responses to replay; use mode live")
        calls = await TraceStore(self.store.db).run_calls(options.replay_of)
        return Replayer(mode, Cassette.from_calls(calls, redactor=redactor))

    async def resume(self, run_id: str, inputs: dict[str, Any] | None = None,
                     variables: dict[str, str] | None = None,
                     supervisor: Supervision | None = None) -> ActiveRun:
        """Continue an interrupted or cancelled run from its checkpoint; `inputs` and
        `variables` given again replace the recorded ones (secrets were never recorded);
        `supervisor`: its manager's, when a resumed parent finds its child again."""
        run = await self._resumable(run_id)
        try:
            launch, source, root = await self.recorded_launch(run_id)
        except DamagedFile as exc:
            raise await self.mark_damaged(run_id, exc) from None
        settings = RunSettings.model_validate(launch["settings"])
        options = RunOptions(record=launch.get("record", "full"),
                             replay_of=launch.get("replay_of"),
                             replay_mode=launch.get("replay_mode"),
                             trial_index=launch.get("trial_index"),
                             snapshot_id=launch.get("snapshot_id"),
                             pipeline_dir=launch.get("pipeline_dir"))
        given_inputs = dict(inputs or {})
        inputs = {**launch["inputs"], **given_inputs}
        variables = {**launch["variables"], **(variables or {})}
        graph = await self.load(PipelineRef(source=source, format=launch["pipeline_format"]),
                          {**{k: v for k, v in inputs.items() if isinstance(v, str)},
                           **variables})
        pool = await self._pool(settings)
        redactor = Redactor(run_secrets({**inputs, **variables}, self._keys(pool)))
        run_dir = RunDirectory(root, redactor, content=options.record == "full")
        try:
            replayer = await self._replayer(options, redactor) if options.replay_mode else None
            checkpoint = run_dir.read_json("checkpoint.json")
            if checkpoint is None:  # it starts over: its journal's lines are work run again
                run_dir.truncate_journal(0)
            manifest = run_dir.read_json("manifest.json")
            consumed = None if replayer is None else await self._consume_made(
                replayer, run_id, checkpoint)
            # What the node the interruption cut short had finished is not made again.
            journal = Journal.from_trace(run_dir.root / TRACE, checkpoint, redactor=redactor) \
                if options.record == "full" else None
            if journal is not None:  # a cancel flushed them to the store: counted once
                await self.store.drop_calls(run_id, journal.seqs)
            next_event, next_stage = await self.store.next_sequences(run_id)
            run = await self.store.get_run(run_id) or run  # its totals, less those dropped
            await self.store.update_run(run_id, status="running", resumable=0,
                                        resumed_from=(checkpoint or {}).get("current_node"))
        except BaseException as exc:
            await pool.aclose()
            if isinstance(exc, DamagedFile):
                raise await self.mark_damaged(run_id, exc) from None
            raise
        active = self._activate(run_id, run.trace_id, graph, run_dir, pool, settings,
                                next_event, recorded_stages=next_stage - 1,
                                record=options.record, replayer=replayer,
                                trial_index=options.trial_index, supervisor=supervisor,
                                pipeline_dir=options.pipeline_dir, journal=journal)
        active.sink.totals = {key: getattr(run, key) for key in active.sink.totals}
        active.resume_inputs = given_inputs
        active.pipeline_dir = options.pipeline_dir
        active.trial_set_id = launch.get("trial_set_id")
        active.manifest = manifest
        if checkpoint is not None and self._on_worker(graph, settings, replace(
                options, supervisor=supervisor)):
            active.job = replace(self._job(active, inputs, variables, launch["settings"],
                                           options, replayer, checkpoint), consumed=consumed)
        self._launch(active, inputs, checkpoint=checkpoint)
        return active

    async def _resumable(self, run_id: str) -> RunRecord:
        """The run, or the error that says why it cannot be resumed."""
        if run_id in self.active:
            raise RpcError(ErrorCode.CONFLICT, f"run {run_id} is still running")
        run = await self.store.get_run(run_id)
        if run is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"no run {run_id}")
        if run.status not in RESUMABLE:
            raise RpcError(ErrorCode.CONFLICT,
                           f"run {run_id} is {run.status}; only interrupted, cancelled or "
                           "budget_exceeded runs can be resumed")
        if is_damaged(run):
            raise RpcError(ErrorCode.CONFLICT, f"run {run_id} is {run.failure_reason}; "
                           "it cannot be resumed", {"run_id": run_id})
        return run

    async def _consume_made(self, replayer: Replayer, run_id: str,
                            checkpoint: dict[str, Any] | None) -> list[Call]:
        """The calls of the work the checkpoint keeps used up their recordings. Those after
        it, and those of branches it names open, belong to work that runs again: they are
        served again. A seq made twice (a resume ran its node again) counts once. Returns
        the calls consumed (a worker resuming the run consumes them again)."""
        kept = int((checkpoint or {}).get("call_seq", 0))
        reopened = set((checkpoint or {}).get("open_calls", ()))
        made = {call["seq"]: call for call in
                await TraceStore(self.store.db).run_calls(run_id)}  # the last of a seq
        consumed = [call for seq, call in sorted(made.items())
                    if seq <= kept and seq not in reopened]
        replayer.cassette.consume(consumed)
        return consumed

    async def mark_damaged(self, run_id: str, damage: Exception) -> RpcError:
        """Record that a run's files are damaged (it is no longer resumable); the conflict
        error that says so."""
        reason = f"{DAMAGED}{damage}"
        log.error("run %s is %s", run_id, reason)
        await self.store.update_run(run_id, resumable=0, failure_reason=reason)
        return RpcError(ErrorCode.CONFLICT, f"run {run_id} is {reason}; it cannot be resumed",
                        {"run_id": run_id})

    def _keys(self, pool: ProviderPool) -> list[str]:
        """The keys a run may hold: its providers', and every variable the host allows
        (agent tools and MCP servers name theirs among them)."""
        allowed = [os.environ[name] for name in sorted(self.host.settings.allowed_key_env)
                   if os.environ.get(name)]
        return [*pool.secrets(), *allowed]

    async def _pool(self, settings: RunSettings) -> ProviderPool:
        try:
            return await open_pool({"default": settings.default_provider,
                                    "providers": settings.providers,
                                    "pricing": settings.pricing},
                                   allowed_key_env=self.host.settings.allowed_key_env,
                                   connections=self.connections)
        except ValueError as exc:
            raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: settings: {exc}") from None

    def _activate(self, run_id: str, trace_id: str, graph: Graph, run_dir: RunDirectory,
                  pool: ProviderPool, settings: RunSettings, next_event: int,
                  recorded_stages: int = 0, record: RecordMode = "full",
                  replayer: Replayer | None = None, trial_index: int | None = None,
                  budget: Budget | None = None,
                  supervisor: Supervision | None = None,
                  pipeline_dir: str | None = None,
                  journal: Journal | None = None) -> ActiveRun:
        sink = StoreSink(self.host.publish, self.store, run_id, next_event, run_dir.redactor,
                         grouped=lambda: trial_index is not None or len(self.active) > 1,
                         checkpoint_file=lambda dumped: run_dir.write_dumped(
                             "checkpoint.json", data=dumped))
        executor = Executor(run_id=run_id, trace_id=trace_id, graph=graph, run_dir=run_dir,
                            handlers=self.handlers,
                            providers=pool if replayer is None and journal is None else
                            ReplayProviders(pool, replayer, journal),
                            interviewer=DaemonInterviewer(self, run_id, settings),
                            sink=sink, settings=settings,
                            recorded_stages=recorded_stages, record=record,
                            replayer=replayer, trial_index=trial_index, budget=budget,
                            children=self.children, supervisor=supervisor,
                            agent=AgentRuntime(run_dir.root, run_id, settings=settings,
                                               allowed_secrets=self.host.settings.allowed_key_env,
                                               pipeline_dir=pipeline_dir))
        executor.journal = journal
        # Checkpoints are written by the sink, each after the commit of its stage.
        executor.write_checkpoint = sink.save_checkpoint
        executor.commit_records = sink.commit
        active = ActiveRun(run_id, executor, pool, sink, settings, self.home)
        self.active[run_id] = active
        return active

    # -- running --------------------------------------------------------------------------

    def _launch(self, active: ActiveRun, inputs: dict[str, Any],
                checkpoint: dict[str, Any] | None) -> None:
        """Run `_drive` as the run's task. A task cancelled before its first step never
        enters `_drive`, so its `finally` never ends the run: then the callback does."""
        active.task = asyncio.ensure_future(self._drive(active, inputs, checkpoint))

        def never_ran(task: asyncio.Task[None]) -> None:
            if not active.started:
                active.started = True
                reason = "the daemon stopped" if self.stopping else "cancelled"
                active.executor.emit("PipelineCancelled", id=active.run_id, reason=reason)
                finishing = asyncio.ensure_future(self._finish(
                    active, "interrupted" if self.stopping else "cancelled", None, reason,
                    None))
                self._finishing.add(finishing)  # held until done (the loop keeps weak refs)
                finishing.add_done_callback(self._finishing.discard)

        active.task.add_done_callback(never_ran)

    async def _drive(self, active: ActiveRun, inputs: dict[str, Any],
                     checkpoint: dict[str, Any] | None) -> None:
        active.started = True
        executor, result = active.executor, None
        status, outcome, reason = "failed", "fail", ""
        try:
            if active.job is not None:
                assert self.workers is not None
                ended = await self.workers.execute(active, active.job)
                status, outcome, reason, result = (ended.status, ended.outcome, ended.reason,
                                                   ended.result)
            elif checkpoint is not None:
                result = await executor.resume(checkpoint, active.resume_inputs, inputs)
            else:
                result = await executor.run(inputs)
            # Its last stages committed: a commit that failed (a full disk) ends the run
            # interrupted, as it would have had the engine waited for it.
            await active.sink.commit()
            if result is not None:
                status, outcome = result.status, result.outcome.value
                reason = result.failure_reason
            if outcome == "partial_success":
                outcome = "success"
        except asyncio.CancelledError:
            if self.stopping:  # the daemon is going away, not the user's choice
                status, outcome, reason = "interrupted", None, "the daemon stopped"
            else:
                status, outcome, reason = "cancelled", None, "cancelled"
            executor.emit("PipelineCancelled", id=active.run_id, reason=reason)
        except WorkerLost as exc:  # resumable, as a run a dead daemon left
            status, outcome, reason = "interrupted", None, str(exc)
            log.error("run %s stopped: %s", active.run_id, reason)
            executor.emit("PipelineFailed", error=reason)
        except Exception as exc:
            if disk_full(exc):  # resumable once there is space again
                self.store.db.note_failure(exc)  # the WAL is truncated once writes succeed
                status, outcome, reason = "interrupted", None, full_reason(exc)
                log.error("run %s stopped: %s", active.run_id, reason)
            else:  # an engine bug: the run fails, the daemon goes on
                log.exception("run %s crashed", active.run_id)
                reason = f"internal error: {type(exc).__name__}: {exc}"
            executor.emit("PipelineFailed", error=reason)
        finally:
            await self._finish(active, status, outcome, reason, result)

    async def _finish(self, active: ActiveRun, status: str, outcome: str | None, reason: str,
                      result: RunResult | None) -> None:
        ended = utc_now()
        active.ended = {"status": status, "outcome": outcome, "failure_reason": reason or None}
        try:
            # What the run kept, committed (and its last checkpoint written) before its end
            # is: the manifest and row never say it ended with stages the store lacks.
            with unless_full(active.run_id, "its last stages"):
                await active.sink.flush()
            # On a full disk each record is written as far as it goes: the store keeps the
            # run's end to write with its next write (RunStore.unwritten), and reads see it.
            with unless_full(active.run_id, "the end of its trace"):
                if status == "failed" and active.job is None:  # a worker ends its own
                    active.executor.end_failed_trace(reason)
            # The manifest before the row: a daemon killed between the two leaves a run the
            # store says is running, which the next daemon marks interrupted (manifest too)
            # and sweeps of temporary files; the other way round nothing would.
            with unless_full(active.run_id, "manifest.json"):
                manifest = active.manifest or {}
                manifest.update(status=status, outcome=outcome, end_time=ended,
                                failure_reason=reason or None,
                                resumable=status in RESUMABLE)
                if has_agents(active.executor.graph):  # a replay proves it started none
                    manifest["processes_started"] = active.executor.agent.processes_started
                active.executor.run_dir.write_json("manifest.json", data=manifest)
            with unless_full(active.run_id, "its end in the store"):
                await active.sink.flush(status=status, outcome=outcome,
                                        failure_reason=reason or None, ended_at=ended,
                                        resumable=int(status in RESUMABLE))
        finally:
            await active.executor.agent.aclose()
            active.executor.run_dir.close()
            if active.owns_pool:
                await active.pool.aclose()
            self.active.pop(active.run_id, None)
            if not active.done.done():
                active.done.set_result(result)
            if active.executor.supervisor is not None:
                # Its manager stops waiting for it, once its end is in the store: a manager
                # node never completes before its child's end is recorded.
                active.executor.supervisor.ended(active.executor.report(status, outcome,
                                                                        reason or None))

    async def note_interrupted(self, runs: list[RunRecord]) -> list[str]:
        """Runs a dead daemon left behind: their manifests say so too, and the temporary
        files of writes it was killed in are removed. A run whose manifest cannot be read
        is marked damaged (the others carry on); returns the ids of those."""
        # Tool processes the dead daemon left running (tools/processes.py).
        killed = await asyncio.to_thread(sweep, [run.id for run in runs])
        for run_id, pids in killed.items():
            log.warning("run %s: killed %d tool process(es) left running: %s", run_id,
                        len(pids), pids)
        damaged = []
        for run in runs:
            run_dir = RunDirectory(self.home / run.run_dir)
            remove_temporary_files(run_dir.root)
            remove_temporary_files(run_dir.root / "artifacts")
            try:
                manifest = run_dir.read_json("manifest.json")
            except (DamagedFile, OSError) as exc:
                if disk_full(exc):
                    raise
                await self.mark_damaged(run.id, exc)
                damaged.append(run.id)
                continue
            if manifest is not None:
                manifest.update(status="interrupted", resumable=True)
                run_dir.write_json("manifest.json", data=manifest)
        return damaged

    async def cancel(self, run_id: str) -> None:
        """Cancel a running run (its tool processes are killed) and wait until it stopped."""
        active = self.active.get(run_id)
        if active is None or active.task is None:
            raise RpcError(ErrorCode.NOT_FOUND, f"run {run_id} is not running")
        await active.cancel()

    def answer(self, run_id: str, question_id: str, answer: str) -> None:
        """Resolve the open question of a waiting run; an answer a yes/no question cannot
        take is refused (invalid params) and the question stays open."""
        active = self.active.get(run_id)
        if active is None or active.question is None or active.answer is None:
            raise RpcError(ErrorCode.CONFLICT, f"run {run_id} is not waiting for an answer")
        if active.question.id != question_id:
            raise RpcError(ErrorCode.CONFLICT, f"run {run_id} is waiting on question "
                           f"{active.question.id}, not {question_id}")
        refusal = active.question.refusal(answer)
        if refusal is not None:
            # The question stays open: the run keeps waiting for an answer it can take.
            raise RpcError(ErrorCode.INVALID_PARAMS, refusal,
                           [{"type": "value_error", "loc": ["answer"], "msg": refusal}])
        if not active.answer.done():
            active.answer.set_result(answer)

    async def close(self) -> None:
        """Daemon shutdown: stop what runs, leaving it interrupted and resumable."""
        self.stopping = True
        for active in list(self.active.values()):
            active.interrupt()
        for active in list(self.active.values()):
            await asyncio.shield(active.done)
        if self.workers is not None:
            await self.workers.close()
        await self.connections.aclose()
        self.index.close()
