"""run.prune benchmark: how long a large prune takes, how long other requests wait meanwhile,
and what the store gives back, for a new store (incremental auto_vacuum) and for a store made
before it (the one-time VACUUM).

    .venv/bin/python bench/prune.py [--runs 10000] [--sets 10] [--response-bytes 2000]

Per store kind: a daemon on a fresh home (for the old kind the database file is made first
with WAL mode only, so the daemon's tables are created without auto_vacuum, as before) runs
`--sets` trial sets of `--runs / --sets` trials each of a one-node scripted pipeline
answering `--response-bytes`, then a second client asks `run.list` (limit 1) back to back
while `run.prune keep=0` removes everything. Printed: the time to make the runs (what
incremental auto_vacuum costs the writes, if anything), the prune's time, the other client's
request latency p50 / p99 / max during the prune, and the store's and the home's size before
and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ostinato.clients.python import AsyncClient

PIPELINE = {"format": "dot", "source": "digraph bench { start [shape=Mdiamond]; "
            "say [prompt=\"Say\"]; done [shape=Msquare]; start -> say -> done }"}


def size(path: Path) -> int:
    """Bytes on disk of a file, or under a directory."""
    if not path.is_dir():
        return path.lstat().st_blocks * 512 if path.exists() else 0
    return sum(entry.lstat().st_blocks * 512 for entry in path.rglob("*"))


async def measure(kind: str, runs: int, sets: int, response_bytes: int) -> None:
    """One store kind: make the runs, prune them while another client asks, print."""
    with tempfile.TemporaryDirectory(prefix="ost-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        if kind == "old":  # the file exists, in WAL mode, before the daemon's tables
            sqlite3.connect(home / "ostinato.db").execute("PRAGMA journal_mode=WAL").close()
        socket = Path(tmp) / "d.sock"
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ostinato.daemon", "--home", str(home), "--socket",
            str(socket), "--log-level", "WARNING", stdin=asyncio.subprocess.DEVNULL)
        while not socket.exists():
            await asyncio.sleep(0.05)
        client = await AsyncClient.connect_unix(socket)
        other = await AsyncClient.connect_unix(socket)
        try:
            await client.initialize("bench")
            await other.initialize("bench-other")
            settings = {"providers": {"scripted": {"responses": {"say": "x" * response_bytes}}}}
            started = time.perf_counter()
            for _ in range(sets):
                await client.request("run.start", {
                    "pipeline": PIPELINE, "settings": settings, "trials": runs // sets,
                    "concurrency": 8, "wait": True})
            made = time.perf_counter() - started
            store, whole = size(home / "ostinato.db") + size(home / "ostinato.db-wal"), size(home)
            latencies: list[float] = []
            began = time.perf_counter()
            pruning = asyncio.ensure_future(client.request("run.prune", {"keep": 0}))
            while not pruning.done():
                asked = time.perf_counter()
                await other.request("run.list", {"limit": 1})
                latencies.append(time.perf_counter() - asked)
            took = time.perf_counter() - began
            result = pruning.result()
            latencies.sort()
            print(f"{kind} store: {runs} runs made in {made:.1f} s; prune {took:.2f} s "
                  f"({len(result['removed'])} runs, compaction {result['compaction']}); "
                  f"run.list meanwhile: {len(latencies)} requests, p50 "
                  f"{statistics.median(latencies) * 1000:.1f} ms, p99 "
                  f"{latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, max "
                  f"{latencies[-1] * 1000:.1f} ms; store {store / 1e6:.1f} MB -> "
                  f"{size(home / 'ostinato.db') / 1e6:.1f} MB, home {whole / 1e6:.1f} MB -> "
                  f"{size(home) / 1e6:.1f} MB")
        finally:
            await other.close(shutdown=False)
            await client.close()
            daemon.terminate()
            await daemon.wait()


def main() -> None:
    """Both store kinds, one after the other."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--response-bytes", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("OSTINATO_LOG_LEVEL", "WARNING")
    for kind in ("new", "old"):
        asyncio.run(measure(kind, args.runs, args.sets, args.response_bytes))


if __name__ == "__main__":
    main()
