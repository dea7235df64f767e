"""Who may drive a daemon: tokens over TCP, guesses in a batch, repeated failures from one
address."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

from ostinato.clients.python import AsyncClient

from .fakes.llm_server import FakeLLMServer
from .runs_support import FAST, dot, run_to_end
from .support import WAIT, Wire, daemon_with_environment, start_daemon

UNAUTHORIZED, RATE_LIMITED = -32003, -32008


def initialize(request_id: int, token: str) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize",
            "params": {"initializationOptions": {"token": token}}}


async def test_a_wrong_token_in_a_batch_ends_the_batch_and_the_connection(
        short_tmp: Path) -> None:
    daemon = await start_daemon(short_tmp / "home", "--socket", str(short_tmp / "d.sock"),
                                "--token", "s3cret")
    try:
        wire = await Wire.unix(daemon.socket)
        guesses = [initialize(n, f"guess-{n}") for n in range(5000)]
        await wire.send([*guesses, initialize(5000, "s3cret"),
                         {"jsonrpc": "2.0", "id": 5001, "method": "daemon.status"}])
        reply = await wire.recv()
        assert [(r["id"], r["error"]["code"]) for r in reply] == [(0, UNAUTHORIZED)]
        assert await wire.reader.read() == b""  # closed; the right token never opened
    finally:
        assert await daemon.stop() == 0


async def test_failed_attempts_from_one_address_are_rate_limited(short_tmp: Path) -> None:
    window = 0.5
    daemon = await start_daemon(short_tmp / "home", "--tcp", "127.0.0.1:0",
                                "--token", "s3cret", "--auth-failures", "3",
                                "--auth-window", str(window))
    try:
        for n in range(3):
            guess = await Wire.tcp(*daemon.tcp)
            refused = await guess.request("initialize", initialize(0, f"guess-{n}")["params"])
            assert refused["error"]["code"] == UNAUTHORIZED
            assert await guess.reader.read() == b""
        # Now even the right token is refused at once, without being compared, and the
        # connection is closed.
        blocked = await Wire.tcp(*daemon.tcp)
        refused = await blocked.request("initialize", initialize(0, "s3cret")["params"])
        assert refused["error"]["code"] == RATE_LIMITED
        assert "too many failed" in refused["error"]["message"].lower()
        assert await blocked.reader.read() == b""
        await asyncio.sleep(window)  # the failures leave the window
        friend = await Wire.tcp(*daemon.tcp)
        await friend.initialize(initializationOptions={"token": "s3cret"})
        assert (await friend.result("daemon.status"))["pid"] == daemon.process.pid
    finally:
        assert await daemon.stop() == 0
    log = "".join(daemon.log)
    assert "s3cret" not in log and "guess-" not in log



async def test_loopback_tcp_needs_the_token_the_daemon_wrote_to_its_home(
        short_tmp: Path) -> None:
    home = short_tmp / "home"
    daemon = await start_daemon(home, "--socket", str(short_tmp / "d.sock"),
                                "--tcp", "127.0.0.1:0")
    try:
        token_file = home / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 40  # secrets.token_urlsafe(32)

        anonymous = await Wire.tcp(*daemon.tcp)
        refused = await anonymous.request("initialize", {})
        assert refused["error"]["code"] == UNAUTHORIZED
        assert str(token_file) in refused["error"]["message"]
        assert await anonymous.reader.read() == b""
        unix = await daemon.connect()  # the 0600 socket needs no token
        assert (await unix.result("daemon.status"))["pid"] == daemon.process.pid

        client = await AsyncClient.connect_tcp(*daemon.tcp, home=home)  # reads the file
        await client.initialize()
        assert (await client.daemon_status()).pid == daemon.process.pid
        await client.close()
        address = f"127.0.0.1:{daemon.tcp[1]}"
        for where in (["--home", str(home)], []):  # --home, else $OSTINATO_HOME
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ostinato.clients.cli", "call", "daemon.status",
                "--tcp", address, *where, cwd=short_tmp, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env={**os.environ, "OSTINATO_HOME": str(home)})
            out, err = await asyncio.wait_for(cli.communicate(), WAIT)
            assert cli.returncode == 0, err
            assert json.loads(out)["pid"] == daemon.process.pid
    finally:
        assert await daemon.stop() == 0
    log = "".join(daemon.log) + (home / "daemon.log").read_text()
    assert token not in log and str(token_file) in log


TOOL_PIPELINE = dot("""\
    digraph private {
        start [shape=Mdiamond]
        ask   [prompt="Plan"]
        shell [shape=parallelogram, tool_command="echo hi > $OSTINATO_STAGE_DIR/by-tool.txt"]
        done  [shape=Msquare]
        start -> ask -> shell -> done
    }""")


async def test_the_home_and_everything_a_run_writes_are_private(short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # as an older daemon left it
    daemon = await start_daemon(home, "--socket", str(short_tmp / "d.sock"))
    try:
        wire = await daemon.connect()
        run = await run_to_end(wire, TOOL_PIPELINE)
        assert run["status"] == "completed", run
        await wire.result("run.start", {"pipeline": TOOL_PIPELINE, "wait": True,
                                        "trials": 2, "settings": FAST})
        await wire.result("snapshot.create", {"run_id": run["run_id"], "name": "private"})
        created = sorted(home.rglob("*"))  # while the daemon runs: its WAL is there too
        names = {path.name for path in created}
        assert {"ostinato.db", "ostinato.db-wal", "daemon.log", "stdout.txt",
                "by-tool.txt"} <= names, names
        assert Path(run["run_dir"]).parent.parent == home
        shared = {str(path): oct(stat.S_IMODE(path.lstat().st_mode)) for path in [
            home, *created] if stat.S_IMODE(path.lstat().st_mode) & 0o077}
        assert shared == {}
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
    finally:
        assert await daemon.stop() == 0


DB_PASS = "db-pass-7c1e"
ASK = dot("""\
    digraph ask {
        start [shape=Mdiamond]
        ask   [prompt="Hello", llm_provider=openai, llm_model="gpt-4o-mini"]
        done  [shape=Msquare]
        start -> ask -> done
    }""")


async def test_a_client_may_name_only_allowed_key_variables(short_tmp: Path) -> None:
    environment = {"DB_PASS": DB_PASS, "OPENAI_API_KEY": "sk-fake-documented"}
    async with daemon_with_environment(short_tmp, environment) as daemon, \
            FakeLLMServer() as api:
        wire = await daemon.connect()

        def settings(name: str, env: str, kind: str = "openai") -> dict:
            return {**FAST, "default_provider": name, "providers": {name: {
                "type": kind, "base_url": api.url + "/v1", "api_key_env": env}}}

        for refused_settings in (settings("openai", "DB_PASS"),
                                 settings("mine", "DB_PASS"),
                                 settings("anthropic", "OPENAI_API_KEY", "anthropic")):
            refused = await wire.request("run.start", {
                "pipeline": ASK, "wait": True, "settings": refused_settings})
            error = refused["error"]
            assert error["code"] == -32602, error
            assert "is not allowed" in error["message"]
            assert "--allow-key-env" in error["message"], error
            assert "OPENAI_API_KEY" in error["message"]
        assert api.requests == []  # nothing was sent anywhere

        run = await run_to_end(wire, ASK, settings=settings("openai", "OPENAI_API_KEY"))
        assert run["status"] == "completed", run
        assert api.requests and DB_PASS not in str(api.requests)
