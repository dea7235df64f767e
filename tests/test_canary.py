"""The canary: a secret planted in the environment, the provider key, the inputs and the
variables goes through everything a daemon does (model and tool calls that echo it, trials,
a replay, a diff, traces, a metadata-only run) and is found in no file under the home and no
row of the database; where it would have been, the record says [redacted]."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .fakes.llm_server import FakeLLMServer
from .support import DaemonProcess, daemon_with_environment

CANARY = "cnry-4b1d9e7c-0f2a"
ENVIRONMENT = {"OST_CANARY_API_KEY": CANARY, "OST_CANARY_TOKEN": CANARY,
               "OSTINATO_ALLOWED_KEY_ENV": "OST_CANARY_API_KEY"}
PIPELINE = """
digraph canary {
    start [shape=Mdiamond]
    ask   [prompt="Repeat after me: $api_token and $secret_word",
           llm_provider=openai, llm_model="gpt-4o-mini"]
    shell [shape=parallelogram, tool_command="echo token=$OST_CANARY_TOKEN"]
    done  [shape=Msquare]
    start -> ask -> shell -> done
}
"""


@pytest.fixture
async def canary_daemon(short_tmp: Path) -> AsyncIterator[DaemonProcess]:
    async with daemon_with_environment(short_tmp, ENVIRONMENT) as daemon:
        yield daemon


async def test_the_canary_is_nowhere_under_the_home(canary_daemon: DaemonProcess) -> None:
    async with FakeLLMServer() as api:  # answers with an echo of the prompt: the canary
        wire = await canary_daemon.connect()
        params = {"pipeline": {"source": PIPELINE, "format": "dot"}, "wait": True,
                  "inputs": {"api_token": CANARY, "topic": "release"},
                  "variables": {"secret_word": CANARY},
                  "settings": {"providers": {"openai": {
                      "base_url": api.url + "/v1", "api_key_env": "OST_CANARY_API_KEY"}}}}
        run = await wire.result("run.start", params)
        assert (run["status"], run["outcome"]) == ("completed", "success"), run
        assert api.requests and all(CANARY in str(r) for r in api.requests)  # it was used
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
