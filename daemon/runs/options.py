"""How a run is launched: what runs of one pipeline share (Prepared) and how one run records,
replays, and belongs to a trial set, a test run or a parent run (RunOptions)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ostinato.protocol.pipelines import PipelineRef

from ..engine.budget import Budget
from ..engine.graph import Graph
from ..engine.providers.runtime import ProviderPool
from ..engine.recording import RecordMode
from ..engine.redact import Redactor
from ..engine.replay import ReplayMode
from ..engine.rundir import write_file
from ..engine.supervision import Supervision


@dataclass
class Prepared:
    """What runs of one pipeline with the same inputs, variables and settings share: the
    loaded graph, its provider pool, the redaction secrets and the redacted config/ files
    (a trial set prepares once for all its trials)."""

    graph: Graph
    digest: str
    pool: ProviderPool
    redactor: Redactor  # of the runs' secrets (one per run costs a sort and an encoding)
    config: dict[str, bytes]  # config/ file name -> content, launch.json aside
    settings: dict[str, Any]  # as launch.json records them (unredacted: resume needs them)
    stored_inputs: dict[str, Any]  # redacted, for the runs row
    stored_settings: dict[str, Any]  # redacted, for the runs row
    stored_source: str  # redacted
    # A copy of `config` on disk (a trial set's): its runs' config/ files are hard links to it.
    config_dir: Path | None = None
    pipeline_stored: bool = False  # its pipelines row exists (a trial set's: it wrote it)

    def write_config(self, directory: Path) -> None:
        """Write the config/ files once into `directory`, for the runs to link to."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.config.items():
            write_file(directory / name, data)
        self.config_dir = directory


@dataclass(frozen=True)
class RunOptions:
    """How a run records and replays, and which trial set it belongs to."""

    record: RecordMode = "full"
    replay_of: str | None = None  # the run whose recording serves this one's calls
    replay_mode: ReplayMode | None = None
    trial_set_id: str | None = None
    trial_index: int | None = None
    prepared: Prepared | None = None  # shared with other runs (a trial set's); not owned
    # A test run's cost limit, shared by all its runs; not kept for a resume (which runs
    # outside the test run).
    budget: Budget | None = None
    snapshot_id: str | None = None  # the snapshot this run replays
    # The calls `recorded`/`hybrid` serve instead of replay_of's: a snapshot's cassette.
    cassette: list[dict[str, Any]] | None = None
    # A manager node's child run: the parent run, its node, and the node's visit key.
    parent_run_id: str | None = None
    parent_node: str | None = None
    parent_key: str | None = None
    supervisor: Supervision | None = None  # the manager's side of the lockstep
    # The directory of the pipeline file (None for inline source): a manager's relative
    # `stack.child_dotfile` is found beside it. A replay or resume takes the recorded one.
    pipeline_dir: str | None = None

    def launch(self) -> dict[str, Any]:
        """What launch.json keeps of them, so that a resume does the same."""
        return {"record": self.record, "replay_of": self.replay_of,
                "replay_mode": self.replay_mode, "trial_set_id": self.trial_set_id,
                "trial_index": self.trial_index, "snapshot_id": self.snapshot_id,
                "parent_run_id": self.parent_run_id, "parent_node": self.parent_node,
                "parent_key": self.parent_key, "pipeline_dir": self.pipeline_dir}

    def with_pipeline_dir(self, ref: PipelineRef) -> RunOptions:
        """These options with the directory of `ref`'s file when it names one."""
        if ref.path is None:
            return self
        return replace(self, pipeline_dir=str((Path.cwd() / ref.path).resolve().parent))
