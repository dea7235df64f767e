"""The canary: a secret planted in the environment, the provider key, the inputs and the
variables goes through everything a daemon does (model and tool calls that echo it, an agent
whose tool prints a secret it was given and whose model tries to pass the secret in a
tool's argv, trials, a replay, a diff, traces, a metadata-only run) and is found in no file
under the home and no row of the database; where it would have been, the record says
[redacted]."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .fakes.llm_server import FakeLLMServer, Reply, SeenRequest
from .support import REPO, DaemonProcess, daemon_with_environment

CANARY = "cnry-4b1d9e7c-0f2a"
ENVIRONMENT = {"OST_CANARY_API_KEY": CANARY, "OST_CANARY_TOKEN": CANARY,
               "OSTINATO_ALLOWED_KEY_ENV": "OST_CANARY_API_KEY,OST_CANARY_TOKEN"}
MCP_SERVER = json.dumps(json.dumps([sys.executable,
                                    str(REPO / "tests" / "fakes" / "mcp_tools_server.py")]))
PIPELINE = """
digraph canary {
    start [shape=Mdiamond]
    ask   [prompt="Repeat after me: $api_token and $secret_word",
           llm_provider=openai, llm_model="gpt-4o-mini"]
    shell [shape=parallelogram, tool_command="echo token=$OST_CANARY_TOKEN"]
    agent [prompt="Say: $api_token", llm_provider=openai, llm_model="gpt-4o-mini",
           tools="show,say", mcp="t", mcp.t.command=MCP_SERVER,
           mcp.t.secrets="OST_CANARY_TOKEN", mcp.t.tools="env,noisy",
           tool.show.argv="[\\"sh\\", \\"-c\\", \\"echo token=$OST_CANARY_TOKEN\\"]",
           tool.show.secrets="OST_CANARY_TOKEN",
           tool.say.argv="[\\"echo\\", \\"{words}\\"]",
           tool.say.schema="{\\"type\\": \\"object\\",
                             \\"properties\\": {\\"words\\": {\\"type\\": \\"string\\"}}}"]
    done  [shape=Msquare]
    start -> ask -> shell -> agent -> done
}
""".replace("MCP_SERVER", MCP_SERVER)


def model(seen: SeenRequest) -> Reply:
    """An echo, except for the agent: it calls `show`, `say` with what it was told to say
    (the canary), the MCP server's `env` (which holds the secret) and `noisy` (which writes
    the canary to the server's stderr), then answers."""
    if not seen.body.get("tools"):
        return Reply()
    if seen.turn() == 1:
        words = seen.body["messages"][-1]["content"].removeprefix("Say: ")
        return Reply(tool_calls=[("show", {}), ("say", {"words": words}), ("t__env", {}),
                                 ("t__noisy", {"text": words})])
    return Reply(text="said")


@pytest.fixture
async def canary_daemon(short_tmp: Path) -> AsyncIterator[DaemonProcess]:
    async with daemon_with_environment(short_tmp, ENVIRONMENT) as daemon:
        yield daemon


async def test_the_canary_is_nowhere_under_the_home(canary_daemon: DaemonProcess) -> None:
    async with FakeLLMServer(responder=model) as api:  # echoes the prompt: the canary
        wire = await canary_daemon.connect()
        params = {"pipeline": {"source": PIPELINE, "format": "dot"}, "wait": True,
                  "inputs": {"api_token": CANARY, "topic": "release"},
                  "variables": {"secret_word": CANARY},
                  "settings": {"providers": {"openai": {
                      "base_url": api.url + "/v1", "api_key_env": "OST_CANARY_API_KEY"}}}}
        run = await wire.result("run.start", params)
        assert (run["status"], run["outcome"]) == ("completed", "success"), run
        assert api.requests and all(CANARY in str(r) for r in api.requests)  # it was used
        # The tool printed its secret, the model got it redacted; the secret the model put
        # in an argument never reached an argv.
        [show, say, env, noisy] = [r for r in api.requests
                                   if r.body.get("tools")][-1].tool_results()
        assert show[1] == "token=[redacted]\n"
        assert say[1].startswith("error: tool say: an argument holds a secret of the run")
        # The MCP server had the secret it was given, and the model got it redacted.
        assert json.loads(env[1])["OST_CANARY_TOKEN"] == "[redacted]"
        assert noisy[1] == "ok"  # its stderr, which held the canary, went nowhere
        trials = await wire.result("run.start", {**params, "trials": 3, "concurrency": 2})
        replay = await wire.result("run.start", {**params, "replay": {
            "from_run": run["run_id"], "mode": "recorded"}})
        assert (replay["status"], replay["outcome"]) == ("completed", "success"), replay
        quiet = await wire.result("run.start", {**params, "record": "metadata_only"})
        answers = [
            await wire.result("run.get", {"run_id": run["run_id"]}),
            await wire.result("run.list", {}),
            await wire.result("trace.get", {"trace_id": run["trace_id"]}),
            await wire.result("trace.list", {"run_id": run["run_id"]}),
            await wire.result("run.diff", {"a": run["run_id"], "b": replay["run_id"]}),
            await wire.result("trials.get", {"trial_set_id": trials["trial_set_id"]}),
            await wire.result("run.get", {"run_id": quiet["run_id"]}),
        ]
        assert all(CANARY not in str(answer) for answer in answers)
        detail = answers[0]
    assert await canary_daemon.stop() == 0

    root = Path(detail["run_dir"])
    assert "[redacted]" in (root / "ask" / "prompt.md").read_text()
    assert "token=[redacted]" in (root / "shell" / "stdout.txt").read_text()
    written = [p for p in canary_daemon.home.rglob("*") if p.is_file()]
    assert any(p.name == "ostinato.db" for p in written)
    leaked = [str(p) for p in written if CANARY.encode() in p.read_bytes()]
    assert leaked == []
    assert CANARY not in "".join(canary_daemon.log)  # nor on the daemon's stderr
