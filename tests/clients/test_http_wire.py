"""StreamDecoder: HTTP streamed bodies back into chunks, without a server."""

from __future__ import annotations

import httpx

from clients import TwinserveError
from clients._errors import error_from_http
from clients._http_wire import StreamDecoder, path_for

ERROR_LINE = b'{"error":{"type":"model_error","message":"boom","request_id":"r1"}}\n'


def test_ndjson_lines_split_across_pieces() -> None:
    decoder = StreamDecoder("application/x-ndjson")
    assert decoder.feed(b'{"i":0}\n{"i"') == [{"i": 0}]
    assert decoder.feed(b':1}\n') == [{"i": 1}]
    assert decoder.end() == []


def test_text_keeps_split_utf8_characters() -> None:
    decoder = StreamDecoder("text/plain; charset=utf-8")
    data = "é✓".encode()
    assert decoder.feed(data[:1]) == []
    assert decoder.feed(data[1:]) == ["é✓"]


def test_error_line_then_cut_off_is_the_error() -> None:
    decoder = StreamDecoder("text/plain; charset=utf-8")
    assert decoder.feed(b"a") == ["a"]
    assert decoder.feed(ERROR_LINE) == []
    err = decoder.broken()
    assert (err.code, err.message, err.request_id) == ("INTERNAL", "boom", "r1")


def test_error_shaped_data_followed_by_more_is_data() -> None:
    decoder = StreamDecoder("application/x-ndjson")
    assert decoder.feed(ERROR_LINE) == []
    assert decoder.feed(b'{"i":1}\n') == [{"error": {"type": "model_error", "message": "boom",
                                                      "request_id": "r1"}}, {"i": 1}]


def test_cut_off_without_error_line_is_unavailable() -> None:
    assert StreamDecoder("application/octet-stream").broken().code == "UNAVAILABLE"


def test_plain_json_value_is_one_chunk() -> None:
    decoder = StreamDecoder("application/json")
    assert decoder.feed(b'{"a"') == []
    assert decoder.feed(b":1}") == []
    assert decoder.end() == [{"a": 1}]


def test_http_statuses_map_to_grpc_names() -> None:
    cases = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
             404: "NOT_FOUND", 409: "ALREADY_EXISTS", 413: "RESOURCE_EXHAUSTED",
             422: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
             503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
    for status, code in cases.items():
        err = error_from_http(status, {"error": {"message": "m"}})
        assert isinstance(err, TwinserveError)
        assert (err.code, err.message) == (code, "m")
    assert error_from_http(502, "not json").message == "HTTP 502"


def test_paths() -> None:
    assert path_for("predict") == "/predict"
    assert path_for("chat_completions") == "/v1/chat/completions"
    assert httpx.URL("http://h:1").join(path_for("embeddings")).path == "/v1/embeddings"
