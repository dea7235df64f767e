"""Pipelines that cannot run, through the daemon: pipeline.validate reports located
diagnostics, run.start refuses with -32005 and the same diagnostics, and nothing is created:
no run directory, no run row, no file outside the home."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .inprocess import InProcessDaemon
from .runs_support import CUSTOM_EXTENSION, INVALID_PIPELINE, dot, listing, recipe, where
from .support import DaemonProcess, Wire, start_daemon


async def refused(wire: Wire, pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate and try to run `pipeline`; both must refuse it with the same diagnostics."""
    checked = await wire.result("pipeline.validate", {"pipeline": pipeline})
    assert checked["valid"] is False
    reply = await wire.request("run.start", {"pipeline": pipeline, "wait": True})
    error = reply["error"]
    assert error["code"] == INVALID_PIPELINE
    # The error's diagnostics leave out empty fields; otherwise they are the same.
    assert error["data"]["diagnostics"] == [
        {k: v for k, v in d.items() if v is not None} for d in checked["diagnostics"]]
    first = next(d for d in checked["diagnostics"] if d["severity"] == "error")
    assert first["message"] in error["message"]
    if first.get("line"):
        assert f"{first['line']}:{first['col']}" in error["message"]
    return checked["diagnostics"]


async def nothing_was_run(wire: Wire, home: Path) -> None:
    assert (await wire.result("run.list", {}))["runs"] == []
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())
    assert not (home / "run_manifest.jsonl").exists()


@pytest.mark.in_process
async def test_a_dot_syntax_error_is_located_and_refused(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = dot("""\
        digraph broken {
            start [shape=Mdiamond]
            work [prompt="Work"
            done [shape=Msquare]
            start -> work -> done
        }""")
    [found] = await refused(wire, pipeline)
    # The missing ']' shows at the next token: the `done` statement.
    assert (found["rule"], found["severity"]) == ("syntax", "error")
    assert (found["line"], found["col"]) == where(pipeline["source"], "done [")
    planned = await wire.result("pipeline.plan", {"pipeline": pipeline})
    assert (planned["valid"], planned["plan"], planned["pipeline_hash"]) == (False, None, None)
    await nothing_was_run(wire, daemon.home)


@pytest.mark.in_process
async def test_a_recipe_needing_an_unknown_stage_is_refused_at_the_need(
        daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    pipeline = recipe("""\
        name: lost
        stages:
          - id: a
            prompt: A
          - id: b
            needs: [a, ghost]
            prompt: B
        """)
    [found] = await refused(wire, pipeline)
    # A recipe's needs become its edges: an unknown one is refused as the recipe parses.
    assert found["rule"] == "syntax" and "ghost" in found["message"]
    assert (found["line"], found["col"]) == where(pipeline["source"], "ghost")
    await nothing_was_run(wire, daemon.home)


async def test_an_edge_to_a_node_that_is_gone_is_an_edge_target_exists_error(
        short_tmp: Path) -> None:
    """DOT declares a node by naming it in an edge, and recipes check needs as they parse,
    so only a transform can leave an edge dangling: the custom extension's transform drops
    the nodes marked `test.drop=true`, and the lint that runs after transforms reports it."""
    extended = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                  "--extension", CUSTOM_EXTENSION)
    try:
        wire = await extended.connect()
        pipeline = dot("""\
            digraph dangling {
                start [shape=Mdiamond]
                work [prompt="Work"]
                helper [prompt="Help", test.drop=true]
                done [shape=Msquare]
                start -> work
                work -> helper
                helper -> done
            }""")
        diagnostics = await refused(wire, pipeline)
        dangling = [d for d in diagnostics if d["rule"] == "edge_target_exists"]
        assert [(d["severity"], d["edge"]) for d in dangling] == [
            ("error", ["work", "helper"]), ("error", ["helper", "done"])]
        assert (dangling[0]["line"], dangling[0]["col"]) == where(
            pipeline["source"], "work -> helper")
        await nothing_was_run(wire, extended.home)
    finally:
        assert await extended.stop() == 0, "".join(extended.log)


@pytest.mark.in_process
async def test_a_pipeline_without_a_start_node_is_refused(daemon: InProcessDaemon) -> None:
    wire = await daemon.connect()
    diagnostics = await refused(wire, dot("""\
        digraph headless {
            work [prompt="Work"]
            done [shape=Msquare]
            work -> done
        }"""))
    assert [(d["rule"], d["severity"]) for d in diagnostics
            if d["severity"] == "error"] == [("start_node", "error")]
    await nothing_was_run(wire, daemon.home)


@pytest.mark.in_process
async def test_pipelines_nested_past_what_the_parser_can_read_are_syntax_errors(
        daemon: InProcessDaemon) -> None:
    # Recursion through 2,000 levels of nesting used to escape as an internal error.
    wire = await daemon.connect()
    depth = 2000
    subgraphs = {"source": "digraph deep {\n" + "subgraph {\n" * depth
                 + "start [shape=Mdiamond]\n" + "}\n" * depth + "}\n", "format": "dot"}
    [found] = await refused(wire, subgraphs)
    assert (found["rule"], found["message"]) == ("syntax", "subgraphs nested more than 100 deep")
    assert (found["line"], found["col"]) == (102, 1)  # the 101st `subgraph`
    lists = {"source": "name: deep\nstages: " + "[" * depth + "]" * depth + "\n",
             "format": "recipe"}
    [found] = await refused(wire, lists)
    assert (found["rule"], found["message"]) == ("syntax",
                                                 "lists and maps nested more than 100 deep")
    assert (found["line"], found["col"]) == (2, 108)  # the 100th `[`: the document is one
    assert (await wire.result("daemon.status", {}))["pid"] == os.getpid()  # still serving
    await nothing_was_run(wire, daemon.home)


@pytest.mark.in_process
async def test_path_like_node_ids_are_syntax_errors_and_touch_nothing(
        daemon: InProcessDaemon, short_tmp: Path) -> None:
    wire = await daemon.connect()
    before = listing(short_tmp)
    attempts = [
        dot("""\
            digraph escape {
                start [shape=Mdiamond]
                ../../x [prompt="Escape"]
                done [shape=Msquare]
                start -> done
            }"""),
        dot("""\
            digraph escape {
                start [shape=Mdiamond]
                "../../x" [prompt="Escape"]
                done [shape=Msquare]
                start -> "../../x" -> done
            }"""),
        recipe("""\
            name: escape
            stages:
              - id: ../../x
                prompt: Escape
            """),
    ]
    for pipeline in attempts:
        [found] = await refused(wire, pipeline)
        assert found["rule"] == "syntax" and "../../x" in found["message"]
        assert (found["line"], found["col"]) == where(pipeline["source"],
                                                      '"../../x"' if '"../../x"' in
                                                      pipeline["source"] else "../../x")
    assert listing(short_tmp) == before  # the home is under short_tmp: nothing anywhere
    await nothing_was_run(wire, daemon.home)


@pytest.mark.in_process
async def test_an_unreadable_pipeline_file_is_an_io_diagnostic(
        daemon: InProcessDaemon, tmp_path: Path) -> None:
    wire = await daemon.connect()
    [missing] = await refused(wire, {"path": str(tmp_path / "absent.dot")})
    assert (missing["rule"], missing["severity"]) == ("io", "error")
    assert "absent.dot" in missing["message"]
    (tmp_path / "notes.txt").write_text("digraph g {}")
    [unknown] = await refused(wire, {"path": str(tmp_path / "notes.txt")})
    assert unknown["rule"] == "io" and "format" in unknown["message"]
    await nothing_was_run(wire, daemon.home)


async def test_a_fifo_or_a_device_is_refused_without_blocking_anyone(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    bystander = await daemon.connect()
    wire = await daemon.connect()
    fifo = tmp_path / "pipe.dot"
    os.mkfifo(fifo)  # nobody writes to it: reading it would wait forever
    for path in (str(fifo), "/dev/zero", str(tmp_path)):  # /dev/zero never ends
        [diagnostic] = await refused(wire, {"path": path, "format": "dot"})
        assert (diagnostic["rule"], diagnostic["severity"]) == ("io", "error")
        assert "not a regular file" in diagnostic["message"]
        assert (await bystander.result("daemon.status"))["pid"] == daemon.process.pid
    await nothing_was_run(wire, daemon.home)


async def test_a_pipeline_file_over_the_size_limit_is_refused(short_tmp: Path) -> None:
    daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                "--max-pipeline-bytes", "4096")
    try:
        wire = await daemon.connect()
        source = "digraph big {\n  start [shape=Mdiamond]  exit [shape=Msquare]\n" \
                 "  start -> exit\n}\n"
        path = short_tmp / "big.dot"
        path.write_text(source + "// padding\n" * 400)  # valid, and 4,460 bytes more
        [diagnostic] = await refused(wire, {"path": str(path)})
        assert (diagnostic["rule"], diagnostic["severity"]) == ("io", "error")
        assert "4096-byte limit" in diagnostic["message"]
        [inline] = await refused(wire, {"source": path.read_text(), "format": "dot"})
        assert "4096-byte limit" in inline["message"]
        path.write_text(source)  # under the limit: it runs
        assert (await wire.result("pipeline.validate", {"pipeline": {"path": str(path)}}))[
            "valid"]
        await nothing_was_run(wire, daemon.home)
    finally:
        assert await daemon.stop() == 0
