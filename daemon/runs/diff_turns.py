"""The calls of an agent node, put in a comparable order: each turn's tool list and model
call, then its tool calls by their index in the turn (they are recorded as they finish, so
two identical runs may record them in another order), and tool-call ids renamed by first
appearance (a real model makes up new ones every run). Pure, as diff.py is."""

from __future__ import annotations

from typing import Any

from ..engine.call_ids import CallIdAliases

# Where a call stands within its turn: the tool list and the model turn, then the tool calls
# (ordered by the call's index in the turn). Hooks are part of the call they surround.
_PHASE = {"tool_list": 0, "model": 0, "tool": 1}


def turn_of(call: dict[str, Any]) -> int | None:
    """The agent turn a call belongs to (model: `metadata.turn`; tool, tool list: `turn`),
    or None for a call of no agent turn."""
    request = call.get("request")
    if not isinstance(request, dict):
        return None
    if call.get("kind") == "model":
        metadata = request.get("metadata")
        turn = metadata.get("turn") if isinstance(metadata, dict) else None
    else:
        turn = request.get("turn")
    return turn if isinstance(turn, int) and not isinstance(turn, bool) else None


def _tool_index(call: dict[str, Any]) -> int | None:
    request = call.get("request")
    index = request.get("index") if isinstance(request, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _order_key(call: dict[str, Any], turn: int) -> tuple[int, int, int, str]:
    """(turn, phase, index, server): a tool list comes before the model turn it was listed
    for; servers listed concurrently sort by name."""
    kind = call.get("kind")
    request = call.get("request") or {}
    phase = _PHASE.get(str(kind), 1)
    if kind == "tool_list":
        return turn, phase, -1, str(request.get("server", ""))
    return turn, phase, _tool_index(call) or 0, ""


def in_turn_order(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stage's calls (in seq order) with each run of agent calls sorted by (turn, phase,
    index); a call without a turn stays where it is, so a stage without agent calls is
    unchanged. A tool list without a turn belongs to the turn of the call after it."""
    turns: list[int | None] = [turn_of(call) for call in calls]
    following: int | None = None
    for position in range(len(calls) - 1, -1, -1):  # a tool list takes the next call's turn
        if turns[position] is not None:
            following = turns[position]
        elif calls[position].get("kind") == "tool_list" and following is not None:
            turns[position] = following
        else:
            following = None
    ordered: list[dict[str, Any]] = []
    block: list[tuple[tuple[int, int, int, str], dict[str, Any]]] = []
    for call, turn in zip(calls, turns, strict=True):
        if turn is None:
            ordered += [c for _, c in sorted(block, key=lambda pair: pair[0])]  # stable
            block = []
            ordered.append(call)
        else:
            block.append((_order_key(call, turn), call))
    return ordered + [c for _, c in sorted(block, key=lambda pair: pair[0])]


def aliased(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Model calls with their tool-call ids renamed by first appearance in the stage."""
    aliases = CallIdAliases()
    out = []
    for call in calls:
        if call.get("kind") == "model":
            call = {**call, "request": aliases.request(call.get("request")),
                    "response": aliases.response(call.get("response"))}
        out.append(call)
    return out


def call_place(call: dict[str, Any] | None) -> tuple[int | None, str | None, int | None]:
    """(turn, tool, index in the turn) of an agent call; Nones for any other call."""
    if call is None:
        return None, None, None
    turn = turn_of(call)
    request = call.get("request")
    if call.get("kind") != "tool" or not isinstance(request, dict):
        return turn, None, None
    tool = request.get("tool")
    return turn, tool if isinstance(tool, str) else None, _tool_index(call)
