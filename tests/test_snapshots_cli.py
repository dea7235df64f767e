"""`ostinato snapshot create | list | show | delete | replay` end to end: the command line
against a real daemon's socket, as a user types it."""

from __future__ import annotations

import json
from pathlib import Path

from .snapshots_support import SOURCE, brief_run, ostinato
from .support import DaemonProcess

CHECKS_YAML = """\
# seeds/001 spelling works in a YAML file too
- type: run_status
  value: COMPLETED
  description: the run completes
- type: contains
  value: follow the moon
  path: node.write
"""


async def snapshot_by_cli(daemon: DaemonProcess, tmp_path: Path) -> tuple[str, str]:
    """`ostinato snapshot create --run` of a fresh run; (its run id, the snapshot's id)."""
    run = await brief_run(await daemon.connect())
    checks = tmp_path / "checks.yaml"
    checks.write_text(CHECKS_YAML)
    made = ostinato("snapshot", "create", "--run", run["run_id"], "--name", "brief",
                    "--tag", "smoke", "--tag", "brief", "--invariants", str(checks),
                    "--socket", daemon.socket, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    return run["run_id"], made.stdout.splitlines()[0].split("(")[1].rstrip(")")


async def test_create_list_and_show(daemon: DaemonProcess, tmp_path: Path) -> None:
    wire = await daemon.connect()
    run = await brief_run(wire)
    socket = ("--socket", daemon.socket)
    checks = tmp_path / "checks.yaml"
    checks.write_text(CHECKS_YAML)

    made = ostinato("snapshot", "create", "--run", run["run_id"], "--name", "brief",
                    "--tag", "smoke", "--tag", "brief", "--invariants", str(checks),
                    "--description", "the tides brief", *socket, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[0].startswith("created snapshot brief v1 (")
    snapshot_id = lines[0].split("(")[1].rstrip(")")
    assert "  tags       smoke, brief" in lines
    assert "  invariants 2" in lines and "  cassette   3 calls" in lines
    assert any(line.startswith(f"  reference  run {run['run_id']}: completed, 3 calls")
               for line in lines)

    pipeline = tmp_path / "brief.dot"
    pipeline.write_text(SOURCE)
    setup = ostinato("snapshot", "create", str(pipeline), "--name", "setup", "--input",
                     "topic=tides", "--set", "tone=dry", "--tag", "smoke", "--json", *socket,
                     cwd=tmp_path)
    assert setup.returncode == 0, setup.stderr
    setup_snapshot = json.loads(setup.stdout)
    assert (setup_snapshot["inputs"], setup_snapshot["variables"]) == (
        {"topic": "tides"}, {"tone": "dry"})
    assert setup_snapshot["has_cassette"] is False

    listed = ostinato("snapshot", "list", "--tag", "smoke", *socket, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert [row.split()[0] for row in rows] == [setup_snapshot["id"], snapshot_id]
    assert "brief v1  [smoke, brief]  brief  2 invariants  3 calls" in rows[1]
    as_json = json.loads(ostinato("snapshot", "list", "--tag", "brief", "--json", *socket,
                                  cwd=tmp_path).stdout)
    assert [s["id"] for s in as_json["snapshots"]] == [snapshot_id]
    first = ostinato("snapshot", "list", "--limit", "1", *socket, cwd=tmp_path)
    assert len(first.stdout.splitlines()) == 2 and "more:" in first.stdout

    shown = ostinato("snapshot", "show", snapshot_id, "--cassette", *socket, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert '  inputs     {"topic":"tides"}' in shown.stdout
    assert '"value":"completed"' in shown.stdout and "  #3 write (model, attempt 1)" in \
        shown.stdout


async def test_replay_and_delete(daemon: DaemonProcess, tmp_path: Path) -> None:
    wire = await daemon.connect()
    socket = ("--socket", daemon.socket)
    run_id, snapshot_id = await snapshot_by_cli(daemon, tmp_path)
    pipeline = tmp_path / "brief.dot"
    pipeline.write_text(SOURCE)
    setup = ostinato("snapshot", "create", str(pipeline), "--name", "setup", "--input",
                     "topic=tides", "--json", *socket, cwd=tmp_path)
    setup_id = json.loads(setup.stdout)["id"]

    replayed = ostinato("snapshot", "replay", snapshot_id, "--json", *socket, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    result = json.loads(replayed.stdout)
    assert (result["outcome"], result["cost_usd"], result["snapshot_id"]) == (
        "success", 0.0, snapshot_id)
    trials = ostinato("snapshot", "replay", snapshot_id, "--trials", "2", *socket, cwd=tmp_path)
    assert trials.returncode == 0, trials.stderr
    assert "(recorded): 2/2 passed, verdict passed, cost $0.0000" in trials.stdout
    live = ostinato("snapshot", "replay", snapshot_id, "--mode", "live", "--input",
                    "topic=waves", *socket, cwd=tmp_path)
    assert live.returncode == 0 and "(live): completed (success), cost $65.0000" in live.stdout
    refused = ostinato("snapshot", "replay", setup_id, *socket, cwd=tmp_path)
    assert refused.returncode == 1 and "has no cassette to replay from" in refused.stderr

    unsure = ostinato("snapshot", "delete", snapshot_id, *socket, cwd=tmp_path)
    assert unsure.returncode == 2 and "add --yes" in unsure.stderr
    deleted = ostinato("snapshot", "delete", snapshot_id, "--yes", *socket, cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == (f"deleted snapshot brief v1 ({snapshot_id}) and its "
                                      "cassette (3 calls); 4 run(s) kept")
    gone = ostinato("snapshot", "show", snapshot_id, *socket, cwd=tmp_path)
    assert gone.returncode == 1 and f"no snapshot {snapshot_id}" in gone.stderr
    assert (await wire.result("run.get", {"run_id": run_id}))["status"] == "completed"


async def test_bad_snapshot_command_lines(daemon: DaemonProcess, tmp_path: Path) -> None:
    socket = ("--socket", daemon.socket)
    pipeline = tmp_path / "brief.dot"
    pipeline.write_text(SOURCE)

    both = ostinato("snapshot", "create", str(pipeline), "--run", "r", "--name", "x", *socket,
                    cwd=tmp_path)
    assert both.returncode == 2 and "one of them" in both.stderr
    checks = tmp_path / "checks.yml"
    checks.write_text("- type: run_status\n- type: contains\n  value: x\n  path: nodes\n")
    bad = ostinato("snapshot", "create", str(pipeline), "--name", "x", "--invariants",
                   str(checks), *socket, cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert "Invalid params" in bad.stderr and "invariants.1.contains.path" in bad.stderr
    not_a_list = ostinato("snapshot", "create", str(pipeline), "--name", "x", "--invariants",
                          '{"type": "run_status"}', *socket, cwd=tmp_path)
    assert not_a_list.returncode == 2 and "must be a list" in not_a_list.stderr
    listed = ostinato("snapshot", "list", "--json", *socket, cwd=tmp_path)
    assert json.loads(listed.stdout)["snapshots"] == []  # nothing was created


async def test_option_files_are_read_alike_by_every_command(daemon: DaemonProcess,
                                                            tmp_path: Path) -> None:
    """--settings and --invariants name a file or hold the value inline, for every command:
    a missing file or a value of the wrong shape is bad usage (2), never "unreachable"."""
    socket = ("--socket", daemon.socket)
    pipeline = tmp_path / "brief.dot"
    pipeline.write_text(SOURCE)
    for command in (("run", str(pipeline)), ("snapshot", "create", str(pipeline), "--name", "x")):
        missing = ostinato(*command, "--settings", "absent.json", *socket, cwd=tmp_path)
        assert missing.returncode == 2, missing.stderr
        assert "--settings: no such file" in missing.stderr
        a_list = ostinato(*command, "--settings", "[]", *socket, cwd=tmp_path)
        assert a_list.returncode == 2 and "--settings" in a_list.stderr, a_list.stderr
    run = await brief_run(await daemon.connect())
    checks = tmp_path / "checks.yaml"
    checks.write_text(CHECKS_YAML)
    reeval = ostinato("reeval", run["run_id"], "--invariants", str(checks), *socket,
                      cwd=tmp_path)
    assert reeval.returncode == 0, reeval.stderr
    assert reeval.stdout.startswith(f"run {run['run_id']}: passed (2 passed)")


async def test_snapshots_by_name_and_name_at_version(daemon: DaemonProcess,
                                                     tmp_path: Path) -> None:
    """Wherever a snapshot id is taken, a name means its latest version and `name@N` that
    version, in the daemon's methods and so on the command line."""
    wire = await daemon.connect()
    socket = ("--socket", daemon.socket)
    _, first_id = await snapshot_by_cli(daemon, tmp_path)
    _, second_id = await snapshot_by_cli(daemon, tmp_path)  # brief v2

    assert (await wire.result("snapshot.get", {"id": "brief"}))["id"] == second_id
    assert (await wire.result("snapshot.get", {"id": "brief@1"}))["id"] == first_id
    unknown_version = (await wire.request("snapshot.get", {"id": "brief@7"}))["error"]
    assert (unknown_version["code"], unknown_version["message"]) == (
        -32001, "snapshot 'brief' has no version 7 (versions: 1, 2)")
    assert unknown_version["data"]["versions"] == [1, 2]
    unknown_name = (await wire.request("snapshot.replay", {"id": "brieff"}))["error"]
    assert unknown_name["code"] == -32001 and "names: 'brief'" in unknown_name["message"]
    reeval = await wire.result("run.reeval", {"run_id": (await brief_run(wire))["run_id"],
                                              "snapshot_id": "brief@1"})
    assert reeval["verdict"] == "passed"
    tested = await wire.result("tests.run", {"snapshot_ids": ["brief@1", "brief"],
                                             "wait": True})
    assert [(s["snapshot_id"], s["version"]) for s in tested["snapshots"]] == [
        (first_id, 1), (second_id, 2)]
    missing = (await wire.request("tests.run", {"snapshot_ids": ["brief", "nope", "brief@9"]}))
    assert missing["error"]["code"] == -32001
    assert missing["error"]["data"]["missing"] == ["nope", "brief@9"]

    shown = ostinato("snapshot", "show", "brief@1", *socket, cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout.startswith(
        f"snapshot brief v1 ({first_id})"), shown.stderr
    replayed = ostinato("snapshot", "replay", "brief", "--json", *socket, cwd=tmp_path)
    assert replayed.returncode == 0 and json.loads(replayed.stdout)["snapshot_id"] == second_id
    test = ostinato("test", "--snapshot", "brief@1", *socket, cwd=tmp_path)
    assert test.returncode == 0 and "  ✓ brief v1  passed" in test.stdout, test.stderr
    gone = ostinato("snapshot", "show", "brief@3", "--json", *socket, cwd=tmp_path)
    assert gone.returncode == 1 and json.loads(gone.stdout)["error"]["data"]["versions"] == [
        1, 2]
    deleted = ostinato("snapshot", "delete", "brief", "--yes", "--json", *socket, cwd=tmp_path)
    assert deleted.returncode == 0 and json.loads(deleted.stdout)["id"] == second_id
    assert (await wire.result("snapshot.get", {"id": "brief"}))["id"] == first_id
