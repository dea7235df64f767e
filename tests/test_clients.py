"""The Python clients over every transport, and the `ostinato` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ostinato.clients.python import AsyncClient, Client, DaemonConnectionError, RpcError
from ostinato.protocol.codec import Framing
from ostinato.protocol.lifecycle import DaemonStatusResult

from .support import REPO, TEST_EXTENSION, WAIT, DaemonProcess, start_daemon


@pytest.mark.parametrize("framing", list(Framing))
async def test_async_client_over_a_spawned_stdio_daemon(tmp_path: Path,
                                                        framing: Framing) -> None:
    client = await AsyncClient.spawn(tmp_path / "home", framing=framing,
                                     stderr=subprocess.DEVNULL)
    init = await client.initialize("tests")
    assert init.serverInfo.name == "ostinato"
    status = await client.daemon_status()
    assert isinstance(status, DaemonStatusResult)
    assert status.pid == client.process.pid  # type: ignore[union-attr]
    with pytest.raises(RpcError) as raised:
        await client.call("daemon.status", {"bogus": 1})
    assert raised.value.code == -32602
    assert await client.close() == 0


async def test_async_client_progress_and_cancellation(daemon: DaemonProcess) -> None:
    client = await AsyncClient.connect_unix(daemon.socket)
    await client.initialize()
    seen: list[str] = []
    result = await client.request("test.slow", {"steps": 2},
                                  on_progress=lambda value: seen.append(value["kind"]))
    assert result == {"steps_done": 2} and seen == ["begin", "report", "report", "end"]

    began = asyncio.Event()
    task = asyncio.ensure_future(client.request("test.slow", {"gate": "client-cancel"},
                                                on_progress=lambda _: began.set()))
    await asyncio.wait_for(began.wait(), WAIT)
    task.cancel()  # sends $/cancelRequest
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await client.daemon_status()).connections == 1
    await client.close()


async def test_async_client_over_tcp_receives_notifications(daemon: DaemonProcess) -> None:
    client = await AsyncClient.connect_tcp(*daemon.tcp, framing=Framing.NDJSON, home=daemon.home)
    await client.initialize()
    received: asyncio.Queue = asyncio.Queue()
    client.on_notification("test/event", lambda method, params: received.put_nowait(params))
    await client.request("test.subscribe", {"topic": "t"})
    await client.request("test.publish", {"topic": "t", "payload": {"x": 1}})
    assert await asyncio.wait_for(received.get(), WAIT) == {"topic": "t", "payload": {"x": 1}}
    await client.close()


async def test_connection_errors_are_clear(short_tmp: Path) -> None:
    with pytest.raises(DaemonConnectionError):
        await AsyncClient.connect_unix(short_tmp / "nobody.sock")


def test_sync_client_over_unix_and_tcp(daemon: DaemonProcess) -> None:
    with Client.connect_unix(daemon.socket, timeout=WAIT) as client:
        client.initialize()
        assert client.daemon_status().transports[0] == f"unix:{daemon.socket}"
        with pytest.raises(RpcError) as raised:
            client.request("no.such")
        assert raised.value.code == -32601
    with Client.connect_tcp(*daemon.tcp, timeout=WAIT, home=daemon.home) as client:
        client.initialize()
        assert client.call("test.slow", {"steps": 1}) == {"steps_done": 1}


def test_sync_client_spawns_a_daemon(tmp_path: Path) -> None:
    client = Client.spawn(tmp_path / "home", args=("--extension", TEST_EXTENSION),
                          stderr=subprocess.DEVNULL, timeout=WAIT)
    client.initialize()
    assert client.daemon_status().home == str(tmp_path / "home")
    assert client.close() == 0


def ostinato(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ostinato.clients.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_cli_call_spawns_a_daemon_and_prints_json(tmp_path: Path) -> None:
    done = ostinato("call", "daemon.status", "{}", "--home", str(tmp_path / "h"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["home"] == str(tmp_path / "h")


def test_cli_call_uses_the_default_home(tmp_path: Path) -> None:
    done = ostinato("call", "daemon.status", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["home"] == str(tmp_path / ".ostinato")
    assert (tmp_path / ".ostinato" / "daemon.log").exists()


def test_cli_call_through_a_socket(daemon: DaemonProcess, tmp_path: Path) -> None:
    done = ostinato("call", "test.slow", '{"steps": 2}', "--socket", daemon.socket,
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"steps_done": 2}


def test_cli_call_reports_errors_with_exit_codes(daemon: DaemonProcess, tmp_path: Path) -> None:
    failed = ostinato("call", "no.such", "--socket", daemon.socket, cwd=tmp_path)
    assert failed.returncode == 1
    assert json.loads(failed.stderr)["error"]["code"] == -32601
    bad = ostinato("call", "daemon.status", "[1]", "--socket", daemon.socket, cwd=tmp_path)
    assert bad.returncode == 2 and "JSON object" in bad.stderr
    gone = ostinato("call", "daemon.status", "--socket", str(tmp_path / "x.sock"), cwd=tmp_path)
    assert gone.returncode == 3 and "cannot connect" in gone.stderr


async def test_cli_call_gives_up_at_its_timeout_on_a_daemon_that_does_not_answer(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    thaw = tmp_path / "thaw"
    call = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ostinato.clients.cli", "call", "test.freeze",
        json.dumps({"until": str(thaw)}), "--socket", daemon.socket, "--timeout", "1",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        # The timeout plus a few seconds to start Python: not the 10 s more a polite
        # shutdown of an unanswering daemon used to take.
        _, err = await asyncio.wait_for(call.communicate(), 1 + 6)
    finally:
        thaw.touch()
    assert call.returncode == 3 and "no answer within 1.0 s" in err.decode()
    assert (await (await daemon.connect()).result("daemon.status"))["pid"] > 0


def test_cli_call_refuses_params_too_deep_to_send(tmp_path: Path) -> None:
    deep = '{"a": ' + "[" * 600 + "]" * 600 + "}"
    done = ostinato("call", "daemon.status", deep, "--home", str(tmp_path / "h"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "nested too deeply" in done.stderr


async def test_cli_serve_without_a_transport_serves_the_home_socket(short_tmp: Path) -> None:
    home = short_tmp / "home"
    daemon = await start_daemon(home)
    try:
        assert daemon.endpoints == [f"unix:{home / 'daemon.sock'}"]
        wire = await daemon.connect()
        assert (await wire.result("daemon.status"))["home"] == str(home)
    finally:
        assert await daemon.stop() == 0, "".join(daemon.log)


def test_installed_console_script_honours_ostinato_home(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "ostinato"
    done = subprocess.run([str(script), "call", "daemon.status"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OSTINATO_HOME": str(tmp_path / "env-home")})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["home"] == str(tmp_path / "env-home")


def test_cli_call_rejects_a_malformed_tcp_address(tmp_path: Path) -> None:
    done = ostinato("call", "daemon.status", "--tcp", "nowhere", cwd=tmp_path)
    assert done.returncode == 2 and "HOST:PORT" in done.stderr


async def test_cli_call_reads_the_token_from_the_environment(short_tmp: Path) -> None:
    from .support import start_daemon

    daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                "--token", "tok-123")
    try:
        env = {**os.environ, "OSTINATO_TOKEN": "tok-123"}
        argv = [sys.executable, "-m", "ostinato.clients.cli", "call", "daemon.status",
                "--socket", daemon.socket]
        with_token = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await with_token.communicate()
        assert with_token.returncode == 0, err
        assert json.loads(out)["pid"] == daemon.process.pid
        without = await asyncio.create_subprocess_exec(
            *argv, env={k: v for k, v in env.items() if k != "OSTINATO_TOKEN"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await without.communicate()
        assert without.returncode == 1 and json.loads(err)["error"]["code"] == -32003
    finally:
        assert await daemon.stop() == 0


def test_cli_run_shows_each_node_and_exits_0(tmp_path: Path) -> None:
    pipeline = str(REPO / "examples" / "pipelines" / "demo.dot")
    done = ostinato("run", pipeline, "--auto-approve", "--home", str(tmp_path / "h"),
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("run ") and "run directory:" in lines[1]
    for node in ("plan", "draft_a", "draft_b", "pick", "check", "approve"):
        assert any(line.strip().startswith(f"✓ {node}") for line in lines), done.stdout
    assert lines[-1].startswith("completed (success)")


def test_cli_run_json_and_a_failing_run_exits_1(tmp_path: Path) -> None:
    failing = tmp_path / "fails.dot"
    failing.write_text('digraph f { start [shape=Mdiamond]; a [prompt="x", '
                       'scripted.status=fail]; exit [shape=Msquare]; start -> a -> exit }')
    done = ostinato("run", str(failing), "--json", "--home", str(tmp_path / "h"), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["status"], summary["outcome"]) == ("failed", "fail")


def test_cli_validate_and_plan(tmp_path: Path) -> None:
    broken = tmp_path / "broken.dot"
    broken.write_text("digraph b {\n  start [shape=Mdiamond]\n  a -- b\n}\n")
    done = ostinato("validate", str(broken), "--home", str(tmp_path / "h"), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{broken}:3:5: error:" in done.stdout and "[syntax]" in done.stdout
    plan = ostinato("plan", str(REPO / "examples" / "pipelines" / "hello.dot"), "--json",
                    "--home", str(tmp_path / "h"), cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    nodes = {n["id"]: n["type"] for n in json.loads(plan.stdout)["plan"]["nodes"]}
    assert nodes == {"start": "start", "plan": "codergen", "implement": "codergen",
                     "review": "codergen", "done": "exit"}
    assert not (tmp_path / "h" / "runs").exists()  # a plan runs nothing
