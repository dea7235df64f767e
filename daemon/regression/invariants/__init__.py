"""The invariant library (DESIGN.md §7): evaluating the checks of protocol/invariants.py
against a stored run (`evaluate`) or a trial set's runs (`evaluate_trials`).

The service gathers what a run recorded into a `StoredRun` (daemon/regression/stored.py)
and calls `evaluate`; each invariant type has one evaluator, registered by its family's
module: seeds (run_status and seeds/001's names), bounds (min, max, between), output,
trajectory, budget, judge and expr; trials evaluates pass_rate and pass_at_k over many runs.
Pure but for the judge, which calls a model through the providers it is given.
"""

from __future__ import annotations

# The family modules register their evaluators on import.
from . import bounds, budget, expr, output, seeds, trajectory  # noqa: F401
from .drift import drift, inputs_hash
from .evaluate import EVALUATORS, evaluate, evaluate_one, verdict
from .judge import Judge, parse_vote
from .metrics import METRIC_KEYS, run_metrics
from .model import JUDGE_NODE, StoredRun
from .trials import TrialsEvaluation, evaluate_trials, pass_at_k, wilson_lower

__all__ = ["EVALUATORS", "JUDGE_NODE", "METRIC_KEYS", "Judge", "StoredRun",
           "TrialsEvaluation", "drift", "evaluate", "evaluate_one", "evaluate_trials",
           "inputs_hash", "parse_vote", "pass_at_k", "run_metrics", "verdict",
           "wilson_lower"]
