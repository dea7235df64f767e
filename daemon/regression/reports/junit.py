"""A test run as JUnit XML: one testsuite per test run, one testcase per snapshot.

A failed snapshot is a `<failure>` carrying its failed invariants' messages; an errored one
an `<error>`; a skipped one, and one cut off by the budget, a `<skipped>` with the reason
(JUnit has no budget status: the message and the `status` property say `budget_exceeded`).
The test run's options and costs are `<properties>`. ElementTree escapes every value.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

MEDIA_TYPE = "application/xml"
# Characters XML 1.0 cannot hold at all (ElementTree would write them, parsers refuse them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(value: Any) -> str:
    """Text fit for XML: what a run said may hold control characters."""
    return _NOT_XML.sub("\ufffd", str(value))


def _seconds(ms: float | None) -> str:
    return f"{(ms or 0) / 1000:.3f}"


def _properties(parent: ET.Element, values: dict[str, Any]) -> None:
    properties = ET.SubElement(parent, "properties")
    for name, value in values.items():
        if value is not None:
            ET.SubElement(properties, "property", name=name, value=_x(value))


def _problems(result: dict[str, Any], statuses: tuple[str, ...]) -> list[str]:
    """`type (description): message` of each invariant in one of `statuses`."""
    lines = []
    for check in result["invariants"]:
        if check["status"] in statuses:
            label = check["type"] + (f" ({check['description']})" if check.get("description")
                                     else "")
            lines.append(f"{label}: {check['message']}")
    return lines


def _testcase(suite: ET.Element, result: dict[str, Any]) -> None:
    case = ET.SubElement(suite, "testcase", name=_x(f"{result['name']} v{result['version']}"),
                         classname=_x(result["name"]), time=_seconds(result.get("duration_ms")))
    _properties(case, {"snapshot_id": result["snapshot_id"], "status": result["status"],
                       "cost_usd": f"{result['cost_usd']:.6f}",
                       "run_ids": " ".join(result["run_ids"]) or None,
                       "trial_set_id": result.get("trial_set_id")})
    status, message = result["status"], result.get("message") or ""
    if status == "failed":
        failed = _problems(result, ("failed",))
        node = ET.SubElement(case, "failure", message=_x(message or "; ".join(failed)),
                             type="invariant")
        node.text = _x("\n".join(failed) or message)
    elif status == "error":
        errored = _problems(result, ("error",))
        node = ET.SubElement(case, "error", message=_x(message or "; ".join(errored)),
                             type="error")
        node.text = _x("\n".join(errored) or message)
    elif status == "budget_exceeded":
        ET.SubElement(case, "skipped", message=_x(f"budget_exceeded: {message}".rstrip(": ")))
    elif status in ("skipped", "pending", "running"):
        ET.SubElement(case, "skipped", message=_x(message or status))
    deltas = result.get("metrics_delta") or {}
    if deltas:
        out = ET.SubElement(case, "system-out")
        out.text = _x("\n".join(f"{name}: baseline {d['baseline']}, replay {d['replay']}, "
                             f"delta {d['delta']}" for name, d in deltas.items()))


def render(test_run: dict[str, Any]) -> str:
    """The JUnit XML document of a test run (TestRunSummary's fields)."""
    results = test_run["snapshots"]
    count = {status: sum(r["status"] == status for r in results)
             for status in ("failed", "error")}
    skipped = sum(r["status"] in ("skipped", "budget_exceeded", "pending", "running")
                  for r in results)
    total_ms = sum(r.get("duration_ms") or 0 for r in results)
    counts = {"tests": str(len(results)), "failures": str(count["failed"]),
              "errors": str(count["error"]), "skipped": str(skipped),
              "time": _seconds(total_ms)}
    root = ET.Element("testsuites", name="ostinato", **counts)
    suite = ET.SubElement(root, "testsuite",
                          name=_x(f"ostinato test run {test_run['test_run_id']}"), **counts,
                          timestamp=test_run["started_at"])
    _properties(suite, {
        "test_run_id": test_run["test_run_id"], "status": test_run["status"],
        "mode": test_run["mode"], "trials": test_run["trials"],
        "total_cost_usd": f"{test_run['total_cost_usd']:.6f}",
        "cost_limit_usd": (None if test_run.get("cost_limit_usd") is None
                           else f"{test_run['cost_limit_usd']:.6f}"),
        "message": test_run.get("message")})
    for result in results:
        _testcase(suite, result)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
