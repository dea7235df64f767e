"""Scenario drift: `pipeline_hash` is the engine's graph digest, `inputs_hash` the sha256 of
canonical JSON; a reeval compares what it is given with what the run recorded."""

from __future__ import annotations

import hashlib
from typing import Any

from .model import to_json


def inputs_hash(inputs: dict[str, Any]) -> str:
    """sha256 of the inputs' canonical JSON (keys sorted): equal inputs, equal hashes."""
    return hashlib.sha256(to_json(inputs).encode()).hexdigest()


def drift(subject: str, run_hash: str | None, given_hash: str) -> dict[str, Any]:
    """One drift check."""
    return {"subject": subject, "run_hash": run_hash, "given_hash": given_hash,
            "drifted": run_hash != given_hash}
