"""The frame decoder on its own: framings, resynchronisation, limits."""

from __future__ import annotations

from ostinato.protocol.codec import FrameDecoder, FrameError, Framing, encode_frame


def frames(decoder: FrameDecoder, *chunks: bytes) -> list[bytearray | FrameError]:
    out: list[bytearray | FrameError] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def test_detects_content_length_and_ndjson_from_first_byte() -> None:
    cl = FrameDecoder()
    assert frames(cl, b"content-length: 2\r\n\r\n{}") == [b"{}"]
    assert cl.framing is Framing.CONTENT_LENGTH
    nd = FrameDecoder()
    assert frames(nd, b"  \n{}\n[1]\n") == [b"{}", b"[1]"]
    assert nd.framing is Framing.NDJSON


def test_frames_split_across_every_byte_boundary() -> None:
    stream = encode_frame(Framing.CONTENT_LENGTH, b'{"a":1}') * 3
    decoder = FrameDecoder()
    assert frames(decoder, *[stream[i:i + 1] for i in range(len(stream))]) == [b'{"a":1}'] * 3


def test_extra_headers_are_accepted_in_any_case() -> None:
    data = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nCONTENT-LENGTH: 2\r\n\r\n{}"
    assert frames(FrameDecoder(), data) == [b"{}"]


def test_garbage_before_a_header_is_reported_and_the_frame_still_read() -> None:
    decoder = FrameDecoder(framing=Framing.CONTENT_LENGTH)
    out = frames(decoder, b"garbage\r\nContent-Length: 2\r\n\r\n{}")
    assert isinstance(out[0], FrameError) and out[0].code == -32700
    assert out[1:] == [b"{}"]


def test_the_first_line_decides_the_framing() -> None:
    for start, framing in [(b"Content-Type: x\r\n", Framing.CONTENT_LENGTH),
                           (b"\xef\xbb\xbf{}\n", Framing.NDJSON),
                           (b"hello\n", Framing.NDJSON),
                           (b'"just a string"\n', Framing.NDJSON),
                           (b"123\n", Framing.NDJSON)]:
        decoder = FrameDecoder()
        decoder.feed(start)
        assert decoder.framing is framing, start
    waiting = FrameDecoder()
    assert waiting.feed(b"Content-Le") == [] and waiting.framing is None
    assert waiting.feed(b"ngth: 2\r\n\r\n{}") == [b"{}"]
    bom = FrameDecoder()
    assert bom.feed(b"\xef\xbb\xbf{}\n") == [b"{}"]


def test_a_long_ndjson_line_in_small_chunks_is_not_rescanned() -> None:
    decoder = FrameDecoder()
    chunks = [b'{"pad":"'] + [b"x" * 4096] * 2000 + [b'"}\n']
    out = frames(decoder, *chunks)
    assert len(out) == 1 and len(out[0]) == 8 + 4096 * 2000 + 2


def test_an_absurd_content_length_is_reported_as_a_string() -> None:
    out = frames(FrameDecoder(), b"Content-Length: 99999999999999999999999\r\n\r\n")
    assert isinstance(out[0], FrameError)
    assert out[0].data["size"] == "99999999999999999999999"


def test_header_without_length_is_an_error_then_decoding_continues() -> None:
    out = frames(FrameDecoder(), b"X-Foo: 1\r\n\r\nContent-Length: 2\r\n\r\n{}")
    assert [type(o) for o in out] == [FrameError, bytearray]


def test_oversized_body_is_skipped_without_buffering_it() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    out = frames(decoder, b"Content-Length: 5000\r\n\r\n", b"x" * 4000)
    assert len(out) == 1 and isinstance(out[0], FrameError) and out[0].code == -32600
    assert out[0].data == {"size": 5000, "limit": 1024}
    assert decoder.buffered == 0
    assert frames(decoder, b"x" * 1000 + b"Content-Length: 2\r\n\r\n{}") == [b"{}"]


def test_oversized_ndjson_line_is_dropped_up_to_its_newline() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    out = frames(decoder, b"{" + b"x" * 2000, b"y" * 5000, b'"}\n{"ok":1}\n')
    assert [type(o) for o in out] == [FrameError, bytearray]
    assert out[1] == b'{"ok":1}'


def test_endless_header_is_bounded() -> None:
    decoder = FrameDecoder(framing=Framing.CONTENT_LENGTH)
    out = frames(decoder, b"A" * 20000)
    assert len(out) == 1 and isinstance(out[0], FrameError)
    assert decoder.buffered < 10


def test_oversized_ndjson_line_arriving_whole_is_refused() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    line = b'{"pad":"' + b"x" * 2000 + b'"}\n'
    out = frames(decoder, line + b"{}\n")
    assert isinstance(out[0], FrameError) and out[0].data["size"] == len(line) - 1
    assert out[1:] == [b"{}"]


def test_a_content_length_too_long_to_be_a_number_is_an_error_then_decoding_continues() -> None:
    # Python refuses int() of more than 4,300 digits: the decoder must not raise.
    for header in (b"Content-Length: " + b"9" * 5000,
                   b"X-Other: 1\r\nContent-Length: " + b"9" * 5000):  # the general path
        out = frames(FrameDecoder(), header + b"\r\n\r\n", b"Content-Length: 2\r\n\r\n{}")
        assert isinstance(out[0], FrameError) and out[0].code == -32600
        assert out[0].data["size"] == "5000 digits"
        assert out[-1] == b"{}"  # resynchronised on the next header
