"""`ostinato run` and human gates of every type, as subprocesses against a daemon: asked on
a terminal (a pseudo-terminal), answered with `--answer`, and, when there is no terminal,
answered from another one with the `ostinato answer` command it prints."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import shlex
import sys
from pathlib import Path

import pytest

from .runs_support import visits
from .support import REPO, WAIT, DaemonProcess

CLI = [sys.executable, "-m", "ostinato.clients.cli"]
GATES = str(REPO / "examples" / "pipelines" / "gates.dot")


class Terminal:
    """The primary side of a pseudo-terminal: what the program wrote, and typing."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.output = ""
        self.seen = 0  # how much of the output `expect` has consumed

    async def expect(self, text: str) -> str:
        """Read until `text` appears after what was already expected; the output up to it."""
        async def read() -> None:
            while text not in self.output[self.seen:]:
                chunk = await asyncio.to_thread(os.read, self.fd, 4096)
                if not chunk:
                    raise EOFError(f"the terminal closed before {text!r}:\n{self.output}")
                self.output += chunk.decode(errors="replace")
        await asyncio.wait_for(read(), WAIT)
        end = self.output.index(text, self.seen) + len(text)
        before, self.seen = self.output[self.seen:end], end
        return before

    def type(self, line: str) -> None:
        """Type a line."""
        os.write(self.fd, (line + "\n").encode())

    def rest(self) -> str:
        """Everything written until the program closed the terminal."""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            self.output += chunk.decode(errors="replace")
        return self.output[self.seen:]


async def test_on_a_terminal_each_type_is_asked_in_its_own_way(daemon: DaemonProcess,
                                                                tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    # All three on the terminal: input() writes its prompt to stderr there.
    process = await asyncio.create_subprocess_exec(
        *CLI, "run", GATES, "--settings", '{"retry": {"delay_scale": 0}}',
        "--socket", daemon.socket, cwd=tmp_path, stdin=secondary, stdout=secondary,
        stderr=secondary)
    os.close(secondary)
    terminal = Terminal(primary)
    try:
        header = await terminal.expect("? Notes for the editor?")
        started = re.search(r"run (\S+)  gates", header)
        assert started is not None, header
        run_id = started.group(1)
        await terminal.expect("> ")
        terminal.type("Needs a summary")
        await terminal.expect("? Add charts?")
        await terminal.expect("[y/n]: ")
        terminal.type("perhaps")
        # Refused by the daemon; the same question is asked again.
        await terminal.expect("'perhaps' is not an answer to a yes/no question: accepted "
                              "are yes, y, true or no, n, false")
        await terminal.expect("[y/n]: ")
        terminal.type("n")
        options = await terminal.expect("Select: ")
        assert "  [P] PDF\r\n  [H] HTML\r\nSelect: " in options
        terminal.type("h")
        await terminal.expect("? Publish the report now?")
        await terminal.expect("[y/n]: ")
        terminal.type("YES")
        rest = await asyncio.wait_for(asyncio.to_thread(terminal.rest), WAIT)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0, rest
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        os.close(primary)
    assert "completed (success)" in rest
    wire = await daemon.connect()
    detail = await wire.result("run.get", {"run_id": run_id})
    assert visits(detail)[2:] == ["notes", "edit", "charts", "format", "html", "publish",
                                  "exit"]
    assert {key: detail["context"][key] for key in (
        "notes.answer", "charts.answer", "format.answer", "publish.answer")} == {
        "notes.answer": "Needs a summary", "charts.answer": "no", "format.answer": "h",
        "publish.answer": "yes"}


async def test_answer_presets_answer_every_type(daemon: DaemonProcess,
                                                tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *CLI, "run", GATES, "--answer", "Looks good", "--answer", "y", "--answer", "PDF",
        "--answer", "no", "--socket", daemon.socket, cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert [line.strip() for line in lines if "answered:" in line] == [
        "answered: Looks good", "answered: y", "answered: PDF", "answered: no"]
    assert any(line.startswith("  ✗ publish") and "not confirmed" in line for line in lines)
    assert any(line.startswith("  ✓ shelve") for line in lines)
    assert not any("waiting for an answer" in line for line in lines)


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
async def test_without_a_terminal_it_says_how_to_answer(daemon: DaemonProcess,
                                                        tmp_path: Path, json_mode: bool) -> None:
    process = await asyncio.create_subprocess_exec(
        *CLI, "run", GATES, "--socket", daemon.socket, *(["--json"] if json_mode else []),
        cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    # With --json, stdout holds the result alone: the hint is on stderr.
    said = process.stderr if json_mode else process.stdout
    accepted = []
    try:
        for answer in ("Fine as it is", "yes", "html", "y"):
            while True:
                line = (await asyncio.wait_for(said.readline(), WAIT)).decode()
                assert line, "the run ended before asking"
                if line.startswith("waiting for an answer ("):
                    break
            accepted.append(line.split("(", 1)[1].split("):", 1)[0])
            # The command it names answers from another terminal, ANSWER filled in.
            command = shlex.split(line.split("): ", 1)[1])
            assert command[:2] == ["ostinato", "answer"] and command[-1] == "ANSWER"
            answering = await asyncio.create_subprocess_exec(
                *CLI, *command[1:-1], answer, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
            _, answer_err = await asyncio.wait_for(answering.communicate(), WAIT)
            assert answering.returncode == 0, answer_err.decode()
        out, err = await asyncio.wait_for(process.communicate(), WAIT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    assert process.returncode == 0, err.decode()
    if json_mode:
        assert json.loads(out)["status"] == "completed"
    else:
        assert "completed (success)" in out.decode()
    assert accepted == ["any text", "yes, y, true or no, n, false",
                        "an option key (P, H), its label or its target node",
                        "yes, y, true or no, n, false"]
