"""bench/engine.py's attractor side: runs pipelines through the attractor Python port's
public API, in a child process started with an interpreter that has attractor installed.

Started by bench/engine.py as `PYTHON bench/attractor_peer.py` (attractor needs Python >= 3.12
and is not a dependency of Ostinato; this module imports only attractor and the standard
library). The protocol is one JSON line each way per run:

    -> {"source": DOT, "root": DIR, "nodes": N}
    <- {"seconds": s, "cpu_seconds": s, "status": "success", "nodes_done": N}

The first line the child writes, before any request, says what it is:
{"python": "3.12.1", "attractor": "0.1.0"}.

Each run: `os.sync()` (no dirty pages of the previous run), then the clock around
`PipelineEngine(EngineConfig(logs_root=DIR, codergen_backend=Echo(), max_steps=N))
.run_dot(source)`, which parses, transforms, validates and runs. The engine is built inside
the clock too (it only registers handlers). Interpreter start-up and imports are outside it:
the child stays up for all the runs, as a daemon does.

Echo answers as Ostinato's scripted provider at zero latency: "[scripted] " + the prompt.
A run's node count is start, the nodes attractor executes, and exit (which attractor reaches
but does not execute); a run that ends otherwise is an error.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

from attractor.engine import EngineConfig, PipelineEngine

ECHO = "[scripted] "  # bench/engine.py's _ECHO: what the scripted provider prefixes


class Echo:
    """A codergen backend answering as the scripted provider: the prompt, prefixed."""

    async def run(self, node: Any, prompt: str, context: Any) -> str:
        """The scripted provider's answer to `prompt`."""
        return ECHO + prompt


def attractor_version() -> str:
    """The installed attractor package's version."""
    try:
        return version("attractor")
    except PackageNotFoundError:
        return "unknown"


async def timed_run(source: str, root: str, nodes: int) -> dict[str, Any]:
    """One run of `source` into `root`, timed from building the engine to its outcome."""
    os.sync()
    cpu = time.process_time()
    started = time.perf_counter()
    engine = PipelineEngine(EngineConfig(logs_root=root, codergen_backend=Echo(),
                                         max_steps=nodes))
    outcome = await engine.run_dot(source)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    kinds = [event.kind for event in engine.events]
    # Executed nodes (start, n1..nN) plus the exit it reached.
    done = kinds.count("node.complete") + kinds.count("pipeline.complete")
    status = outcome.status.value
    if status != "success" or done != nodes:
        raise RuntimeError(f"attractor run ended {status} after {done} of {nodes} nodes: "
                           f"{outcome.failure_reason}")
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "status": status,
            "nodes_done": done}


def reply(out: TextIO, data: dict[str, Any]) -> None:
    """One JSON line to the parent."""
    out.write(json.dumps(data) + "\n")
    out.flush()


def serve(requests: TextIO, out: TextIO) -> None:
    """Answer run requests, one per line, until stdin closes."""
    reply(out, {"python": sys.version.split()[0], "attractor": attractor_version()})
    with asyncio.Runner() as runner:
        for line in requests:
            request = json.loads(line)
            reply(out, runner.run(timed_run(request["source"], request["root"],
                                            request["nodes"])))


def main() -> int:
    """Serve on the original stdout; anything else printing goes to stderr."""
    out = sys.stdout
    sys.stdout = sys.stderr  # keep the protocol's lines the only ones on stdout
    serve(sys.stdin, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
