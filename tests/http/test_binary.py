"""Bodies that are not JSON: msgpack (Truss's binary convention), bytes and response objects,
and uploads streamed to the model as they arrive."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest

from tests.conftest import StartDaemon
from tests.harness import MODELS, DaemonProcess, copy_model
from tests.scrape import wait_for_metric

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def binary(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "binary")


@pytest.fixture(scope="module")
def upload(start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    root = copy_model(tmp_path_factory.mktemp("upload"), MODELS / "upload",
                      f"model_name: upload\nruntime:\n  max_request_bytes: {300 * MiB}\n")
    return start_daemon(root)


def test_octet_stream_input_is_msgpack_and_answer_too(binary: DaemonProcess) -> None:
    payload = {"data": b"\x00\xff", "n": [1, 2]}
    response = httpx.post(f"{binary.http_url}/predict", content=msgpack.packb(payload),
                          headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert msgpack.unpackb(response.content) == {"got": payload}


def test_truss_predict_binary_route_is_msgpack(binary: DaemonProcess) -> None:
    response = httpx.post(f"{binary.http_url}/v1/models/binary:predict_binary",
                          content=msgpack.packb([1, "two"]))
    assert msgpack.unpackb(response.content) == {"got": [1, "two"]}


def test_malformed_msgpack_is_400(binary: DaemonProcess) -> None:
    response = httpx.post(f"{binary.http_url}/predict", content=b"\xc1",
                          headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("request body is not valid msgpack")


def test_bytes_result_is_sent_raw(binary: DaemonProcess) -> None:
    response = httpx.post(f"{binary.http_url}/predict", json={"as": "bytes"})
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b"\x00\x01raw"


def test_response_object_keeps_status_type_and_headers(binary: DaemonProcess) -> None:
    response = httpx.post(f"{binary.http_url}/predict", json={"as": "response"})
    assert response.status_code == 201
    assert response.headers["content-type"] == "text/csv"
    assert response.headers["x-extra"] == "yes"
    assert response.headers["x-request-id"]
    assert response.content == b"a,b\n1,2\n"


def test_starlette_response_from_a_truss_model(binary: DaemonProcess) -> None:
    response = httpx.post(f"{binary.http_url}/predict", json={"as": "starlette"})
    assert (response.status_code, response.headers["content-type"]) == (202, "text/html")
    assert response.headers["x-from"] == "starlette"
    assert response.content == b"<p>hi</p>"


def test_200_mib_chunked_upload_streams_through_in_bounded_memory(upload: DaemonProcess) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    expected = hashlib.sha256()
    for _ in range(200):
        expected.update(block)

    def body() -> Iterator[bytes]:
        for _ in range(200):
            yield block

    before = upload.peak_rss_mib()
    response = httpx.post(f"{upload.http_url}/predict", content=body(), timeout=60)
    grown_mib = upload.peak_rss_mib() - before
    answer = response.json()
    assert answer["bytes"] == 200 * MiB and answer["sha256"] == expected.hexdigest()
    assert answer["chunks"] > 1
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB"


def test_streamed_upload_over_the_limit_is_413(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = start_daemon(copy_model(tmp_path, MODELS / "upload",
                                     "runtime:\n  max_request_bytes: 100000\n"))

    def body() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 50_000

    try:
        response = httpx.post(f"{daemon.http_url}/predict", content=body())
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "request_too_large"
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the daemon may close the connection while the client is still sending
    ok = httpx.post(f"{daemon.http_url}/predict", content=b"x" * 1000)
    assert ok.json()["bytes"] == 1000


def test_client_leaving_mid_upload_cancels_the_handler(upload: DaemonProcess) -> None:
    def aborted() -> int:
        count: int = httpx.post(f"{upload.http_url}/predict?report=1").json()["aborted"]
        return count

    before = aborted()
    with socket.create_connection(("127.0.0.1", upload.http_port)) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        sock.sendall(b"y" * 100_000)
        wait_for_metric(upload, "twinserve_in_flight", 1, 5)  # the handler is reading the body
    deadline = time.monotonic() + 5
    while aborted() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert aborted() == before + 1
