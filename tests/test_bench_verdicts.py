"""bench/verdicts.py runs (a small study, through a real daemon too) and its exact rates are
the binomial sums computed here independently, with fractions."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from math import comb
from typing import Any

import pytest

from .support import REPO

SCRIPT = REPO / "bench" / "verdicts.py"


def study(*args: str) -> tuple[int, dict[str, Any]]:
    """(exit code, the --json output) of the script."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--json", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def failing_at_most(k: int, n: int, p: Fraction) -> Fraction:
    """P(X <= k) for X ~ Binomial(n, p), exactly."""
    return sum((comb(n, c) * p ** c * (1 - p) ** (n - c) for c in range(k + 1)), Fraction(0))


def test_a_small_study_runs_and_its_exact_rates_are_right() -> None:
    code, found = study("--runs", "20", "--daemon-runs", "2")
    assert code == (0 if found["verdict"] == "PASS" else 1)
    assert found["verdict"] == ("PASS" if all(found["checks"].values()) else "FAIL")
    assert (found["trials"], found["threshold"], found["confidence"]) == (20, 0.6, 0.95)
    assert found["wilson_lower"] == {"15/20": 0.5678, "16/20": 0.6216}
    unchanged, dropped = found["conditions"]
    assert (unchanged["name"], unchanged["p"], dropped["name"], dropped["p"]) == (
        "unchanged", 0.9, "dropped", 0.6)
    # Threshold 0.6 at 95% fails exactly when at most 15 of 20 trials pass.
    false_alarm = failing_at_most(15, 20, Fraction(9, 10))
    detection = failing_at_most(15, 20, Fraction(6, 10))
    assert unchanged["exact"] == pytest.approx(float(false_alarm), abs=1e-12)
    assert dropped["exact"] == pytest.approx(float(detection), abs=1e-12)
    assert (round(unchanged["exact"], 3), round(dropped["exact"], 3)) == (0.043, 0.949)
    for condition in found["conditions"]:
        assert condition["runs"] == 20 and 0 <= condition["alarms"] <= 20
        assert condition["rate"] == condition["alarms"] / 20
        low, high = condition["interval95"]
        assert low <= condition["rate"] <= high
        assert condition["daemon_runs"] == 2
    # The daemon's verdicts and every trial equal the in-process ones.
    assert found["daemon"] | {"seconds": 0} == {"seeds": 4, "agreeing": 4, "trials": 80,
                                                  "trials_agreeing": 80, "seconds": 0}
    row = {r["n"]: r for r in found["guidance"]}[20]
    assert (row["threshold"], row["fails_at_most"]) == (0.6, 15)
    assert row["detection"]["0.6"] == pytest.approx(float(detection), abs=1e-12)
    assert [r["n"] for r in found["guidance"]] == [10, 20, 30, 50]
    for r in found["guidance"]:  # each N's best threshold: within 5%, and 5% one count up
        assert r["false_alarm"] <= 0.05
        n, k = r["n"], r["fails_at_most"]
        assert float(failing_at_most(k + 1, n, Fraction(9, 10))) > 0.05
    # 18 trials are the fewest for the 0.9 -> 0.6 drop: at 18 failing at <= 13 passes meets
    # both targets (one count more breaks the false-alarm one); at 17 no cutoff does.
    assert found["enough_trials"]["0.6"] == {"first": 18, "from": 18}
    assert failing_at_most(13, 18, Fraction(9, 10)) <= Fraction(5, 100) < failing_at_most(
        14, 18, Fraction(9, 10))
    assert failing_at_most(13, 18, Fraction(6, 10)) >= Fraction(9, 10)
    assert failing_at_most(12, 17, Fraction(9, 10)) <= Fraction(5, 100) < failing_at_most(
        13, 17, Fraction(9, 10))
    assert failing_at_most(12, 17, Fraction(6, 10)) < Fraction(9, 10)
    # The same seeds give the same verdicts (without the daemon this time).
    _, again = study("--runs", "20", "--daemon-runs", "0")
    assert [c["alarms"] for c in again["conditions"]] == [unchanged["alarms"],
                                                           dropped["alarms"]]
