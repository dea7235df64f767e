"""Bounds on what a client may send (docs/protocol.md, "Bounds"): one annotated type for every
free-form JSON field and bounded integer types, so that nothing out of range reaches the
engine or the store: such params are -32602 naming the field.

- Free-form JSON (inputs, settings, provider settings, pricing, capabilities, invariant
  values) nests at most MAX_JSON_DEPTH levels: orjson writes 254 at most, redaction and
  stored documents add a few around it, and no pipeline needs more.
- Its integers fit in 64 signed bits, as sqlite and CEL hold them.
- Counts, limits and sequence numbers are at most MAX_INTEGER (2^53 - 1): exact in every
  JSON reader (JavaScript's numbers are doubles) and far below sqlite's 2^63 - 1.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

MAX_JSON_DEPTH = 64
MAX_INTEGER = 2**53 - 1
JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**63 - 1


def check_json(value: Any) -> Any:
    """`value` itself, if it nests at most MAX_JSON_DEPTH levels (a scalar is 0, `{}` is 1)
    and its integers fit in 64 signed bits; ValueError (naming neither value) otherwise.
    Walked without recursion, however deep the value."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif type(item) is int and not JSON_INT_MIN <= item <= JSON_INT_MAX:
            raise ValueError("an integer outside the 64-bit signed range")
    return value


_FREE_FORM = {"x-maxDepth": MAX_JSON_DEPTH}

# Any JSON value, and a JSON object: the fields a client fills with its own data.
JsonValue = Annotated[Any, AfterValidator(check_json), Field(json_schema_extra=_FREE_FORM)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json),
                       Field(json_schema_extra=_FREE_FORM)]

# Integers of the protocol itself: counts, limits, offsets, sequence numbers, ids.
Integer = Annotated[int, Field(ge=-MAX_INTEGER, le=MAX_INTEGER)]
Count = Annotated[int, Field(ge=0, le=MAX_INTEGER)]
