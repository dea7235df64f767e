"""`ostinato test` as a subprocess against a daemon: a line per snapshot, the summary, the
reports it writes, `--json`, and the exit codes: 0 all passed, 1 failures, 2 errors or
budget exceeded (and bad usage), 3 no daemon."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from .support import DaemonProcess
from .tests_run_support import FAILS, priced, snapshot

CLI = [sys.executable, "-m", "ostinato.clients.cli"]


async def ostinato(*args: str, cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    """Run the `ostinato` command without blocking the loop that drains the daemon."""
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_exit_codes_follow_the_verdict(daemon: DaemonProcess, tmp_path: Path) -> None:
    wire = await daemon.connect()
    await snapshot(wire, "cli-good", priced("cligood", 1), tags=["good"])
    await snapshot(wire, "cli-good-too", priced("cligoodtoo", 2), tags=["good"])
    await snapshot(wire, "cli-bad", priced("clibad", 1), tags=["bad"], invariants=FAILS)
    socket = ("--socket", daemon.socket, "--mode", "live")

    code, out, err = await ostinato("test", "--tags", "good", *socket, cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("test run ") and "2 snapshot(s) (mode live" in lines[0]
    assert any(line.startswith("  ✓ cli-good v1  passed  1/1 invariants") for line in lines)
    assert lines[-1].startswith("passed: 2 passed, 0 failed, 0 errors, 0 skipped, "
                                "0 budget exceeded, of 2; cost $3.0000")
    # The table of the test run's snapshots, before the verdict.
    header = next(line for line in lines if line.split()[:2] == ["snapshot", "version"])
    assert header.split() == ["snapshot", "version", "status", "invariants", "trials", "cost"]
    assert ["✓", "cli-good-too", "v1", "passed", "1/1", "1", "$2.0000"] in [
        line.split() for line in lines]

    code, out, err = await ostinato("test", "--all", *socket, cwd=tmp_path)
    assert code == 1, err
    assert "  ✗ cli-bad v1  failed  1/2 invariants" in out
    assert ["✗", "cli-bad", "v1", "failed", "1/2", "1", "$1.0000"] in [
        line.split() for line in out.splitlines()]
    assert "      ✗ contains: " in out

    # One at a time, three snapshots ($1, $1, then two $1 calls): the third's first call
    # crosses a $2.50 limit, so its second never starts: exit 2, not 1.
    code, out, err = await ostinato("test", "--all", "--cost-limit-usd", "2.5",
                                    "--concurrency", "1", *socket, cwd=tmp_path)
    assert code == 2, err
    assert out.splitlines()[-2].startswith("budget_exceeded: ")
    assert "the cost budget ($2.5) ran out during snapshot 'cli-good-too' v1" in out

    code, _, err = await ostinato("test", "--tags", "no-such-tag", *socket, cwd=tmp_path)
    assert code == 2 and "no snapshot has the tags" in err
    code, _, err = await ostinato("test", "--all", "--tags", "good", *socket, cwd=tmp_path)
    assert code == 2 and "exactly one of" in err
    code, _, err = await ostinato("test", "--all", "--socket", str(tmp_path / "none.sock"),
                                  cwd=tmp_path)
    assert code == 3, err
    # A report that cannot be written is bad usage, found before anything runs.
    runs_before = len((await wire.result("tests.list", {}))["test_runs"])
    code, _, err = await ostinato("test", "--all", "--junit", str(tmp_path / "no" / "r.xml"),
                                  *socket, cwd=tmp_path)
    assert code == 2 and "--junit: no directory" in err, err
    assert len((await wire.result("tests.list", {}))["test_runs"]) == runs_before


async def test_reports_and_json(daemon: DaemonProcess, tmp_path: Path) -> None:
    wire = await daemon.connect()
    await snapshot(wire, "rep-good", priced("repgood", 1), tags=["rep"])
    await snapshot(wire, "rep-bad", priced("repbad", 1), tags=["rep"], invariants=FAILS)
    junit, page, notes = tmp_path / "r.xml", tmp_path / "r.html", tmp_path / "r.md"
    code, out, err = await ostinato(
        "test", "--tags", "rep", "--mode", "live", "--json", "--junit", str(junit),
        "--html", str(page), "--markdown", str(notes), "--socket", daemon.socket,
        cwd=tmp_path)
    assert code == 1, err
    result = json.loads(out)  # only JSON on stdout
    assert result["summary"]["failed"] == 1 and result["summary"]["passed"] == 1
    stored = await wire.result("tests.get", {"test_run_id": result["test_run_id"]})
    assert stored == result
    for path, form in ((junit, "junit"), (page, "html"), (notes, "markdown")):
        report = await wire.result("tests.report", {"test_run_id": result["test_run_id"],
                                                    "format": form})
        assert path.read_text() == report["content"]


async def test_tests_list_and_show(daemon: DaemonProcess, tmp_path: Path) -> None:
    wire = await daemon.connect()
    await snapshot(wire, "shown-good", priced("showngood", 1), tags=["shown"])
    await snapshot(wire, "shown-bad", priced("shownbad", 1), tags=["shown"], invariants=FAILS)
    socket = ("--socket", daemon.socket)
    code, out, err = await ostinato("test", "--tags", "shown", "--mode", "live", "--json",
                                    *socket, cwd=tmp_path)
    assert code == 1, err
    failed = json.loads(out)
    code, out, err = await ostinato("test", "--snapshot", "shown-good", "--mode", "live",
                                    "--json", *socket, cwd=tmp_path)
    assert code == 0, err
    passed = json.loads(out)

    code, out, err = await ostinato("tests", "list", *socket, cwd=tmp_path)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["TEST", "RUN", "STATUS", "MODE", "SNAPSHOTS", "COST", "STARTED"]
    assert [row.split()[:3] for row in rows] == [[passed["test_run_id"], "passed", "live"],
                                                 [failed["test_run_id"], "failed", "live"]]
    assert "1/2 passed, 1 failed, 0 errors  $2.0000" in rows[1]
    code, out, err = await ostinato("tests", "list", "--status", "failed", "--json", *socket,
                                    cwd=tmp_path)
    assert code == 0, err
    assert [t["test_run_id"] for t in json.loads(out)["test_runs"]] == [failed["test_run_id"]]
    code, out, _ = await ostinato("tests", "list", "--limit", "1", *socket, cwd=tmp_path)
    assert len(out.splitlines()) == 3 and out.splitlines()[-1].startswith("more: ")

    code, out, err = await ostinato("tests", "show", failed["test_run_id"], *socket,
                                    cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"test run {failed['test_run_id']}: failed"
    assert "  selected by tags shown" in lines
    bad = next(s for s in failed["snapshots"] if s["name"] == "shown-bad")
    assert "  ✗ shown-bad v1  failed  1/2 invariants  $1.0000" in lines
    assert f"      run(s) {bad['run_ids'][0]}" in lines
    assert lines[-1].startswith("failed: 1 passed, 1 failed, 0 errors")
    code, out, err = await ostinato("tests", "show", failed["test_run_id"], "--json", *socket,
                                    cwd=tmp_path)
    assert code == 0 and json.loads(out) == await wire.result(
        "tests.get", {"test_run_id": failed["test_run_id"]})
