"""Streaming predict over HTTP: chunk framing, incremental delivery, mid-stream failures
(and the same unencodable chunk over gRPC, for comparison)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from clients import GrpcClient, TwinserveError
from daemon.errors import ModelError
from tests.conftest import StartDaemon
from tests.harness import MODELS, DaemonProcess


@pytest.fixture(scope="module")
def streaming(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "streaming")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("kind", "content_type", "body"),
    [
        ("str", "text/plain", b"chunk-0\nchunk-1\nchunk-2\n"),
        ("bytes", "application/octet-stream", b"b0;b1;b2;"),
        ("json", "application/x-ndjson", b'{"i":0}\n{"i":1}\n{"i":2}\n'),
    ],
)
def test_chunks_are_framed_by_type(streaming: DaemonProcess, mode: str, kind: str,
                                   content_type: str, body: bytes) -> None:
    response = httpx.post(f"{streaming.http_url}/predict", json={"mode": mode, "kind": kind})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == body


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_first_chunk_arrives_before_the_generator_ends(streaming: DaemonProcess, mode: str) -> None:
    started = time.monotonic()
    with httpx.stream("POST", f"{streaming.http_url}/predict",
                      json={"mode": mode, "kind": "str", "n": 3, "delay": 0.5}) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
    total = time.monotonic() - started
    assert first == b"chunk-0\n"
    assert rest == b"chunk-1\nchunk-2\n"
    assert first_at < 0.4 < 1.2 < total


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_error_mid_stream_is_visible_and_body_is_cut(streaming: DaemonProcess, mode: str) -> None:
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("POST", f"{streaming.http_url}/predict",
                          json={"mode": mode, "kind": "str", "n": 5, "fail_at": 2}) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += chunk
    lines = received.decode().splitlines()
    assert lines[:2] == ["chunk-0", "chunk-1"]
    error = json.loads(lines[2])["error"]
    assert error["type"] == "model_error"
    assert error["message"] == ModelError.unexpected("predict").message
    assert httpx.post(f"{streaming.http_url}/predict", json={"mode": "value"}).status_code == 200


def read_chunked_until_closed(daemon: DaemonProcess, body: dict[str, object]) -> bytes:
    """The raw HTTP response to a POST /predict, read until the daemon closes the socket."""
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", daemon.http_port), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def parse_chunks(body: bytes) -> tuple[list[bytes], bool]:
    """The chunks of a chunked body, and whether it ended with its terminating chunk.

    Raises if the framing is broken anywhere before the cut."""
    chunks: list[bytes] = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)  # ValueError: not a chunk-size line
        if size == 0:
            assert rest == b"\r\n", rest
            return chunks, True
        assert rest[size:size + 2] == b"\r\n", "a chunk is not followed by CRLF"
        chunks.append(rest[:size])
        body = rest[size + 2:]
    return chunks, False


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_unencodable_chunk_mid_stream_cuts_a_well_framed_body(
        streaming: DaemonProcess, mode: str) -> None:
    raw = read_chunked_until_closed(streaming, {"mode": mode, "n": 4, "unencodable_at": 2})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    chunks, complete = parse_chunks(body)
    assert not complete  # no client may take it for a whole answer
    lines = b"".join(chunks).decode().splitlines()
    assert [json.loads(line) for line in lines[:2]] == [{"i": 0}, {"i": 1}]
    error = json.loads(lines[2])["error"]
    assert error["type"] == "model_error"
    assert error["message"].startswith("predict yielded a chunk that cannot be sent as JSON")
    assert len(lines) == 3 and b"HTTP/1.1" not in body  # nothing written after the error
    assert httpx.post(f"{streaming.http_url}/predict", json={"mode": "value"}).status_code == 200


def test_an_unencodable_chunk_mid_stream_is_internal_over_grpc(streaming: DaemonProcess) -> None:
    client = GrpcClient(streaming.grpc_target, timeout=10)
    try:
        chunks = client.predict_stream({"mode": "async", "n": 4, "unencodable_at": 2})
        assert [next(chunks), next(chunks)] == [{"i": 0}, {"i": 1}]
        with pytest.raises(TwinserveError) as caught:
            next(chunks)
    finally:
        client.close()
    assert caught.value.code == "INTERNAL"
    assert caught.value.message.startswith("predict yielded a chunk that cannot be sent as JSON")


def test_error_before_first_chunk_gets_its_status(streaming: DaemonProcess) -> None:
    response = httpx.post(f"{streaming.http_url}/predict",
                          json={"mode": "sync", "client_error_at": 0})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "bad chunk 0"


def test_stream_with_postprocess_is_a_clear_error(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(MODELS / "stream_post")
    response = httpx.post(f"{daemon.http_url}/predict", json={})
    assert response.status_code == 500
    assert "postprocess" in response.json()["error"]["message"]
    assert "generator" in response.json()["error"]["message"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_client_leaving_mid_stream_stops_the_generator(streaming: DaemonProcess, mode: str) -> None:
    def report() -> dict[str, int]:
        answer: dict[str, int] = httpx.post(f"{streaming.http_url}/predict",
                                            json={"mode": "report"}).json()
        return answer

    before = report()
    with httpx.stream("POST", f"{streaming.http_url}/predict",
                      json={"mode": mode, "kind": "str", "n": 1000, "delay": 0.05}) as response:
        assert next(response.iter_raw()) == b"chunk-0\n"
    # The generator must be closed (not run on for 50 s), and told why.
    deadline = time.monotonic() + 5
    while report()["closed_early"] == before["closed_early"] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = report()
    assert after["closed_early"] == before["closed_early"] + 1
    assert after["saw_disconnect"] == before["saw_disconnect"] + 1
