"""SseDecoder: the /v1 routes' server-sent events back into their payloads, without a server."""

from __future__ import annotations

from clients._http_wire import StreamDecoder, decoder_for
from clients._sse import SseDecoder

OPENAI_ERROR = (b'data: {"error":{"message":"boom","type":"server_error","param":null,'
                b'"code":null,"request_id":"r1"}}\n\n')
ANTHROPIC_ERROR = (b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error",'
                   b'"message":"busy"},"request_id":"r2"}\n\n')


def test_data_events_split_anywhere_and_done_skipped() -> None:
    body = b'data: {"i":0}\n\ndata: {"i":1}\r\n\r\ndata: [DONE]\n\n'
    for cut in range(len(body)):
        decoder = SseDecoder()
        events = decoder.feed(body[:cut]) + decoder.feed(body[cut:]) + decoder.end()
        assert events == [{"i": 0}, {"i": 1}], cut


def test_named_events_give_their_payloads() -> None:
    decoder = SseDecoder()
    events = decoder.feed(b'event: message_start\ndata: {"type":"message_start"}\n\n'
                          b": a comment\n\nevent: ping\n\n")
    assert events == [{"type": "message_start"}]


def test_last_event_without_blank_line_and_text_data() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: not json\n\ndata: {\"a\":1}") == ["not json"]
    assert decoder.end() == [{"a": 1}]


def test_error_event_then_cut_off_is_the_error() -> None:
    for body, expected in ((OPENAI_ERROR, ("INTERNAL", "boom", "r1")),
                           (ANTHROPIC_ERROR, ("RESOURCE_EXHAUSTED", "busy", "r2"))):
        decoder = SseDecoder()
        assert decoder.feed(b'data: {"i":0}\n\n' + body) == [{"i": 0}]
        err = decoder.broken()
        assert (err.code, err.message, err.request_id) == expected


def test_error_shaped_event_followed_by_more_is_data() -> None:
    decoder = SseDecoder()
    assert decoder.feed(OPENAI_ERROR) == []
    assert decoder.feed(b'data: {"i":1}\n\n')[1] == {"i": 1}
    assert decoder.broken().code == "UNAVAILABLE"


def test_decoder_for_content_type() -> None:
    assert isinstance(decoder_for("text/event-stream; charset=utf-8"), SseDecoder)
    assert isinstance(decoder_for("application/x-ndjson"), StreamDecoder)
