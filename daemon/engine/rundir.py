"""The run directory (DESIGN.md §6): every file a run leaves (those read back: atomically)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ..disk import DamagedFile
from ..ids import uuid7
from .redact import Redactor

JOURNAL = "journal.jsonl"
TRACE = "trace.jsonl"
BRANCHES = "branches.jsonl"
ARTIFACT_THRESHOLD = 100 * 1024  # attractor §5.5: larger values leave the context
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def dump_json(data: Any) -> bytes:
    """Readable, stable JSON for files people open."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
                        default=str) + b"\n"


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def write_file(path: str | Path, data: bytes) -> None:
    """Create or truncate `path` and write `data` (plain os calls: a run writes thousands)."""
    fd = os.open(path, _CREATE, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write via a temporary file and a rename: readers see the old file or the new one,
    never half of one, even if the process is killed mid-write."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk leaves no half-written temp file
            os.unlink(tmp)
        raise


# What write_atomic names its temporary files: `.{name}.{pid}.tmp`.
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$")


def remove_temporary_files(directory: str | Path) -> int:
    """Remove the temporary files that write_atomic calls of another process (a daemon that
    was killed mid-write) left in `directory`; returns how many. This process's own are
    never touched: one may be in the middle of its rename."""
    own, removed = str(os.getpid()), 0
    try:
        entries = list(os.scandir(directory))
    except OSError:  # gone, or not a directory
        return 0
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match and match.group(1) != own:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def append_whole(fd: int, line: bytes) -> None:
    """Append `line` to a file open for appending (`_APPEND`), whole or not at all: a write
    the disk cuts short is undone, so that the next line does not continue a torn one."""
    written = os.write(fd, line)
    if written == len(line):
        return
    start = os.lseek(fd, 0, os.SEEK_CUR) - written
    try:
        view = memoryview(line)[written:]
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise


# Told of every file a run directory writes: (path relative to the root, bytes, whether
# they were appended). A worker without the home ships them to the daemon (decision 0007).
Tee = Callable[[str, bytes, bool], None]


class AppendLog:
    """An append-only JSON-lines file, kept open while a run writes it: one write per line,
    so a crash leaves whole lines and at most one cut short at the end."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.tee: Callable[[bytes], None] | None = None

    def append(self, line: bytes) -> None:
        """Append one encoded line (with its newline)."""
        if self._fd is None:
            self._fd = os.open(self.path, _APPEND, 0o644)
        append_whole(self._fd, line)
        if self.tee is not None:
            self.tee(line)

    def close(self) -> None:
        """Close the file (the next append opens it again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class RunDirectory:
    """`{home}/runs/{run_id}/`: manifest, checkpoint, config snapshot, stages, artifacts."""

    def __init__(self, root: Path, redactor: Redactor | None = None,
                 content: bool = True) -> None:
        self.root = root
        self._root = os.fspath(root)  # paths are joined as strings: a run writes thousands
        self.redactor = redactor or Redactor()
        self.content = content  # False: record mode metadata_only, no node text files
        self._stage_dirs: dict[str, str] = {}  # node id -> its directory, once created
        self._trace = AppendLog(os.path.join(self._root, TRACE))
        self._journal = AppendLog(os.path.join(self._root, JOURNAL))
        self._branches = AppendLog(os.path.join(self._root, BRANCHES))
        self.tee: Tee | None = None

    def tee_to(self, tee: Tee) -> None:
        """Tell `tee` of every file written from now on."""
        self.tee = tee
        for name, log in ((TRACE, self._trace), (JOURNAL, self._journal),
                          (BRANCHES, self._branches)):
            log.tee = lambda line, name=name: tee(name, line, True)

    def _wrote(self, path: str, data: bytes, append: bool = False) -> bytes:
        if self.tee is not None:
            self.tee(os.path.relpath(path, self._root), data, append)
        return data

    def receive(self, relative: str, data: bytes, append: bool) -> None:
        """Write a file a run's worker wrote elsewhere (its `tee`): inside this directory
        only."""
        path = os.path.normpath(os.path.join(self._root, relative))
        if os.path.isabs(relative) or not path.startswith(self._root + os.sep):
            raise ValueError(f"a file outside the run directory: {relative!r}")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if append:
            fd = os.open(path, _APPEND, 0o644)
            try:
                append_whole(fd, data)
            finally:
                os.close(fd)
        else:
            write_atomic(path, data)

    def close(self) -> None:
        """Close the append-only files (a run that continues later opens them again)."""
        for log in (self._trace, self._journal, self._branches):
            log.close()

    def create(self) -> None:
        """Make the directory tree."""
        try:
            os.mkdir(self._root)
        except FileExistsError:  # a test's directory, made already
            pass
        except FileNotFoundError:  # the home's first run: runs/ too
            os.makedirs(self._root, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(os.path.join(self._root, "config"))

    def _path(self, *parts: str) -> str:
        for part in parts[:-1]:
            if not _SAFE_NAME.match(part) and part not in ("config", "artifacts"):
                raise ValueError(f"unsafe name in a run directory path: {part!r}")
        return os.path.join(self._root, *parts)

    def write_json(self, *parts: str, data: Any, settings: bool = False,
                   fresh: bool = False) -> None:
        """Write a JSON file with known secret values redacted; `settings` files also lose
        every value under a secret-looking name. `fresh`: a file nothing reads yet (a new
        run's manifest), written in place rather than renamed into place."""
        if settings:
            path = self._path(*parts)
            write_atomic(path, self._wrote(path, dump_json(self.redactor.data(data))))
        else:
            self.write_dumped(*parts, data=dump_json(data), fresh=fresh)

    def write_dumped(self, *parts: str, data: bytes, fresh: bool = False) -> None:
        """Write a JSON file dumped already (dump_json), with known secret values redacted."""
        # Run data can be large (a checkpoint): searched as bytes, copied only when a secret
        # is found (Redactor.encoded).
        path = self._path(*parts)
        data = self._wrote(path, self.redactor.encoded(data))
        if fresh:
            write_file(path, data)
        else:
            write_atomic(path, data)

    def write_text(self, *parts: str, text: str) -> None:
        """Write a text file (secrets redacted)."""
        path = self._path(*parts)
        write_atomic(path, self._wrote(path, self.redactor.text(text).encode("utf-8")))

    def stage(self, node_id: str) -> str:
        """The directory of one node, created on first use."""
        path = self._stage_dirs.get(node_id)
        if path is None:
            self._path(node_id, "status.json")  # refuses an unsafe node id
            path = os.path.join(self._root, node_id)
            with contextlib.suppress(FileExistsError):  # a resumed run's node
                os.mkdir(path)
            self._stage_dirs[node_id] = path
        return path

    def write_stage_file(self, node_id: str, name: str, text: str) -> None:
        """prompt.md, response.md, … of one node: written in place, not renamed into place.
        They are for people, and a node cut short by a crash runs again on resume and
        writes them again; the JSON files the engine reads back stay atomic."""
        if not name or name.startswith(".") or os.path.basename(name) != name:
            raise ValueError(f"unsafe file name in a run directory: {name!r}")
        if not self.content:
            return
        path = os.path.join(self.stage(node_id), name)
        write_file(path, self._wrote(path, self.redactor.text(text).encode("utf-8")))

    def append_stage_file(self, node_id: str, name: str, text: str) -> None:
        """Append to one of a node's files (an agent's transcript.md), redacted; as
        `write_stage_file`, nothing when the run keeps no content."""
        if not name or name.startswith(".") or os.path.basename(name) != name:
            raise ValueError(f"unsafe file name in a run directory: {name!r}")
        if not self.content:
            return
        path = os.path.join(self.stage(node_id), name)
        with open(path, "ab") as handle:
            handle.write(self._wrote(path, self.redactor.text(text).encode("utf-8"), True))

    def write_status(self, node_id: str, status: dict[str, Any]) -> None:
        """The node's status.json, written in place like the node's other files: it is
        written before the stage is recorded and checkpointed, so a crash in the middle of
        writing it leaves a node that runs again on resume and writes it again. (A rename
        per node would double what a node's files cost; the files the engine reads back,
        the checkpoint, manifest and config, are renamed into place.)"""
        path = os.path.join(self.stage(node_id), "status.json")
        write_file(path, self._wrote(path, self.redactor.encoded(dump_json(status))))

    def read_json(self, *parts: str) -> Any:
        """A JSON file of the run, or None when it does not exist; DamagedFile when it is
        not JSON."""
        try:
            with open(self._path(*parts), "rb") as handle:
                return orjson.loads(handle.read())
        except FileNotFoundError:
            return None
        except orjson.JSONDecodeError as exc:
            raise DamagedFile("/".join(parts), str(exc)) from None

    def append_trace(self, record: dict[str, Any]) -> None:
        """One line of trace.jsonl (redacted)."""
        self._trace.append(self.redactor.encoded(orjson.dumps(record, default=str)) + b"\n")

    def append_journal(self, entry: dict[str, Any]) -> None:
        """One line of journal.jsonl: a completed node (redacted: its note is content)."""
        self._journal.append(self.redactor.encoded(orjson.dumps(entry)) + b"\n")

    def read_journal(self) -> list[dict[str, Any]]:
        """Every complete line of journal.jsonl (a line cut short by a crash is left out)."""
        return _read_lines(self.root / JOURNAL)

    def truncate_journal(self, count: int) -> None:
        """Keep the first `count` lines: what a resumed run's checkpoint knows of."""
        entries = self.read_journal()
        if len(entries) != count:
            self._journal.close()  # the rename below replaces the file it has open
            path = os.path.join(self._root, JOURNAL)
            write_atomic(path, self._wrote(path, b"".join(orjson.dumps(e) + b"\n"
                                                          for e in entries[:count])))

    def append_branch(self, entry: dict[str, Any]) -> None:
        """One line of branches.jsonl: a finished branch of a parallel node (redacted)."""
        self._branches.append(self.redactor.encoded(orjson.dumps(entry, default=str)) + b"\n")

    def read_branches(self) -> list[dict[str, Any]]:
        """Every complete line of branches.jsonl."""
        return _read_lines(self.root / BRANCHES)

    def externalize(self, values: dict[str, Any]) -> dict[str, Any]:
        """Values over 100 KB go to artifacts/{id}.json; the context keeps an artifact_ref."""
        out = {}
        for key, value in values.items():
            if (isinstance(value, dict) and "artifact_ref" in value) or _surely_small(value):
                out[key] = value
                continue
            encoded = orjson.dumps(value, default=str)
            if len(encoded) <= ARTIFACT_THRESHOLD:
                out[key] = value
                continue
            artifact_id = uuid7()
            (self.root / "artifacts").mkdir(exist_ok=True)
            path = os.path.join(self._root, "artifacts", f"{artifact_id}.json")
            write_atomic(path, self._wrote(path, self.redactor.encoded(encoded)))
            out[key] = {"artifact_ref": artifact_id, "key": key, "size_bytes": len(encoded)}
        return out

    def read_artifact(self, artifact_id: str) -> Any:
        """The value an artifact_ref points to."""
        if not re.fullmatch(r"[0-9a-f-]{36}", artifact_id):
            raise ValueError(f"not an artifact id: {artifact_id!r}")
        return orjson.loads((self.root / "artifacts" / f"{artifact_id}.json").read_bytes())


def _surely_small(value: Any) -> bool:
    """True for values whose JSON cannot reach the artifact threshold (no need to encode
    them to know): scalars, and strings short enough even if every character were escaped
    to six bytes."""
    if value is None or isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and len(value) * 6 + 2 <= ARTIFACT_THRESHOLD


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON-lines file (a line cut short by a crash is left out)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        entries.append(orjson.loads(line))
    return entries


def run_index(home: Path) -> AppendLog:
    """{home}/run_manifest.jsonl, a line per run (append-only; paths relative to home): kept
    open by the daemon that writes it."""
    return AppendLog(home / "run_manifest.jsonl")
