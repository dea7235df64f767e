"""The MCP tools: the daemon's methods grouped by what an agent means to do, each tool's
schemas generated from the methods' own params and result models, so that the MCP contract
cannot drift from the JSON-RPC one.

A tool with several methods takes an `action` argument that picks one. Its inputSchema is one
flat object (the union of its methods' params, each described with the actions it applies
to) rather than a `oneOf` of objects: MCP requires an object at the top, and some model APIs
refuse `oneOf`/`anyOf` there (docs/agents.md says why the tools are grouped so).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from .catalog import client_methods
from .registry import MethodSpec

# Params every method takes that a tool does not show: MCP has its own progress token, and a
# tool call that waits always cancels its work with it (`cancel_with_request`).
HIDDEN_PARAMS = frozenset({"workDoneToken", "cancel_with_request"})
# Every result's structuredContent starts with the summary, which the text content has too:
# some hosts give the model only one of the two.
SUMMARY_SCHEMA = {"type": "string", "description": "What happened, the ids and paths to use "
                                                   "next, and the next useful step."}
# Defaults a tool call has where the method's differ: an agent whose run waits on a human
# must get the call back to answer it.
TOOL_DEFAULTS = {"return_on_question": True}


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: its name, what it is for, and the methods its actions call."""

    name: str
    title: str
    description: str
    actions: dict[str, str]  # action -> method; one action named "" for a one-method tool
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False

    @property
    def has_actions(self) -> bool:
        """Whether the tool takes an `action` argument."""
        return "" not in self.actions


TOOLS = (
    ToolSpec(
        "status", "Daemon status",
        "Check that Ostinato's daemon is up: version, pid, home directory, how many runs are "
        "active. Use it first if another tool fails to connect.",
        {"": "daemon.status"}, read_only=True, idempotent=True),
    ToolSpec(
        "pipeline", "Check a pipeline",
        "Validate or plan an attractor pipeline (a DOT graph or a YAML recipe, by `path` or "
        "inline `source`) without running it. `validate` lists diagnostics with line numbers "
        "and what to fix; `plan` shows the nodes and edges the engine would follow. Do this "
        "before `run` after editing a pipeline.",
        {"validate": "pipeline.validate", "plan": "pipeline.plan"},
        read_only=True, idempotent=True),
    ToolSpec(
        "run", "Run a pipeline",
        "Start and control pipeline runs. `start` runs a pipeline (give `wait: true` to get "
        "the outcome in this call, with progress); with `trials: N` it runs a trial set; with "
        "`replay.from_run` it replays a recorded run (mode `recorded` costs nothing). "
        "`cancel` stops a run, `resume` continues an interrupted one, `answer` answers a "
        "human gate a run waits on, `reeval` checks a stored run against invariants, "
        "`cancel_trials` stops a trial set. Read results with `inspect`.",
        {"start": "run.start", "cancel": "run.cancel", "resume": "run.resume",
         "answer": "human.answer", "reeval": "run.reeval", "cancel_trials": "trials.cancel"}),
    ToolSpec(
        "inspect", "Read runs and traces",
        "Read what happened, without changing anything. `run` gives a run's status, outcome, "
        "stages, cost and run directory; `runs` lists runs (filter by status, pipeline, "
        "time); `diff` compares two runs and names the first divergent call; `trace` gives "
        "every model and tool call of a trace, `traces` lists traces; `trials` gives a trial "
        "set's verdict. Run directories and reports are also MCP resources.",
        {"run": "run.get", "runs": "run.list", "diff": "run.diff", "trace": "trace.get",
         "traces": "trace.list", "trials": "trials.get"},
        read_only=True, idempotent=True),
    ToolSpec(
        "snapshot", "Snapshot scenarios",
        "Keep a run as a regression scenario. `create` snapshots a run with invariants (what "
        "must stay true); `list` and `get` read snapshots (by id, `name` or `name@version`); "
        "`replay` runs one again (`recorded` costs nothing, `live` asks the models) and "
        "checks its invariants.",
        {"create": "snapshot.create", "list": "snapshot.list", "get": "snapshot.get",
         "replay": "snapshot.replay"}),
    ToolSpec(
        "tests", "Regression tests",
        "Run the snapshot suite and read its results. `run` replays the selected snapshots "
        "under one cost budget (give `wait: true` for the verdict in this call, with "
        "progress); `get` reads a test run, `list` lists them, `report` renders one as "
        "Markdown, HTML or JUnit, `cancel` stops one. After a failure, read the report, then "
        "`inspect` `diff` the failing snapshot's run against its baseline run.",
        {"run": "tests.run", "get": "tests.get", "list": "tests.list",
         "report": "tests.report", "cancel": "tests.cancel"}),
    ToolSpec(
        "delete", "Delete snapshots or old runs",
        "Delete data for good. `snapshot` deletes a snapshot (all versions or one); `prune` "
        "removes old runs and their directories (never active runs or runs a snapshot or "
        "test run refers to; `dry_run: true` shows what would go).",
        {"snapshot": "snapshot.delete", "prune": "run.prune"},
        destructive=True, idempotent=True),
)


def tool_methods() -> set[str]:
    """Every method some tool calls."""
    return {method for spec in TOOLS for method in spec.actions.values()}


@cache
def tool_definitions() -> list[dict[str, Any]]:
    """Every tool as `tools/list` gives it (MCP `Tool`), built once from the registry."""
    from pydantic.json_schema import models_json_schema  # only once a client lists tools

    registry = client_methods()
    specs = {spec.name: spec for spec in registry}
    models = []
    for method in sorted(tool_methods()):
        spec = specs[method]
        models += [(spec.params, "validation"), (spec.result, "serialization")]
    refs, top = models_json_schema(models, ref_template="#/$defs/{model}")
    defs = _untitled(top.get("$defs", {}), mapping=True)
    return [_definition(tool_spec, specs, refs, defs) for tool_spec in TOOLS]


def _definition(spec: ToolSpec, methods: dict[str, MethodSpec], refs: dict[Any, Any],
                defs: dict[str, Any]) -> dict[str, Any]:
    input_schema = _input_schema(spec, methods, refs, defs)
    results = [refs[(methods[m].result, "serialization")] for m in spec.actions.values()]
    output: dict[str, Any] = {"result": results[0] if len(results) == 1 else
                              {"anyOf": _distinct(results)}}
    if spec.has_actions:
        output = {"action": {"type": "string", "enum": list(spec.actions)}, **output}
    output = {"summary": SUMMARY_SCHEMA, **output}
    output_schema = {"type": "object", "properties": output, "required": list(output)}
    for schema in (input_schema, output_schema):
        wanted = _refs_in(schema, defs)
        if wanted:
            schema["$defs"] = {name: defs[name] for name in sorted(wanted)}
    return {
        "name": spec.name, "title": spec.title, "description": spec.description,
        "inputSchema": input_schema, "outputSchema": output_schema,
        "annotations": {"title": spec.title, "readOnlyHint": spec.read_only,
                        "destructiveHint": spec.destructive,
                        "idempotentHint": spec.idempotent, "openWorldHint": False},
    }


def _input_schema(spec: ToolSpec, methods: dict[str, MethodSpec], refs: dict[Any, Any],
                  defs: dict[str, Any]) -> dict[str, Any]:
    """One object whose properties are every action's params, each saying where it applies."""
    properties: dict[str, dict[str, Any]] = {}
    applies: dict[str, list[str]] = {}
    required: dict[str, list[str]] = {}
    variants: dict[str, list[dict[str, Any]]] = {}
    for action, method in spec.actions.items():
        params = methods[method].params
        model = defs[refs[(params, "validation")]["$ref"].rsplit("/", 1)[-1]]
        for field, schema in model.get("properties", {}).items():
            if field in HIDDEN_PARAMS:
                continue
            applies.setdefault(field, []).append(action)
            variants.setdefault(field, [])
            if schema not in variants[field]:
                variants[field].append(schema)
        for field in model.get("required", []):
            required.setdefault(action, []).append(field)
    for field, schemas in variants.items():
        merged = dict(schemas[0]) if len(schemas) == 1 else {"anyOf": schemas}
        if field in TOOL_DEFAULTS:
            merged["default"] = TOOL_DEFAULTS[field]
        if spec.has_actions and len(applies[field]) < len(spec.actions):
            where = ", ".join(f"`{a}`" for a in applies[field])
            said = merged.get("description", "")
            merged["description"] = f"For {where}. {said}".strip()
        properties[field] = merged
    schema: dict[str, Any] = {"type": "object"}
    if spec.has_actions:
        lines = [f"`{action}`: {methods[m].summary}" for action, m in spec.actions.items()]
        needs = [f"`{a}` needs {', '.join(f'`{f}`' for f in fields)}"
                 for a, fields in required.items()]
        schema["properties"] = {"action": {
            "type": "string", "enum": list(spec.actions),
            "description": " ".join(lines + (["Required:", "; ".join(needs) + "."]
                                             if needs else []))}, **properties}
        schema["required"] = ["action"]
    else:
        schema["properties"] = properties
        if required.get(""):
            schema["required"] = required[""]
    schema["additionalProperties"] = False
    return schema


def _untitled(schema: Any, mapping: bool = False) -> Any:
    """`schema` without pydantic's generated titles ("Run Id"): an agent reads every byte
    of a tool's schema, and the names say it already. `mapping`: a name -> schema object."""
    if isinstance(schema, list):
        return [_untitled(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if mapping:
        return {name: _untitled(value) for name, value in schema.items()}
    return {key: _untitled(value, mapping=key in _MAPPINGS) for key, value in schema.items()
            if not (key == "title" and isinstance(value, str))}


_MAPPINGS = frozenset({"properties", "$defs", "patternProperties", "dependentSchemas"})


def _distinct(schemas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for schema in schemas:
        if schema not in out:
            out.append(schema)
    return out


def _refs_in(value: Any, defs: dict[str, Any]) -> set[str]:
    """The names of the `$defs` that `value` refers to, directly or through other defs."""
    seen: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in seen:
                    seen.add(name)
                    stack.append(defs[name])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return seen


DOC_BEGIN, DOC_END = "<!-- tools:begin (generated by `make schemas`) -->", "<!-- tools:end -->"


def tools_markdown() -> str:
    """The tool list of docs/agents.md: each tool, its hints and its actions."""
    specs = {spec.name: spec for spec in client_methods()}
    lines: list[str] = []
    for spec in TOOLS:
        hints = [hint for hint, on in (("read-only", spec.read_only),
                                       ("destructive", spec.destructive),
                                       ("idempotent", spec.idempotent)) if on]
        lines += [f"### `{spec.name}`: {spec.title}", "",
                  f"*{', '.join(hints) or 'changes state, not destructive'}.* "
                  f"{spec.description}", "",
                  "| action | method | what it does |", "|---|---|---|"]
        for action, method in spec.actions.items():
            summary = specs[method].summary.replace("|", "\\|")
            lines.append(f"| {f'`{action}`' if action else '(none)'} | `{method}` | {summary} |")
        lines.append("")
    return "\n".join(lines)


def write_docs(path: str) -> None:
    """Rewrite the generated tool list between the markers of the file at `path`."""
    from pathlib import Path

    doc = Path(path)
    text = doc.read_text()
    head, rest = text.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    doc.write_text(f"{head}{DOC_BEGIN}\n\n{tools_markdown()}\n{DOC_END}{tail}")


if __name__ == "__main__":
    import sys

    write_docs(sys.argv[1] if len(sys.argv) > 1 else "docs/agents.md")
