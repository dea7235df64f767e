"""MCP servers as tool sources (issue 17, decision 0006 §2): their declaration and validation.

A server is declared as `mcp.<name>.{command | url, env, secrets, headers, tools, timeout,
startup_timeout}` on a graph or node, or as a dict per name in the settings. Both forms go
through `McpServerSpec.from_mapping`, so they accept and refuse the same things. Starting and
talking to a server is `mcp.py`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .fields import (
    NAME,
    argv_list,
    environment,
    grouped,
    json_value,
    seconds,
    secret_names,
    unknown_fields,
)

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_STARTUP_TIMEOUT_S = 30.0
FIELDS = frozenset({"command", "url", "env", "secrets", "headers", "tools", "timeout",
                    "startup_timeout"})
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
# A header value may name a secret; it is resolved when the server is contacted, so the
# value never sits in a spec, a record or a message.
SECRET_REF = re.compile(r"\$\{secret:([A-Za-z_][A-Za-z0-9_]*)\}")
WORKSPACE = "{workspace}"


@dataclass(frozen=True, slots=True)
class McpServerSpec:
    """An MCP server a node may use: a stdio command or a Streamable HTTP URL, and limits."""

    name: str
    command: tuple[str, ...] | None  # stdio: argv; "{workspace}" in an element is substituted
    url: str | None  # Streamable HTTP
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    tools: tuple[str, ...] | None = None  # allow-list of tool names, None = all
    timeout_s: float = DEFAULT_TIMEOUT_S
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S

    @classmethod
    def from_mapping(cls, name: str, entry: Mapping[str, Any]) -> McpServerSpec:
        """A server from its fields (attribute strings or settings values); ValueError says
        why it is not a valid one."""
        # The model sees an MCP tool as `<server>__<tool>`: a server name without `__` keeps
        # that split unambiguous.
        if not NAME.fullmatch(name) or "__" in name:
            raise ValueError(f"MCP server {name!r}: a name is 1-64 letters, digits, _ or -, "
                             "without '__' (it separates server and tool in a tool's name)")
        unknown = unknown_fields(entry, FIELDS)
        if unknown:
            raise ValueError(f"MCP server {name}: {unknown}")
        try:
            command, url = _command(entry.get("command")), _url(entry.get("url"))
            if (command is None) == (url is None):
                raise ValueError("give exactly one of command (stdio) or url (Streamable HTTP)")
            env, secrets, headers = (environment(entry.get("env")),
                                     secret_names(entry.get("secrets")),
                                     _headers(entry.get("headers")))
            if url is not None and (env or secrets):
                raise ValueError("env and secrets are for stdio servers; an HTTP server "
                                 "takes secrets in headers, as ${secret:NAME}")
            if command is not None and headers:
                raise ValueError("headers are for HTTP servers (url)")
            spec = cls(name=name, command=command, url=url, env=env, secrets=secrets,
                       headers=headers, tools=_tools(entry.get("tools")),
                       timeout_s=seconds(entry.get("timeout"), DEFAULT_TIMEOUT_S, "timeout"),
                       startup_timeout_s=seconds(entry.get("startup_timeout"),
                                                 DEFAULT_STARTUP_TIMEOUT_S, "startup_timeout"))
        except ValueError as exc:
            raise ValueError(f"MCP server {name}: {exc}") from None
        return spec

    @property
    def header_secrets(self) -> tuple[str, ...]:
        """The secrets the headers name, in order of first use."""
        names: dict[str, None] = {}
        for value in self.headers.values():
            names.update(dict.fromkeys(SECRET_REF.findall(value)))
        return tuple(names)


def servers_from_attrs(attrs: Mapping[str, Any]) -> dict[str, McpServerSpec]:
    """The `mcp.<name>.<field>` attributes of a graph or node, as servers by name."""
    return {name: McpServerSpec.from_mapping(name, entry)
            for name, entry in grouped(attrs, "mcp").items()}


def servers_from_settings(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, McpServerSpec]:
    """The servers of `settings.agent.mcp_servers`: one field mapping per name."""
    return {name: McpServerSpec.from_mapping(name, entry) for name, entry in entries.items()}



def _command(value: Any) -> tuple[str, ...] | None:
    return None if value is None else argv_list(value, "command")


def _url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ValueError(f"url must be an http:// or https:// URL, got {value!r}")
    return value



def _headers(value: Any) -> dict[str, str]:
    headers = json_value(value, "headers") if value is not None else {}
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and _HEADER_NAME.fullmatch(k) and isinstance(v, str)
            and "\n" not in v and "\r" not in v for k, v in headers.items()):
        raise ValueError("headers must be a JSON object of header names to one-line strings")
    return headers



def _tools(value: Any) -> tuple[str, ...] | None:
    """A JSON list, a list, or a comma-separated string of tool names; None = every tool."""
    if value is None:
        return None
    if isinstance(value, str):
        value = json_value(value, "tools") if value.lstrip().startswith("[") \
            else value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(n, str) for n in value):
        raise ValueError("tools must be a list of tool names")
    names = tuple(n.strip() for n in value if n.strip())
    if not names:
        raise ValueError("tools must name at least one tool (leave it out for all of them)")
    return names
