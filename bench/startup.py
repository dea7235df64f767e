"""Daemon cold start: spawn → `initialize` answered, for `python -m ostinato.daemon --stdio`
on a fresh home, against `python -c pass` measured in the same run.

    .venv/bin/python bench/startup.py [--rounds 15] [--against OTHER/.venv/bin/python]

Each round spawns `python -c pass` (spawn to exit) and, for each interpreter measured, a
daemon on a home that does not exist yet (spawn to the answer of `initialize` read on its
stdout; then `shutdown` and `exit`), and the CPU time that daemon used in all (user +
system, from wait4: much less noisy than wall time on a busy machine). `--against` adds a
second interpreter, e.g. the venv of another checkout, measured alternately with this one so
that a shared machine's noise hits both. Targets: the daemon answers `initialize` within
0.3 s (issue 18), and the first CLI command, which starts the daemon, costs at most 0.5 s
more than one against a running daemon (issue 15; bench/cli.py measures that).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common import INSTALLED_ENVIRONMENT  # bench/ is on sys.path when a bench runs

TARGET_S = 0.3  # spawn → initialize answered (issue 18)


def frame(message: dict[str, object]) -> bytes:
    """One content-length frame."""
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def read_frame(stream: object) -> dict[str, object]:
    """The next content-length frame of `stream` (a binary file)."""
    length = None
    while (line := stream.readline()) not in (b"\r\n", b""):  # type: ignore[attr-defined]
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("the daemon closed stdout before answering")
    return json.loads(stream.read(length))  # type: ignore[attr-defined]


def pass_time(python: str) -> float:
    """Seconds from spawn to exit of `python -c pass`."""
    start = time.perf_counter()
    subprocess.run([python, "-c", "pass"], check=True, env=INSTALLED_ENVIRONMENT)
    return time.perf_counter() - start


def daemon_time(python: str, home: Path) -> tuple[float, float]:
    """Seconds from spawn to the answer of `initialize`, on a home that does not exist, and
    the CPU seconds the daemon used from spawn to exit."""
    start = time.perf_counter()
    process = subprocess.Popen([python, "-m", "ostinato.daemon", "--stdio", "--home", str(home)],
                               env=INSTALLED_ENVIRONMENT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                               "params": {"processId": None}}))
    process.stdin.flush()
    answer = read_frame(process.stdout)
    elapsed = time.perf_counter() - start
    if "result" not in answer:
        raise RuntimeError(f"initialize failed: {answer}")
    process.stdin.write(frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"}))
    process.stdin.write(frame({"jsonrpc": "2.0", "method": "exit"}))
    process.stdin.flush()
    read_frame(process.stdout)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"the daemon exited {process.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime


def ms(values: Sequence[float]) -> str:
    """Median and spread in milliseconds."""
    return (f"median {statistics.median(values) * 1000:7.1f} ms  (min {min(values) * 1000:.1f}"
            f", max {max(values) * 1000:.1f}, n={len(values)})")


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="samples of each (default 15)")
    parser.add_argument("--against", metavar="PYTHON", default=None,
                        help="another interpreter (with its own ostinato) measured alternately")
    args = parser.parse_args(argv)
    pythons = {"this": sys.executable}
    if args.against:
        pythons["against"] = args.against
    root = Path(tempfile.mkdtemp(prefix="ost-startup-"))
    print(f"ostinato startup bench: spawn -> initialize answered on a fresh home; Python "
          f"{sys.version.split()[0]}")
    passes: list[float] = []
    starts: dict[str, list[float]] = {label: [] for label in pythons}
    cpu: dict[str, list[float]] = {label: [] for label in pythons}
    try:
        for label, python in pythons.items():  # warm the page cache once
            daemon_time(python, root / f"warm-{label}")
        for round_no in range(args.rounds):
            passes.append(pass_time(sys.executable))
            for label, python in pythons.items():
                elapsed, used = daemon_time(python, root / f"{label}-{round_no}")
                starts[label].append(elapsed)
                cpu[label].append(used)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"python -c pass            {ms(passes)}")
    for label, values in starts.items():
        print(f"daemon initialize ({label:7}) {ms(values)}  "
              f"ratio to pass {statistics.median(values) / statistics.median(passes):.1f}")
        print(f"daemon CPU        ({label:7}) {ms(cpu[label])}")
    this = statistics.median(starts["this"])
    print(f"this: {this:.3f} s (target <= {TARGET_S})" + (
        f"; against: {statistics.median(starts['against']):.3f} s" if args.against else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
