"""The fuzz suite's parts: params generated from schemas/ (hypothesis-jsonschema) and
mutated, what makes a generated request cheap and harmless, mutations of framed bytes, and
the checks every reply must pass."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from .support import REPO

INTERNAL_ERROR = -32603
# Ending the session would end the fuzz: these two run once, at the end, instead.
SESSION_ENDERS = {
    "shutdown": "refuses every later request but exit: the fuzz would test nothing after it",
    "exit": "ends the daemon process",
}
# JSON a client may send that sits on the edges of what the models bound.
EDGES: list[Any] = [
    2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30,
    -1, 0, 1.5, 1e308, -1e308, 5e-324, -0.0, True, False, None, "", "\x00", " ", "*", "-1",
    "../" * 20 + "etc/passwd", "${x}", "$x", "x" * 100_000, [], {}, [[]], {"": {}},
]


def client_methods() -> list[str]:
    """Every method a client may call, as schemas/openrpc.json lists them."""
    document = json.loads((REPO / "schemas" / "openrpc.json").read_text())
    return [m["name"] for m in document["methods"] if "x-direction" not in m]


def _inline(node: Any, defs: dict[str, Any], path: tuple[str, ...] = ()) -> Any:
    """`node` with its $refs inlined. hypothesis-jsonschema cannot follow a recursive ref:
    the one recursive shape (a `not` check inside a `not`) is cut to "any object"."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in path:
                return {"type": "object"}
            return _inline(defs[name], defs, (*path, name))
        return {key: _inline(value, defs, path) for key, value in node.items()
                if not key.startswith("x-")}  # our own keywords mean nothing to it
    if isinstance(node, list):
        return [_inline(item, defs, path) for item in node]
    return node


@cache
def params_schema(method: str) -> dict[str, Any]:
    """The method's params schema in schemas/, its refs inlined."""
    name = method.replace("$/", "").replace("/", ".")
    schema = json.loads((REPO / "schemas" / "methods" / f"{name}.json").read_text())
    return _inline(schema["properties"]["params"], schema["$defs"])


def param_names(method: str) -> set[str]:
    """The fields of the method's params."""
    return set(params_schema(method).get("properties", {}))


@cache
def valid_params(method: str) -> st.SearchStrategy[Any]:
    """Params the method's published schema accepts."""
    return from_schema(params_schema(method))


def nested(depth: int) -> Any:
    """A list nested `depth` levels."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)
nasty = st.one_of(st.sampled_from(EDGES), json_values,
                  st.sampled_from([63, 64, 65, 200, 300]).map(nested))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in `value` a mutation may replace."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


# Hypothesis tries the first of a sampled list most: the values past 64 bits come first.
INTEGER_EDGES = [2**63, 2**64 - 1, -(2**63) - 1, 2**53, 10**30, 2**63 - 1, -(2**63), 2**53 - 1,
                 -(2**53), 2**31, -(2**31) - 1, -1, 0]


@st.composite
def mutated(draw: st.DrawFn, params: Any) -> Any:
    """`params` with one thing changed: an integer on an edge (2^53, 2^63, 2^64 - 1, ...), an
    object or list nested past the bound, a field dropped, added or replaced by an edge value
    anywhere, or the whole params replaced."""
    params = copy.deepcopy(params)
    how = draw(st.sampled_from(["integers", "integers", "deep", "deep", "replace", "drop",
                                "add", "whole"]), label="mutation")
    if how == "whole" or not isinstance(params, dict) or not params:
        return draw(nasty) if how == "whole" else {"unknown_field": draw(nasty)}
    if how == "add":
        params[draw(st.text(max_size=12))] = draw(nasty)
        return params
    if how == "drop":
        del params[draw(st.sampled_from(sorted(params)))]
        return params
    places = _paths(params)[1:]
    if how == "integers":
        chosen = [p for p in places if type(_at(params, p)) is int]
        values = st.sampled_from(INTEGER_EDGES)
    elif how == "deep":
        chosen = [p for p in places if isinstance(_at(params, p), dict | list)]
        values = st.sampled_from([300, 254, 65, 64, 253, 200]).map(nested)
    else:
        chosen, values = [draw(st.sampled_from(places))] if places else [], nasty
    if chosen:  # one place: two bad values would hide one behind the other's error
        *parents, last = draw(st.sampled_from(chosen))
        _at(params, tuple(parents))[last] = draw(values)
    return params


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def neutralized(method: str, params: Any, pipeline_file: str) -> Any:
    """`params` made cheap and harmless, each for a reason:
    - `wait` is false and `trials` at most 2: a run, replay or test run answers at once
      (the fuzz cancels it right after), not after 100,000 trials;
    - a pipeline `path` is the seed's pipeline file: what reading a FIFO, /dev/zero or a
      huge file does is h13-limits' finding (pipeline file reading), not this suite's;
    - providers other than `scripted` talk to a closed local port: no call leaves the
      machine, whatever base URL or key was generated."""
    if not isinstance(params, dict):
        return params
    if params.get("wait") is True:
        params["wait"] = False
    if type(params.get("trials")) is int and params["trials"] > 2:
        params["trials"] = 2
    for holder in (params, params.get("replay"), params.get("settings"),
                   params.get("overrides")):
        if not isinstance(holder, dict):
            continue
        if isinstance(holder.get("pipeline"), dict) and "path" in holder["pipeline"]:
            holder["pipeline"]["path"] = pipeline_file
        providers = holder.get("providers")
        if isinstance(providers, dict):
            for name, provider in providers.items():
                if name != "scripted" and isinstance(provider, dict):
                    provider["base_url"] = "http://127.0.0.1:9"
    return params


def problems(message: Any, allowed_ids: set[Any]) -> list[str]:
    """What is wrong with one message from the daemon: a response (or batch of them) must be
    well formed JSON-RPC, answer an id in `allowed_ids` (or null), and not be -32603; a
    notification must name its method."""
    if isinstance(message, list):
        if not message:
            return ["an empty batch reply"]
        return [p for item in message for p in problems(item, allowed_ids)]
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return [f"not a JSON-RPC 2.0 message: {message!r:.300}"]
    if "method" in message and "id" not in message:
        return [] if isinstance(message["method"], str) else [f"bad notification {message}"]
    found = []
    if set(message) - {"jsonrpc", "id", "result", "error"} or (
            ("result" in message) == ("error" in message)):
        found.append(f"not a response: {message!r:.300}")
    if message.get("id") is not None and message.get("id") not in allowed_ids:
        found.append(f"reply to an id never sent: {message!r:.300}")
    error = message.get("error")
    if error is not None:
        if not (isinstance(error, dict) and type(error.get("code")) is int
                and isinstance(error.get("message"), str)):
            found.append(f"malformed error: {message!r:.300}")
        elif error["code"] == INTERNAL_ERROR:
            found.append(f"internal error: {message!r:.300}")
    return found


# -- wire mutations ------------------------------------------------------------------------

_DECLARED = re.compile(rb"(?i)content-length[ \t]*:[ \t]*([0-9]+)")


def declared_lengths(data: bytes) -> list[int]:
    """Every Content-Length `data` declares (digits only, as the decoder reads them)."""
    return [int(m.group(1)) for m in _DECLARED.finditer(data)]


def _flip(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for position in positions:
        out[position % len(out)] ^= 1 << (position % 8)
    return bytes(out)


@st.composite
def wire_garbage(draw: st.DrawFn, framing: str, frames: list[bytes]) -> bytes:
    """Framed requests (`frames`), mutated: truncated, bits flipped, bytes inserted, the
    length header replaced (huge, negative, many digits, not a number), headers added."""
    data = b"".join(draw(st.lists(st.sampled_from(frames), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["truncate", "flip", "insert", "length", "header", "none"]))
        if how == "truncate":
            data = data[:draw(st.integers(0, len(data)))]
        elif how == "flip" and data:
            data = _flip(data, draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=4)))
        elif how == "insert":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(max_size=40)) + data[at:]
        elif how == "length":
            length = draw(st.sampled_from([
                b"-5", b"abc", b"1.5", b"", b"0x10", b"99999999999999999999", b"0" * 4000 + b"7",
                b"18446744073709551616", b"70000", b"0", b"5", b" 12 "]))
            if framing == "content-length":
                at = data.lower().find(b"content-length:")
                end = data.find(b"\r\n", at)
                if at >= 0:
                    data = data[:at + 15] + length + (data[end:] if end >= 0 else b"")
            else:
                data = length + data
        elif how == "header":
            extra = draw(st.sampled_from([b"X-Foo: bar\r\n", b"\x00\xff\r\n", b"garbage\r\n",
                                          b"Content-Length: 3\r\n", b": \r\n"]))
            data = extra + data
    return data


# -- bounds, probed --------------------------------------------------------------------------


def _past(schema: dict[str, Any]) -> list[Any]:
    """Values just past and far past what an integer or number schema allows."""
    values: list[Any] = []
    if schema.get("type") == "integer":
        values = [2**63, 2**64 - 1, -(2**63) - 1]
        values += [schema["maximum"] + 1] if "maximum" in schema else []
        values += [schema["minimum"] - 1] if "minimum" in schema else []
    elif schema.get("type") == "number":
        values = [1e308, -1e308]
        values += [schema["maximum"] * 2 + 1] if "maximum" in schema else []
    return values


def probes(method: str) -> list[tuple[tuple[str, ...], Any]]:
    """(path, value): every integer and number of the method's params (inside objects, not
    lists) past its bounds, and every free-form object nested past the depth bound and past
    what orjson writes (254)."""
    found: list[tuple[tuple[str, ...], Any]] = []
    pending: list[tuple[dict[str, Any], tuple[str, ...]]] = [(params_schema(method), ())]
    while pending:
        schema, path = pending.pop()
        for branch in schema.get("anyOf", []):
            pending.append((branch, path))
        if path and schema.get("type") == "object" and "properties" not in schema:
            found += [(path, {"x": nested(levels)}) for levels in (64, 254, 300)]
        for name, inner in schema.get("properties", {}).items():
            pending.append((inner, (*path, name)))
        found += [(path, value) for value in _past(schema) if path]
    return found


def with_value(params: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `params` with `value` at `path` (objects made on the way)."""
    params = copy.deepcopy(params)
    holder = params
    for step in path[:-1]:
        if not isinstance(holder.get(step), dict):
            holder[step] = {}
        holder = holder[step]
    holder[path[-1]] = value
    return params
