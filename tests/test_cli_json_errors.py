"""With `--json`, every command's failure is one JSON object on stdout, `{"error": {"code",
"message", "data"}}` (the JSON-RPC code of a daemon's error, else a word), while stderr keeps
the human text; and the exit codes stay what they were."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .snapshots_support import SOURCE, ostinato
from .support import DaemonProcess

NOT_FOUND, INVALID_PARAMS = -32001, -32602


def json_error(done: Any, exit_code: int) -> dict[str, Any]:
    """The error object a failed command printed on stdout; stderr said it in words."""
    assert done.returncode == exit_code, (done.stdout, done.stderr)
    error = json.loads(done.stdout)["error"]
    assert error["message"] in done.stderr
    return error


async def test_daemon_errors_keep_their_json_rpc_code(daemon: DaemonProcess,
                                                      tmp_path: Path) -> None:
    socket = ("--socket", daemon.socket, "--json")
    unknown = "01a20000-0000-7000-8000-000000000000"
    for command in (("diff", unknown, unknown), ("replay", unknown),
                    ("reeval", unknown, "--invariants", '[{"type": "run_status"}]'),
                    ("tests", "show", unknown), ("snapshot", "show", unknown)):
        error = json_error(ostinato(*command, *socket, cwd=tmp_path), 1)
        assert error["code"] == NOT_FOUND and unknown in error["message"], command

    # Invalid params: exit 2, each field's complaint in `data` and on stderr.
    bad = ostinato("tests", "list", "--limit", "5000", *socket, cwd=tmp_path)
    error = json_error(bad, 2)
    assert error["code"] == INVALID_PARAMS and error["data"][0]["loc"] == ["limit"]
    assert "  limit: " in bad.stderr

    # An invalid pipeline: its diagnostics in `data`, `file:line:col` lines on stderr.
    broken = tmp_path / "broken.dot"
    broken.write_text("digraph {\n  start [shape=Mdiamond]\n  a -> \n}\n")
    refused = ostinato("run", str(broken), *socket, cwd=tmp_path)
    error = json_error(refused, 2)
    assert error["data"]["diagnostics"] and f"{broken}:" in refused.stderr

    # What the command itself finds wrong: code `usage`, exit 2.
    error = json_error(ostinato("run", "absent.dot", *socket, cwd=tmp_path), 2)
    assert (error["code"], error["message"]) == ("usage", "no such pipeline file: absent.dot")
    error = json_error(ostinato("test", "--all", "--tags", "x", *socket, cwd=tmp_path), 2)
    assert error["code"] == "usage" and "exactly one of" in error["message"]

    # Without --json stdout stays empty: the human text alone, on stderr.
    plain = ostinato("tests", "show", unknown, "--socket", daemon.socket, cwd=tmp_path)
    assert plain.returncode == 1 and plain.stdout == ""
    assert plain.stderr.startswith(f"ostinato tests show: no test run {unknown}")


def test_usage_and_unreachable_errors_are_json_too(tmp_path: Path) -> None:
    nowhere = ("--socket", str(tmp_path / "none.sock"), "--json")
    for command in (("tests", "list"), ("snapshot", "list"), ("diff", "a", "b"),
                    ("test", "--all"), ("run", "-")):
        error = json_error(ostinato(*command, *nowhere, cwd=tmp_path), 3)
        assert error["code"] == "unreachable", command

    # argparse's own complaints too, with its usage line on stderr.
    parsed = ostinato("tests", "list", "--limit", "0", "--json", cwd=tmp_path)
    error = json_error(parsed, 2)
    assert error["code"] == "usage" and "--limit" in error["message"]
    assert parsed.stderr.startswith("usage: ostinato tests list")


async def test_settings_and_inputs_take_yaml_inline_or_in_a_file(daemon: DaemonProcess,
                                                                 tmp_path: Path) -> None:
    socket = ("--socket", daemon.socket)
    pipeline = tmp_path / "brief.dot"
    pipeline.write_text(SOURCE)
    settings = tmp_path / "settings.yaml"
    settings.write_text("# YAML, with a comment\nproviders:\n  scripted:\n    responses:\n"
                        "      write: 'From YAML: the moon.'\n")
    inputs = tmp_path / "inputs.yml"
    inputs.write_text("topic: tides\ndepth: 3\nsources: [sea, moon]\n")
    done = ostinato("run", str(pipeline), "--settings", str(settings), "--inputs", str(inputs),
                    "--input", "topic=waves", "--json", *socket, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = await (await daemon.connect()).result("run.get", {"run_id": json.loads(
        done.stdout)["run_id"]})
    # Typed values from --inputs; --input given after wins.
    assert run["context"]["topic"] == "waves" and run["context"]["sources"] == ["sea", "moon"]
    assert run["context"]["depth"] == 3
    assert "From YAML: the moon." in json.dumps(run["context"])

    made = ostinato("snapshot", "create", str(pipeline), "--name", "yaml", "--inputs",
                    "{topic: tides, depth: 2}", "--settings", "max_parallel: 1", "--json",
                    *socket, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    snapshot = json.loads(made.stdout)
    assert snapshot["inputs"] == {"topic": "tides", "depth": 2}
    assert snapshot["settings"]["max_parallel"] == 1

    not_a_mapping = ostinato("run", str(pipeline), "--inputs", "- a\n- b\n", "--json",
                             *socket, cwd=tmp_path)
    assert json_error(not_a_mapping, 2)["message"].startswith("--inputs must be an object")
    broken = ostinato("run", str(pipeline), "--settings", "a: [b\n", *socket, cwd=tmp_path)
    assert broken.returncode == 2 and "neither JSON nor YAML" in broken.stderr
