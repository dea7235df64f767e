"""Running a command tool: its own process group, a timeout that kills the group, output
capped per stream with the truncation recorded, a cwd inside the workspace, and an explicit
environment.

The environment is the tool's declared one on top of three basics, and nothing else of the
daemon's: `PATH` (the daemon's, so programs resolve as they do on the host), `LANG=C.UTF-8`
(stable, decodable output) and `HOME` set to the workspace (so dotfiles a tool writes stay
in the workspace rather than the user's home). A daemon's own variables (keys, tokens) never
reach a tool unless it names them as secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_CHUNK = 64 * 1024
# After the group is killed, its pipes close at once; only a process that left the group
# (setsid) can hold them open, and then the output read so far is what we keep.
_DRAIN_AFTER_KILL_S = 1.0


def basic_env(workspace: str) -> dict[str, str]:
    """The variables every tool gets (see the module docstring)."""
    return {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": workspace}


def resolve_cwd(workspace: str, cwd: str = "") -> str:
    """The real path of `cwd` (relative to the workspace); ValueError if it resolves outside
    the workspace, through `..` or a symlink."""
    root = os.path.realpath(workspace)
    target = os.path.realpath(os.path.join(root, cwd))
    if os.path.commonpath([root, target]) != root:
        raise ValueError(f"cwd {cwd!r} is outside the workspace")
    return target


@dataclass(slots=True)
class _Stream:
    """What was read of one pipe: the first `limit` bytes, and how many there were."""

    limit: int
    kept: bytearray = field(default_factory=bytearray)
    total: int = 0

    async def drain(self, reader: asyncio.StreamReader) -> None:
        """Read to EOF, keeping the head; the rest is read and counted so the child never
        blocks on a full pipe."""
        while chunk := await reader.read(_CHUNK):
            self.total += len(chunk)
            room = self.limit - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]


@dataclass(frozen=True, slots=True)
class Captured:
    """A finished tool process: exit code, kept output, truncation and whether it timed out."""

    exit_code: int
    stdout: str
    stderr: str
    truncated: dict[str, dict[str, int]]
    timed_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The recorded response; `truncated` and `timed_out` only when they happened."""
        out: dict[str, Any] = {"exit_code": self.exit_code, "stdout": self.stdout,
                               "stderr": self.stderr}
        if self.truncated:
            out["truncated"] = self.truncated
        if self.timed_out:
            out["timed_out"] = True
        return out


async def run_captured(argv: Sequence[str], *, workspace: str, cwd: str = "",
                       env: Mapping[str, str] | None = None, timeout_s: float,
                       max_output: int, stdin: bytes | None = None) -> Captured:
    """Run `argv` (no shell) in `cwd` under the workspace with only `basic_env` plus `env`,
    `stdin` (if given) on its standard input; at the timeout, or on cancellation, the whole
    process group is killed."""
    directory = resolve_cwd(workspace, cwd)
    process = await start_in_group(
        argv, cwd=directory, env={**basic_env(os.path.realpath(workspace)), **(env or {})},
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE)

    assert process.stdout is not None and process.stderr is not None
    out, err = _Stream(max_output), _Stream(max_output)
    readers = [asyncio.create_task(out.drain(process.stdout)),
               asyncio.create_task(err.drain(process.stderr))]
    if stdin is not None:
        readers.append(asyncio.create_task(_feed(process, stdin)))
    try:
        _, pending = await asyncio.wait([*readers, asyncio.create_task(process.wait())],
                                        timeout=timeout_s)
        timed_out = bool(pending)
    finally:
        # Always, even after a clean exit: a tool call leaves no background process behind.
        await kill_group(process)
        _, unread = await asyncio.wait(readers, timeout=_DRAIN_AFTER_KILL_S)
        for task in unread:
            task.cancel()
    assert process.returncode is not None
    truncated = {name: {"kept": len(s.kept), "total": s.total}
                 for name, s in (("stdout", out), ("stderr", err)) if s.total > len(s.kept)}
    return Captured(exit_code=process.returncode,
                    stdout=out.kept.decode("utf-8", "replace"),
                    stderr=err.kept.decode("utf-8", "replace"),
                    truncated=truncated, timed_out=timed_out)


async def _feed(process: asyncio.subprocess.Process, data: bytes) -> None:
    """Write `data` to the process's stdin and close it; a process that does not read it
    all (it exited) is no error."""
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(data)
        await process.stdin.drain()
    process.stdin.close()


async def start_in_group(argv: Sequence[str], **options: Any) -> asyncio.subprocess.Process:
    """`argv` started (no shell) in a process group of its own, stdin from /dev/null (unless
    `stdin` says otherwise) and stdout/stderr piped: a kill of the group reaches what it
    spawned too. A cancellation while it starts still kills it."""
    options.setdefault("stdin", asyncio.subprocess.DEVNULL)
    spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True, **options))
    try:
        # The child runs before create_subprocess_exec returns: a cancellation in between
        # must still find and kill it.
        return await asyncio.shield(spawn)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await kill_group(await spawn)
        raise


async def kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process's whole group and reap the leader."""
    # The group id outlives the leader while any member lives, so this reaches grandchildren
    # of a leader that has already exited.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
