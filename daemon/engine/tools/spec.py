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

from ..attrs import parse_duration
from ..graph import Duration

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_OUTPUT = 64 * 1024
FIELDS = frozenset({"description", "schema", "argv", "timeout", "cwd", "max_output", "env",
                    "secrets"})
# OpenAI function names allow only these characters (and at most 64 of them).
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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
        if not _NAME.fullmatch(name):
            raise ValueError(f"tool {name!r}: a name is 1-64 letters, digits, _ or -")
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise ValueError(f"tool {name}: unknown field(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(FIELDS))}")
        try:
            schema = _schema(entry.get("schema"))
            argv = _argv(entry.get("argv"), schema)
            tool = cls(name=name, description=str(entry.get("description") or ""),
                       schema=schema, argv=argv, timeout_s=_timeout(entry.get("timeout")),
                       cwd=str(entry.get("cwd") or ""),
                       max_output=_max_output(entry.get("max_output")),
                       env=_env(entry.get("env")), secrets=_secrets(entry.get("secrets")))
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
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith("tool."):
            continue  # `tool_command`, `tool_hooks.pre`: other families
        name, _, field_name = key[len("tool."):].partition(".")
        if not field_name:
            raise ValueError(f"attribute {key}: expected tool.<name>.<field>")
        grouped.setdefault(name, {})[field_name] = value
    return {name: CommandTool.from_mapping(name, entry) for name, entry in grouped.items()}


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


def _json(value: Any, what: str) -> Any:
    """Attributes carry JSON as text; settings may carry it already parsed."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


def _schema(value: Any) -> dict[str, Any]:
    schema = _json(value if value is not None else '{"type": "object"}', "schema")
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
    argv = _json(value, "argv")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
            and argv[0]):
        raise ValueError("argv must be a JSON list of strings with a program first")
    known = {WORKSPACE, *schema.get("properties", {})}
    for element in argv:
        for name in _PLACEHOLDER.findall(element):
            if name not in known:
                raise ValueError(f"argv: placeholder {{{name}}} is not a schema property")
    return tuple(argv)


def _timeout(value: Any) -> float:
    if value is None:
        return DEFAULT_TIMEOUT_S
    # As for node timeouts, a bare number has no unit: seconds or milliseconds would be a guess.
    duration = value if isinstance(value, Duration) else \
        parse_duration(value) if isinstance(value, str) else None
    if duration is None or duration.ms <= 0:
        raise ValueError(f"timeout must be a positive duration such as 10s, got {value!r}")
    return duration.seconds


def _max_output(value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_OUTPUT
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"max_output must be a positive number of bytes, got {value!r}")
    return value


def _env(value: Any) -> dict[str, str]:
    env = _json(value, "env") if value is not None else {}
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and _ENV_NAME.fullmatch(k) and isinstance(v, str)
            for k, v in env.items()):
        raise ValueError("env must be a JSON object of variable names to strings")
    return env


def _secrets(value: Any) -> tuple[str, ...]:
    names = value.split(",") if isinstance(value, str) else value or []
    if not isinstance(names, list | tuple):
        raise ValueError("secrets must be a comma-separated list of variable names")
    names = [str(n).strip() for n in names if str(n).strip()]
    bad = [n for n in names if not _ENV_NAME.fullmatch(n)]
    if bad:
        raise ValueError(f"secrets: not variable names: {', '.join(bad)}")
    return tuple(names)
