"""Command-line latency: a command against the home's running daemon, and the first command,
which has to start that daemon, each against `python -c pass` measured in the same run.

    .venv/bin/python bench/cli.py [--rounds 15] [--cold 5] [--command runs list]

* warm: `ostinato runs list --home H` with H's daemon running, alternated with
  `python -c pass` (same interpreter) run by run; target: median ≤ 2x pass's;
* cold: the same command on a fresh home, so that it starts the daemon in the background
  first (then `ostinato daemon stop`), alternated with warm runs; target: median ≤ warm's
  median + 0.5 s.

Each command is the installed `ostinato` script, spawned with stdout to /dev/null, bytecode
caching on (as an installed package has it); the time is from spawn to exit. The homes stay
until the end (file creation on these disks is slow for minutes after bulk deletes).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common import INSTALLED_ENVIRONMENT  # bench/ is on sys.path when a bench runs

WARM_TARGET = 2.0  # times python -c pass
COLD_TARGET_S = 0.5  # seconds more than a warm command
OSTINATO = Path(sys.executable).parent / "ostinato"


def timed(argv: Sequence[str]) -> float:
    """Seconds from spawn to exit; the command must succeed."""
    start = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=INSTALLED_ENVIRONMENT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr!r}")
    return elapsed


def ms(values: Sequence[float]) -> str:
    """Median and spread in milliseconds."""
    return (f"median {statistics.median(values) * 1000:7.1f} ms  (min {min(values) * 1000:.1f}"
            f", max {max(values) * 1000:.1f}, n={len(values)})")


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table and the ratios line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="warm runs (and pass runs)")
    parser.add_argument("--cold", type=int, default=5, help="cold runs (fresh homes)")
    parser.add_argument("--command", nargs="+", default=["runs", "list"],
                        help="the ostinato command measured (default: runs list)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ost-cli-"))
    home = root / "home"
    command = [str(OSTINATO), *args.command]
    print(f"ostinato cli bench: `ostinato {' '.join(args.command)}`; Python "
          f"{sys.version.split()[0]}")
    try:
        timed([str(OSTINATO), "daemon", "start", "--home", str(home)])
        timed([*command, "--home", str(home)])  # warm the page cache once
        passes, warm, cold = [], [], []
        for round_no in range(args.rounds):
            passes.append(timed([sys.executable, "-c", "pass"]))
            warm.append(timed([*command, "--home", str(home)]))
            if round_no < args.cold:
                fresh = root / f"cold-{round_no}"
                cold.append(timed([*command, "--home", str(fresh)]))
                timed([str(OSTINATO), "daemon", "stop", "--home", str(fresh)])
        timed([str(OSTINATO), "daemon", "stop", "--home", str(home)])
    finally:
        for started in root.glob("*/daemon.json"):  # a failed round may leave one running
            subprocess.run([str(OSTINATO), "daemon", "stop", "--home", str(started.parent)],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    print(f"python -c pass        {ms(passes)}")
    print(f"warm (daemon running) {ms(warm)}")
    print(f"cold (starts daemon)  {ms(cold)}")
    warm_ratio = statistics.median(warm) / statistics.median(passes)
    cold_extra = statistics.median(cold) - statistics.median(warm)
    print(f"ratios: warm/pass {warm_ratio:.2f} (target <= {WARM_TARGET}), cold - warm "
          f"{cold_extra:.3f} s (target <= {COLD_TARGET_S})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
