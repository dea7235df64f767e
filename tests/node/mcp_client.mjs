// An agent's conversation with `ostinato mcp` through the official MCP TypeScript SDK's
// Client and StdioClientTransport (which validate every result, structuredContent against the
// tool's outputSchema with ajv). Usage: node mcp_client.mjs PYTHON HOME SCENARIO_JSON [URL],
// where the scenario (tests/mcp_conversation.py's, shared with the Python SDK's conversation)
// gives the pipeline files, the scripted settings, the inputs and the invariants that fail.
// With URL, the client talks to `ostinato mcp --http` there through the SDK's
// StreamableHTTPClientTransport instead of spawning `ostinato mcp`.
// Prints one JSON line, the report tests/test_mcp_node.py asserts on; a step that throws is
// recorded as {error} and the conversation goes on, so one report names every failure.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { EmptyResultSchema } from "@modelcontextprotocol/sdk/types.js";

const [python, home, scenarioJson, url] = process.argv.slice(2);
const scenario = JSON.parse(scenarioJson);
const examples = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "examples",
                      "pipelines");
const report = { steps: {}, protocolErrors: [], lateProgress: [] };

/** A transport of the SDK's that notes the revision the client settled on. */
const noting = (Base) => class extends Base {
    setProtocolVersion(version) {
        report.protocolVersion = version;
        super.setProtocolVersion?.(version);
    }
};

/** Run one step, recording what it returns or the error it throws. */
async function step(name, body) {
    try {
        report.steps[name] = await body();
    } catch (error) {
        report.steps[name] = { error: `${error.name}: ${error.message}`, code: error.code };
    }
    return report.steps[name];
}

/** A tool call's structured content, or the error text of an isError result. */
async function call(client, name, args, options) {
    const result = await client.callTool({ name, arguments: args }, undefined, options);
    if (result.isError) {
        return { isError: true, text: result.content.map((c) => c.text).join("\n") };
    }
    return result.structuredContent;
}

async function main() {
    const client = new Client({ name: "ostinato-node-test", version: "1.0.0" });
    // What the SDK finds wrong on the wire, e.g. an answer to a request it cancelled. Apart:
    // progress it read in the same chunk as its request's response, which it handles after
    // the response and so drops as "unknown token" (typescript-sdk#2580, an SDK bug).
    client.onerror = (error) => {
        const late = /progress notification for an unknown token: (.*)$/.exec(error.message);
        if (late) report.lateProgress.push(JSON.parse(late[1]).params.message);
        else report.protocolErrors.push(`${error.name}: ${error.message}`);
    };
    await client.connect(url ? new (noting(StreamableHTTPClientTransport))(new URL(url))
        : new (noting(StdioClientTransport))({
            command: python, args: ["-m", "ostinato.clients.cli", "mcp", "--home", home],
            env: process.env, stderr: "inherit" }));
    report.serverInfo = client.getServerVersion();
    const capabilities = report.capabilities = client.getServerCapabilities();

    await step("tools", async () => (await client.listTools()).tools.map((tool) => ({
        name: tool.name, inputType: tool.inputSchema.type,
        outputType: tool.outputSchema?.type, annotations: tool.annotations })));
    if (capabilities.resources) {
        await step("resources", async () => ({
            resources: (await client.listResources()).resources.map((r) => r.uri),
            templates: (await client.listResourceTemplates()).resourceTemplates
                .map((t) => t.uriTemplate) }));
    }
    if (capabilities.prompts) {
        await step("prompts", async () =>
            (await client.listPrompts()).prompts.map((p) => p.name));
    }

    const pipelines = scenario.pipelines;
    await step("validate", () => call(client, "pipeline", {
        action: "validate", pipeline: { path: pipelines.brief } }));
    await step("validateBroken", () => call(client, "pipeline", {
        action: "validate", pipeline: { path: pipelines.broken } }));
    const progress = report.progress = [];
    const brief = await step("run", () => call(client, "run", {
        action: "start", pipeline: { path: pipelines.brief }, wait: true,
        inputs: scenario.inputs, settings: scenario.settings },
        { onprogress: ({ message }) => progress.push(message) }));
    const runId = brief.result?.run_id;
    await cancelLongRun(client, pipelines.slow);
    await stopAtHumanGate(client);

    const snapshot = await step("snapshot", () => call(client, "snapshot", {
        action: "create", run_id: runId, name: "tides-brief-node",
        invariants: scenario.invariants }));
    const tests = await step("tests", () => call(client, "tests", {
        action: "run", snapshot_ids: [snapshot.result?.id], wait: true }));
    const testRunId = tests.result?.test_run_id;
    await step("report", () => call(client, "tests", {
        action: "report", test_run_id: testRunId, format: "markdown" }));
    if (capabilities.resources) {
        await step("reportResource", async () => (await client.readResource(
            { uri: `ostinato://tests/${testRunId}/report.md` })).contents);
    }
    await step("diff", () => call(client, "inspect", {
        action: "diff", a: runId, b: tests.result?.snapshots?.[0]?.run_ids?.[0] }));

    await hostile(client);
    await step("status", () => call(client, "status", {}));
    await client.close();
}

/** Start a run that takes minutes with wait, abort the call once the daemon reports it begun
 * (the SDK then sends notifications/cancelled), and wait for the run to end. */
async function cancelLongRun(client, slow) {
    const controller = new AbortController();
    let begun;
    const progressed = new Promise((resolve) => { begun = resolve; });
    const started = call(client, "run", {
        action: "start", pipeline: { path: slow }, wait: true }, {
        signal: controller.signal, onprogress: ({ message }) => begun(message),
    }).then((result) => ({ answered: result }), (error) => ({ aborted: error.name }));
    report.longRunProgress = await progressed;  // "run <id>"
    controller.abort("the agent gave up");
    report.steps.aborted = await started;
    // Nothing else cancels the run: it ends only if the daemon honoured the notification.
    await step("cancelled", () => call(client, "inspect", {
        action: "run", run_id: report.longRunProgress.split(" ")[1], wait: true }));
}

/** A waiting call on examples/pipelines/gates.dot answers once the run asks a human. */
async function stopAtHumanGate(client) {
    const gated = await step("gated", () => call(client, "run", {
        action: "start", pipeline: { path: join(examples, "gates.dot") }, wait: true }));
    await step("gatedCancel", () => call(client, "run", {
        action: "cancel", run_id: gated.result?.run_id }));
}

/** Calls no agent should make: the server answers each and lives on. */
async function hostile(client) {
    await step("unknownTool", () => call(client, "no_such_tool", {}));
    await step("badArguments", () => call(client, "pipeline",
        { action: "validate", pipeline: 42 }));
    await step("badAction", () => call(client, "inspect", { action: "explode" }));
    await step("nameNotString", () => client.request(
        { method: "tools/call", params: { name: 42, arguments: [] } }, EmptyResultSchema));
}

const timer = setTimeout(() => {
    console.log(JSON.stringify({ ...report, timeout: true }));
    process.exit(2);
}, 120000);
main().then(() => {
    clearTimeout(timer);
    console.log(JSON.stringify(report));
}, (error) => {
    clearTimeout(timer);
    console.log(JSON.stringify({ ...report, fatal: `${error.name}: ${error.message}` }));
    process.exitCode = 1;
});
