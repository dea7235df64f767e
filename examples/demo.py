"""`make demo`: start a daemon, drive it through a short scripted session, show what happened.

The daemon listens on a unix socket with its home in ./.ostinato/demo; two clients connect,
an editor with LSP framing and an agent with newline-delimited JSON. The agent runs
examples/pipelines/demo.dot on the offline scripted model; the editor watches its events and
answers its human gate; then the run directory is shown. The agent then runs the pipeline
written for a real model (examples/real_model/) with its scripted twin, and replays it. An
agent host then holds an MCP session through `ostinato mcp` (demo_mcp.py). Last, the example
scenarios of examples/snapshots/ become snapshots and one test run checks them
(demo_snapshots.py).
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from demo_agent import run_agent_example  # examples/: a script's directory is on sys.path
from demo_mcp import run_mcp_agent
from demo_snapshots import run_examples

from ostinato.clients.python import AsyncClient, RpcError
from ostinato.protocol.codec import Framing

HOME = Path(".ostinato") / "demo"
PIPELINE = Path(__file__).resolve().parent / "pipelines" / "demo.dot"
REAL_MODEL = Path(__file__).resolve().parent / "real_model"


def show(arrow: str, who: str, payload: Any) -> None:
    """Print one message of the session, shortened to a line or two."""
    text = orjson.dumps(payload).decode()
    print(f"  {who:>7} {arrow} {text[:150]}{' …' if len(text) > 150 else ''}")


async def exchange(client: AsyncClient, who: str, method: str,
                   params: dict[str, Any] | None = None) -> Any:
    """Send one request, print it and its answer."""
    show("→", who, {"method": method, **({"params": params} if params else {})})
    try:
        result = await client.request(method, params)
    except RpcError as error:
        show("←", who, {"error": error.to_dict()})
        return None
    show("←", who, {"result": result})
    return result


async def run_pipeline(agent: AsyncClient, editor: AsyncClient) -> None:
    """The agent runs the demo pipeline; the editor follows it and answers its question."""
    print(f"\nThe agent validates and runs {PIPELINE} (offline scripted model):")
    await exchange(agent, "agent", "pipeline.validate", {"pipeline": {"path": str(PIPELINE)}})
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    editor.on_notification("run/event", lambda _m, params: events.put_nowait(params))
    await editor.request("run.subscribe", {"run_id": "*"})
    run = asyncio.ensure_future(agent.request(
        "run.start", {"pipeline": {"path": str(PIPELINE)}, "wait": True}))
    while (event := await events.get())["type"] not in ("PipelineCompleted", "PipelineFailed"):
        data = event["data"]
        if event["type"] == "StageCompleted":
            print(f"  {'editor':>7} ← run/event StageCompleted {data['name']}")
        elif event["type"] == "InterviewStarted":
            question = data["question"]
            print(f"  {'editor':>7} ← run/event InterviewStarted: {question['text']} "
                  f"{[o['label'] for o in question['options']]}")
            await exchange(editor, "editor", "human.answer",
                           {"run_id": event["run_id"], "question_id": question["question_id"],
                            "answer": "Y"})
    summary = await run
    print(f"  {'agent':>7} ← run.start: {summary['status']} ({summary['outcome']}), "
          f"{summary['input_tokens'] + summary['output_tokens']} tokens, "
          f"${summary['cost_usd']:.2f}")
    run_dir = Path(summary["run_dir"])
    print(f"\nIts run directory, {run_dir}:")
    for path in sorted(run_dir.rglob("*")):
        if path.is_file():
            print(f"  {path.relative_to(run_dir)}")


async def run_real_model_twin(agent: AsyncClient) -> bool:
    """The pipeline written for a real model, run offline with its scripted twin: the model
    chooses the routes, every node continues one thread; then a recorded replay."""
    pipeline = {"path": str(REAL_MODEL / "plan_implement_review.dot")}
    twin = orjson.loads((REAL_MODEL / "scripted.json").read_bytes())
    print(f"\nThe agent runs {REAL_MODEL.name}/plan_implement_review.dot, written for a "
          "real model, with its scripted twin (scripted.json):")
    summary = await agent.request("run.start", {"pipeline": pipeline, "settings": twin,
                                                "wait": True})
    detail = await agent.request("run.get", {"run_id": summary["run_id"]})
    for stage in detail["stages"]:
        label = stage["outcome"].get("preferred_label")
        route = f" → the model chose {label!r}" if label else ""
        print(f"  {'agent':>7} ← {stage['node_id']:<10} {stage['status']}{route}")
    run_dir = Path(summary["run_dir"])
    implement = [orjson.loads(line) for line in (run_dir / "trace.jsonl").read_bytes()
                 .splitlines() if b'"node_id":"implement"' in line][-1]
    print(f"  the last implement request carried {len(implement['request']['messages'])} "
          "messages: the thread so far, with the plan and the review's fix")
    replay = await agent.request("run.start", {"replay": {"from_run": summary["run_id"],
                                                          "mode": "recorded"}, "wait": True})
    diff = await agent.request("run.diff", {"a": summary["run_id"], "b": replay["run_id"]})
    print(f"  a recorded replay: {replay['status']}, ${replay['cost_usd']:.2f}, "
          f"identical to the run: {diff['identical']}")
    return summary["status"] == "completed" and diff["identical"]


async def start_daemon(socket: Path) -> tuple[asyncio.subprocess.Process, list[str],
                                              asyncio.Future[bytes]]:
    """`ostinato serve --socket`; returns once it says where it listens, with a task that
    reads the rest of its stderr (the same lines are in daemon.log)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ostinato.daemon", "--socket", str(socket), "--home", str(HOME),
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    endpoints: list[str] = []
    while line := (await asyncio.wait_for(process.stderr.readline(), 30)).decode():
        if found := re.search(r"listening on (\S+)", line):
            endpoints.append(found.group(1))
        if "daemon ready" in line:
            break
    if not endpoints:
        raise SystemExit("the daemon did not start; see " + str(HOME / "daemon.log"))
    return process, endpoints, asyncio.ensure_future(process.stderr.read())


async def main() -> int:
    """Run the scripted session."""
    with tempfile.TemporaryDirectory(prefix="ostinato-demo-") as tmp:
        socket = Path(tmp) / "daemon.sock"
        print(f"Starting the daemon: ostinato serve --socket {socket} --home {HOME}")
        process, endpoints, stderr = await start_daemon(socket)
        print(f"  pid {process.pid}, listening on {', '.join(endpoints)}\n")

        print("An editor connects with LSP framing (Content-Length headers):")
        editor = await AsyncClient.connect_unix(socket, Framing.CONTENT_LENGTH)
        await exchange(editor, "editor", "daemon.status")  # before initialize: refused
        init = await editor.initialize("demo-editor")
        show("←", "editor", {"serverInfo": init.serverInfo.model_dump(),
                             "methods": init.capabilities.methods})

        print("\nAn agent connects with newline-delimited JSON (one object per line):")
        agent = await AsyncClient.connect_unix(socket, Framing.NDJSON)
        await agent.initialize("demo-agent")
        status = await exchange(agent, "agent", "daemon.status")
        discovered = await agent.request("rpc.discover")
        print(f"  {'agent':>7} ← rpc.discover: OpenRPC {discovered['openrpc']}, "
              f"{len(discovered['methods'])} methods described")

        await run_pipeline(agent, editor)
        twin_ok = await run_real_model_twin(agent)

        print("\nMistakes get structured errors, and nothing else is disturbed:")
        await exchange(agent, "agent", "pipeline.run", {"path": "x.dot"})
        await exchange(agent, "agent", "daemon.status", {"verbose": True})
        await exchange(editor, "editor", "daemon.status")

        try:
            agent_ok = await run_agent_example(agent)
            mcp_ok = await run_mcp_agent(HOME, PIPELINE)
            examples_ok = await run_examples(agent, HOME)
        except (RpcError, RuntimeError, OSError, KeyError) as error:
            print(f"  failed: {error!r}")  # say what went wrong, and still stop the daemon
            agent_ok = mcp_ok = examples_ok = False

        print("\nBoth clients say goodbye (shutdown, exit); SIGTERM stops the daemon:")
        await editor.close()
        await agent.close()
        process.terminate()
        code = await process.wait()
        await stderr
        print(f"  daemon exited with code {code}; socket removed: {not socket.exists()}")
        print(f"\nThe daemon's log: {HOME / 'daemon.log'}")
        ok = (code == 0 and status is not None and status["connections"] == 2
              and examples_ok and twin_ok and agent_ok and mcp_ok)
        print("demo: OK" if ok else "demo: FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
