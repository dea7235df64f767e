"""Output checks: `equals`, `contains`, `icontains`, `regex`, `json_schema`, `jmespath` and
`not` around any of them. Each reads one output (model.output: the run's last answer, a
node's, or a context value)."""

from __future__ import annotations

from typing import Any

import orjson

from ostinato.protocol.invariants import (
    ContainsInvariant,
    EqualsInvariant,
    IContainsInvariant,
    JmesPathInvariant,
    JsonSchemaInvariant,
    NotInvariant,
    RegexInvariant,
)
from ostinato.protocol.patterns import compile_pattern

from .evaluate import EVALUATORS, evaluator
from .model import StoredRun, Unavailable, excerpt, output, output_text, result, to_json


def _short(value: Any) -> Any:
    """A value as `actual` shows it: long texts cut, other values as they are."""
    return excerpt(value) if isinstance(value, str) else value


@evaluator("equals")
def equals(invariant: EqualsInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """A text equal to a string, or a JSON value equal to any other value."""
    where, value = output(invariant.path, run)
    expected = invariant.value
    if isinstance(expected, str):
        text = value if isinstance(value, str) else to_json(value)
        ok = (text.strip() == expected.strip()) if invariant.strip else text == expected
        actual: Any = text
    else:
        actual = _as_json(value)
        ok = (actual == expected and type(actual) is type(expected)) or (
            _number(actual) and _number(expected) and actual == expected)
    return result(bool(ok), expected, _short(actual),
                  f"{where} {'equals' if ok else 'does not equal'} the expected value")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_json(value: Any) -> Any:
    """A text parsed as JSON when it is JSON; other values (and other texts) as they are."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


@evaluator("contains")
def contains(invariant: ContainsInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """A substring, case-sensitive."""
    where, text = output_text(invariant.path, run)
    found = invariant.value in text
    return result(found, invariant.value, excerpt(text, invariant.value),
                  f"{where} {'contains' if found else 'does not contain'} {invariant.value!r}")


@evaluator("icontains")
def icontains(invariant: IContainsInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """A substring, any case."""
    where, text = output_text(invariant.path, run)
    at = text.casefold().find(invariant.value.casefold())
    return result(at >= 0, invariant.value,
                  excerpt(text, text[at:at + len(invariant.value)] if at >= 0 else ""),
                  f"{where} {'contains' if at >= 0 else 'does not contain'} "
                  f"{invariant.value!r} (ignoring case)")


@evaluator("regex")
def regex(invariant: RegexInvariant, run: StoredRun, _judge: Any) -> dict[str, Any]:
    """A pattern found anywhere in the text (RE2, so in linear time whatever the pattern)."""
    where, text = output_text(invariant.path, run)
    match = compile_pattern(invariant.value, invariant.ignore_case).search(text)
    return result(match is not None, invariant.value,
                  excerpt(text, match.group(0) if match else ""),
                  f"{where} " + (f"matches /{invariant.value}/ at {match.start()}" if match
                                 else f"does not match /{invariant.value}/"))


def _json_of(path: str, run: StoredRun) -> tuple[str, Any, str | None]:
    """(where, the output as JSON, why it is not JSON or None)."""
    where, value = output(path, run)
    if not isinstance(value, str):
        return where, value, None
    try:
        return where, orjson.loads(value), None
    except orjson.JSONDecodeError as exc:
        return where, None, f"{where} is not JSON: {exc}"


@evaluator("json_schema")
def json_schema(invariant: JsonSchemaInvariant, run: StoredRun,
                _judge: Any) -> dict[str, Any]:
    """The output, as JSON, valid against the schema."""
    where, data, not_json = _json_of(invariant.path, run)
    if not_json:
        return result(False, invariant.value, None, not_json)
    import jsonschema  # imported by the first check that needs it: the daemon starts faster

    validator = jsonschema.validators.validator_for(invariant.value)(invariant.value)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return result(True, invariant.value, _short(data), f"{where} is valid")
    first = errors[0]
    at = "/".join(str(p) for p in first.absolute_path) or "(root)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return result(False, invariant.value, _short(data),
                  f"{where} is not valid: at {at}: {first.message}{more}")


_COMPARE = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
            "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


@evaluator("jmespath")
def jmespath_check(invariant: JmesPathInvariant, run: StoredRun,
                   _judge: Any) -> dict[str, Any]:
    """A JMESPath query's result compared by `op`."""
    where, data, not_json = _json_of(invariant.path, run)
    expected = {"expression": invariant.expression, "op": invariant.op,
                "value": invariant.value}
    if not_json:
        return result(False, expected, None, not_json)
    import jmespath  # imported by the first check that needs it: the daemon starts faster
    from jmespath.exceptions import JMESPathError

    try:
        found = jmespath.search(invariant.expression, data)
    except JMESPathError as exc:  # a function given the wrong type of value, say
        raise Unavailable(f"{invariant.expression!r} on {where} failed: {exc}") from None
    ok, why = _jmes_compare(invariant, found)
    said = f"{invariant.expression!r} on {where} gave {_shown(found)}"
    return result(ok, expected, _short(found), said + (f": {why}" if why else ""))


def _jmes_compare(invariant: JmesPathInvariant, found: Any) -> tuple[bool, str]:
    """(passed, why not when it cannot compare)."""
    op, value = invariant.op, invariant.value
    if op == "exists":
        return (found is not None) == (True if value is None else value), ""
    if op == "contains":
        if isinstance(found, str):
            return isinstance(value, str) and value in found, ""
        if isinstance(found, list):
            return value in found, ""
        return False, "`contains` needs a string or a list"
    if op == "regex":
        if not isinstance(found, str):
            return False, "`regex` needs a string"
        return compile_pattern(value).search(found) is not None, ""
    if op in ("eq", "ne"):
        return _COMPARE[op](found, value), ""
    if isinstance(found, bool) or not (
            (_number(found) and _number(value))
            or (isinstance(found, str) and isinstance(value, str))):
        return False, f"cannot compare {_shown(found)} with {_shown(value)} by `{op}`"
    return _COMPARE[op](found, value), ""


def _shown(value: Any) -> str:
    text = to_json(value)
    return text if len(text) <= 80 else text[:80] + "…"


@evaluator("not")
async def negate(invariant: NotInvariant, run: StoredRun, judge: Any) -> dict[str, Any]:
    """The wrapped check's result, passed and failed swapped."""
    inner = invariant.check
    answer = EVALUATORS[inner.type](inner, run, judge)
    if not isinstance(answer, dict):
        answer = await answer
    flipped = {"passed": "failed", "failed": "passed"}.get(answer["status"], answer["status"])
    return {**answer, "status": flipped, "expected": {"not": answer["expected"]},
            "message": f"not ({answer['message']})"}
