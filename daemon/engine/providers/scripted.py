"""The scripted provider: deterministic, offline, free; the default.

What it answers, first match wins:

1. the node's own script, from `request.metadata` (the engine passes the node's attributes):
   `scripted.response`, `scripted.responses` (a JSON list or `a|b|c`, indexed by the node's
   call in the run, `metadata["call"]`, across visits and attempts, the last one repeating),
   `scripted.status` / `scripted.statuses` likewise, `scripted.preferred_label`,
   `scripted.context_updates` (a JSON object), `scripted.usage` (`"12,34"`: input, output
   tokens). A nested `{"scripted": {...}}` mapping works too, and so does the same script
   in the provider settings' `nodes` (by node id, keys without `scripted.`).
2. the provider settings: `responses` / `statuses` by node id (a string or a list);
3. a stable echo of the last user message (or, after tool calls, of the last tool result).

An agent node (one whose request offers tools) is scripted by `scripted.turns`: a JSON list
of the model's tool-calling turns before its final answer, each
`{"text": "...", "tools": [{"name": "read", "arguments": {"path": "a.md"}}, ...],
"usage": "12,34"}` (arguments given as a string are sent as they are, malformed or not).
Turn k of the node's loop (`metadata["turn"]`) answers entry k; a later turn, or one that
allows no tool (`tool_choice` "none"), is the final answer, chosen as above. A list of such
lists gives one script per call of the node, the last repeating, like `responses`.

A request that asks for a structured answer (`request.output`) gets one that fills the
requested schema: `scripted.structured` (a JSON object, or a list of them by call) as it is,
else each property from the script entry of the same name (`status`, `preferred_label`,
`context_updates`, `best_id`, …; a list where one value is wanted gives one per call),
`response` from the text, and anything else the schema's empty value or first choice. So
offline runs show model-chosen routes too.

`fail_rate` with `seed` injects retryable 503 errors, decided by a hash of
(seed, node_id, the node's call, provider_attempt, and the trial's index in a trial set) so
that reruns fail at the same calls, and a node visited again draws anew.

`pass_probability` (0..1; default None, off) makes a stochastic model: each call's outcome
status is `success` with that probability and `fail` otherwise, drawn from the same kind of
hash (salted apart from fail_rate's), so a run is reproducible for its seed and the trials
of a set are independent draws. A node's `scripted.pass_probability` sets it for that node.
A call's status, first match wins: the node's `scripted.status(es)`, its
`scripted.pass_probability`, the settings' `statuses` for the node, the settings'
`pass_probability`; the text is chosen as above either way. bench/verdicts.py uses it to
measure how `pass_rate` verdicts behave.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field

from .base import ModelRequest, ModelResponse, ProviderError, RoutingStatus, ToolCall, Usage
from .pricing import Pricing

ECHO_PREFIX = "[scripted] "
ECHO_LIMIT = 300
_STATUSES = frozenset(get_args(RoutingStatus))


class ScriptedSettings(BaseModel):
    """Settings of a scripted provider."""

    model_config = ConfigDict(extra="forbid")

    responses: dict[str, str | list[Any]] = Field(default_factory=dict)
    statuses: dict[str, str | list[str]] = Field(default_factory=dict)
    # Per node id, the script its `scripted.*` attributes would give (keys without the
    # prefix): a pipeline written for a real model runs offline with its twin settings.
    nodes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    latency_ms: float = Field(default=0.0, ge=0)
    fail_rate: float = Field(default=0.0, ge=0, le=1)
    pass_probability: float | None = Field(default=None, ge=0, le=1)
    seed: int = 0
    model: str = "scripted"


class ScriptedProvider:
    """Answers from scripts, settings or an echo; never touches the network."""

    def __init__(self, settings: Mapping[str, Any] | ScriptedSettings | None = None, *,
                 name: str = "scripted", pricing: Pricing | None = None) -> None:
        self.name = name
        self.settings = (settings if isinstance(settings, ScriptedSettings)
                         else ScriptedSettings.model_validate(dict(settings or {})))
        self.pricing = pricing or Pricing.load()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer `request` deterministically."""
        settings = self.settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        if settings.fail_rate and _draw(settings.seed, request) < settings.fail_rate:
            raise ProviderError(
                f"{self.name}: injected failure (fail_rate={settings.fail_rate}, "
                f"seed={settings.seed}) at node {request.node_id!r} attempt {request.attempt} "
                f"try {request.provider_attempt}",
                status=503, retryable=True, kind="injected", provider=self.name)
        script = _Script(request, self.name, settings.nodes.get(request.node_id))
        turn = script.tool_turn(request.model or settings.model)
        if turn is not None:
            return self.pricing.price(request, turn)
        text = script.text()
        if text is None:
            text = self._from_settings(settings.responses, request)
        if text is None:
            text = ECHO_PREFIX + _last_input(request)[:ECHO_LIMIT]
        status = script.status() or script.drawn_status(settings.seed)
        if status is None:
            scripted_status = self._from_settings(settings.statuses, request)
            status = None if scripted_status is None else script.check_status(scripted_status)
        if status is None and settings.pass_probability is not None:
            status = _drawn_status(settings.seed, request, settings.pass_probability)
        structured = None
        if request.output is not None:
            structured = script.structured(request.output.schema_, text, status)
            text = json.dumps(structured, sort_keys=True)
        prompt = _prompt(request)
        model = request.model or settings.model
        response = ModelResponse(
            text=text,
            structured=structured if isinstance(structured, dict) else None,
            structured_error=None if request.output is None or isinstance(structured, dict)
            else "the scripted answer is not a JSON object",
            usage=script.usage() or Usage.estimate(prompt, text),
            # The simulated latency, not the measured one: replays compare equal.
            latency_ms=settings.latency_ms,
            finish_reason="stop",
            model=model,
            provider=self.name,
            raw_id=_response_id(request, model, text),
            status=status,
            preferred_label=script.preferred_label(),
            context_updates=script.context_updates(),
        )
        return self.pricing.price(request, response)

    def _from_settings(self, table: Mapping[str, Any], request: ModelRequest) -> str | None:
        if request.node_id not in table:
            return None
        return _pick(_as_list(table[request.node_id]), call_of(request))

    def describe(self) -> dict[str, Any]:
        """The settings in use, for providers.json."""
        return {"type": "scripted", **self.settings.model_dump(mode="json")}

    def secrets(self) -> list[str]:
        """None: the scripted provider holds no keys."""
        return []

    async def aclose(self) -> None:
        """Nothing to release."""


def call_of(request: ModelRequest) -> int:
    """The node's call in the run this request is (1-based; the attempt if not given)."""
    call = request.metadata.get("call")
    return call if isinstance(call, int) and call >= 1 else request.attempt


class _Script:
    """The `scripted.*` values of one request's metadata, or of the settings' `nodes`."""

    def __init__(self, request: ModelRequest, provider: str,
                 settings: Mapping[str, Any] | None = None) -> None:
        self.request = request
        self.provider = provider
        self.call = call_of(request)
        nested = request.metadata.get("scripted")
        self.nested = nested if isinstance(nested, Mapping) else {}
        self.settings = settings or {}

    def get(self, key: str) -> Any:
        metadata = self.request.metadata
        full = f"scripted.{key}"
        if full in metadata:
            return metadata[full]
        return self.nested[key] if key in self.nested else self.settings.get(key)

    def error(self, message: str) -> ProviderError:
        return ProviderError(f"{self.provider}: node {self.request.node_id!r}: {message}",
                             retryable=False, kind="config", provider=self.provider)

    def text(self) -> str | None:
        many = self.get("responses")
        if many is not None:
            return _pick(_as_list(many), self.call)
        one = self.get("response")
        return None if one is None else _text(one)

    def tool_turn(self, model: str) -> ModelResponse | None:
        """This turn's scripted tool calls, or None when it is the final answer."""
        request = self.request
        turn = request.metadata.get("turn")
        if not request.tools or request.tool_choice == "none" or not isinstance(turn, int):
            return None
        turns = self._turns()
        if turn > len(turns):
            return None
        entry = turns[turn - 1]
        calls = tuple(ToolCall(id=f"scripted-{self.call}-{turn}-{index}", name=str(tool["name"]),
                               arguments=tool["arguments"] if isinstance(tool["arguments"], str)
                               else json.dumps(tool["arguments"], sort_keys=True))
                      for index, tool in enumerate(entry["tools"]))
        text = str(entry.get("text") or "")
        usage = self.usage(entry.get("usage")) or Usage.estimate(
            _prompt(request), text + "".join(call.arguments for call in calls))
        return ModelResponse(text=text, tool_calls=calls, usage=usage,
                             latency_ms=0.0, finish_reason=str(entry.get("finish") or
                                                               "tool_calls"),
                             model=model, provider=self.provider,
                             raw_id=_response_id(request, model, f"{turn}|{text}"))

    def _turns(self) -> list[dict[str, Any]]:
        """The node's scripted tool turns for this call, checked."""
        value = self.get("turns")
        if value is None:
            return []
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise self.error(f"scripted.turns is not JSON: {exc}") from None
        if isinstance(value, list) and value and isinstance(value[0], list):
            value = value[min(self.call, len(value)) - 1]  # one script per call
        if not isinstance(value, list):
            raise self.error("scripted.turns must be a JSON list of turns")
        for number, entry in enumerate(value, 1):
            tools = entry.get("tools") if isinstance(entry, Mapping) else None
            if not isinstance(tools, list) or not all(
                    isinstance(tool, Mapping) and isinstance(tool.get("name"), str)
                    for tool in tools):
                raise self.error(f"scripted.turns[{number}] needs a list `tools` of "
                                 "{name, arguments}")
            for tool in tools:
                if not isinstance(tool.get("arguments", {}), str | Mapping):
                    raise self.error(f"scripted.turns[{number}]: arguments of "
                                     f"{tool['name']!r} must be an object or a string")
        return [{**entry, "tools": [{"arguments": {}, **tool} for tool in entry["tools"]]}
                for entry in value]

    def status(self) -> RoutingStatus | None:
        many = self.get("statuses")
        value = (_pick(_as_list(many), self.call) if many is not None
                 else self.get("status"))
        return None if value is None else self.check_status(value)

    def structured(self, schema: Mapping[str, Any], text: str,
                   status: RoutingStatus | None) -> Any:
        """The structured answer: `structured` from the script as it is, else the schema
        filled in from the script (see the module docstring)."""
        given = self.get("structured")
        if given is not None:
            if isinstance(given, str):
                try:
                    given = json.loads(given)
                except json.JSONDecodeError:
                    return given  # not JSON: the engine says so, as it would for a model
            return given[min(self.call, len(given)) - 1] if isinstance(given, list) \
                and given else given
        status = status or "success"
        known: dict[str, Any] = {"response": text, "status": status,
                                 "failure_reason": "" if status in ("success", "partial_success")
                                 else f"the model reported {status}"}
        answer = {}
        for name, prop in dict(schema.get("properties") or {}).items():
            if name in ("response", "status"):  # as chosen above, lists and draws included
                value = known[name]
            elif name == "context_updates":
                value = self.context_updates()
            else:
                value = self.per_call(name, prop.get("type") != "array")
                if value is None:
                    value = known.get(name, MISSING)
            answer[name] = _empty(prop) if value is MISSING else _shaped(value, prop)
        return answer

    def per_call(self, key: str, one_value: bool = True) -> Any:
        """A script value; where one value is wanted, a list (or a JSON list in a string)
        holds one per call of the node, the last one repeating."""
        value = self.get(key)
        if one_value and isinstance(value, str) and value.lstrip().startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return value
        if one_value and isinstance(value, list):
            return value[min(self.call, len(value)) - 1] if value else None
        return value

    def check_status(self, value: Any) -> RoutingStatus:
        status = str(value).strip().lower()
        if status not in _STATUSES:
            raise self.error(f"scripted status {value!r} is not one of {sorted(_STATUSES)}")
        return status  # type: ignore[return-value]

    def drawn_status(self, seed: int) -> RoutingStatus | None:
        """`success` or `fail` drawn at the node's `scripted.pass_probability`, if set."""
        value = self.get("pass_probability")
        if value is None:
            return None
        try:
            probability = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            probability = math.nan
        if not 0 <= probability <= 1:  # NaN too
            raise self.error(f"scripted.pass_probability {value!r} is not a number in [0, 1]")
        return _drawn_status(seed, self.request, probability)

    def preferred_label(self) -> str | None:
        value = self.per_call("preferred_label")
        return None if value is None else str(value)

    def context_updates(self) -> dict[str, Any]:
        value = self.get("context_updates")
        if value is None:
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise self.error(f"scripted.context_updates is not JSON: {exc}") from None
        if not isinstance(value, Mapping):
            raise self.error("scripted.context_updates must be a JSON object")
        return dict(value)

    def usage(self, value: Any = None) -> Usage | None:
        value = self.get("usage") if value is None else value
        if value is None:
            return None
        try:
            if isinstance(value, Mapping):
                return Usage.model_validate(value)
            parts = value.split(",") if isinstance(value, str) else list(value)
            input_tokens, output_tokens = (int(str(part).strip()) for part in parts)
            return Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        except (TypeError, ValueError) as exc:
            raise self.error(f"scripted.usage {value!r} is not 'input,output': {exc}") from None


MISSING: Any = object()


def _prompt(request: ModelRequest) -> str:
    """What the request says, tool calls' arguments included: the estimate's input."""
    return "\n".join([message.content for message in request.messages] +
                     [call.arguments for message in request.messages
                      for call in message.tool_calls])


def _last_input(request: ModelRequest) -> str:
    """The last user message, or a tool result after it: what an echo repeats."""
    for message in reversed(request.messages):
        if message.role in ("user", "tool"):
            return message.content
    return ""


def _empty(prop: Mapping[str, Any]) -> Any:
    """A schema property's empty value: "" if allowed, else its first choice."""
    enum = prop.get("enum")
    if enum:
        return "" if "" in enum else enum[0]
    return {"array": [], "object": {}, "number": 0, "integer": 0,
            "boolean": False}.get(str(prop.get("type")), "")


def _shaped(value: Any, prop: Mapping[str, Any]) -> Any:
    """A script value in the shape the schema wants: a mapping becomes key/value pairs
    where an array is asked for (verdicts' context_updates), a single value a list."""
    if prop.get("type") == "array":
        if isinstance(value, Mapping):
            return [{"key": k, "value": v} for k, v in value.items()]
        if isinstance(value, str):
            return _as_list(value) if value else []
        return value if isinstance(value, list) else [value]
    return value


def _as_list(value: Any) -> list[Any]:
    """A script list: a list, a JSON list in a string, or `a|b|c`."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        if value.lstrip().startswith("["):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return parsed
        return [part.strip() for part in value.split("|")]
    return [value]


def _pick(values: list[Any], attempt: int) -> str | None:
    """The entry for a 1-based attempt; the last one repeats."""
    if not values:
        return None
    return _text(values[min(attempt, len(values)) - 1])


def _text(value: Any) -> str:
    # Structured script entries (from YAML or a JSON list) become the JSON a model would emit.
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _draw(seed: int, request: ModelRequest, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by seed and the call's identity (which trial of a
    trial set included: the trials of a set are draws, not copies); `salt` keeps the draws
    of different uses (injected failures, outcomes) independent of each other."""
    trial = request.metadata.get("trial")
    key = f"{seed}|{request.node_id}|{call_of(request)}|{request.provider_attempt}"
    if trial is not None:
        key += f"|{trial}"
    turn = request.metadata.get("turn")
    if turn is not None:  # each turn of an agent's loop draws anew
        key += f"|t{turn}"
    if salt:
        key += f"|{salt}"
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _drawn_status(seed: int, request: ModelRequest, probability: float) -> RoutingStatus:
    """`success` with `probability`, else `fail`: one seeded draw for this call."""
    return "success" if _draw(seed, request, "pass") < probability else "fail"


def _response_id(request: ModelRequest, model: str, text: str) -> str:
    key = json.dumps([request.node_id, call_of(request), request.provider_attempt, model, text])
    return "scripted-" + hashlib.sha256(key.encode()).hexdigest()[:16]
