"""Command tools (issue 17, decision 0006 §2): declaration, validation and argv rendering.

A tool is declared as `tool.<name>.{description, schema, argv, timeout, cwd, max_output, env,
secrets}` on a graph or node, or as a dict per name in the settings. Both forms go through
`CommandTool.from_mapping`, so they accept and refuse the same things.

The model's arguments only ever become argv elements: nothing is split, nothing reaches a
shell, so `; rm -rf /` in a value stays one literal argument.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

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
DEFAULT_MAX_OUTPUT = 64 * 1024
FIELDS = frozenset({"description", "schema", "argv", "timeout", "cwd", "max_output", "env",
                    "secrets"})
# Only `{identifier}` is a placeholder: other braces (`{a: .b}` for jq) stay literal.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
WORKSPACE = "workspace"


@dataclass(frozen=True, slots=True)
class CommandTool:
    """A command the model may call: its schema, argv template and limits."""

    name: str
    description: str
    schema: dict[str, Any]
    argv: tuple[str, ...]
    timeout_s: float = DEFAULT_TIMEOUT_S
    cwd: str = ""  # relative to the workspace; "" is the workspace itself
    max_output: int = DEFAULT_MAX_OUTPUT  # bytes kept per stream
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, name: str, entry: Mapping[str, Any]) -> CommandTool:
        """A tool from its fields (attribute strings or settings values); ValueError says why
        it is not a valid one."""
        if not NAME.fullmatch(name):
            raise ValueError(f"tool {name!r}: a name is 1-64 letters, digits, _ or -")
        unknown = unknown_fields(entry, FIELDS)
        if unknown:
            raise ValueError(f"tool {name}: {unknown}")
        try:
            schema = _schema(entry.get("schema"))
            argv = _argv(entry.get("argv"), schema)
            tool = cls(name=name, description=str(entry.get("description") or ""),
                       schema=schema, argv=argv,
                       timeout_s=seconds(entry.get("timeout"), DEFAULT_TIMEOUT_S, "timeout"),
                       cwd=str(entry.get("cwd") or ""),
                       max_output=_max_output(entry.get("max_output")),
                       env=environment(entry.get("env")),
                       secrets=secret_names(entry.get("secrets")))
        except ValueError as exc:
            raise ValueError(f"tool {name}: {exc}") from None
        return tool

    def validate_arguments(self, arguments: Mapping[str, Any]) -> None:
        """ValueError if the model's arguments do not fit the schema or name a property the
        schema does not declare."""
        if not isinstance(arguments, Mapping):
            raise ValueError(f"tool {self.name}: arguments must be a JSON object")
        extra = sorted(set(arguments) - set(self.schema.get("properties", {})))
        if extra:
            raise ValueError(f"tool {self.name}: argument(s) not in its schema: "
                             f"{', '.join(extra)}")
        import jsonschema  # the first tool call pays for it; a daemon without agents never

        errors = sorted(jsonschema.Draft202012Validator(self.schema).iter_errors(arguments),
                        key=lambda e: list(e.path))
        if errors:
            raise ValueError(f"tool {self.name}: {'; '.join(e.message for e in errors)}")


def tools_from_attrs(attrs: Mapping[str, Any]) -> dict[str, CommandTool]:
    """The `tool.<name>.<field>` attributes of a graph or node, as tools by name."""
    return {name: CommandTool.from_mapping(name, entry)
            for name, entry in grouped(attrs, "tool").items()}


def tools_from_settings(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, CommandTool]:
    """The tools of `settings.agent.tools`: one field mapping per name."""
    return {name: CommandTool.from_mapping(name, entry) for name, entry in entries.items()}


def resolve_secrets(tool: CommandTool, environ: Mapping[str, str],
                    allowed: Collection[str]) -> dict[str, str]:
    """The values of the tool's named secrets, read from `environ`; only names the host
    allows (its `allowed_key_env`), as for provider keys."""
    values: dict[str, str] = {}
    for name in tool.secrets:
        if name not in allowed:
            raise ValueError(f"tool {tool.name}: secret {name} is not allowed: start the "
                             f"daemon with --allow-key-env {name} to allow it")
        if not environ.get(name):
            raise ValueError(f"tool {tool.name}: secret {name} is not set")
        values[name] = environ[name]
    return values


def render_argv(tool: CommandTool, arguments: Mapping[str, Any], workspace: str,
                secrets: Mapping[str, str] | None = None) -> list[str]:
    """The argv for one call: each `{arg}` filled in place, never split, never a shell;
    ValueError for arguments outside the schema or a secret's value in the result."""
    tool.validate_arguments(arguments)
    properties = tool.schema.get("properties", {})

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == WORKSPACE:
            return workspace
        if name in arguments:
            return _as_text(arguments[name])
        if "default" in properties.get(name, {}):
            return _as_text(properties[name]["default"])
        raise ValueError(f"tool {tool.name}: argument {name} is needed by its argv")

    argv = [_PLACEHOLDER.sub(value_of, element) for element in tool.argv]
    # A process's argv is readable by every user of the machine (ps, /proc): secrets go
    # through the environment only. The message never repeats the value.
    for name, value in (secrets or {}).items():
        if value and any(value in element for element in argv):
            raise ValueError(f"tool {tool.name}: the value of secret {name} would be in argv")
    return argv


def _as_text(value: Any) -> str:
    """An argument as one argv element: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()



def _schema(value: Any) -> dict[str, Any]:
    schema = json_value(value if value is not None else '{"type": "object"}', "schema")
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ValueError('schema must be a JSON Schema with "type": "object"')
    import jsonschema  # declared tools are rare: the daemon's start does not pay for it

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"schema is not a valid JSON Schema: {exc.message}") from None
    if WORKSPACE in schema.get("properties", {}):
        raise ValueError(f"schema: {WORKSPACE!r} is reserved for the workspace path")
    return schema


def _argv(value: Any, schema: Mapping[str, Any]) -> tuple[str, ...]:
    argv = argv_list(value, "argv")
    known = {WORKSPACE, *schema.get("properties", {})}
    for element in argv:
        for name in _PLACEHOLDER.findall(element):
            if name not in known:
                raise ValueError(f"argv: placeholder {{{name}}} is not a schema property")
    return argv



def _max_output(value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_OUTPUT
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"max_output must be a positive number of bytes, got {value!r}")
    return value

