"""Outcomes chosen by the model: the structured verdict an LLM node is asked for when its
outcome matters (docs/pipelines.md, "Outcomes and routes chosen by the model").

A node's outcome matters when an outgoing edge has a condition or a label, when it is a goal
gate, has a retry target or its own `max_retries`, or when it says `verdict=true`
(`verdict=false` never asks). Its request then carries an output schema, which each
provider turns into its native mechanism (JSON-schema output or a forced tool call), and a
system note that names the routes. The answer is checked against the schema: a verdict
that breaks it fails the attempt with a reason that says what was wrong, and the node's
retry policy decides what happens next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from .context_keys import declared_keys
from .graph import Graph, Node
from .outcome import Outcome, Status

NAME = "node_outcome"
STATUSES = ("success", "partial_success", "retry", "fail")
_SHOWN_ERRORS = 3


@dataclass(frozen=True)
class AnswerSpec:
    """A structured answer a node asks its model for: the schema, and the system note
    that explains it (a verdict, a fan-in's choice, a manager's decision)."""

    name: str
    description: str
    schema: dict[str, Any]
    instructions: str

    def output(self) -> dict[str, Any]:
        """The request's output spec: name, description and schema."""
        return {"name": self.name, "description": self.description, "schema": self.schema}

    @cached_property
    def validator(self) -> Any:
        """A JSON Schema validator of the schema."""
        import jsonschema  # the first structured answer pays for the import; others never

        return jsonschema.Draft202012Validator(self.schema)

    def problems(self, instance: Mapping[str, Any] | None, error: str | None) -> str:
        """What is wrong with an answer ("" when nothing is), for a failure reason."""
        if instance is None:
            return f"the model gave no {self.name}: {error or 'no structured answer'}"
        found = sorted(self.validator.iter_errors(instance),
                       key=lambda e: [str(part) for part in e.absolute_path])
        lines = [f"{'.'.join(str(p) for p in e.absolute_path) or '(answer)'}: {e.message}"
                 for e in found]
        more = len(lines) - _SHOWN_ERRORS
        return "; ".join(lines[:_SHOWN_ERRORS]) + (f"; and {more} more" if more > 0 else "")


def strict_object(properties: dict[str, Any]) -> dict[str, Any]:
    """An object schema as OpenAI's strict mode wants it: every property required, no
    others."""
    return {"type": "object", "additionalProperties": False, "required": list(properties),
            "properties": properties}


def wants_verdict(graph: Graph, node: Node) -> bool:
    """Whether the node's outcome matters (see the module docstring)."""
    return graph.per_node("verdict_wanted", node, _matters)


def _matters(graph: Graph, node: Node) -> bool:
    explicit = node.get("verdict")
    if isinstance(explicit, bool):
        return explicit
    if node.get("goal_gate") is True or node.get("retry_target") \
            or node.get("fallback_retry_target"):
        return True
    retries = node.get("max_retries")
    if isinstance(retries, int) and retries > 0:
        return True
    return any(edge.condition or edge.label for edge in graph.outgoing(node.id))


def verdict_spec(graph: Graph, node: Node) -> AnswerSpec:
    """The node's verdict schema and instructions (computed once per graph and node)."""
    return graph.per_node("verdict_specs", node, _build)


def _build(graph: Graph, node: Node) -> AnswerSpec:
    edges = graph.outgoing(node.id)
    labels = list(dict.fromkeys(e.label for e in edges if e.label))
    targets = list(dict.fromkeys(e.target for e in edges))
    keys = declared_keys(node)
    ids: dict[str, Any] = {"type": "string"}
    if targets:
        ids["enum"] = targets
    key: dict[str, Any] = {"type": "string"}
    if keys:
        key["enum"] = keys
    text = {"type": "string"}
    schema = strict_object({
        "response": {**text, "description": "Your complete answer to the task."},
        "status": {"type": "string", "enum": list(STATUSES)},
        "preferred_label": {"type": "string", "enum": [*labels, ""]},
        "suggested_next_ids": {"type": "array", "items": ids},
        "context_updates": {"type": "array", "items": strict_object({
            "key": key, "value": {"anyOf": [{"type": "string"}, {"type": "number"},
                                            {"type": "boolean"}, {"type": "null"}]}})},
        "notes": text,
        "failure_reason": text,
    })
    return AnswerSpec(NAME, "Report your answer and the outcome of this step.", schema,
                      _instructions(graph, node, labels, targets, keys))


def _instructions(graph: Graph, node: Node, labels: list[str], targets: list[str],
                  keys: list[str]) -> str:
    lines = [f"Report the outcome of this step with the {NAME} structure:",
             "- response: your complete answer to the task;",
             "- status: success when the task is done well, fail when it cannot be done or "
             "what you reviewed is not acceptable, retry to be asked again, partial_success "
             "when it is done with caveats;",
             "- failure_reason: why, when the status is fail or retry;",
             "- notes: a one-line summary;"]
    if labels:
        lines.append("- preferred_label: the route to take next, one of "
                     + ", ".join(f'"{label}"' for label in labels) + ', or "";')
    else:
        lines.append('- preferred_label: "";')
    lines.append("- suggested_next_ids: the steps to go to next, from "
                 + (", ".join(targets) if targets else "none") + " (or none);")
    lines.append("- context_updates: facts to remember for later steps, as key/value pairs"
                 + (f" with keys from {', '.join(keys)}" if keys else "") + ".")
    routes = [_route(edge.target, edge.label, edge.condition)
              for edge in graph.outgoing(node.id)]
    if routes:
        lines += ["Routes from this step:", *routes]
    return "\n".join(lines)


def _route(target: str, label: str, condition: str) -> str:
    parts = [f"- to {target}"]
    if label:
        parts.append(f'labelled "{label}"')
    if condition:
        parts.append(f"when {condition}")
    return " ".join(parts)


def parse_verdict(spec: AnswerSpec, structured: Mapping[str, Any] | None,
                  error: str | None) -> Outcome:
    """The outcome a verdict reports; an invalid or missing one is a FAIL (retried by the
    node's policy) whose reason says what was wrong. `answer` holds the response text."""
    problems = spec.problems(structured, error)
    if problems or structured is None:
        return Outcome(Status.FAIL, failure_reason=f"invalid verdict: {problems}")
    status = Status(structured["status"])
    reason = str(structured["failure_reason"])
    if not status.succeeded and not reason:
        reason = f"the model reported {status.value}"
    return Outcome(status, preferred_label=str(structured["preferred_label"]),
                   suggested_next_ids=list(structured["suggested_next_ids"]),
                   context_updates={pair["key"]: pair["value"]
                                    for pair in structured["context_updates"]},
                   notes=str(structured["notes"]),
                   failure_reason="" if status.succeeded else reason,
                   answer=str(structured["response"]))
