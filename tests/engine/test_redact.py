"""Redaction of random JSON documents (hypothesis): through every public entry point the
result is still JSON, holds no secret (in strings, keys or numbers, raw or JSON-escaped),
and every value under a secret-looking name is gone; however deep the document."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ostinato.daemon.engine.redact import (
    REDACTED,
    Redactor,
    is_secret_name,
    redact_settings,
    run_secrets,
)
from ostinato.daemon.engine.rundir import ARTIFACT_THRESHOLD, RunDirectory, dump_json

# Reproducible in CI: the same examples on every run, and no deadline on a busy machine.
PROPERTY = settings(max_examples=250, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NUMBER_CHARACTERS = set("0123456789+-.eE")
SECRET_NAMES = ["password", "api_key", "apiKey", "access_token", "authToken", "secret",
                "db.credentials", "Authorization", "cookie"]
HARMLESS_NAMES = ["max_tokens", "api_key_env", "keyboard", "topic", "n", ""]
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson can write

# A secret that overlaps the marker itself ("redact", "ted]ab") would be found again in
# "[redacted]": no redaction can take it out, so none is generated.
text_secrets = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="[]"),
                       min_size=6, max_size=12).filter(lambda s: s not in REDACTED)
numeric_secrets = st.one_of(
    st.integers(min_value=100_000, max_value=2**62).map(str),
    st.integers(min_value=-(2**62), max_value=-10_000).map(str),
    st.floats(allow_nan=False, allow_infinity=False)
    .map(lambda f: orjson.dumps(f).decode()).filter(lambda s: len(s) >= 6))
secret_lists = st.lists(st.one_of(text_secrets, numeric_secrets, st.sampled_from(
    ['ab"cd\\ef', "line\nbreak\t1", "ünïcødé🔑x", "123456"])), min_size=1, max_size=3)


def numbers_of(secret: str) -> list[int | float]:
    """Numbers whose JSON text holds `secret` (itself, and longer ones around it)."""
    found: list[int | float] = []
    for text in (secret, f"7{secret}", f"{secret}1", f"{secret}.25"):
        try:
            number = json.loads(text)
        except ValueError:
            continue
        if isinstance(number, bool) or not isinstance(number, int | float):
            continue  # `true  `, `"abcd"`: JSON, but no number
        if isinstance(number, float) and not math.isfinite(number):
            continue  # `1e+311` parses to inf, which JSON cannot write back
        if isinstance(number, float) or -(2**63) <= number < 2**64:
            found.append(number)
    return found


def escaped(secret: str) -> str:
    return orjson.dumps(secret).decode()[1:-1]


def documents(secrets: list[str]) -> st.SearchStrategy[Any]:
    """Random JSON built around `secrets`: inside strings and keys, as numbers, and under
    secret-looking names holding every JSON type."""
    # A secret raw, or JSON-escaped: a string holding JSON text (a tool's output).
    secret = st.one_of(st.sampled_from(secrets), st.sampled_from(secrets).map(escaped))
    strings = st.one_of(st.text(max_size=8), secret, st.builds(
        lambda a, s, b: a + s + b, st.text(max_size=4), secret, st.text(max_size=4)))
    numbers = [n for s in secrets for n in numbers_of(s)]
    scalars = st.one_of(st.none(), st.booleans(), INT64,
                        st.floats(allow_nan=False, allow_infinity=False), strings,
                        *([st.sampled_from(numbers)] if numbers else []))
    keys = st.one_of(st.sampled_from(SECRET_NAMES + HARMLESS_NAMES), strings)
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=30)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[str], Any]:
    """Secrets, and a document holding them, wrapped up to 200 levels deep (orjson writes
    at most 254)."""
    secrets = draw(secret_lists)
    document = draw(documents(secrets))
    names = st.sampled_from([*SECRET_NAMES, "x"])
    for level in range(draw(st.integers(0, 200))):
        document = [document] if level % 2 else {draw(names): document}
    return secrets, document


def leaks(value: Any, secrets: list[str]) -> list[Any]:
    """Strings, keys and numbers of `value` that still hold a secret (walked without
    recursion: the documents are deep)."""
    found, pending = [], [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            found += [item for s in secrets if s in item or escaped(s) in item]
        elif isinstance(item, int | float) and not isinstance(item, bool):
            spellings = (str(item), orjson.dumps(item).decode())
            found += [item for s in secrets if NUMBER_CHARACTERS.issuperset(s)
                      and any(s in spelled for spelled in spellings)]
    return found


def named_left(original: Any, redacted: Any, redactor: Redactor) -> list[str]:
    """Names whose value data() should have replaced and did not (`original` and `redacted`
    walked side by side)."""
    missed, pending = [], [(original, redacted)]
    while pending:
        before, after = pending.pop()
        if isinstance(before, dict):
            names = [redactor.text(k) for k in before]
            if len(set(names)) < len(names):  # two names redacted alike: one value won
                continue
            for (key, value), name in zip(before.items(), names, strict=True):
                if is_secret_name(key) and value not in (None, ""):
                    missed += [key] if after[name] != REDACTED else []
                else:
                    pending.append((value, after[name]))
        elif isinstance(before, list):
            pending.extend(zip(before, after, strict=True))
    return missed


@PROPERTY
@given(cases())
def test_every_entry_point_keeps_json_and_takes_every_secret_out(
        case: tuple[list[str], Any]) -> None:
    secrets, document = case
    redactor = Redactor(secrets)
    values = redactor.values(document)
    data = redactor.data(document)
    assert redact_settings(document, secrets) == data
    for redacted in (values, data):
        assert orjson.loads(orjson.dumps(redacted)) == redacted  # writable and JSON
        assert leaks(redacted, secrets) == []
    assert named_left(document, data, redactor) == []

    # The bytes a run writes: the same document, formatted as it was given.
    pretty, compact = dump_json(document), orjson.dumps(document)
    assert redactor.encoded(pretty) == dump_json(values)
    assert redactor.encoded(compact) == orjson.dumps(values)
    for encoded in (redactor.encoded(pretty), redactor.encoded(compact)):
        parsed = json.loads(encoded)
        assert leaks(parsed, secrets) == []
        assert parsed == json.loads(orjson.dumps(values))
    assert leaks(redactor.text(orjson.dumps(document).decode()), secrets) == []


@PROPERTY
@given(secret_lists, st.data())
def test_secrets_under_secret_names_are_found_at_any_depth(
        secrets: list[str], data: st.DataObject) -> None:
    """run_secrets takes each value under a secret-looking name (a number too, and all of a
    container's) as a secret: a run redacts it from everything it writes."""
    holder = data.draw(st.sampled_from(SECRET_NAMES))
    values: list[Any] = [s for s in secrets]
    values += [n for s in secrets for n in numbers_of(s)[:1]]
    nested = {"outer": [{holder: values}], holder: {"deeper": values}}
    found = run_secrets(nested)
    redactor = Redactor(found)
    for document in (nested, {"context": values, "text": " ".join(map(str, values))}):
        assert leaks(json.loads(redactor.encoded(dump_json(document))), secrets) == []


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_run_file_written_with_a_secret_parses(case: tuple[list[str], Any]) -> None:
    secrets, document = case
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = RunDirectory(Path(tmp), Redactor(secrets))
        run_dir.create()
        run_dir.write_json("checkpoint.json", data={"context": document})
        run_dir.write_json("config", "settings.json", data={"x": document}, settings=True)
        run_dir.write_status("node", {"outcome": document})
        run_dir.append_trace({"request": document, "seq": 1})
        run_dir.append_journal({"note": document})
        run_dir.append_branch({"branch": document})
        run_dir.close()
        for path in Path(tmp).rglob("*.json*"):
            for line in path.read_bytes().splitlines() if path.suffix == ".jsonl" else [
                    path.read_bytes()]:
                assert leaks(json.loads(line), secrets) == [], path


def test_an_artifact_holding_a_numeric_secret_is_json() -> None:
    """Context values past the artifact threshold go to their own file, redacted alike."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = RunDirectory(Path(tmp), Redactor(run_secrets({"pin": 0, "password": 918273645})))
        big = {"numbers": [918273645] * 20_000, "text": "x" * ARTIFACT_THRESHOLD}
        ref = run_dir.externalize({"big": big})["big"]
        stored = run_dir.read_artifact(ref["artifact_ref"])
        assert stored["numbers"][0] == REDACTED and len(stored["text"]) == ARTIFACT_THRESHOLD


def test_no_depth_is_too_deep_for_redaction() -> None:
    """Redaction walks without recursion: 100,000 levels are redacted like one."""
    redactor = Redactor(["918273645"])
    document: Any = 918273645
    for _ in range(100_000):
        document = {"a": [document]}
    for redacted in (redactor.values(document), redactor.data(document)):
        for _ in range(100_000):
            redacted = redacted["a"][0]
        assert redacted == REDACTED
