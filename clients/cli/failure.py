"""How a command fails: the human text on stderr and, with `--json`, the same error as one JSON
object on stdout, so that a script reading stdout always gets JSON."""

from __future__ import annotations

import json
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: see docs/cli.md
if TYPE_CHECKING:
    from typing import Any

# `code` of an error the command found itself (the daemon's errors keep their JSON-RPC code).
USAGE, UNREACHABLE, TIMEOUT, INTERRUPTED, FAILED = (
    "usage", "unreachable", "timeout", "interrupted", "failed")


def fail(name: str, message: str, exit_code: int, *, json_mode: bool = False,
         code: int | str = FAILED, data: Any = None, details: tuple[str, ...] = ()) -> int:
    """Say `name: message` (and `details`, one per line) on stderr; with `json_mode`, print
    `{"error": {"code", "message", "data"}}` on stdout too. Returns `exit_code`."""
    print(f"{name}: {message}", file=sys.stderr)
    for line in details:
        print(f"  {line}", file=sys.stderr)
    if json_mode:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        sys.stdout.write(json.dumps({"error": error}, indent=2, default=str) + "\n")
        sys.stdout.flush()
    return exit_code
