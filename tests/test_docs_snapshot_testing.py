"""docs/snapshot-testing.md stays true to the invariant library: every ```json block is one
invariant or a list of them, valid as snapshot.create validates them; every ```yaml block is
an invariants file that `ostinato snapshot create --invariants FILE` reads and that is valid;
every invariant type has an example; and the table of passes needed for `pass_rate` is what
the library's Wilson bound computes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import orjson
import pytest

from ostinato.clients.cli.common import load_invariants
from ostinato.daemon.regression.invariants import wilson_lower
from ostinato.protocol.invariants import Invariant, invariant_list

DOC = Path(__file__).resolve().parents[1] / "docs" / "snapshot-testing.md"
TABLE_HEADER = "| N | threshold 0.5 | 0.6 | 0.7 | 0.8 | 0.9 |"
TABLE_CONFIDENCE = 0.95  # the table's confidence, pass_rate's default


def fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """(language, first line number, content) of each fenced block, in order."""
    blocks, language, start, lines = [], None, 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        if language is None:
            if line.startswith("```"):
                language, start, lines = line[3:].strip().split(" ")[0], number, []
        elif line.startswith("```"):
            blocks.append((language, start, "\n".join(lines)))
            language = None
        else:
            lines.append(line)
    assert language is None, f"the block opened on line {start} is never closed"
    return blocks


def invariant_blocks(language: str) -> list[tuple[int, str]]:
    """(line, content) of the doc's blocks in `language`."""
    return [(line, content) for lang, line, content in fenced_blocks(DOC.read_text())
            if lang == language]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def all_types() -> set[str]:
    """Every `type` the invariant union accepts."""
    union = get_args(Invariant)[0]
    return {name for model in get_args(union)
            for name in get_args(model.model_fields["type"].annotation)}


JSON_BLOCKS = invariant_blocks("json")
YAML_BLOCKS = invariant_blocks("yaml")


@pytest.mark.parametrize(("line", "content"), JSON_BLOCKS,
                         ids=[f"line{line}" for line, _ in JSON_BLOCKS])
def test_every_json_example_is_a_valid_invariant(line: int, content: str) -> None:
    parsed = invariant_list.validate_python(as_list(orjson.loads(content)))
    assert parsed, f"the block on line {line} holds no invariant"


@pytest.mark.parametrize(("line", "content"), YAML_BLOCKS,
                         ids=[f"line{line}" for line, _ in YAML_BLOCKS])
def test_every_yaml_example_is_an_invariants_file_the_cli_reads(
        line: int, content: str, tmp_path: Path) -> None:
    path = tmp_path / "invariants.yaml"
    path.write_text(content)
    parsed = invariant_list.validate_python(load_invariants(str(path)))
    assert parsed, f"the block on line {line} holds no invariant"


def test_every_invariant_type_has_an_example() -> None:
    shown = {item["type"] for _, content in JSON_BLOCKS
             for item in as_list(orjson.loads(content))}
    missing = all_types() - shown
    assert not missing, f"no ```json example of: {', '.join(sorted(missing))}"
    assert len(JSON_BLOCKS) >= 20 and YAML_BLOCKS


def passes_needed(n: int, threshold: float) -> int | None:
    """The fewest passes of n whose Wilson lower bound clears `threshold`; None: never."""
    return next((c for c in range(n + 1)
                 if wilson_lower(c, n, TABLE_CONFIDENCE) >= threshold), None)


def test_the_table_of_passes_needed_is_the_libraries() -> None:
    lines = DOC.read_text().splitlines()
    start = lines.index(TABLE_HEADER)
    thresholds = [0.5, 0.6, 0.7, 0.8, 0.9]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        n, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append(int(n))
        expected = [passes_needed(int(n), t) for t in thresholds]
        assert [None if c == "never" else int(c) for c in cells] == expected, f"N = {n}"
    assert rows == [5, 10, 20, 30, 50, 100]


def test_the_stated_bounds_are_the_libraries() -> None:
    text = " ".join(DOC.read_text().split())
    # "even 20 passes out of 20 give a lower bound of 0.881 at 95% confidence"
    assert "lower bound of 0.881 at 95% confidence" in text
    assert round(wilson_lower(20, 20, 0.95), 3) == 0.881
    # "at 0.9, 20 trials need 15 passes for 0.6"
    assert "at 0.9, 20 trials need 15 passes for 0.6" in text
    assert next(c for c in range(21) if wilson_lower(c, 20, 0.9) >= 0.6) == 15


def test_a_wrong_example_would_be_caught() -> None:
    # The checks above are only worth something if a bad block fails them.
    bad = '{"type": "between", "metric": "tokens", "min": 10, "max": 1}'
    with pytest.raises(ValueError, match="min \\(10\\) is above max \\(1\\)"):
        invariant_list.validate_python(as_list(orjson.loads(bad)))
    assert fenced_blocks("```json\n{}\n```\n```\nplain\n```") == [
        ("json", 1, "{}"), ("", 4, "plain")]
