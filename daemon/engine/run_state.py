"""A run's state as its checkpoint keeps it (attractor §5.3, and Ostinato's own fields), how
a resume reads it back, and how a run ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .context import Context
from .graph import Edge, Graph
from .outcome import Status
from .rundir import RunDirectory
from .threads import Thread

HISTORY = 100  # completed nodes a checkpoint keeps; all are in the journal
# Log entries a run keeps, in memory and in its checkpoint (all are in the journal): what
# the fidelity preambles read of the run so far (compact up to 20, summary:high up to 30),
# and no more, so that their notes do not weigh on every checkpoint.
LOG_HISTORY = 30
NOTE_CHARS = 300  # of a node's answer or failure in its run log entry


@dataclass
class RunResult:
    """How a run ended."""

    status: str  # completed | failed | budget_exceeded
    outcome: Status
    failure_reason: str = ""
    completed_nodes: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunState:
    """What a checkpoint holds (attractor §5.3, plus where to go next)."""

    context: Context
    completed_nodes: list[str] = field(default_factory=list)
    node_outcomes: dict[str, str] = field(default_factory=dict)
    node_retries: dict[str, int] = field(default_factory=dict)
    current_node: str | None = None
    next_node: str | None = None
    via: Edge | None = None  # the edge taken to next_node (its fidelity and thread_id)
    stage_seq: int = 0

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], graph: Graph, run_dir: RunDirectory,
                        recorded_stages: int) -> RunState:
        """The state a checkpoint saved; stages the store already holds beyond it
        (`recorded_stages`: a crash between a stage's row and the checkpoint) are not
        numbered again."""
        via = checkpoint.get("via")
        done = completed_nodes(run_dir, checkpoint)
        # The checkpoint lists the nodes called more than once; a completed node it does
        # not list was called once, and work cut short is counted again when it reruns.
        calls = {**dict.fromkeys(done, 1), **checkpoint.get("calls", {})}
        return cls(
            Context(checkpoint.get("context", {}), checkpoint.get("logs", []),
                    {key: Thread.from_dict(value)
                     for key, value in checkpoint.get("threads", {}).items()},
                    checkpoint.get("last_thread"), calls),
            completed_nodes=done,
            node_outcomes=dict(checkpoint.get("node_outcomes", {})),
            node_retries=dict(checkpoint.get("node_retries", {})),
            current_node=checkpoint.get("current_node"),
            next_node=checkpoint.get("next_node"),
            via=graph.edges[via] if isinstance(via, int) and 0 <= via < len(graph.edges)
            else None,
            stage_seq=max(int(checkpoint.get("stage_seq", 0)), recorded_stages),
        )


def completed_nodes(run_dir: RunDirectory, checkpoint: dict[str, Any]) -> list[str]:
    """Every node a run completed, in order: the journal up to the checkpoint's count (a
    crash between a journal line and the checkpoint leaves one line too many)."""
    count = checkpoint.get("completed_count")
    if count is None:  # a checkpoint without a journal holds the whole list
        return list(checkpoint.get("completed_nodes", []))
    return [entry["node"] for entry in run_dir.read_journal()[:count]]


def edge_index(graph: Graph) -> dict[int, int]:
    """Each edge's position in the graph's edges, by identity (a checkpoint names the edge
    it will take by position; looking it up must not cost a scan per node)."""
    return graph.derived("edge_index", lambda g: {id(e): i for i, e in enumerate(g.edges)})


def find_start(graph: Graph) -> str:
    """The start node: the one whose handler type is start (see graph.is_start_node)."""
    starts = graph.start_nodes()
    if not starts:
        raise ValueError("the pipeline has no start node")
    return starts[0].id
