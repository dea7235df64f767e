"""Verdict study: how often a `pass_rate` invariant at N trials raises a false alarm on an
unchanged pipeline, and how often it catches a drop of the true pass rate.

Run it with `.venv/bin/python bench/verdicts.py`; options:

    .venv/bin/python bench/verdicts.py [--runs 1000] [--trials 20] [--base 0.9]
        [--dropped 0.6] [--threshold 0.6] [--confidence 0.95] [--daemon-runs K]
        [--seed-base 1] [--json]

The pipeline under test is start -> work -> done, whose one model node `work` is answered by
the scripted provider with `pass_probability` p (daemon/engine/providers/scripted.py): each
call's outcome is `success` with probability p, else `fail`, one seeded draw per call, so a
trial passes with probability p and the trials of a set are independent. The snapshot holds
two invariants: `run_status` (completed, outcome success), which decides whether a trial
passed, and `pass_rate` (threshold 0.6 at confidence 0.95 by default), the verdict. One
simulated test run = one snapshot tested with `--trials` trials; it raises an alarm when its
`pass_rate` fails. Unchanged pipeline: p = `--base` (0.9), every alarm a false alarm.
Dropped: p = `--dropped` (0.6), every alarm a detection. Test run i of the unchanged
condition uses seed `seed_base + 2i`, of the dropped one `seed_base + 2i + 1`: every
simulated test run has its own seed, and the same command gives the same numbers.

Design: 1,000 test runs x 20 trials x 2 conditions are 40,000 runs. Measured on this
2-core machine, the daemon does them, recording everything, in about 2 1/4 minutes (3.4 ms a
trial, snapshot creation included), so by default every simulated test run goes through the
real product end to end, and a cheaper in-process path runs beside it as a cross-check:

* through the daemon: each seed becomes a snapshot (`snapshot.create`, from the pipeline,
  its settings carrying the seed and p) in a daemon subprocess with a fresh home on tmpfs,
  and one `tests.run` per condition (mode live, `--trials` trials each, record full) tests
  them: every trial a real run through the engine, every verdict from regression/check.py.
  `--daemon-runs K` sends only the first K seeds of each condition (K = 100: ~15 s);
* in process, all `--runs` seeds: each trial's outcome is the status the scripted provider
  itself answers (`ScriptedProvider.complete` with the request the engine sends for trial t:
  node `work`, attempt 1, metadata `trial` = t), made into the run row the engine stores
  for it (checked against the daemon's stored runs of one snapshot per condition), and the
  verdicts come from the product's `evaluate_trials` (daemon/regression/invariants) over
  those `StoredRun`s, as tests.run calls it: no statistics re-implemented here;
* the two must agree exactly on every seed both ran: each trial's pass or fail and each
  test run's verdict. So with `--daemon-runs 100` the 1,000-run rates are still the
  product's, and the full run shows both paths equal on all 40,000 trials. (Every run
  through the engine in process with record metadata_only would be neither cheaper than
  the in-process path nor as faithful as the daemon.)

Also, exactly: the false-alarm and detection rates are sums of binomial probabilities over
the pass counts whose `pass_rate` fails, as the product's `evaluate_trials` decides them,
printed beside the simulated rates (with the simulated rates' 95% Wilson intervals, and
the chance that a study of `--runs` test runs meets each target given the exact rate). And a
table for choosing N: for N in 10, 20, 30, 50 the threshold (at confidence 0.95) that
detects most while its false alarms stay at most 5%, with its exact rates for drops to 0.6
and 0.75, and the fewest trials that meet both targets for each drop.

Targets: false alarms at most 5% and detection at least 90% of the simulated test runs, and
the daemon agreeing on every shared seed. The last line is PASS or FAIL with the numbers.
At N = 20 the false-alarm margin is thin (exact 4.3%): a 1,000-run study shows at most 5%
with probability 0.87 only, which the report prints, so a different `--seed-base` can
FAIL that line while the verdict rule meets the target in expectation.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from verdict_rates import (  # bench/ is on sys.path when a bench runs
    DETECTION_TARGET,
    FALSE_ALARM_TARGET,
    GUIDE_DROPS,
    RUN_ROW,
    alarm_rate,
    cdf,
    enough_trials,
    failing_counts,
    guidance,
    interval,
    verdict_of,
)

from ostinato.clients.python import AsyncClient
from ostinato.daemon.engine.providers import ModelRequest
from ostinato.daemon.engine.providers.scripted import ScriptedProvider
from ostinato.daemon.regression.invariants import wilson_lower

NODE = "work"
PROMPT = "Do the task"
PIPELINE = (f'digraph verdicts {{\n  start [shape=Mdiamond]\n  {NODE} [prompt="{PROMPT}"]\n'
            f"  done [shape=Msquare]\n  start -> {NODE} -> done\n}}\n")


def invariants(threshold: float, confidence: float) -> list[dict[str, Any]]:
    """The snapshot's checks: each trial must complete with success; the pass rate must
    clear `threshold` at `confidence`."""
    return [{"type": "run_status", "value": "completed", "outcome": "success"},
            {"type": "pass_rate", "threshold": threshold, "confidence": confidence}]


def seed_of(seed_base: int, condition: int, index: int) -> int:
    """The seed of test run `index` of condition 0 (unchanged) or 1 (dropped)."""
    return seed_base + 2 * index + condition


def provider_settings(p: float, seed: int) -> dict[str, Any]:
    """The scripted provider's settings of one simulated test run."""
    return {"pass_probability": p, "seed": seed}


@dataclass
class Condition:
    """One true pass rate and what the study saw of it."""

    name: str  # unchanged | dropped
    index: int  # 0 | 1: which seeds
    p: float
    alarms: int = 0
    runs: int = 0
    exact: float = 0.0
    # seed -> (each trial passed, verdict) of the in-process path, and of the daemon's
    local: dict[int, tuple[list[bool], str]] = field(default_factory=dict)
    statuses: dict[int, list[str]] = field(default_factory=dict)  # in process, per trial
    daemon: dict[int, tuple[list[bool], str]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Alarms per simulated test run."""
        return self.alarms / self.runs if self.runs else math.nan


# -- the product's verdicts, in process ---------------------------------------------------


async def trial_statuses(p: float, seed: int, trials: int) -> list[str]:
    """The status the scripted provider answers for node `work` in each trial of a set."""
    provider = ScriptedProvider(provider_settings(p, seed))
    statuses = []
    for trial in range(trials):
        request = ModelRequest(messages=[{"role": "user", "content": PROMPT}], node_id=NODE,
                               attempt=1, metadata={"prompt": PROMPT, "trial": trial})
        statuses.append(str((await provider.complete(request)).status or "success"))
    return statuses


async def simulate(condition: Condition, args: argparse.Namespace) -> None:
    """All `--runs` test runs of a condition, in process."""
    checks = invariants(args.threshold, args.confidence)
    for i in range(args.runs):
        seed = seed_of(args.seed_base, condition.index, i)
        statuses = await trial_statuses(condition.p, seed, args.trials)
        passed, status = await verdict_of(statuses, checks)
        condition.local[seed] = (passed, status)
        condition.statuses[seed] = statuses
        condition.alarms += status == "failed"
        condition.runs += 1


# -- the same through a daemon ------------------------------------------------------------


async def through_daemon(conditions: list[Condition], args: argparse.Namespace) -> float:
    """The first `--daemon-runs` seeds of each condition as snapshots, tested by one
    tests.run per condition in a daemon subprocess; seconds taken."""
    shm = Path("/dev/shm")
    home = Path(tempfile.mkdtemp(prefix="ostinato-verdicts-",
                                 dir=shm if shm.is_dir() else None))
    started = time.perf_counter()
    try:
        with open(home / "daemon.log", "wb") as log:
            client = await AsyncClient.spawn(home / "home", stderr=log)
            try:
                async with client:
                    await client.initialize("bench-verdicts")
                    for condition in conditions:
                        await test_condition(client, condition, args)
            except BaseException:
                print((home / "daemon.log").read_text()[-4000:], file=sys.stderr)
                raise
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return time.perf_counter() - started


async def test_condition(client: AsyncClient, condition: Condition,
                         args: argparse.Namespace) -> None:
    """Snapshots of one condition's seeds, one tests.run over them."""
    by_id = {}
    for i in range(min(args.daemon_runs, args.runs)):
        seed = seed_of(args.seed_base, condition.index, i)
        made = await client.request("snapshot.create", {
            "name": f"verdicts-{condition.name}", "tags": ["verdicts", condition.name],
            "description": f"p={condition.p:g}, seed {seed}",
            "pipeline": {"source": PIPELINE, "format": "dot"},
            "settings": {"providers": {"scripted": provider_settings(condition.p, seed)}},
            "invariants": invariants(args.threshold, args.confidence)})
        by_id[made["id"]] = seed
    if not by_id:
        return
    report = await client.request("tests.run", {
        "snapshot_ids": list(by_id), "trials": args.trials, "mode": "live",
        "concurrency": 4, "wait": True})
    for snap in report["snapshots"]:
        status_check, rate = snap["invariants"]
        trials = sorted(status_check["trials"] or [], key=lambda t: t["index"])
        passed = [t["status"] == "passed" for t in trials]
        if snap["trials_passed"] != sum(passed):
            raise RuntimeError(f"snapshot {snap['snapshot_id']}: trials_passed "
                               f"{snap['trials_passed']} but {sum(passed)} trials passed")
        condition.daemon[by_id[snap["snapshot_id"]]] = (passed, rate["status"])
    await check_run_rows(client, condition, report["snapshots"], by_id)


async def check_run_rows(client: AsyncClient, condition: Condition,
                         snapshots: list[dict[str, Any]], by_id: dict[str, int]) -> None:
    """The trials' runs are stored as RUN_ROW says for the status the provider drew in
    process (what the in-process StoredRuns assume): checked snapshot by snapshot until
    both a passing and a failing run were."""
    seen: set[str] = set()
    for snap in snapshots:
        if seen == set(RUN_ROW):
            return
        statuses = condition.statuses[by_id[snap["snapshot_id"]]]
        for trial in snap["invariants"][0]["trials"] or []:
            run = await client.request("run.get", {"run_id": trial["run_id"]})
            row, drawn = {"status": run["status"], "outcome": run["outcome"]}, \
                statuses[trial["index"]]
            if row != RUN_ROW[drawn]:
                raise RuntimeError(f"trial {trial['index']} ({trial['run_id']}): stored "
                                   f"{row}, drawn {drawn!r}, expected {RUN_ROW[drawn]}")
            seen.add(drawn)


# -- the report ---------------------------------------------------------------------------


def chance_to_meet(condition: Condition) -> float:
    """The chance that a study of this many test runs meets the condition's target, at its
    exact rate."""
    n = condition.runs
    if condition.index == 0:
        return cdf(math.floor(FALSE_ALARM_TARGET * n + 1e-9), n, condition.exact)
    return 1 - cdf(math.ceil(DETECTION_TARGET * n - 1e-9) - 1, n, condition.exact)


def agreement(conditions: list[Condition]) -> dict[str, int]:
    """Shared seeds, and on how many the daemon's trials and verdict equal the in-process
    ones; trials compared and equal."""
    seeds = same = trials = same_trials = 0
    for condition in conditions:
        for seed, (passed, status) in condition.daemon.items():
            local_passed, local_status = condition.local[seed]
            seeds += 1
            same += (passed, status) == (local_passed, local_status)
            trials += len(passed)
            same_trials += sum(a == b for a, b in zip(passed, local_passed, strict=False))
            same_trials -= abs(len(passed) - len(local_passed))
    return {"seeds": seeds, "agreeing": same, "trials": trials, "trials_agreeing": same_trials}


def results(conditions: list[Condition], args: argparse.Namespace, daemon_seconds: float,
            local_seconds: float, guide: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the study found, as the --json output gives it."""
    unchanged, dropped = conditions
    agreed = agreement(conditions)
    ok = {"false_alarm": unchanged.rate <= FALSE_ALARM_TARGET,
          "detection": dropped.rate >= DETECTION_TARGET,
          "daemon_agrees": agreed["agreeing"] == agreed["seeds"]
          and agreed["trials_agreeing"] == agreed["trials"]}
    return {
        "command": "bench/verdicts.py " + " ".join(sys.argv[1:]),
        "trials": args.trials, "threshold": args.threshold, "confidence": args.confidence,
        "seed_base": args.seed_base, "runs": args.runs,
        "conditions": [{
            "name": c.name, "p": c.p, "role": "false_alarm" if c.index == 0 else "detection",
            "seeds": f"{args.seed_base} + 2i + {c.index}, i < {args.runs}",
            "alarms": c.alarms, "runs": c.runs, "rate": c.rate,
            "interval95": list(interval(c.alarms, c.runs)), "exact": c.exact,
            "chance_to_meet_target": chance_to_meet(c),
            "target": (f"<= {pct(FALSE_ALARM_TARGET)}" if c.index == 0
                       else f">= {pct(DETECTION_TARGET)}"),
            "daemon_alarms": sum(s == "failed" for _, s in c.daemon.values()),
            "daemon_runs": len(c.daemon)} for c in conditions],
        "daemon": {**agreed, "seconds": round(daemon_seconds, 2)},
        "in_process_seconds": round(local_seconds, 2),
        "wilson_lower": {f"{c}/{args.trials}": round(wilson_lower(c, args.trials,
                                                                  args.confidence), 4)
                         for c in (args.trials - 5, args.trials - 4)
                         if 0 <= c <= args.trials},
        "guidance": guide,
        "enough_trials": {f"{p:g}": enough_trials(args.base, p) for p in GUIDE_DROPS},
        "checks": ok, "verdict": "PASS" if all(ok.values()) else "FAIL",
    }


def pct(value: float) -> str:
    """A rate as a percentage."""
    return f"{value * 100:.1f}%"


def print_report(found: dict[str, Any], args: argparse.Namespace) -> None:
    """The human-readable report; its last line is PASS or FAIL."""
    print(f"pass_rate verdicts: {args.trials} trials per test run, threshold "
          f"{args.threshold:g} at confidence {args.confidence:g}; seeds from base "
          f"{args.seed_base}")
    print("Wilson lower bounds (the product's wilson_lower): " + ", ".join(
        f"{k} -> {v:.4f}" for k, v in found["wilson_lower"].items()))
    print()
    print(f"{'condition':<11} {'true p':>6} {'alarms':>12} {'simulated':>9} {'95% interval':>15} "
          f"{'exact':>7} {'target':>8} {'daemon':>10}")
    for c in found["conditions"]:
        low, high = c["interval95"]
        print(f"{c['name']:<11} {c['p']:>6g} {c['alarms']:>5}/{c['runs']:<6} "
              f"{pct(c['rate']):>9} {pct(low) + '-' + pct(high):>15} {pct(c['exact']):>7} "
              f"{c['target']:>8} {c['daemon_alarms']:>6}/{c['daemon_runs']}")
    print(f"at the exact rates, a study of {args.runs} test runs meets the targets with "
          f"probability {pct(found['conditions'][0]['chance_to_meet_target'])} (false alarms) "
          f"and {pct(found['conditions'][1]['chance_to_meet_target'])} (detection)")
    d = found["daemon"]
    sent = min(args.daemon_runs, args.runs)
    which = f"all {sent}" if sent == args.runs else f"the first {sent} of the {args.runs}"
    print(f"daemon (snapshot.create + tests.run, live, record full) on {which} seeds of each "
          f"condition: {d['agreeing']}/{d['seeds']} verdicts and {d['trials_agreeing']}/"
          f"{d['trials']} trials identical to the in-process path ({d['seconds']:.1f} s; in "
          f"process: {found['in_process_seconds']:.1f} s)")
    print()
    print(f"Choosing N (exact; confidence {args.confidence:g}; the threshold detecting most "
          f"with false alarms <= {pct(FALSE_ALARM_TARGET)} at p={args.base:g}):")
    print(f"{'N':>4} {'threshold':>9} {'(or any in)':>16} {'fails at':>9} {'false alarm':>11} "
          + " ".join(f"{'detects ' + format(p, 'g'):>12}" for p in GUIDE_DROPS))
    for row in found["guidance"]:
        low, high = row["same_verdicts_for"]
        print(f"{row['n']:>4} {row['threshold']:>9g} {f'({low:.4f}, {high:.4f}]':>16} "
              f"{'<= ' + str(row['fails_at_most']):>9} {pct(row['false_alarm']):>11} "
              + " ".join(f"{pct(row['detection'][f'{p:g}']):>12}" for p in GUIDE_DROPS))
    print("fewest trials meeting both targets: " + "; ".join(
        f"{args.base:g} -> {p}: N = {n['first']}, and every N from {n['from']}"
        for p, n in found["enough_trials"].items()))
    unchanged, dropped = found["conditions"]
    print(f"{found['verdict']}: false alarms {pct(unchanged['rate'])} (exact "
          f"{pct(unchanged['exact'])}; target <= {pct(FALSE_ALARM_TARGET)}), detection "
          f"{pct(dropped['rate'])} (exact {pct(dropped['exact'])}; target >= "
          f"{pct(DETECTION_TARGET)}) over {args.runs} simulated test runs each, "
          f"{min(args.daemon_runs, args.runs)} of them through the daemon, which agreed on "
          f"{d['agreeing']}/{d['seeds']}")


async def study(args: argparse.Namespace) -> dict[str, Any]:
    """Exact rates, the in-process simulation, the daemon subset, the guidance table."""
    conditions = [Condition("unchanged", 0, args.base), Condition("dropped", 1, args.dropped)]
    failing = await failing_counts(args.trials, args.threshold, args.confidence)
    started = time.perf_counter()
    for condition in conditions:
        condition.exact = alarm_rate(failing, args.trials, condition.p)
        await simulate(condition, args)
    local_seconds = time.perf_counter() - started
    daemon_seconds = await through_daemon(conditions, args) if args.daemon_runs else 0.0
    return results(conditions, args, daemon_seconds, local_seconds,
                   await guidance(args.base, args.confidence))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000,
                        help="simulated test runs per condition (default 1000)")
    parser.add_argument("--trials", type=int, default=20, help="trials per test run (20)")
    parser.add_argument("--base", type=float, default=0.9,
                        help="true pass rate of the unchanged pipeline (0.9)")
    parser.add_argument("--dropped", type=float, default=0.6,
                        help="true pass rate after the drop (0.6)")
    parser.add_argument("--threshold", type=float, default=0.6,
                        help="pass_rate threshold (0.6)")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="pass_rate confidence (0.95)")
    parser.add_argument("--daemon-runs", type=int, default=None,
                        help="test runs per condition also run through a daemon (default: "
                             "all; 0: none)")
    parser.add_argument("--seed-base", type=int, default=1, help="the seeds' base (1)")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON object instead")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study and print it; exit 1 unless it passes."""
    args = parse_args(argv)
    if args.daemon_runs is None:
        args.daemon_runs = args.runs
    found = asyncio.run(study(args))
    if args.json:
        print(orjson.dumps(found).decode())
    else:
        print_report(found, args)
    return 0 if found["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
