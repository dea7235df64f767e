"""An MCP tools/call result as Ostinato records it and as the model reads it: text capped,
binary content kept as its size and hash (no base64 in a trace). Importing it imports no
SDK: the loop renders recorded results with it, in replays too."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import mcp_types


@dataclass(frozen=True)
class McpToolResult:
    """One tools/call result, JSON-ready: what gets recorded (no base64: binary content is
    kept as its size and hash)."""

    content: list[dict[str, Any]]
    structured_content: Any = None
    is_error: bool = False
    truncated: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The recorded response; `structured_content` and `truncated` only when present."""
        out: dict[str, Any] = {"content": self.content}
        if self.structured_content is not None:
            out["structured_content"] = self.structured_content
        out["is_error"] = self.is_error
        if self.truncated:
            out["truncated"] = self.truncated
        return out

    def text(self) -> str:
        """What the model gets: text items joined; other items as one placeholder line each;
        the structured content when there is no content at all."""
        lines = [_item_text(item) for item in self.content]
        if not lines and self.structured_content is not None:
            lines.append(orjson.dumps(self.structured_content).decode())
        if self.truncated:
            lines.append(f"[output truncated: kept {self.truncated['kept']} of "
                         f"{self.truncated['total']} bytes]")
        return "\n".join(lines)

    @classmethod
    def error(cls, message: str) -> McpToolResult:
        """A tool error the pool itself reports (a timeout, a tool outside the allow-list)."""
        return cls(content=[{"type": "text", "text": message}], is_error=True)


def recorded_result(result: mcp_types.CallToolResult, max_output: int) -> McpToolResult:
    """A tools/call result as recorded: text capped at `max_output` bytes in all, binary
    content as size and hash."""
    import mcp_types

    budget = max_output
    total = 0
    content: list[dict[str, Any]] = []
    for item in result.content:
        data = item.model_dump(mode="json", by_alias=False, exclude_none=True)
        data.pop("meta", None)
        data.pop("annotations", None)
        text_key = "text" if isinstance(item, mcp_types.TextContent) else None
        if isinstance(item, mcp_types.ImageContent | mcp_types.AudioContent):
            data = {"type": item.type, **_blob(item.data, item.mime_type)}
        elif isinstance(item, mcp_types.EmbeddedResource):
            resource = item.resource
            data = {"type": "resource", "uri": str(resource.uri)}
            if resource.mime_type:
                data["mime_type"] = resource.mime_type
            if isinstance(resource, mcp_types.BlobResourceContents):
                data.update(_blob(resource.blob, resource.mime_type))
            else:
                data["text"], text_key = resource.text, "text"
        if text_key is not None:
            raw = data[text_key].encode()
            total += len(raw)
            kept = raw[:max(budget, 0)]
            budget -= len(kept)
            data[text_key] = kept.decode("utf-8", "ignore")
        content.append(data)
    truncated = {"kept": max_output - budget, "total": total} if total > max_output else None
    structured = result.structured_content
    size = len(orjson.dumps(structured)) if structured is not None else 0
    if size > max_output:
        # FastMCP servers repeat their text there; a capped record keeps the capped text and
        # says how large the structured content it left out was.
        structured = None
        truncated = {"kept": max_output - budget, "total": total, "structured_content": size}
    return McpToolResult(content=content, structured_content=structured,
                         is_error=bool(result.is_error), truncated=truncated)


def _blob(data: str, mime_type: str | None) -> dict[str, Any]:
    raw = base64.b64decode(data, validate=False)
    return {"mime_type": mime_type or "application/octet-stream", "bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest()}


def _item_text(item: Mapping[str, Any]) -> str:
    if "text" in item and item.get("type") in ("text", "resource"):
        return str(item["text"])
    if "sha256" in item:
        return (f"[{item['type']} {item.get('mime_type', '')}, {item['bytes']} bytes, "
                f"sha256 {item['sha256'][:12]}]")
    if item.get("type") == "resource_link":
        return f"[resource link {item.get('uri', '')}]"
    return f"[{item.get('type', 'content')}]"
