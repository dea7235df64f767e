"""Invariants: typed checks over a stored run (or a trial set), one discriminated union on
`type` (DESIGN.md §7).

`run.reeval` evaluates them against a stored run; snapshots store them and test runs evaluate
them after each replay. Every invariant has a `type` and an optional `description`; each
evaluates to an `InvariantResult`. Everything that can be checked before a run is checked
when the list is parsed (regexes, JSON Schemas, JMESPath and CEL expressions, bounds), so a
bad entry is refused with an error naming its index. To add a check: a model here with its
own `type` literal, added to `Invariant`, and an evaluator in daemon/regression/invariants/.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, field_validator, model_validator

from .base import Model
from .bounds import MAX_INTEGER, Integer, JsonObject, JsonValue
from .patterns import compile_pattern

RunStatusName = Literal["pending", "running", "waiting", "completed", "failed", "cancelled",
                        "interrupted", "budget_exceeded"]
CheckStatus = Literal["passed", "failed", "error", "skipped"]

# Where output checks look (see OutputCheckBase.path).
OUTPUT_PATH = re.compile(r"^(output|node\.[^.\s].*|context\..+)$")
# The numeric keys of a run's metrics (daemon/regression/invariants/metrics.py computes them);
# `status` and `outcome` complete the set.
NUMERIC_METRICS = ("duration_ms", "cost_usd", "tokens_in", "tokens_out", "tokens", "calls",
                   "model_calls", "tool_calls", "turns", "stages", "nodes_visited",
                   "latency_ms", "max_call_latency_ms", "score")
RUN_METRICS = ("status", "outcome", *NUMERIC_METRICS)
# The metrics of one node (over all its attempts and visits): `nodes.<node id>.<metric>`.
NODE_METRICS = ("turns", "model_calls", "tool_calls")
METRIC_PATH = ("A run metric (" + ", ".join(NUMERIC_METRICS) + "), a node's metric "
               "`nodes.<node id>.<metric>` (" + ", ".join(NODE_METRICS) + "; the id as "
               "written, dots and dashes included) or `context.<key>`: a value of the run's "
               "final context, where a number counts as itself, a numeric string as its "
               "number, and a list or object as its length.")


class InvariantBase(Model):
    """What every invariant has besides its `type`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = Field(default=None,
                                    description="What the check means, shown in results.")


def _check_output_path(path: str) -> str:
    if not OUTPUT_PATH.match(path):
        raise ValueError(f"path must be `output`, `node.<node_id>` or `context.<key>`, "
                         f"not {path!r}")
    return path


def node_metric(metric: str) -> tuple[str, str] | None:
    """(node id, metric) of a `nodes.<node id>.<metric>` path, else None. The metric is
    read from the end, so the id may hold any character, dots included."""
    if not metric.startswith("nodes."):
        return None
    node_id, _, name = metric[len("nodes."):].rpartition(".")
    return (node_id, name) if node_id and name in NODE_METRICS else None


def _check_metric(metric: str) -> str:
    if metric in NUMERIC_METRICS or (metric.startswith("context.") and len(metric) > 8) \
            or node_metric(metric) is not None:
        return metric
    raise ValueError(f"metric must be one of {', '.join(NUMERIC_METRICS)}, "
                     f"`nodes.<node id>.<{'|'.join(NODE_METRICS)}>` or `context.<key>`, "
                     f"not {metric!r}")


def _check_regex(pattern: str) -> str:
    compile_pattern(pattern)  # PatternError (a ValueError) says why not
    return pattern


# -- run status and metric bounds ---------------------------------------------------------


class RunStatusInvariant(InvariantBase):
    """The run ended with this status (and outcome). seeds/001 spelling works too:
    `{"type": "run_status", "value": "COMPLETED"}`; statuses are case-insensitive."""

    type: Literal["run_status"]
    value: RunStatusName | list[RunStatusName] = Field(
        default="completed", description="The expected status, or any of several.")
    outcome: Literal["success", "fail"] | None = Field(
        default=None, description="Also require this outcome.")

    @field_validator("value", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.lower()
        if isinstance(value, list):
            return [v.lower() if isinstance(v, str) else v for v in value]
        return value


class _MetricCheck(InvariantBase):
    metric: str = Field(description=METRIC_PATH)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        return _check_metric(metric)


class MinInvariant(_MetricCheck):
    """A metric is at least `value`."""

    type: Literal["min"]
    value: float = Field(description="The smallest value that passes.")


class MaxInvariant(_MetricCheck):
    """A metric is at most `value`."""

    type: Literal["max"]
    value: float = Field(description="The largest value that passes.")


class BetweenInvariant(_MetricCheck):
    """A metric lies in [min, max] (both inclusive)."""

    type: Literal["between"]
    min: float = Field(description="The smallest value that passes.")
    max: float = Field(description="The largest value that passes.")

    @model_validator(mode="after")
    def _ordered(self) -> BetweenInvariant:
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is above max ({self.max:g})")
        return self


# -- seeds/001's named checks -------------------------------------------------------------


class CountAlias(InvariantBase):
    """seeds/001: `min_candidates` / `max_candidates` bound how many candidates the run's
    final context holds under `candidates` (a list, or a number); `min_scenarios` /
    `max_scenarios` likewise under `scenarios`. `key` reads another context key."""

    type: Literal["min_candidates", "max_candidates", "min_scenarios", "max_scenarios"]
    value: int = Field(ge=0, le=MAX_INTEGER, description="The bound on the count (inclusive).")
    key: str | None = Field(default=None, min_length=1,
                            description="The context key to count (default: `candidates` "
                                        "or `scenarios`).")


class TopScoreAlias(InvariantBase):
    """seeds/001: `min_top_i_score` / `max_top_i_score` bound the top candidate's I-score:
    the highest score in the final context's `rankings` (a list whose entries are numbers or
    objects with `i_score` or `score`), else in `scores` (such a list, or an object of
    candidate id -> number or such an object)."""

    type: Literal["min_top_i_score", "max_top_i_score"]
    value: float = Field(description="The bound on the top score (inclusive).")


class HardConstraintAlias(InvariantBase):
    """seeds/001: no hard constraint was violated. Reads the final context's
    `hard_constraint_violations` (a count or a list) when present, else counts, over the
    entries of `evaluations`, the items of their `violations` lists that are hard: `hard:
    true` or a `weight` of 100 or more. `value: false` turns the check off (skipped)."""

    type: Literal["no_hard_constraint_violations"]
    value: bool = Field(default=True, description="true: require no hard violation.")


class DurationAlias(InvariantBase):
    """seeds/001: the run took at most `value` seconds (from start to end)."""

    type: Literal["max_duration_seconds"]
    value: float = Field(gt=0, description="The longest the run may take, in seconds.")


class CoverageAlias(InvariantBase):
    """seeds/001: at least `value` of the candidate/scenario pairs were evaluated. The final
    context's `candidates` and `scenarios` are lists (entries are ids, or objects with an
    `id`; an entry without one counts by its index); `evaluations` is a list of objects
    naming a `candidate` (or `candidate_id`) and a `scenario` (or `scenario_id`). Coverage is
    the share of the (candidate, scenario) pairs that have an evaluation."""

    type: Literal["min_evaluation_coverage"]
    value: float = Field(ge=0, le=1, description="The smallest share that passes, 0..1.")


# -- output checks ------------------------------------------------------------------------


class OutputCheckBase(InvariantBase):
    """Output checks read `path`: `output` (the default) is the full response text of the
    run's last call that has one (a model's text, a tool's stdout); `node.<node_id>` is that
    of the node's last call; `context.<key>` is the value of a key of the run's final
    context. Content checks: a run recorded `metadata_only` has no content to read."""

    path: str = Field(default="output",
                      description="`output`, `node.<node_id>` or `context.<key>`.")

    @field_validator("path")
    @classmethod
    def _known_path(cls, path: str) -> str:
        return _check_output_path(path)


class EqualsInvariant(OutputCheckBase):
    """The output equals `value`: a string compares with the text (after stripping leading
    and trailing whitespace when `strip`); any other JSON value with the text parsed as JSON
    (a context value compares as it is)."""

    type: Literal["equals"]
    value: JsonValue = Field(description="The expected output.")
    strip: bool = Field(default=True, description="Ignore surrounding whitespace.")


class ContainsInvariant(OutputCheckBase):
    """A substring of an output (case-sensitive); non-string context values are searched in
    their JSON text."""

    type: Literal["contains"]
    value: str = Field(min_length=1, description="The text that must occur.")


class IContainsInvariant(OutputCheckBase):
    """A substring of an output, ignoring case (Unicode case folding)."""

    type: Literal["icontains"]
    value: str = Field(min_length=1, description="The text that must occur, in any case.")


class RegexInvariant(OutputCheckBase):
    """A regular expression (RE2 syntax: https://github.com/google/re2/wiki/Syntax) matches
    somewhere in the output."""

    type: Literal["regex"]
    value: str = Field(min_length=1, description="The pattern, in RE2 syntax.")
    ignore_case: bool = False

    @field_validator("value")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        return _check_regex(pattern)


class JsonSchemaInvariant(OutputCheckBase):
    """The output, parsed as JSON (a context value as it is), is valid against a JSON
    Schema (its `$schema` decides the draft; 2020-12 by default)."""

    type: Literal["json_schema"]
    value: JsonObject = Field(description="The JSON Schema.")

    @field_validator("value")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        import jsonschema  # imported when needed: clients load the protocol too

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.path)
            raise ValueError(f"not a valid JSON Schema{f' at {where}' if where else ''}: "
                             f"{exc.message}") from None
        return schema


JmesOp = Literal["eq", "ne", "gt", "gte", "lt", "lte", "contains", "regex", "exists"]


class JmesPathInvariant(OutputCheckBase):
    """A JMESPath query over the output parsed as JSON (a context value as it is), compared
    with `value` by `op`: `eq` `ne` `gt` `gte` `lt` `lte`; `contains` (a substring of a
    string result, or an item of a list result); `regex` (`value` is a pattern, in RE2
    syntax, searched in the string result); `exists` (the query finds something, i.e. not
    null; `value`, when given, says whether it should)."""

    type: Literal["jmespath"]
    expression: str = Field(min_length=1, description="The JMESPath query.")
    op: JmesOp = Field(default="eq", description="How the result compares with `value`.")
    value: JsonValue = Field(default=None, description="What the result is compared with.")

    @field_validator("expression")
    @classmethod
    def _compiles(cls, expression: str) -> str:
        import jmespath
        from jmespath.exceptions import JMESPathError

        try:
            jmespath.compile(expression)
        except JMESPathError as exc:
            raise ValueError(f"not a valid JMESPath expression: {exc}") from None
        return expression

    @model_validator(mode="after")
    def _value_fits_op(self) -> JmesPathInvariant:
        if self.op == "regex":
            if not isinstance(self.value, str):
                raise ValueError("op `regex` needs a string pattern as `value`")
            _check_regex(self.value)
        elif self.op == "exists":
            if self.value is not None and not isinstance(self.value, bool):
                raise ValueError("op `exists` takes no `value`, or true/false")
        elif self.op in ("gt", "gte", "lt", "lte") and (
                isinstance(self.value, bool) or not isinstance(self.value, int | float | str)):
            raise ValueError(f"op `{self.op}` needs a number or a string as `value`")
        elif "value" not in self.model_fields_set:
            raise ValueError(f"op `{self.op}` needs a `value`")
        return self


MAX_NOT_NESTING = 8


class NotInvariant(InvariantBase):
    """Passes when the wrapped output check fails, and fails when it passes; an error or a
    skip stays what it is."""

    type: Literal["not"]
    check: OutputCheck = Field(description="Any output check (another `not` too, "
                                           f"{MAX_NOT_NESTING} at most in a row).")

    @model_validator(mode="after")
    def _bounded_nesting(self) -> NotInvariant:
        # A chain of `not`s is the one recursive shape of the contract: bounded, so that a
        # stored snapshot's invariants stay within what the JSON writer nests.
        nesting, check = 1, self.check
        while isinstance(check, NotInvariant):
            nesting, check = nesting + 1, check.check
        if nesting > MAX_NOT_NESTING:
            raise ValueError(f"more than {MAX_NOT_NESTING} `not` checks in a row")
        return self


OutputCheck = Annotated[EqualsInvariant | ContainsInvariant | IContainsInvariant
                        | RegexInvariant | JsonSchemaInvariant | JmesPathInvariant
                        | NotInvariant, Field(discriminator="type")]


# -- trajectory ---------------------------------------------------------------------------


class NodeVisitedInvariant(InvariantBase):
    """The run executed this node (at least one stage of it)."""

    type: Literal["node_visited"]
    node: str = Field(min_length=1, description="The node id.")


class NodeSequenceInvariant(InvariantBase):
    """The run visited these nodes: `exact` (the visits are exactly these, in this order),
    `in_order` (these occur in this order, others may come between) or `any_order` (each of
    them occurs). Visits are the nodes of the run's stages in order, a node's retries and
    consecutive repeats counting once."""

    type: Literal["node_sequence"]
    nodes: list[str] = Field(min_length=1, description="Node ids.")
    mode: Literal["exact", "in_order", "any_order"] = "in_order"


class ToolCalledInvariant(InvariantBase):
    """Tool calls were made (at least `min_count`, at most `max_count` of them) that match
    every field given: the node that made them, a command line (`command`), the tool the
    model called (`tool`, `server`), its arguments, its exit code and whether it gave the
    model an error. Counts both the tool node's commands and an agent node's tool calls."""

    type: Literal["tool_called"]
    node: str | None = Field(default=None, min_length=1,
                             description="The id of the node (tool or agent) that called.")
    command: str | None = Field(
        default=None, min_length=1,
        description="A substring of the command line: a tool node's argv, or a command "
                    "tool's argv as run, joined by spaces (a `tool_command` counts as its "
                    "shell command).")
    tool: str | None = Field(
        default=None, min_length=1,
        description="The tool an agent node's model called, by the name it used "
                    "(`word_count`, `files__read_text_file`), or `server/tool` for an MCP "
                    "server's tool (`files/read_text_file`, the same as `tool: "
                    "read_text_file` with `server: files`).")
    server: str | None = Field(default=None, min_length=1,
                               description="The MCP server whose tool was called.")
    arguments: JsonObject | None = Field(
        default=None,
        description="A subset of the call's arguments: each key given must be there with an "
                    "equal value; for a string, the value may instead be `{\"$regex\": "
                    "\"...\"}` (RE2, found anywhere) or `{\"$contains\": \"...\"}`.")
    exit_code: Integer | None = Field(default=None,
                                      description="Also require this exit code.")
    is_error: bool | None = Field(
        default=None,
        description="true: only calls that gave the model a tool error (non-zero exit, "
                    "timeout, an MCP error, refused, cut short); false: only those that did "
                    "not.")
    min_count: int | None = Field(
        default=None, ge=0, le=MAX_INTEGER,
        description="The fewest matching calls that pass: 1 by default (0 with "
                    "`max_count: 0`).")
    max_count: int | None = Field(
        default=None, ge=0, le=MAX_INTEGER,
        description="The most matching calls that pass; `0`: never called.")

    @model_validator(mode="after")
    def _something(self) -> ToolCalledInvariant:
        if self.node is None and self.command is None and self.tool is None:
            raise ValueError("give `node`, `command` or `tool`")
        if self.tool and "/" in self.tool:
            server, _, name = self.tool.partition("/")
            if not server or not name:
                raise ValueError(f"`tool` {self.tool!r}: write `server/tool` or the tool's name")
            if self.server is not None and self.server != server:
                raise ValueError(f"`tool` {self.tool!r} names server {server!r}, "
                                 f"`server` says {self.server!r}")
        if self.max_count is not None and self.least() > self.max_count:
            raise ValueError(f"`min_count` ({self.least()}) is above `max_count` "
                             f"({self.max_count})")
        for key, value in (self.arguments or {}).items():
            _check_argument_matcher(key, value)
        return self

    def least(self) -> int:
        """The effective `min_count`: 1 unless given, or 0 when `max_count` is 0."""
        if self.min_count is not None:
            return self.min_count
        return 0 if self.max_count == 0 else 1


ARGUMENT_OPERATORS = ("$regex", "$contains")


def argument_operator(value: Any) -> tuple[str, str] | None:
    """(operator, operand) when an `arguments` value is `{"$regex": …}` or
    `{"$contains": …}`, else None (the value is compared for equality)."""
    if isinstance(value, dict) and len(value) == 1:
        (name, operand), = value.items()
        if name in ARGUMENT_OPERATORS:
            return name, operand
    return None


def _check_argument_matcher(key: str, value: Any) -> None:
    operator = argument_operator(value)
    if operator is None:
        if isinstance(value, dict) and any(str(k).startswith("$") for k in value):
            raise ValueError(f"arguments.{key}: an operator object takes one of "
                             f"{', '.join(ARGUMENT_OPERATORS)}, alone")
        return
    name, operand = operator
    if not isinstance(operand, str):
        raise ValueError(f"arguments.{key}: {name} takes a string")
    if name == "$regex":
        try:
            compile_pattern(operand)
        except ValueError as exc:
            raise ValueError(f"arguments.{key}: {exc}") from None


# -- budget -------------------------------------------------------------------------------


class MaxCostInvariant(InvariantBase):
    """The run cost at most `value` US dollars (the sum over its calls)."""

    type: Literal["max_cost_usd"]
    value: float = Field(ge=0, description="The most the run may have cost, in USD.")


class MaxTokensInvariant(InvariantBase):
    """The run used at most `value` tokens: input + output (`which: total`), or one side."""

    type: Literal["max_tokens"]
    value: int = Field(ge=0, le=MAX_INTEGER,
                       description="The most tokens the run may have used.")
    which: Literal["total", "input", "output"] = "total"


class MaxLatencyInvariant(InvariantBase):
    """A latency of the run is at most `value` ms: `duration_ms` (start to end, the
    default), `latency_ms` (the sum of its calls' latencies) or `max_call_latency_ms` (its
    slowest call)."""

    type: Literal["max_latency_ms"]
    value: float = Field(ge=0, description="The most milliseconds.")
    metric: Literal["duration_ms", "latency_ms", "max_call_latency_ms"] = "duration_ms"


# -- judge, across trials, expr -----------------------------------------------------------


class JudgeInvariant(InvariantBase):
    """An LLM judges the output against a rubric, `k` times; the check passes when a strict
    majority of the votes says PASS (a vote that says neither counts as FAIL). The model's
    calls are recorded (node `$judge`, attempt = vote number) and replay like any call; with
    the scripted provider, script its answers in the run's settings, `providers: {"scripted":
    {"responses": {"$judge": ["PASS", "FAIL", ...]}}}` (one per vote). A content check."""

    type: Literal["judge"]
    rubric: str = Field(min_length=1, description="What a passing output does.")
    k: int = Field(default=1, ge=1, le=25, description="Votes; odd numbers avoid ties.")
    path: str = Field(default="output", description="What is judged (as output checks).")
    provider: str | None = Field(default=None, description="Default: the run's default "
                                                           "provider.")
    model: str | None = Field(default=None, description="Default: the provider's model.")

    @field_validator("path")
    @classmethod
    def _known_path(cls, path: str) -> str:
        return _check_output_path(path)


class PassRateInvariant(InvariantBase):
    """Across trials: the share of passing trials clears `threshold` with confidence: the
    Wilson score lower bound at `confidence` must be at least `threshold`. A trial passes
    when none of the per-run checks failed or errored on it (with no per-run checks, when
    its run completed with outcome success)."""

    type: Literal["pass_rate"]
    threshold: float = Field(ge=0, le=1, description="The smallest acceptable pass rate.")
    confidence: float = Field(default=0.95, gt=0, lt=1,
                              description="Of the one-sided lower bound.")


class PassAtKInvariant(InvariantBase):
    """Across trials: pass@k, the chance that at least one of k trials passes, estimated
    from n trials with c passes as 1 - C(n-c, k) / C(n, k), is at least `threshold` (with
    n = k: 1 when any trial passed). Needs at least k trials."""

    type: Literal["pass_at_k"]
    k: int = Field(ge=1, le=MAX_INTEGER, description="Trials per attempt.")
    threshold: float = Field(default=0.9, ge=0, le=1)


class ExprInvariant(InvariantBase):
    """A CEL expression (cel-python; never Python eval) that must be true, over `metrics`
    (the run's metrics by name), `context` (its final context), `status`, `outcome` and
    `nodes` (the ids of the nodes it visited, in order). Example: `metrics.cost_usd < 0.5 &&
    size(context.candidates) >= 3`."""

    type: Literal["expr"]
    expression: str = Field(min_length=1, description="The CEL expression.")

    @field_validator("expression")
    @classmethod
    def _compiles(cls, expression: str) -> str:
        import celpy

        try:
            celpy.Environment().compile(expression)
        except Exception as exc:  # celpy raises its CELParseError or lark errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"not a valid CEL expression: {first}") from None
        return expression


Invariant = Annotated[
    RunStatusInvariant | MinInvariant | MaxInvariant | BetweenInvariant | CountAlias
    | TopScoreAlias | HardConstraintAlias | DurationAlias | CoverageAlias | EqualsInvariant
    | ContainsInvariant | IContainsInvariant | RegexInvariant | JsonSchemaInvariant
    | JmesPathInvariant | NotInvariant | NodeVisitedInvariant | NodeSequenceInvariant
    | ToolCalledInvariant | MaxCostInvariant | MaxTokensInvariant | MaxLatencyInvariant
    | JudgeInvariant | PassRateInvariant | PassAtKInvariant | ExprInvariant,
    Field(discriminator="type")]

# Content checks read what a run said; a metadata-only recording does not keep it.
CONTENT_CHECKS = frozenset({"equals", "contains", "icontains", "regex", "json_schema",
                            "jmespath", "not", "judge"})
# Checks over a trial set's runs, not one run.
ACROSS_TRIALS = frozenset({"pass_rate", "pass_at_k"})

invariant_list = TypeAdapter(list[Invariant], config=ConfigDict(defer_build=True))


class InvariantResult(Model):
    """The verdict of one invariant on one run (or, across trials, on a trial set)."""

    model_config = ConfigDict(extra="forbid")

    type: str
    description: str | None = None
    status: CheckStatus = Field(
        description="`error`: the check could not be evaluated (missing content, say); "
                    "`skipped`: not evaluated on purpose (`allow_partial`, or an "
                    "across-trials check on one run).")
    expected: Any = None
    actual: Any = None
    message: str
