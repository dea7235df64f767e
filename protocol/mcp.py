"""MCP (Model Context Protocol): the revisions the daemon negotiates with an MCP client, and
MCP's methods. An MCP client says so in `initialize` (its `protocolVersion` is an MCP revision
date); its tools are the daemon's methods grouped by intent (protocol/mcp_tools.py), and the
rest of the session is the daemon's usual core (docs/agents.md, docs/protocol.md)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field

from .base import AnyParams, Model, Params, ProgressToken, Result
from .bounds import Integer, JsonObject
from .registry import MethodSpec

# The handshake-era revisions served, newest first: a client asking for one gets it, a client
# asking for another MCP revision gets the newest (the lifecycle's rule).
MCP_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
# The stateless revisions served: no initialize, every request carries its revision and the
# client's capabilities in `_meta` (served on stdio and sockets; docs/agents.md).
MODERN_VERSIONS = ("2026-07-28",)
SUPPORTED_VERSIONS = (*MODERN_VERSIONS, *MCP_VERSIONS)
VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
# MCP's error for a request at a revision the server does not serve (2026-07-28).
UNSUPPORTED_PROTOCOL_VERSION = -32022
_REVISION = re.compile(r"\d{4}-\d{2}-\d{2}")

# What an MCP session is offered (`capabilities` of the initialize result).
MCP_CAPABILITIES = {"tools": {"listChanged": False},
                    "resources": {"subscribe": True, "listChanged": False},
                    "prompts": {"listChanged": False}}
# What `server/discover` offers (2026-07-28): that revision subscribes to resources by
# `subscriptions/listen`, not served yet, rather than `resources/subscribe`.
MODERN_CAPABILITIES = {**MCP_CAPABILITIES, "resources": {"listChanged": False}}

# Told to an MCP client in initialize: how the tools fit together.
MCP_INSTRUCTIONS = (
    "Ostinato runs LLM pipelines (attractor DOT graphs or YAML recipes), records every run "
    "(run directory, trace of every model and tool call), and tests changes against "
    "snapshots. The loop: `pipeline` validate after an edit; `run` start with wait: true; "
    "`inspect` a run, or diff two runs; `snapshot` create from a good run with invariants; "
    "`tests` run the snapshots after a change, read the failing report, `inspect` diff the "
    "failing run against its baseline, fix, and run the tests again.")

# MCP's own error code for a resource that does not exist (2025-11-25).
RESOURCE_NOT_FOUND = -32002


def mcp_version(requested: str | None) -> str | None:
    """The MCP revision to answer an `initialize` asking for `requested`; None when the
    client is not an MCP client (no protocolVersion, or not an MCP revision date)."""
    if requested is None or not _REVISION.fullmatch(requested):
        return None
    return requested if requested in MCP_VERSIONS else MCP_VERSIONS[0]


class McpParams(Params):
    """Params of an MCP method: MCP adds `_meta` (progress token and more) to every request,
    and later revisions add fields, so unknown ones are accepted."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    meta: JsonObject | None = Field(default=None, alias="_meta",
                                    description="MCP's request metadata (`progressToken`).")


class McpResult(Result):
    """An MCP result: MCP adds `_meta`, and the stateless revision `resultType` (and, to a
    list, `ttlMs` and `cacheScope`), so fields beyond the model's are accepted."""

    model_config = ConfigDict(extra="allow")


class PingResult(McpResult):
    """MCP's `ping` answer: an empty object."""


class DiscoverResult(McpResult):
    """`server/discover` (2026-07-28): the revisions, capabilities and instructions."""

    resultType: Literal["complete"]
    supportedVersions: list[str]
    capabilities: JsonObject
    instructions: str | None = None
    ttlMs: int
    cacheScope: Literal["private", "public"]


class PagedParams(McpParams):
    """A list request: the cursor of the page to read, from the previous page's nextCursor."""

    cursor: str | None = None


class ToolAnnotations(Model):
    """Hints for the host about what calling a tool does (MCP `ToolAnnotations`)."""

    title: str
    readOnlyHint: bool
    destructiveHint: bool
    idempotentHint: bool
    openWorldHint: bool


class Tool(Model):
    """One tool as `tools/list` describes it."""

    model_config = ConfigDict(extra="allow")

    name: str
    title: str
    description: str
    inputSchema: JsonObject
    outputSchema: JsonObject
    annotations: ToolAnnotations


class ToolsListResult(McpResult):
    """Every tool; Ostinato's few fit one page."""

    tools: list[Tool]
    nextCursor: str | None = None


class CallToolParams(McpParams):
    """Call a tool by name with its arguments (the tool's inputSchema)."""

    name: str
    arguments: JsonObject | None = None


class TextContent(Model):
    """A block of text for the model."""

    type: Literal["text"]
    text: str


class CallToolResult(McpResult):
    """A tool's answer: a short text for the model, the result as `structuredContent`
    (the tool's outputSchema), and `isError` when the call failed (the text says what to
    change)."""

    content: list[TextContent]
    structuredContent: JsonObject | None = None
    isError: bool = False


class CancelledParams(McpParams):
    """MCP's cancellation of a request in flight (`notifications/cancelled`)."""

    requestId: Integer | str
    reason: str | None = None


class ProgressNotification(Model):
    """MCP's `notifications/progress`, sent for a request whose `_meta` had a progressToken."""

    progressToken: ProgressToken
    progress: float
    total: float | None = None
    message: str | None = None


class Resource(Model):
    """A readable resource (a run, a trace, a test report, a snapshot, a file of a run)."""

    model_config = ConfigDict(extra="allow")

    uri: str
    name: str
    title: str | None = None
    description: str | None = None
    mimeType: str | None = None
    size: int | None = None


class ResourceTemplate(Model):
    """A family of resources by URI template (RFC 6570)."""

    model_config = ConfigDict(extra="allow")

    uriTemplate: str
    name: str
    title: str | None = None
    description: str | None = None
    mimeType: str | None = None


class ResourcesListResult(McpResult):
    """One page of resources."""

    resources: list[Resource]
    nextCursor: str | None = None


class ResourceTemplatesListResult(McpResult):
    """Every resource template."""

    resourceTemplates: list[ResourceTemplate]
    nextCursor: str | None = None


class ResourceParams(McpParams):
    """A resource by URI (read, subscribe, unsubscribe)."""

    uri: str


class ResourceContents(Model):
    """A resource's content: `text`, or base64 `blob` for bytes that are not UTF-8."""

    model_config = ConfigDict(extra="allow")

    uri: str
    mimeType: str | None = None
    text: str | None = None
    blob: str | None = None


class ReadResourceResult(McpResult):
    """What `resources/read` found at a URI."""

    contents: list[ResourceContents]


class EmptyResult(McpResult):
    """An MCP result with nothing to say (`resources/subscribe`)."""


class PromptArgument(Model):
    """One argument of a prompt."""

    name: str
    description: str | None = None
    required: bool = False


class Prompt(Model):
    """A prompt template for one of the loops an agent follows."""

    name: str
    title: str | None = None
    description: str | None = None
    arguments: list[PromptArgument] = Field(default_factory=list)


class PromptsListResult(McpResult):
    """Every prompt."""

    prompts: list[Prompt]
    nextCursor: str | None = None


class GetPromptParams(McpParams):
    """A prompt by name, with its arguments filled in."""

    name: str
    arguments: dict[str, str] | None = None


class PromptMessage(Model):
    """One message of a prompt."""

    role: Literal["user", "assistant"]
    content: TextContent


class GetPromptResult(McpResult):
    """The prompt's messages, ready to send to the model."""

    description: str | None = None
    messages: list[PromptMessage]


class ResourceUpdatedParams(Model):
    """`notifications/resources/updated`: a subscribed resource changed; read it again."""

    uri: str


METHODS = [
    MethodSpec("ping", AnyParams, PingResult,
               "MCP liveness check, answered with an empty object at any time, before "
               "`initialize` too."),
    MethodSpec("notifications/initialized", AnyParams, None,
               "MCP client notification that it has processed the initialize result."),
    MethodSpec("server/discover", McpParams, DiscoverResult,
               "MCP 2026-07-28: the revisions served, capabilities and instructions; a "
               "stateless client sends it first, with its revision in `_meta`."),
    MethodSpec("notifications/cancelled", CancelledParams, None,
               "MCP: cancel a request in flight; it is not answered afterwards (a `run` tool "
               "call that waits cancels its run too)."),
    MethodSpec("tools/list", PagedParams, ToolsListResult,
               "MCP: the tools, each a family of the daemon's methods (docs/agents.md)."),
    MethodSpec("tools/call", CallToolParams, CallToolResult,
               "MCP: call a tool; failures are `isError` results whose text says what to "
               "change. `_meta.progressToken` gets `notifications/progress`."),
    MethodSpec("resources/list", PagedParams, ResourcesListResult,
               "MCP: the home's runs, then test runs, then snapshots, each newest first, "
               "paged by an opaque cursor."),
    MethodSpec("resources/templates/list", PagedParams, ResourceTemplatesListResult,
               "MCP: the URI templates of every `ostinato://` resource (RFC 6570)."),
    MethodSpec("resources/read", ResourceParams, ReadResourceResult,
               "MCP: a resource's content: a run, a file of its directory, a trace, a test "
               "run or its report, a snapshot. A URI that names nothing is -32002."),
    MethodSpec("resources/subscribe", ResourceParams, EmptyResult,
               "MCP: `notifications/resources/updated` for this URI whenever its run or test "
               "run has an event."),
    MethodSpec("resources/unsubscribe", ResourceParams, EmptyResult,
               "MCP: stop the updates of a subscribed URI."),
    MethodSpec("prompts/list", PagedParams, PromptsListResult,
               "MCP: the prompts, one per loop an agent follows with the tools."),
    MethodSpec("prompts/get", GetPromptParams, GetPromptResult,
               "MCP: a prompt's messages with its arguments filled in."),
]

SERVER_NOTIFICATIONS = [
    MethodSpec("notifications/progress", ProgressNotification, None,
               "MCP: progress of a request whose `_meta` had a progressToken."),
    MethodSpec("notifications/resources/updated", ResourceUpdatedParams, None,
               "MCP: a resource this client subscribed to changed."),
]
