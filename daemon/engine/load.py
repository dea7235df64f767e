"""PARSE -> TRANSFORM -> VALIDATE: a pipeline reference to a graph and its diagnostics.

Reads files, never writes anything. Every problem, an unreadable file included, is a
Diagnostic; only bugs raise.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ostinato.protocol.pipelines import Diagnostic, PipelineRef

from .dot import parse_dot
from .errors import PipelineSyntaxError
from .graph import Graph, SourceFormat
from .kept import KeptBySource
from .recipe import parse_recipe
from .transforms import Transform, apply_transforms
from .validate import DEFAULT_KNOWN_TYPES, LintRule, registered_rules, validate

SUFFIX_FORMATS: dict[str, SourceFormat] = {
    ".dot": "dot", ".gv": "dot", ".yaml": "recipe", ".yml": "recipe",
}


@dataclass
class LoadResult:
    """The transformed graph (None if it did not parse) and every diagnostic."""

    graph: Graph | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Parsed, and no error-severity diagnostic."""
        return self.graph is not None and not any(
            d.severity == "error" for d in self.diagnostics)


def load_pipeline(ref: PipelineRef, base_dir: Path,
                  variables: Mapping[str, str] | None = None,
                  known_types: Collection[str] = DEFAULT_KNOWN_TYPES,
                  extra_rules: Iterable[LintRule] = (),
                  transforms: Iterable[Transform] = (),
                  inputs: Collection[str] = ()) -> LoadResult:
    """Load `ref` (a path relative to `base_dir`, or inline source), transform, validate;
    `inputs` are the names of the run's inputs (context keys the lint knows)."""
    if ref.source is not None:
        assert ref.format is not None  # PipelineRef requires it with `source`
        return load_source(ref.source, ref.format, variables, known_types, extra_rules,
                           transforms, inputs)
    assert ref.path is not None
    path = Path(ref.path)
    if not path.is_absolute():
        path = base_dir / path
    fmt = ref.format or SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        return LoadResult(None, [_io(f"cannot tell the format of {ref.path!r}: use a .dot, "
                                     ".gv, .yaml or .yml file, or give `format`")])
    try:
        source = path.read_text(encoding="utf-8-sig")  # editors on Windows add a BOM
    except UnicodeDecodeError:
        return LoadResult(None, [_io(f"{ref.path!r} is not UTF-8 text")])
    except OSError as exc:
        return LoadResult(None, [_io(f"cannot read {ref.path!r}: {exc.strerror or exc}")])
    return load_source(source, fmt, variables, known_types, extra_rules, transforms, inputs)


def load_source(source: str, fmt: SourceFormat,
                variables: Mapping[str, str] | None = None,
                known_types: Collection[str] = DEFAULT_KNOWN_TYPES,
                extra_rules: Iterable[LintRule] = (),
                transforms: Iterable[Transform] = (),
                inputs: Collection[str] = ()) -> LoadResult:
    """Parse `source` in format `fmt`, transform, validate."""
    key = None
    if extra_rules == () and transforms == ():  # custom rules and transforms: not kept
        key = (fmt, source, frozenset((variables or {}).items()), frozenset(known_types),
               registered_rules(), frozenset(inputs))
        kept = _LOADED.get(key)
        if kept is not None:
            return kept
    try:
        graph = parse_dot(source) if fmt == "dot" else parse_recipe(source)
    except PipelineSyntaxError as exc:
        return LoadResult(None, [exc.to_diagnostic()])
    graph = apply_transforms(graph, variables, transforms, owned=True)
    result = LoadResult(graph, validate(graph, known_types, extra_rules, inputs))
    if key is not None:
        _LOADED.put(key, result, source)
    return result


# The daemon loads the same pipelines again and again (trials, replays, test runs, an agent
# rerunning what it just ran), and the same source, format, variables and handler types
# always load to the same result. Nothing changes a graph once loaded (runs only read it),
# so loads are kept and shared, the most recently used first, up to 2 MB of source in all
# (registered lint rules are part of the key: registering one changes what a load finds).
_LOADED: KeptBySource[LoadResult] = KeptBySource(2 * 1024 * 1024)


def _io(message: str) -> Diagnostic:
    return Diagnostic(rule="io", severity="error", message=message)
