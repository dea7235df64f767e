"""The wire codec: framing detection, incremental frame decoding, and message encoding.

Two framings share one port: LSP-style `Content-Length` headers and newline-delimited JSON
(MCP style). The decoder is fed raw bytes and yields frame bodies or `FrameError`s; it never
raises on bad input and always resynchronises, so one broken frame costs one error reply.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024

_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"(?i)content-length[ \t]*:[ \t]*([0-9]+)[ \t]*(?:\r\n|$)")
_HEADER_LINE = re.compile(rb"^[!#-'*+\-.0-9A-Z^-z|~]+[ \t]*:[^\r\n]*$")
_WHITESPACE = b" \t\r\n"
# More digits than any frame could have (10**18 bytes is an exabyte), and well below the
# 4,300 digits past which int() refuses a string: such a length is reported, not skipped.
_MAX_LENGTH_DIGITS = 18
# The header nearly every client sends, matched whole in one step; anything else is parsed
# by _parse_header, which knows every rule and error.
_FAST_HEADER = re.compile(rb"Content-Length: ([0-9]{1,%d})\r\n\r\n" % _MAX_LENGTH_DIGITS)


class Framing(StrEnum):
    """How messages are delimited on one connection."""

    CONTENT_LENGTH = "content-length"
    NDJSON = "ndjson"


@dataclass(frozen=True, slots=True)
class FrameError:
    """A stretch of input that is not a frame; the peer gets an error reply with id null."""

    code: int
    message: str
    data: Any = None


_BOM = b"\xef\xbb\xbf"
_HEADER_NAME = re.compile(rb"^[!#-'*+\-.0-9A-Z^-z|~]+[ \t]*:")
_DETECT_LIMIT = 1024  # bytes to look at before settling on newline-delimited JSON


def detect_framing(start: bytes) -> Framing | None:
    """The framing of a connection from the start of what its client sent (whitespace and
    a BOM stripped): a header line (`Name:`) means Content-Length, anything else
    newline-delimited JSON; None while the first line is too short to tell."""
    if start[:1] in (b"{", b"["):
        return Framing.NDJSON
    if _HEADER_NAME.match(start):
        return Framing.CONTENT_LENGTH
    line_end = start.find(b"\n")
    colon = start.find(b":")
    if line_end < 0 and colon < 0 and len(start) < _DETECT_LIMIT:
        return None  # maybe a header name still arriving
    return Framing.NDJSON


def _content_length_frame(payload: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)


def _ndjson_frame(payload: bytes) -> bytes:
    return payload + b"\n"


def framer(framing: Framing) -> Callable[[bytes], bytes]:
    """The function that wraps one serialized message in `framing`."""
    return _ndjson_frame if framing is Framing.NDJSON else _content_length_frame


def encode_frame(framing: Framing, payload: bytes) -> bytes:
    """Wrap one serialized message in the connection's framing."""
    return framer(framing)(payload)


class FrameDecoder:
    """Incremental decoder: `feed()` bytes, get back complete frame bodies and errors."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 framing: Framing | None = None) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.framing = framing
        self._buf = bytearray()
        self._body_length = -1  # Content-Length of the frame being read, -1 while in headers
        self._skip = 0  # bytes of an oversized body still to discard
        self._skip_line = False  # discarding an oversized NDJSON line up to its newline
        self._scanned = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | bytearray | FrameError]:
        """Consume `data`; return the frame bodies and errors it completes, in order."""
        if self.framing is None:
            self._buf += data
            start = bytes(self._buf).lstrip(_WHITESPACE)
            if start.startswith(_BOM):
                start = start[len(_BOM):].lstrip(_WHITESPACE)
            self.framing = detect_framing(start)
            if self.framing is None:
                return []
            self._buf = bytearray(start)
            data = b""
        if self.framing is Framing.NDJSON:
            if data:
                self._buf += data
            return self._feed_lines()
        return self._feed_content_length(data)

    def _feed_lines(self) -> list[bytearray | FrameError]:
        out: list[bytearray | FrameError] = []
        buf = self._buf
        pos = 0
        # The buffer's first `_scanned` bytes are known to hold no newline: searching them
        # again on every chunk would make a long line quadratic.
        scan = self._scanned
        while True:
            newline = buf.find(b"\n", max(pos, scan))
            if newline < 0:
                if self._skip_line:
                    pos = len(buf)
                break
            if self._skip_line:
                self._skip_line = False
            elif newline - pos > self.max_frame_bytes:
                out.append(self._too_large(newline - pos))
            else:
                line = buf[pos:newline].strip(_WHITESPACE)
                if line:
                    out.append(line)
            pos = newline + 1
        del buf[:pos]
        self._scanned = len(buf)
        if len(buf) > self.max_frame_bytes:  # the size is a lower bound: the line goes on
            out.append(self._too_large(len(buf)))
            self._skip_line = True
            buf.clear()
            self._scanned = 0
        return out

    def _feed_content_length(self, data: bytes) -> list[bytes | bytearray | FrameError]:
        out: list[bytes | bytearray | FrameError] = []
        buf = self._buf
        # Frames are read from `data` itself unless an unfinished one waits in the buffer:
        # the common chunk of whole frames is never copied into it and out again.
        if buf:
            buf += data
            source: bytes | bytearray = buf
        else:
            source = data
        end = len(source)
        pos = 0
        if self._skip:  # the rest of an oversized body, discarded unread
            pos = min(self._skip, end)
            self._skip -= pos
        length = self._body_length  # kept in a local: this loop runs once per message
        fast_header = _FAST_HEADER.match
        while pos < end:
            if length < 0:
                header = fast_header(source, pos)
                if header is not None:
                    length = int(header[1])
                    pos = header.end()
                else:
                    header_end = source.find(_HEADER_END, pos)
                    if header_end < 0:
                        if end - pos > MAX_HEADER_BYTES:
                            out.append(FrameError(-32700, "Parse error: header block too long"))
                            pos = end - 3
                        break
                    length = self._parse_header(bytes(source[pos:header_end]), out)
                    pos = header_end + 4
                if length < 0:
                    continue
                if length > self.max_frame_bytes:
                    out.append(self._too_large(length))
                    skipped = min(length, end - pos)
                    self._skip = length - skipped
                    pos += skipped
                    length = -1
                    continue
            stop = pos + length
            if stop > end:
                break
            out.append(source[pos:stop])
            pos = stop
            length = -1
        self._body_length = length
        if source is buf:
            del buf[:pos]
        elif pos < end:
            buf += source[pos:]
        return out

    def _parse_header(self, block: bytes, out: list[bytearray | FrameError]) -> int:
        """Length from a header block (-1: none); garbage before a valid header is reported,
        not fatal."""
        # The last Content-Length wins: garbage before it may contain a stale one.
        match = next(reversed(list(_CONTENT_LENGTH.finditer(block))), None)
        if match is None:
            out.append(FrameError(-32700, "Parse error: header block without Content-Length",
                                  {"header": block[:200].decode("utf-8", "replace")}))
            return -1
        digits = match.group(1)
        if len(digits) > _MAX_LENGTH_DIGITS:
            # Nobody sends that many bytes: rather than skip them forever, read on from the
            # next header block.
            out.append(self._too_large(bytes(digits)))
            return -1
        before = block[:match.start()]
        lines = [line for line in before.split(b"\r\n") if line]
        after = block[match.end():].split(b"\r\n")
        if (before and not before.endswith(b"\r\n")) or not all(
                _HEADER_LINE.match(line) for line in lines + [a for a in after if a]):
            out.append(FrameError(-32700, "Parse error: malformed header before Content-Length",
                                  {"header": block[:200].decode("utf-8", "replace")}))
        return int(digits)

    def _too_large(self, size: int | bytes) -> FrameError:
        """The error for a frame of `size` bytes (bytes: a length too long to convert)."""
        if isinstance(size, bytes):
            shown: int | str = (size.decode() if len(size) <= 64
                                else f"{len(size)} digits")
        else:
            shown = size if size < 2**53 else str(size)  # JSON numbers stop being exact there
        return FrameError(-32600, f"Invalid Request: frame of {shown} bytes exceeds the "
                          f"{self.max_frame_bytes}-byte limit",
                          {"size": shown, "limit": self.max_frame_bytes})
