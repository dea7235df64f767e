"""Redaction keeps every file and row JSON: a secret of any JSON type, under a secret-looking
name at any depth, is taken out of what a run writes without cutting a JSON token, and the
run still reads back, resumes and snapshots."""

from __future__ import annotations

from pathlib import Path

from .runs_support import FAST, check_files_parse, dot, make_fifo, read_fifo, read_json
from .snapshots_support import create
from .support import DaemonProcess

PIN = 918273645  # a numeric secret no uuid, time or size of a test run would contain


def blocking(go: Path, fifo: Path) -> dict[str, str]:
    """A pipeline whose model and tool both say the PIN, then a tool that blocks (announcing
    its pid in `fifo`) until `go` exists."""
    return dot(f"""\
        digraph pinned {{
            start [shape=Mdiamond]
            ask [prompt="Check $topic", scripted.response="the pin is {PIN}"]
            say [shape=parallelogram, tool_command="echo pin={PIN}"]
            slow [shape=parallelogram,
                  tool_command="test -e {go} && exit 0; echo $$ > {fifo}; exec sleep 30"]
            done [shape=Msquare]
            start -> ask -> say -> slow -> done
        }}""")


async def test_a_numeric_secret_input_leaves_a_run_readable_resumable_and_off_disk(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    wire = await daemon.connect()
    go, fifo = tmp_path / "go", make_fifo(tmp_path / "announce")
    inputs = {"password": PIN, "topic": "release", "db": {"pin_code": PIN, "port": 5432},
              "limits": {"api_key": [PIN, 1.5, True, None], "auth": {"n": PIN}}}
    started = await wire.result("run.start", {"pipeline": blocking(go, fifo),
                                              "inputs": inputs, "settings": FAST})
    run_id = started["run_id"]
    await read_fifo(fifo)  # the run is in `slow`: its checkpoint holds the inputs
    cancelled = await wire.result("run.cancel", {"run_id": run_id})
    assert (cancelled["status"], cancelled["resumable"]) == ("cancelled", True)

    detail = await wire.result("run.get", {"run_id": run_id})
    assert detail["context"]["password"] == "[redacted]"
    assert read_json(detail, "checkpoint.json")["context"]["password"] == "[redacted]"

    go.touch()
    resumed = await wire.result("run.resume", {"run_id": run_id, "wait": True})
    assert (resumed["status"], resumed["outcome"]) == ("completed", "success"), resumed
    detail = await wire.result("run.get", {"run_id": run_id})
    assert detail["completed_nodes"][-1] == "done"
    snapshot = await create(wire, run_id=run_id, name="pinned")
    assert snapshot["inputs"]["password"] == "[redacted]"
    assert str(PIN) not in str([detail, snapshot])
    assert await daemon.stop() == 0

    checked = check_files_parse(daemon.home)
    run_dir = Path(detail["run_dir"])
    assert {run_dir / "checkpoint.json", run_dir / "manifest.json", run_dir / "trace.jsonl",
            run_dir / "config" / "launch.json"} <= set(checked)
    written = [p for p in daemon.home.rglob("*") if p.is_file()]
    assert [str(p) for p in written if str(PIN).encode() in p.read_bytes()] == []
