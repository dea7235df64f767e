"""Tool-call ids renamed by first appearance ("#1", "#2", …), so that two live runs of a real
model, whose vendors make up new ids each time, compare and hash alike when they did the same.

Pure and dependency-free on purpose: the replay's request hash (engine/replay.py) and
`run.diff` (runs/diff.py, which imports nothing else of the engine) both use it. Works on
recorded JSON (dicts), never on the provider models, and returns new objects: a request
without tool traffic comes back equal to what it was, so it hashes and diffs as before.
"""

from __future__ import annotations

from typing import Any


class CallIdAliases:
    """One naming of tool-call ids: each new id gets the next "#n"; the same id keeps its
    name. Share one across a node attempt's calls to number them consistently."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def name(self, call_id: Any) -> Any:
        """The alias of an id; what is not a non-empty string is left as it is."""
        if not isinstance(call_id, str) or not call_id:
            return call_id
        return self._names.setdefault(call_id, f"#{len(self._names) + 1}")

    def messages(self, messages: Any) -> Any:
        """Recorded messages with `tool_calls[].id` and `tool_call_id` aliased, in order."""
        if not isinstance(messages, list):
            return messages
        return [self._message(message) for message in messages]

    def _message(self, message: Any) -> Any:
        if not isinstance(message, dict) or not ({"tool_calls", "tool_call_id"} & message.keys()):
            return message
        out = dict(message)
        if "tool_calls" in out:
            out["tool_calls"] = self.tool_calls(out["tool_calls"])
        if "tool_call_id" in out:
            out["tool_call_id"] = self.name(out["tool_call_id"])
        return out

    def tool_calls(self, calls: Any) -> Any:
        """A recorded `tool_calls` list with each call's `id` aliased."""
        if not isinstance(calls, list):
            return calls
        return [{**call, "id": self.name(call.get("id"))} if isinstance(call, dict) and "id"
                in call else call for call in calls]

    def request(self, request: Any) -> Any:
        """A recorded model request with the ids in its messages aliased."""
        if not isinstance(request, dict) or "messages" not in request:
            return request
        return {**request, "messages": self.messages(request["messages"])}

    def response(self, response: Any) -> Any:
        """A recorded model response with the ids of its `tool_calls` aliased."""
        if not isinstance(response, dict) or "tool_calls" not in response:
            return response
        return {**response, "tool_calls": self.tool_calls(response["tool_calls"])}


def alias_messages(messages: Any) -> Any:
    """One request's messages with their tool-call ids aliased by first appearance."""
    return CallIdAliases().messages(messages)
