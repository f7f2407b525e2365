"""Streaming predict over HTTP: chunk framing, incremental delivery, mid-stream failures."""

from __future__ import annotations

import json
import time

import httpx
import pytest

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
    assert error["message"] == "predict raised RuntimeError: failed at chunk 2"
    assert httpx.post(f"{streaming.http_url}/predict", json={"mode": "value"}).status_code == 200


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
