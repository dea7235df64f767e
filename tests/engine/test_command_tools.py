"""Command tools (issue 17, step 2 of decision 0006): declaration, argv rendering without a
shell, and running with a group-killing timeout, capped output, a confined cwd and an
explicit environment. Real processes throughout."""

from __future__ import annotations

import asyncio
import os
import select
import sys
from pathlib import Path

import orjson
import pytest

from ostinato.daemon.engine.dot import parse_dot
from ostinato.daemon.engine.graph import Duration
from ostinato.daemon.engine.tools.capture import resolve_cwd, run_captured
from ostinato.daemon.engine.tools.spec import (
    CommandTool,
    render_argv,
    resolve_secrets,
    tools_from_attrs,
    tools_from_settings,
)

SCHEMA = {"type": "object", "properties": {"path": {"type": "string"},
                                           "limit": {"type": "integer", "default": 5}},
          "required": ["path"], "additionalProperties": False}
ECHO_ARGS = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]


def tool(argv: list[str], **fields: object) -> CommandTool:
    return CommandTool.from_mapping("t", {"schema": SCHEMA, "argv": argv, **fields})


def gone(pid: int) -> bool:
    """The process has ended (or is not there at all), waited for through a pidfd: SIGKILL
    is delivered asynchronously, and a grandchild is not ours to waitpid."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], 10)[0])  # readable once it has exited
    finally:
        os.close(fd)


# -- declaration --------------------------------------------------------------------------

def test_attrs_and_settings_declare_the_same_tool() -> None:
    attrs = {"tool.wc.description": "Count words", "tool.wc.schema": orjson.dumps(SCHEMA).decode(),
             "tool.wc.argv": '["wc", "-w", "--", "{path}"]', "tool.wc.timeout": Duration(10_000),
             "tool.wc.max_output": "4096", "tool.wc.env": '{"LC_ALL": "C"}',
             "tool.wc.secrets": "A_TOKEN, B_TOKEN", "tool_command": "ignored", "goal": "x"}
    settings = {"wc": {"description": "Count words", "schema": SCHEMA,
                       "argv": ["wc", "-w", "--", "{path}"], "timeout": "10s",
                       "max_output": 4096, "env": {"LC_ALL": "C"},
                       "secrets": ["A_TOKEN", "B_TOKEN"]}}
    from_attrs, from_settings = tools_from_attrs(attrs), tools_from_settings(settings)
    assert from_attrs == from_settings
    wc = from_attrs["wc"]
    assert (wc.timeout_s, wc.max_output, wc.secrets) == (10.0, 4096, ("A_TOKEN", "B_TOKEN"))


@pytest.mark.parametrize(("fields", "message"), [
    ({"schema": '{"type": "string"}'}, '"type": "object"'),
    ({"schema": '{"type": "object", "properties": {"a": {"type": 3}}}'}, "not a valid JSON"),
    ({"schema": "{not json"}, "not valid JSON"),
    ({"argv": "[]"}, "program first"),
    ({"argv": '["cat", "{nope}"]'}, "placeholder {nope}"),
    ({"timeout": "10"}, "duration"),
    ({"max_output": 0}, "max_output"),
    ({"env": '{"A": 1}'}, "env"),
    ({"secrets": "NOT-A-NAME"}, "secrets"),
    ({"shell": "true"}, "unknown field"),
])
def test_a_bad_declaration_is_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CommandTool.from_mapping("t", {"schema": SCHEMA, "argv": '["cat", "{path}"]', **fields})


def test_a_pipeline_declares_tools_on_the_graph_and_on_nodes() -> None:
    graph = parse_dot(r"""digraph g {
        graph [tool.wc.schema="{\"type\":\"object\",\"properties\":{\"path\":{}}}",
               tool.wc.argv="[\"wc\", \"-w\", \"--\", \"{path}\"]", tool.wc.timeout=10s]
        start [shape=Mdiamond]; exit [shape=Msquare]
        a [prompt="p", tool.ls.argv="[\"ls\"]", tool.ls.cwd="notes"]
        start -> a -> exit }""")
    wc, = tools_from_attrs(graph.attrs).values()
    assert (wc.argv, wc.timeout_s) == (("wc", "-w", "--", "{path}"), 10.0)
    assert tools_from_attrs(graph.nodes["a"].attrs)["ls"].cwd == "notes"


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown field\(s\) b.argv"):
        tools_from_attrs({"tool.a.b.argv": '["true"]'})  # name "a", field "b.argv"
    with pytest.raises(ValueError, match="a name is"):
        CommandTool.from_mapping("files.read", {"argv": ["true"]})


# -- argv rendering -----------------------------------------------------------------------

def test_placeholders_fill_whole_elements_and_in_place() -> None:
    wc = tool(["grep", "--max-count={limit}", "--", "{path}", "{workspace}/x"])
    assert render_argv(wc, {"path": "a b.md", "limit": 3}, "/ws") == \
        ["grep", "--max-count=3", "--", "a b.md", "/ws/x"]
    # An optional argument left out takes the schema's default.
    assert render_argv(wc, {"path": "a"}, "/ws")[1] == "--max-count=5"


async def test_a_shell_looking_value_stays_one_literal_argument(tmp_path: Path) -> None:
    echo = tool([*ECHO_ARGS, "{path}", "x{path}"])
    value = "a.md; rm -rf / && echo $HOME `id` | cat > out"
    argv = render_argv(echo, {"path": value}, str(tmp_path))
    result = await run_captured(argv, workspace=str(tmp_path), timeout_s=30, max_output=4096)
    assert result.exit_code == 0
    assert orjson.loads(result.stdout) == [value, "x" + value]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("arguments", "message"), [
    ({"path": "a", "rm": "-rf"}, "not in its schema: rm"),
    ({"path": 3}, "is not of type 'string'"),
    ({}, "'path' is a required property"),
    (["a"], "must be a JSON object"),
])
def test_arguments_outside_the_schema_are_refused(arguments: object,
                                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_argv(tool(["cat", "{path}"]), arguments, "/ws")


def test_a_secret_never_reaches_argv() -> None:
    secret = "s3cr3t-value-123"
    curl = CommandTool.from_mapping("curl", {"schema": SCHEMA, "secrets": "API_TOKEN",
                                             "argv": ["curl", "-H", "X: {path}"]})
    secrets = resolve_secrets(curl, {"API_TOKEN": secret}, allowed={"API_TOKEN"})
    assert render_argv(curl, {"path": "fine"}, "/ws", secrets) == ["curl", "-H", "X: fine"]
    with pytest.raises(ValueError, match="secret API_TOKEN would be in argv") as refused:
        render_argv(curl, {"path": f"Bearer {secret}"}, "/ws", secrets)
    assert secret not in str(refused.value)


def test_secrets_come_only_from_allowed_names() -> None:
    curl = CommandTool.from_mapping("curl", {"argv": ["curl"], "secrets": "HOME_DB_PASSWORD"})
    with pytest.raises(ValueError, match="is not allowed"):
        resolve_secrets(curl, {"HOME_DB_PASSWORD": "x"}, allowed={"API_TOKEN"})
    with pytest.raises(ValueError, match="is not set"):
        resolve_secrets(curl, {}, allowed={"HOME_DB_PASSWORD"})


# -- running ------------------------------------------------------------------------------

async def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # The child starts a grandchild and waits for it: both must die at the timeout.
    argv = ["/bin/sh", "-c", "sleep 300 & echo $$ $!; wait"]
    result = await run_captured(argv, workspace=str(tmp_path), timeout_s=0.5,
                                max_output=4096)
    assert result.timed_out
    child, grandchild = map(int, result.stdout.split())
    assert gone(child) and gone(grandchild)


async def test_cancelling_the_call_kills_the_whole_process_group(tmp_path: Path) -> None:
    fifo = tmp_path / "pids"
    os.mkfifo(fifo)
    argv = ["/bin/sh", "-c", f"sleep 300 & echo $$ $! > {fifo}; wait"]
    call = asyncio.create_task(run_captured(argv, workspace=str(tmp_path), timeout_s=300,
                                            max_output=4096))
    # Opening the fifo for reading returns once the child has opened it for writing.
    child, grandchild = map(int, (await asyncio.to_thread(fifo.read_text)).split())
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert gone(child) and gone(grandchild)


async def test_a_background_process_does_not_outlive_its_call(tmp_path: Path) -> None:
    argv = ["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"]
    result = await run_captured(argv, workspace=str(tmp_path), timeout_s=30, max_output=4096)
    assert (result.exit_code, result.timed_out) == (0, False)
    assert gone(int(result.stdout))


async def test_output_is_capped_per_stream_and_the_truncation_recorded(tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write('x' * 200_000); sys.stderr.write('err')"
    result = await run_captured([sys.executable, "-c", script], workspace=str(tmp_path),
                                timeout_s=30, max_output=1000)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "x" * 1000, "err")
    assert result.truncated == {"stdout": {"kept": 1000, "total": 200_000}}
    assert result.to_dict()["truncated"] == result.truncated
    assert "truncated" not in (await run_captured(
        ["true"], workspace=str(tmp_path), timeout_s=30, max_output=10)).to_dict()


async def test_cwd_stays_inside_the_workspace(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    (workspace / "sub").mkdir(parents=True)
    outside.mkdir()
    (workspace / "escape").symlink_to(outside)
    result = await run_captured(["pwd", "-P"], workspace=str(workspace), cwd="sub",
                                timeout_s=30, max_output=4096)
    assert result.stdout.strip() == os.path.realpath(workspace / "sub")
    for cwd in ("..", "sub/../..", "escape", "escape/.", str(outside)):
        with pytest.raises(ValueError, match="outside the workspace"):
            resolve_cwd(str(workspace), cwd)
        with pytest.raises(ValueError, match="outside the workspace"):
            await run_captured(["true"], workspace=str(workspace), cwd=cwd, timeout_s=30,
                               max_output=10)


async def test_the_environment_is_explicit(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSTINATO_TEST_DAEMON_ONLY", "leaked")
    result = await run_captured(["env"], workspace=str(tmp_path), env={"GREETING": "hi"},
                                timeout_s=30, max_output=65536)
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert "OSTINATO_TEST_DAEMON_ONLY" not in env
    assert env == {"PATH": os.environ["PATH"], "LANG": "C.UTF-8",
                   "HOME": os.path.realpath(tmp_path), "GREETING": "hi"}
