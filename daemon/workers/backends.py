"""The pool a daemon's `--executor` asks for (docs/scale-out.md)."""

from __future__ import annotations

from .pool import WorkerPool
from .processes import Processes


def worker_pool(executor: str, workers: int = 0,
                ray_address: str | None = None) -> WorkerPool | None:
    """`processes`: local worker processes; `ray`: actors on a Ray cluster; `inline`: none,
    runs execute in the daemon."""
    if executor == "processes":
        return WorkerPool(Processes(), workers)
    if executor == "ray":
        from .ray_workers import RayCluster  # Ray is imported by the daemons that use it

        return WorkerPool(RayCluster(ray_address, workers), workers)
    return None
