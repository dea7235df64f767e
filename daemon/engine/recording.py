"""Record modes: what of a run's content its records keep.

`full` keeps everything. `metadata_only` keeps no prompt or response content in the trace,
the calls, the stage records or the node files: each text is replaced by its length and
SHA-256, so that two runs can still be told apart (and compared) without their content.
The checkpoint keeps the context, which a resume needs.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

RecordMode = Literal["full", "metadata_only"]

# The error of a call cut short by its node's timeout (or a cancellation): recorded so that
# the trace holds every call that was made, and so that a replay stops where this run did.
INTERRUPTED = "interrupted: the call was cut short by a timeout or a cancellation"

# The kind of the trace entry that ends a failed run's trace when no failing call did (no
# edge to follow, max_steps, a goal gate): not a call, and never replayed or counted as one.
RUN_END = "run"

# The kind of the trace entry of a model call's try that failed and was retried by the
# provider pool (a 429, a 5xx, a timeout): the call line after it says how the call ended.
# Never served by a replay, nor compared by run.diff.
PROVIDER_RETRY = "model_retry"

# Trace entries that are not the run's work: replays, diffs and metrics leave them out.
NOT_WORK = frozenset({RUN_END, PROVIDER_RETRY})

# Keys whose values are content: prompts, responses, tool output, what a node put in context.
CONTENT_KEYS = frozenset({"messages", "text", "content", "stdout", "stderr",
                          "context_updates", "status_file", "note", "structured", "arguments"})


def summary(value: Any) -> dict[str, Any]:
    """What stands in for a content value: its size and digest."""
    text = value if isinstance(value, str) else repr(value)
    encoded = text.encode("utf-8", "surrogatepass")
    return {"omitted": True, "chars": len(text),
            "sha256": hashlib.sha256(encoded).hexdigest()}


def without_content(record: Any) -> Any:
    """`record` with every content value replaced by its summary (a new object)."""
    if isinstance(record, dict):
        return {key: (summary(value) if key in CONTENT_KEYS and value not in (None, "", [], {})
                      else without_content(value)) for key, value in record.items()}
    if isinstance(record, list):
        return [without_content(item) for item in record]
    return record
