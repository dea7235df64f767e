"""Tool-call ids renamed by first appearance (engine/call_ids.py): the replay hash sees only
the pattern of a conversation's ids, never the ids a vendor made up for one run."""

from __future__ import annotations

from ostinato.daemon.engine.call_ids import CallIdAliases, alias_messages
from ostinato.daemon.engine.providers.base import Message, ModelRequest, ToolCall, ToolSpec
from ostinato.daemon.engine.replay import Cassette, canonical_request, request_hash

TOOLS = [ToolSpec(name="word_count", description="Count words",
                  schema={"type": "object", "properties": {"path": {"type": "string"}}})]
# Computed by the code before tool-call ids were aliased (main at 175453c): a request
# without tool traffic must hash to it for ever, or old recordings stop matching.
PLAIN_DIGEST = "ed95737f59bc985987d755b24b99cfdca944579e09c3cb08e3170efd44d507b1"


def conversation(first: str, second: str, answered_first: str | None = None) -> ModelRequest:
    """A turn-2 request: the model called two tools (ids `first`, `second`), both answered."""
    calls = (ToolCall(id=first, name="word_count", arguments='{"path": "a.md"}'),
             ToolCall(id=second, name="word_count", arguments='{"path": "b.md"}'))
    return ModelRequest(provider="openai", model="gpt-4o-mini", node_id="n", tools=TOOLS,
                        metadata={"turn": 2}, messages=[
                            Message(role="user", content="Count the words."),
                            Message(role="assistant", content="", tool_calls=calls),
                            Message(role="tool", content="3", tool_call_id=answered_first
                                    or first),
                            Message(role="tool", content="5", tool_call_id=second
                                    if answered_first is None else first)])


def test_requests_differing_only_in_tool_call_ids_hash_alike() -> None:
    openai_run = conversation("call_8FhQ2", "call_Zk31a")
    other_run = conversation("call_u7Yq0", "call_P02xd")
    assert request_hash("model", openai_run) == request_hash("model", other_run)
    messages = canonical_request("model", openai_run)["messages"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["#1", "#2"]
    assert [m.get("tool_call_id") for m in messages[2:]] == ["#1", "#2"]


def test_the_pattern_of_the_ids_still_counts() -> None:
    # The same ids, but the results answer the calls the other way round.
    straight = conversation("call_a", "call_b")
    swapped = conversation("call_a", "call_b", answered_first="call_b")
    assert request_hash("model", straight) != request_hash("model", swapped)


def test_a_request_without_tool_calls_hashes_exactly_as_before() -> None:
    plain = ModelRequest(provider="openai", model="gpt-4o-mini", node_id="n",
                         messages=[Message(role="system", content="Be brief."),
                                   Message(role="user", content="Summarise the notes.")],
                         params={"temperature": 0})
    assert request_hash("model", plain) == PLAIN_DIGEST
    # As a trace line reads it back, too.
    assert request_hash("model", plain.to_dict()) == PLAIN_DIGEST


def test_a_cassette_serves_a_turn_whose_ids_a_new_run_made_up() -> None:
    recorded = conversation("toolu_01", "toolu_02")
    cassette = Cassette.from_calls([{"seq": 1, "node_id": "n", "attempt": 1, "kind": "model",
                                     "request": recorded.to_dict(),
                                     "response": {"text": "8 words"}}])
    assert cassette.match("n", 1, "model", conversation("toolu_77", "toolu_78")) is not None


def test_aliases_number_by_first_appearance_and_leave_the_rest_alone() -> None:
    aliases = CallIdAliases()
    response = {"text": "", "tool_calls": [{"id": "x9", "name": "a", "arguments": "{}"},
                                           {"id": "x3", "name": "b", "arguments": "{}"}]}
    assert [c["id"] for c in aliases.response(response)["tool_calls"]] == ["#1", "#2"]
    assert response["tool_calls"][0]["id"] == "x9"  # a new object: the record is untouched
    later = aliases.request({"messages": [{"role": "tool", "content": "1",
                                           "tool_call_id": "x3"},
                                          {"role": "tool", "content": "2",
                                           "tool_call_id": "x4"}]})
    assert [m["tool_call_id"] for m in later["messages"]] == ["#2", "#3"]
    plain = [{"role": "user", "content": "hi"}]
    assert alias_messages(plain) == plain
    # metadata_only summaries and odd shapes pass through.
    assert alias_messages({"omitted": True}) == {"omitted": True}
