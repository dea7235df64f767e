"""PARSE -> TRANSFORM -> VALIDATE: a pipeline reference to a graph and its diagnostics.

Reads files, never writes anything. Every problem, an unreadable file included, is a
Diagnostic; only bugs raise.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ostinato.protocol.pipelines import Diagnostic, PipelineRef

from .collector import collector_paused
from .errors import PipelineSyntaxError
from .graph import Graph, SourceFormat
from .kept import Kept
from .transforms import Transform, apply_transforms
from .validate import DEFAULT_KNOWN_TYPES, LintRule, registered_rules, validate

SUFFIX_FORMATS: dict[str, SourceFormat] = {
    ".dot": "dot", ".gv": "dot", ".yaml": "recipe", ".yml": "recipe",
}
# The largest pipeline source loaded, from a file or inline (`serve --max-pipeline-bytes`):
# parsing holds 55 to 110 times a source's size in memory.
DEFAULT_MAX_PIPELINE_BYTES = 1024 * 1024


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
                  inputs: Collection[str] = (),
                  max_bytes: int = DEFAULT_MAX_PIPELINE_BYTES) -> LoadResult:
    """Load `ref` (a path relative to `base_dir`, or inline source), transform, validate;
    `inputs` are the names of the run's inputs (context keys the lint knows)."""
    read = read_pipeline(ref, base_dir, max_bytes)
    if isinstance(read, Diagnostic):
        return LoadResult(None, [read])
    return load_source(*read, variables, known_types, extra_rules, transforms, inputs)


async def load_pipeline_async(ref: PipelineRef, base_dir: Path,
                              variables: Mapping[str, str] | None = None,
                              known_types: Collection[str] = DEFAULT_KNOWN_TYPES,
                              inputs: Collection[str] = (),
                              max_bytes: int = DEFAULT_MAX_PIPELINE_BYTES) -> LoadResult:
    """`load_pipeline`, reading a file in a thread: a slow or odd file holds up no one else."""
    if ref.path is None:
        read = read_pipeline(ref, base_dir, max_bytes)
    else:
        read = await asyncio.to_thread(read_pipeline, ref, base_dir, max_bytes)
    if isinstance(read, Diagnostic):
        return LoadResult(None, [read])
    return load_source(*read, variables, known_types, inputs=inputs)


def read_pipeline(ref: PipelineRef, base_dir: Path,
                  max_bytes: int = DEFAULT_MAX_PIPELINE_BYTES) -> tuple[str, SourceFormat] | \
        Diagnostic:
    """The source and format `ref` names, or the `io` diagnostic saying why there is none:
    only a regular file of at most `max_bytes` is read (a FIFO or a device could block
    or never end)."""
    if ref.source is not None:
        assert ref.format is not None  # PipelineRef requires it with `source`
        size = len(ref.source)
        if size > max_bytes // 4:  # a character is at most 4 bytes of UTF-8
            size = len(ref.source.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            return _io(f"the pipeline source is {size} bytes, over the {max_bytes}-byte limit")
        return ref.source, ref.format
    assert ref.path is not None
    path = Path(ref.path)
    if not path.is_absolute():
        path = base_dir / path
    fmt = ref.format or SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        return _io(f"cannot tell the format of {ref.path!r}: use a .dot, .gv, .yaml or .yml "
                   "file, or give `format`")
    try:
        data = _read_regular_file(path, max_bytes)
    except _NotReadable as exc:
        return _io(f"cannot read {ref.path!r}: {exc}")
    except OSError as exc:
        return _io(f"cannot read {ref.path!r}: {exc.strerror or exc}")
    try:
        return data.decode("utf-8-sig"), fmt  # editors on Windows add a BOM
    except UnicodeDecodeError:
        return _io(f"{ref.path!r} is not UTF-8 text")


class _NotReadable(Exception):
    """A file that is there but is not read: not a regular file, or too large."""


def _read_regular_file(path: Path, max_bytes: int) -> bytes:
    # O_NONBLOCK: opening a FIFO nobody writes to would otherwise wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)  # of what was opened, not of what the path names by now
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO" if \
                stat.S_ISFIFO(info.st_mode) else "a device or socket"
            raise _NotReadable(f"not a regular file but {kind}; a pipeline is read only "
                               "from a regular file")
        if info.st_size > max_bytes:
            raise _NotReadable(f"{info.st_size} bytes, over the {max_bytes}-byte limit "
                               "for a pipeline")
        chunks, size = [], 0
        while size <= max_bytes:  # the file may grow while it is read
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise _NotReadable(f"it grew past the {max_bytes}-byte limit for a pipeline")
        return b"".join(chunks)
    finally:
        os.close(fd)


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
    with collector_paused():  # a load makes many objects and no garbage to speak of
        try:
            graph = _parser(fmt)(source)
        except PipelineSyntaxError as exc:
            return LoadResult(None, [exc.to_diagnostic()])
        graph = apply_transforms(graph, variables, transforms, owned=True)
        result = LoadResult(graph, validate(graph, known_types, extra_rules, inputs))
    if key is not None:
        _LOADED.put(key, result, _footprint(graph, source, variables))
    return result


def _parser(fmt: str) -> Callable[[str], Graph]:
    """The parser of `fmt`, imported (with lark, or yaml) by the first pipeline of that
    format, not when the daemon starts."""
    if fmt == "dot":
        from .dot import parse_dot
        return parse_dot
    from .recipe import parse_recipe
    return parse_recipe


# What a loaded graph holds besides its text, per node and per edge (measured: about 700
# bytes for the objects, attribute dicts and locations).
_BYTES_PER_ITEM = 800
_PLAN_BYTES_PER_ITEM = 120  # plan.json's keys and indentation (measured: 113-115)


def _footprint(graph: Graph, source: str, variables: Mapping[str, str] | None) -> int:
    """The bytes a kept load is estimated to hold: its source, variables (part of its key)
    and graph, expanded text included (a variable used a thousand times is held a thousand
    times), and the plan.json its first run keeps with the graph (runs/files.py::plan_file:
    the graph's text again, and JSON around each node and edge)."""
    text = sum(len(v) for v in graph.attrs.values() if type(v) is str)
    for item in (*graph.nodes.values(), *graph.edges):
        text += sum(len(v) for v in item.attrs.values() if type(v) is str)
    items = len(graph.nodes) + len(graph.edges)
    plan = text + _PLAN_BYTES_PER_ITEM * items
    text += sum(len(k) + len(v) for k, v in (variables or {}).items())
    return len(source) + text + _BYTES_PER_ITEM * items + plan


# The daemon loads the same pipelines again and again (trials, replays, test runs, an agent
# rerunning what it just ran), and the same source, format, variables and handler types
# always load to the same result. Nothing changes a graph once loaded (runs only read it),
# so loads are kept and shared, the most recently used first, up to 64 MiB in all as
# `_footprint` estimates it (counting source alone let variables expanded a thousand times
# each pin a gigabyte), and 256 loads (registered lint rules are part of the key:
# registering one changes what a load finds).
_LOADED: Kept[LoadResult] = Kept(64 * 1024 * 1024, max_entries=256)


def _io(message: str) -> Diagnostic:
    return Diagnostic(rule="io", severity="error", message=message)
