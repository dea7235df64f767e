"""Test-only engine extension, loaded with `--extension tests/extensions/custom_handlers.py`.

It shows the two ways an extension reaches the engine (attractor §4.12, §9.3):

- `register_handlers(registry)`: the daemon's extension loader (daemon/main.py) calls it once
  the services have started, with the runner's `HandlerRegistry`; it adds the node type
  `test.stamp`, which every run of this daemon (and pipeline.validate's `type_known` rule)
  then knows.
- `register(dispatcher)`, which every extension has, also registers a custom AST transform
  (transforms are process-wide): it deletes the nodes marked `test.drop=true` and leaves
  their edges behind, the one way a pipeline can reach the `edge_target_exists` lint rule
  (DOT declares a node by naming it in an edge; recipes reject unknown `needs` as they parse).

`test.stamp` writes `stamp.txt` (the node's `stamp.text`, default its id) into its stage
directory, counts its executions in the context key `stamp.count`, stores the text under
`{node_id}.stamp`, and prefers the edge labelled by its `stamp.label` attribute.
"""

from __future__ import annotations

import copy

from ostinato.daemon.engine.graph import Graph
from ostinato.daemon.engine.handlers.base import HandlerRegistry, NodeRun
from ostinato.daemon.engine.outcome import Outcome, Status
from ostinato.daemon.engine.transforms import register_transform
from ostinato.daemon.server.dispatch import Dispatcher


class StampHandler:
    """The custom handler type `test.stamp`."""

    async def execute(self, run: NodeRun) -> Outcome:
        text = str(run.node.get("stamp.text", run.node.id))
        run.write_file("stamp.txt", text)
        count = int(run.context.get("stamp.count", 0)) + 1
        return Outcome(Status.SUCCESS, preferred_label=str(run.node.get("stamp.label", "")),
                       context_updates={"stamp.count": count, f"{run.node.id}.stamp": text},
                       notes=f"stamped {text}")


class DropMarkedNodes:
    """A transform that removes nodes with `test.drop=true`, keeping their edges."""

    def apply(self, graph: Graph) -> Graph:
        graph = copy.deepcopy(graph)
        for node_id in [n.id for n in graph.nodes.values() if n.get("test.drop") is True]:
            del graph.nodes[node_id]
        return graph


def register(dispatcher: Dispatcher) -> None:
    """Called by the daemon's --extension loader; no methods, one transform."""
    register_transform(DropMarkedNodes())


def register_handlers(registry: HandlerRegistry) -> None:
    """Called with the runner's handler registry once the daemon's services started."""
    registry.register("test.stamp", StampHandler())
