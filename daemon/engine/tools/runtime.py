"""What a run's agent nodes share: the workspace their tools work in, the secrets the host
allows them, and the count of processes they started.

Every process an agent node starts (a command tool, a hook, an MCP server) is counted here
and reported as a `ToolProcessStarted` event, so that a recorded replay can prove it started
none (decision 0006 §6).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .mcp_spec import McpServerSpec
from .processes import marked, sweep

if TYPE_CHECKING:
    from .mcp import McpPool

WORKSPACE_DIR = "workspace"
# The agent node whose task is calling: an MCP server it starts is counted as its process.
SPAWNING_NODE: ContextVar[str] = ContextVar("ostinato_spawning_node", default="")


class AgentRuntime:
    """One run's workspace, allowed secrets and process count."""

    def __init__(self, run_root: str | Path, run_id: str, *, settings: Any = None,
                 allowed_secrets: Collection[str] = frozenset(),
                 pipeline_dir: str | Path | None = None) -> None:
        agent = getattr(settings, "agent", None)
        self._given = getattr(agent, "workspace", None)
        self._seed = getattr(agent, "workspace_from", None)
        self._run_root = Path(run_root)
        self._pipeline_dir = Path(pipeline_dir) if pipeline_dir else None
        self.allowed_secrets = frozenset(allowed_secrets)
        self.environ: Mapping[str, str] = os.environ
        # Told of every process started (the executor reports ToolProcessStarted).
        self.on_spawn: Callable[[str, str, str], None] | None = None
        self.run_id = run_id
        self.processes_started = 0
        self._workspace: str | None = None
        self._mcp: McpPool | None = None

    @property
    def workspace(self) -> str:
        """The real path of the directory tools work in, created (and seeded from
        `workspace_from`) on first use."""
        if self._workspace is None:
            self._workspace = self._prepare()
        return self._workspace

    def _prepare(self) -> str:
        if self._given:
            path = Path(self._given)
            if not path.is_absolute() or not path.is_dir():
                raise ValueError(f"settings.agent.workspace {self._given!r} is not an "
                                 "existing absolute directory")
            return os.path.realpath(path)
        path = self._run_root / WORKSPACE_DIR
        if not path.exists():  # a resumed run keeps what its tools already did
            if self._seed:
                seed = Path(self._seed)
                if not seed.is_absolute() and self._pipeline_dir is not None:
                    seed = self._pipeline_dir / seed
                if not seed.is_dir():
                    raise ValueError(f"settings.agent.workspace_from {self._seed!r} is not a "
                                     "directory")
                shutil.copytree(seed, path, symlinks=True)
            else:
                path.mkdir(parents=True)
        return os.path.realpath(path)

    def spawned(self, kind: str, program: str, node_id: str) -> dict[str, str]:
        """Count a process `node_id` is about to start (`kind`: tool, hook, mcp); the
        environment entry it must carry (processes.py)."""
        self.processes_started += 1
        if self.on_spawn is not None:
            self.on_spawn(kind, program, node_id)
        return marked(self.run_id)

    def mcp(self, servers: Mapping[str, McpServerSpec],
            redact: Callable[[str], str]) -> McpPool:
        """The run's MCP servers, `servers` among them: started when first used, shared by
        the run's agent nodes, closed with the run; ValueError for a name declared again
        differently."""
        if self._mcp is None:
            from .mcp import McpPool  # runs without MCP servers never import it

            # A server is counted, and marked as the run's, when it starts (processes.py),
            # as the process of the node whose call started it.
            self._mcp = McpPool({}, workspace=self.workspace, environ=self.environ,
                                allowed_secrets=self.allowed_secrets, redact=redact,
                                on_spawn=lambda program: self.spawned(
                                    "mcp", program, SPAWNING_NODE.get()))
        self._mcp.declare(servers.values())
        return self._mcp

    async def aclose(self) -> None:
        """Release what the run's agents hold open, and kill any process left."""
        if self._mcp is not None:
            await self._mcp.aclose()
        if self.processes_started:
            # A scan of /proc, and a wait for what it kills: not on the event loop.
            await asyncio.to_thread(sweep, [self.run_id])
