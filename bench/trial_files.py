"""The file system's floor under a trial: the directories and files one single-node trial
leaves (bench/trials.py's pipeline start -> n1 -> exit), created by a plain loop with no
event loop, engine or database.

    .venv/bin/python bench/trial_files.py [--trials 1000] [--dir DIR]

Per trial: the run directory and config/, five config/ files linked to one shared copy (as
a trial set's runs do) and launch.json, manifest.json (temp file + rename, at the start and
the end), a directory and status.json per node, prompt.md and response.md, checkpoint.json
after each node (temp file + rename), trace.jsonl and journal.jsonl. Files are 300 bytes.
It prints milliseconds per trial, wall and CPU: what no implementation that writes this
record on one thread can go below. The files are removed after the timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

DATA = b"x" * 300
CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def write(path: str) -> None:
    """Create or truncate `path` and write the data."""
    fd = os.open(path, CREATE, 0o644)
    try:
        os.write(fd, DATA)
    finally:
        os.close(fd)


def write_atomic(path: str) -> None:
    """Write via a temporary file and a rename."""
    write(path + ".tmp")
    os.replace(path + ".tmp", path)


def trial(root: str, shared: str) -> None:
    """One trial's directories and files."""
    os.mkdir(root)
    os.mkdir(f"{root}/config")
    for name in sorted(os.listdir(shared)):
        os.link(f"{shared}/{name}", f"{root}/config/{name}")
    write(f"{root}/config/launch.json")
    write_atomic(f"{root}/manifest.json")
    for node in ("start", "n1", "exit"):
        os.mkdir(f"{root}/{node}")
        write(f"{root}/{node}/status.json")
        if node == "n1":
            write(f"{root}/{node}/prompt.md")
            write(f"{root}/{node}/response.md")
        write_atomic(f"{root}/checkpoint.json")
    write(f"{root}/trace.jsonl")
    write(f"{root}/journal.jsonl")
    write_atomic(f"{root}/manifest.json")


def main() -> None:
    """Time `--trials` trials' files in a temporary directory under `--dir`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to create them (default: the temporary directory)")
    args = parser.parse_args()
    base = tempfile.mkdtemp(dir=args.dir)
    try:
        shared = f"{base}/shared"
        os.mkdir(shared)
        for name in ("pipeline.dot", "plan.json", "settings.json", "providers.json",
                     "pricing.json"):
            write(f"{shared}/{name}")
        os.mkdir(f"{base}/runs")
        started, cpu = time.perf_counter(), time.process_time()
        for index in range(args.trials):
            trial(f"{base}/runs/{index}", shared)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"{args.trials:,} trials' files in {base}: {wall / args.trials * 1000:.3f} ms "
              f"per trial, {cpu / args.trials * 1000:.3f} ms CPU")
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
