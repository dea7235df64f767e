"""MCP prompts: `prompts/list` and `prompts/get`, one prompt per loop an agent follows
with the tools (protocol/mcp_tools.py) and resources (resources.py), ids filled in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ostinato.protocol.errors import ErrorCode, RpcError
from ostinato.protocol.mcp import GetPromptParams, PagedParams

from ...services.base import HandlerTable, RequestContext
from .era import COMPLETE, LISTED, is_modern

table = HandlerTable()


@dataclass(frozen=True)
class PromptSpec:
    """A prompt: its arguments (name -> (description, required)) and its steps, a text
    whose `{argument}` fields are filled in."""

    name: str
    title: str
    description: str
    arguments: dict[str, tuple[str, bool]]
    steps: str

    def definition(self) -> dict[str, Any]:
        """The prompt as prompts/list describes it."""
        return {"name": self.name, "title": self.title, "description": self.description,
                "arguments": [{"name": name, "description": description, "required": required}
                              for name, (description, required) in self.arguments.items()]}


PROMPTS = [
    PromptSpec(
        "investigate-failed-test-run", "Investigate a failed test run",
        "Find why the snapshots of a test run failed, and what to fix.",
        {"test_run_id": ("The test run to investigate.", True)},
        "Investigate Ostinato test run {test_run_id}, which failed.\n\n"
        "1. Read the resource ostinato://tests/{test_run_id}/report.md (or call the `tests` "
        "tool with action `get` and test_run_id {test_run_id}): which snapshots failed, "
        "which invariants, and the run each snapshot's replay produced.\n"
        "2. For each failed snapshot, call `inspect` with action `diff`, `a` its baseline "
        "(the snapshot's reference.run_id: read ostinato://snapshots/<snapshot id>) and `b` "
        "the run its replay produced (its run_ids); note the first node whose output differs.\n"
        "3. Read that node's files in the failing run: ostinato://runs/<run id>/files/"
        "<node>/prompt.md and response.md, and its calls with `inspect` action `trace`.\n"
        "4. Say, for each failure, its cause (a prompt change, a model answer, a too strict "
        "invariant) and the smallest fix. After the fix, call `tests` with action `run` and "
        "the same snapshot_ids, and check that they pass."),
    PromptSpec(
        "snapshot-run-with-invariants", "Snapshot a run with invariants",
        "Make a snapshot of a good run, with invariants that hold for it and catch "
        "regressions.",
        {"run_id": ("The run to keep as a snapshot.", True),
         "name": ("The snapshot's name (default: the pipeline's name).", False)},
        "Make a snapshot named {name} of Ostinato run {run_id}.\n\n"
        "1. Read ostinato://runs/{run_id} (or `inspect` action `run` with run_id {run_id}): "
        "check that it completed with outcome success, and look at each stage's output.\n"
        "2. Choose invariants that hold for this run and would catch a regression: the run's "
        "status, what the key outputs must contain or match, bounds on cost and tokens. "
        "Check them first with `run` action `reeval` on run {run_id}.\n"
        "3. Call `snapshot` with action `create`, run_id {run_id}, name {name}, and the "
        "invariants that passed.\n"
        "4. Call `tests` with action `run`, snapshot_ids [{name}]: it must pass."),
    PromptSpec(
        "compare-runs", "Compare two runs",
        "Compare two runs of a pipeline: what changed, where, and why.",
        {"run_a": ("The first run (the baseline).", True),
         "run_b": ("The second run.", True)},
        "Compare Ostinato runs {run_a} (the baseline) and {run_b}.\n\n"
        "1. Call `inspect` with action `diff`, a {run_a} and b {run_b}: the "
        "pipeline, settings, stages and outputs that differ.\n"
        "2. Read both runs (ostinato://runs/{run_a} and ostinato://runs/{run_b}): status, "
        "outcome, cost and tokens.\n"
        "3. For the first node whose output differs, read its prompt.md and response.md in "
        "both runs (ostinato://runs/<run id>/files/<node>/response.md) and its calls with "
        "`inspect` action `trace`.\n"
        "4. Say what changed, where it started, whether it is a regression, and why."),
]
_BY_NAME = {prompt.name: prompt for prompt in PROMPTS}


@table.method("prompts/list")
def list_prompts(params: PagedParams, ctx: RequestContext) -> dict[str, Any]:
    """Every prompt with its arguments."""
    return {"prompts": [prompt.definition() for prompt in PROMPTS],
            **(LISTED if is_modern(params) else {})}


@table.method("prompts/get")
def get_prompt(params: GetPromptParams, ctx: RequestContext) -> dict[str, Any]:
    """A prompt's message, its arguments filled in; -32602 for an unknown prompt or a
    missing required argument."""
    prompt = _BY_NAME.get(params.name)
    if prompt is None:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: unknown prompt "
                       f"{params.name!r}; the prompts are {', '.join(_BY_NAME)}.")
    given = {name: value for name, value in (params.arguments or {}).items() if value}
    missing = [name for name, (_, required) in prompt.arguments.items()
               if required and name not in given]
    if missing:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: prompt {prompt.name} "
                       f"needs the argument{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(missing)}.")
    unknown = sorted(set(given) - set(prompt.arguments))
    if unknown:
        raise RpcError(ErrorCode.INVALID_PARAMS, f"Invalid params: prompt {prompt.name} has "
                       f"no argument {', '.join(unknown)}; its arguments are "
                       f"{', '.join(prompt.arguments)}.")
    values = {name: given.get(name, "") for name in prompt.arguments}
    if prompt.name == "snapshot-run-with-invariants" and not values["name"]:
        values["name"] = "<the pipeline's name>"
    return {"description": prompt.description,
            "messages": [{"role": "user", "content": {"type": "text",
                                                      "text": prompt.steps.format(**values)}}],
            **(COMPLETE if is_modern(params) else {})}
