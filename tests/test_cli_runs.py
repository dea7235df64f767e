"""`ostinato runs list|show|watch|cancel|resume|trace`, `ostinato answer` and `--version`, as
subprocesses against a daemon on a socket, with runs started by another client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import sys
from importlib.metadata import version
from pathlib import Path

from .runs_support import FAST, dot, run_to_end, trace
from .support import WAIT, DaemonProcess, Wire

CLI = [sys.executable, "-m", "ostinato.clients.cli"]
NO_RUN = "01a20000-0000-7000-8000-000000000000"

GATE = dot("""\
    digraph gate {
        start [shape=Mdiamond]
        work  [prompt="Write the release notes"]
        ship  [shape=hexagon, human.type=yes_no, label="Ship it?"]
        exit  [shape=Msquare]
        start -> work -> ship
        ship -> exit [label="[Y] Yes"]
        ship -> exit [label="[N] No"]
    }""")  # waits on one yes/no question after one model call

ONE_CALL = dot("""\
    digraph one_call {
        start [shape=Mdiamond]
        write [prompt="Say hello"]
        exit  [shape=Msquare]
        start -> write -> exit
    }""")


async def cli(*args: str) -> tuple[int, str, str]:
    """Run the command to its end: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def start_waiting(wire: Wire) -> str:
    """Start GATE from `wire` (another client) and return its id once it waits."""
    run = await wire.result("run.start", {"pipeline": GATE, "settings": FAST})
    await wire.result("run.subscribe", {"run_id": run["run_id"]})
    while True:
        detail = await wire.result("run.get", {"run_id": run["run_id"]})
        if detail["status"] == "waiting":
            return run["run_id"]
        await wire.recv()  # the run's next event: its state changed, look again


async def lines_until(stream: asyncio.StreamReader, prefix: str, seen: list[str]) -> str:
    """Read lines (kept in `seen`) until one starts with `prefix`; that line."""
    while True:
        line = (await asyncio.wait_for(stream.readline(), WAIT)).decode()
        assert line, f"the output ended before {prefix!r}:\n{''.join(seen)}"
        seen.append(line)
        if line.startswith(prefix):
            return line


async def test_list_and_show_a_waiting_run(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    done = await run_to_end(wire, ONE_CALL)
    waiting = await start_waiting(wire)
    code, out, err = await cli("runs", "list", "--socket", daemon.socket)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["RUN", "STATUS", "PIPELINE", "CREATED", "COST"]
    assert [row.split()[:3] for row in rows] == [[waiting, "waiting", "gate"],
                                                [done["run_id"], "completed", "one_call"]]
    code, out, _ = await cli("runs", "list", "--status", "completed", "--json",
                             "--socket", daemon.socket)
    assert code == 0 and [r["run_id"] for r in json.loads(out)["runs"]] == [done["run_id"]]
    waiting_at = (await wire.result("run.get", {"run_id": waiting}))["created_at"]
    for bound, expected in (("--since", [waiting]), ("--until", [done["run_id"]])):
        code, out, _ = await cli("runs", "list", bound, waiting_at, "--json",
                                 "--socket", daemon.socket)
        assert code == 0 and [r["run_id"] for r in json.loads(out)["runs"]] == expected
    code, out, _ = await cli("runs", "list", "--limit", "1", "--socket", daemon.socket)
    assert code == 0 and len(out.splitlines()) == 3  # header, one run, the next page's hint
    assert out.splitlines()[2].startswith("more: ostinato runs list --cursor ")

    code, out, err = await cli("runs", "show", waiting, "--socket", daemon.socket)
    assert code == 0, err
    assert out.startswith(f"run {waiting}  gate  waiting\n")
    assert re.search(r"^\s+2\s+work\s+1\s+success\s", out, re.M), out
    assert "  ? Ship it?\n      [Y] Yes\n      [N] No\n" in out
    hint = out.splitlines()[-1]
    assert hint == (f"waiting for an answer (yes, y, true or no, n, false): ostinato answer "
                    f"--socket {daemon.socket} {waiting} ship:3 ANSWER")
    code, out, _ = await cli("runs", "show", waiting, "--json", "--socket", daemon.socket)
    assert code == 0 and json.loads(out)["question"]["question_id"] == "ship:3"
    await wire.result("run.cancel", {"run_id": waiting})


async def test_a_missing_run_is_an_error_object_with_json(daemon: DaemonProcess) -> None:
    for command in (["runs", "show"], ["runs", "watch"], ["runs", "cancel"],
                    ["runs", "trace"], ["answer"]):
        code, out, err = await cli(*command, NO_RUN, *(["yes"] if command == ["answer"]
                                                       else []),
                                   "--json", "--socket", daemon.socket)
        assert code == 1, (command, out, err)
        error = json.loads(out)["error"]
        assert error["code"] == -32001 and NO_RUN in error["message"], command
        assert err.startswith(f"ostinato {' '.join(command)}: "), err


async def test_without_a_daemon_it_is_unreachable(short_tmp: Path) -> None:
    code, out, err = await cli("runs", "list", "--json", "--socket", str(short_tmp / "none"))
    assert code == 3
    assert json.loads(out)["error"]["code"] == "unreachable"
    assert "cannot connect to" in err


async def test_watch_follows_a_run_started_elsewhere_and_answer_answers_it(
        daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    run_id = await start_waiting(wire)
    watch = await asyncio.create_subprocess_exec(
        *CLI, "runs", "watch", run_id, "--socket", daemon.socket,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert watch.stdout is not None
    seen: list[str] = []
    try:
        hint = await lines_until(watch.stdout, "waiting for an answer", seen)
        command = shlex.split(hint.split(": ", 1)[1])
        assert command[:2] == ["ostinato", "answer"] and command[-1] == "ANSWER"
        # A wrong question id is refused, the exact command is answered.
        code, _, err = await cli(*command[1:-2], "other:9", "yes")
        assert code == 1 and "is waiting on question ship:3, not other:9" in err
        code, out, err = await cli(*command[1:-1], "yes")
        assert code == 0, err
        assert out == f"answered ship:3 of run {run_id}: yes\n"
        rest, err = await asyncio.wait_for(watch.communicate(), WAIT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            watch.kill()
    assert watch.returncode == 0, err.decode()
    output = "".join(seen) + rest.decode()
    assert output.startswith(f"run {run_id}  gate  waiting\n  ? Ship it?\n")
    assert "    answered: yes\n" in output
    assert re.search(r"^  ✓ ship  [\d.]+ ms  success$", output, re.M), output
    assert re.search(r"^  ▶ exit$", output, re.M), output
    assert f"run {run_id}  gate  completed (success)\n" in output
    # An ended run: watch says how it ended, at once.
    code, out, _ = await cli("runs", "watch", run_id, "--json", "--socket", daemon.socket)
    assert code == 0 and json.loads(out)["status"] == "completed"


async def test_answer_without_question_and_when_nothing_waits(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    run_id = await start_waiting(wire)
    code, _, err = await cli("answer", run_id, "perhaps", "--socket", daemon.socket)
    assert code == 2 and "'perhaps' is not an answer to a yes/no question" in err
    code, out, err = await cli("answer", run_id, "no", "--json", "--socket", daemon.socket)
    assert code == 0, err
    assert json.loads(out) == {"run_id": run_id, "question_id": "ship:3", "answer": "no"}
    summary = await wire.result("run.get", {"run_id": run_id})
    while summary["status"] == "waiting":  # the answer was taken; the run goes on to its end
        await wire.recv()
        summary = await wire.result("run.get", {"run_id": run_id})
    code, out, err = await cli("answer", run_id, "yes", "--json", "--socket", daemon.socket)
    assert code == 1
    assert json.loads(out)["error"]["message"] == (
        f"run {run_id} is not waiting on a question (it is {summary['status']})")
    code, _, err = await cli("answer", run_id, "q", "yes", "extra", "--socket", daemon.socket)
    assert code == 2 and "quote an answer that has spaces" in err


async def test_cancel_then_resume_and_wait(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    run_id = await start_waiting(wire)
    code, out, err = await cli("runs", "cancel", run_id, "--socket", daemon.socket)
    assert code == 0, err
    assert out == (f"run {run_id} cancelled; resume it with: ostinato runs resume {run_id}\n")
    code, out, _ = await cli("runs", "cancel", run_id, "--json", "--socket", daemon.socket)
    assert code == 1
    assert json.loads(out)["error"]["message"] == f"run {run_id} is not running"
    resume = await asyncio.create_subprocess_exec(
        *CLI, "runs", "resume", run_id, "--wait", "--socket", daemon.socket,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert resume.stdout is not None
    seen: list[str] = []
    try:
        await lines_until(resume.stdout, "waiting for an answer", seen)
        code, _, err = await cli("answer", run_id, "y", "--socket", daemon.socket)
        assert code == 0, err
        rest, err = await asyncio.wait_for(resume.communicate(), WAIT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            resume.kill()
    assert resume.returncode == 0, err.decode()
    output = "".join(seen) + rest.decode()
    assert output.startswith(f"run {run_id}  gate  resumed\n"), output
    assert f"run {run_id}  gate  completed (success)\n" in output


GREETING = dot("""\
    digraph greeting {
        start [shape=Mdiamond]
        ship  [shape=hexagon, human.type=yes_no, label="Greet?"]
        greet [prompt="Greet $who"]
        exit  [shape=Msquare]
        start -> ship
        ship -> greet [label="[Y] Yes"]
        ship -> exit [label="[N] No"]
        greet -> exit
    }""")


async def test_resume_gives_inputs_again(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    run = await wire.result("run.start", {"pipeline": GREETING, "settings": FAST,
                                          "inputs": {"who": "Ada"}})
    run_id = run["run_id"]
    await wire.result("run.subscribe", {"run_id": run_id})
    while (await wire.result("run.get", {"run_id": run_id}))["status"] != "waiting":
        await wire.recv()  # the run's next event: its state changed, look again
    await wire.result("run.cancel", {"run_id": run_id})
    code, _, err = await cli("runs", "resume", run_id, "--input", "who=Grace",
                             "--socket", daemon.socket)
    assert code == 0, err
    while (await wire.result("run.get", {"run_id": run_id}))["status"] != "waiting":
        await wire.recv()
    code, _, err = await cli("answer", run_id, "y", "--socket", daemon.socket)
    assert code == 0, err
    code, out, err = await cli("runs", "watch", run_id, "--json", "--socket", daemon.socket)
    assert code == 0, err  # it succeeded
    detail = await wire.result("run.get", {"run_id": run_id})
    assert json.loads(out)["status"] == detail["status"] == "completed"
    [greeting] = [call for call in trace(detail) if call["node_id"] == "greet"]
    assert "Greet Grace" in json.dumps(greeting["request"])
    await wire.close()


async def test_trace_lists_the_calls(daemon: DaemonProcess) -> None:
    wire = await daemon.connect()
    run = await run_to_end(wire, ONE_CALL)
    code, out, err = await cli("runs", "trace", run["run_id"], "--json", "--socket",
                               daemon.socket)
    assert code == 0, err
    traces = json.loads(out)["traces"]
    assert [trace["trace_id"] for trace in traces] == [run["trace_id"]]
    calls = traces[0]["calls"]
    assert [(call["node_id"], call["kind"]) for call in calls] == [("write", "model")]
    code, out, err = await cli("runs", "trace", run["run_id"], "--socket", daemon.socket)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"trace {run['trace_id']}  run {run['run_id']}  completed"
    assert lines[2].split()[:4] == ["1", "write", "model", "scripted"], lines
    assert lines[-1].startswith("  1 calls (1 model, 0 tool, 0 failed); ")


async def test_version() -> None:
    code, out, _ = await cli("--version")
    assert code == 0 and out.startswith(f"ostinato {version('ostinato')} (protocol ")


async def test_runs_list_starts_without_pydantic_or_asyncio(daemon: DaemonProcess) -> None:
    code, _, err = await cli_importtime("runs", "list", "--socket", daemon.socket)
    assert code == 0, err
    imported = {match.group(1) for match in re.finditer(r"\|\s+(\S+)$", err, re.M)}
    # importlib.import_module (how the command's module is loaded) is not itself listed;
    # what that module imports is.
    assert "ostinato.clients.cli.link" in imported
    heavy = {name for name in imported if name.split(".")[0] in (
        "pydantic", "asyncio", "orjson", "yaml", "rich")
        or name.startswith(("ostinato.daemon", "ostinato.clients.python"))}
    assert not heavy, sorted(heavy)


async def cli_importtime(*args: str) -> tuple[int, str, str]:
    """The command under `python -X importtime`: its stderr lists every module imported."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", *CLI[1:], *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_without_socket_the_home_daemon_serves(short_tmp: Path) -> None:
    home = str(short_tmp / "home")
    try:
        # The first command starts the home's daemon; the next ones find it.
        code, out, err = await cli("runs", "list", "--json", "--home", home)
        assert code == 0, err
        assert json.loads(out) == {"runs": [], "next_cursor": None}
        code, out, err = await cli("call", "run.start", json.dumps(
            {"pipeline": ONE_CALL, "settings": FAST, "wait": True}), "--home", home)
        assert code == 0, err
        run_id = json.loads(out)["run_id"]
        code, out, err = await cli("runs", "watch", run_id, "--home", home)
        assert code == 0, err
        assert out.startswith(f"run {run_id}  one_call  completed (success)\n")
    finally:
        code, _, err = await cli("daemon", "stop", "--home", home)
        assert code == 0, err
