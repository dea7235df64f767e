"""An agent node's transcript.md: its turns and tool calls as a person reads them.

Like stdout.txt it belongs to the node's latest attempt: begun afresh by each attempt, one
block appended per model turn and per tool call, each naming the trace call (`call #seq`)
that holds the whole record.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from ..providers.base import ModelResponse
from .base import NodeRun

if TYPE_CHECKING:
    from .agent_calls import ToolResult

FILE = "transcript.md"
_SHOWN = 4000  # characters of a text shown; the trace has all of it


def begin(run: NodeRun) -> None:
    """Start the attempt's transcript."""
    run.write_file(FILE, f"# {run.node.id} · attempt {run.attempt}\n")


def model_turn(run: NodeRun, turn: int, response: ModelResponse) -> None:
    """One model turn: what it said and which tools it called."""
    usage = response.usage
    lines = [f"\n## turn {turn} · model {response.provider}/{response.model} · "
             f"{usage.input_tokens}→{usage.output_tokens} tokens · ${response.cost_usd:.4f}"
             f" · call #{run.executor.call_seq}\n"]
    if response.text:
        lines.append(_cut(response.text) + "\n")
    for index, call in enumerate(response.tool_calls):
        lines.append(f"→ [{index}] {call.name} {_cut(call.arguments, 300)}\n")
    _append(run, "".join(lines))


def tool_call(run: NodeRun, turn: int, index: int, result: ToolResult) -> None:
    """One tool call: its hooks, the command it ran and what the model got back."""
    request, response = result.request, result.response
    state = "error" if result.is_error else "ok"
    if "exit_code" in response:
        state = f"exit {response['exit_code']}" + (" (timed out)" if response.get("timed_out")
                                                   else "")
    lines = [f"\n## turn {turn} · tool [{index}] {request['tool']} · {state} · "
             f"{result.latency_ms:.0f} ms · call #{result.seq}\n"]
    for which, hook in (response.get("hooks") or {}).items():
        lines.append(f"{which}-hook: exit {hook.get('exit_code')}\n")
    argv = request.get("metadata", {}).get("argv")
    if argv:
        lines.append("$ " + " ".join(json.dumps(a) if " " in a or not a else a
                                     for a in argv) + "\n")
    shown = _cut(result.message.content)
    # A fence longer than any run of backticks in the text, so the text cannot close it.
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", shown)), default=0))
    lines.append(f"{fence}\n{shown}\n{fence}\n")
    _append(run, "".join(lines))


def _cut(text: str, limit: int = _SHOWN) -> str:
    return text if len(text) <= limit else text[:limit] + f"… [{len(text):,} characters]"


def _append(run: NodeRun, text: str) -> None:
    run.executor.run_dir.append_stage_file(run.node.id, FILE, text)
