// An editor-style session with vscode-jsonrpc: initialize, shutdown and exit sent the way
// that library sends "no params" (`sendRequest(m, null)` puts `"params":[null]` on the wire).
// Usage: node lsp_exit.js PYTHON HOME. Prints one JSON line and exits with the daemon's code.
"use strict";
const { spawn } = require("node:child_process");
const rpc = require("vscode-jsonrpc/node");

const [python, home] = process.argv.slice(2);
const daemon = spawn(python, ["-m", "ostinato.daemon", "--stdio", "--home", home],
                     { stdio: ["pipe", "pipe", "inherit"] });
const exited = new Promise((resolve) => daemon.on("exit", (code, signal) =>
    resolve({ code, signal })));
const connection = rpc.createMessageConnection(
    new rpc.StreamMessageReader(daemon.stdout), new rpc.StreamMessageWriter(daemon.stdin));
const unexpected = [];  // anything the daemon says unasked: a notification must get no reply
connection.onUnhandledNotification((message) => unexpected.push(message));
connection.onError(([error]) => unexpected.push(String(error)));
connection.listen();

async function main() {
    const timer = setTimeout(() => { daemon.kill("SIGKILL"); }, 20000);
    const init = await connection.sendRequest("initialize", { clientInfo: { name: "node" } });
    await connection.sendNotification("initialized", null);
    const shutdown = await connection.sendRequest("shutdown", null);
    await connection.sendNotification("exit", null);
    const { code, signal } = await exited;
    clearTimeout(timer);
    connection.dispose();
    console.log(JSON.stringify({ server: init.serverInfo.name, shutdown, code, signal,
                                 unexpected }));
    process.exit(code === null ? 99 : code);
}

main().catch((error) => {
    console.log(JSON.stringify({ error: String(error && error.message || error) }));
    daemon.kill("SIGKILL");
    process.exit(98);
});
