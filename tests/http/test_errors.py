"""Every HTTP error a client can cause: status, JSON body, request id, and the daemon serves on."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import StartDaemon
from tests.harness import EXAMPLES, MODELS, DaemonProcess, copy_model

LIMIT = 4096


@pytest.fixture(scope="module")
def errors(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "errors")


@pytest.fixture(scope="module")
def small_limit(start_daemon: StartDaemon,
                tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    return start_daemon(copy_model(tmp_path_factory.mktemp("small_limit"), EXAMPLES / "echo",
                                   f"runtime:\n  max_request_bytes: {LIMIT}\n"))


def _error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == kind
    assert error["request_id"] == response.headers["x-request-id"]
    message: str = error["message"]
    return message


def _still_serving(daemon: DaemonProcess) -> None:
    assert httpx.post(f"{daemon.http_url}/predict", json={}).status_code == 200


def test_invalid_json_is_400_naming_the_problem(errors: DaemonProcess) -> None:
    message = _error(httpx.post(f"{errors.http_url}/predict", content=b'{"a": '), 400,
                     "invalid_request_error")
    assert message.startswith("request body is not valid JSON")
    _still_serving(errors)


def test_empty_body_is_400(errors: DaemonProcess) -> None:
    message = _error(httpx.post(f"{errors.http_url}/predict"), 400, "invalid_request_error")
    assert "empty" in message


def test_unknown_route_is_404(errors: DaemonProcess) -> None:
    message = _error(httpx.get(f"{errors.http_url}/nope"), 404, "not_found_error")
    assert message == "no route for GET /nope"


def test_wrong_method_is_405(errors: DaemonProcess) -> None:
    response = httpx.get(f"{errors.http_url}/predict")
    assert _error(response, 405, "method_not_allowed") == "GET is not allowed on /predict; use POST"
    assert response.headers["allow"] == "POST"


def test_model_exception_is_500_without_traceback(errors: DaemonProcess) -> None:
    response = httpx.post(f"{errors.http_url}/predict", json={"raise": "value_error"},
                          headers={"X-Request-Id": "trace-me"})
    message = _error(response, 500, "model_error")
    assert message == ("predict failed with an unexpected error; the server log has the "
                       "details under this request's id")
    assert "could not cope" not in response.text and "Traceback" not in response.text
    errors.wait_for_log("trace-me", "ERROR")
    assert "Traceback" in errors.log and "ValueError: the model could not cope" in errors.log
    _still_serving(errors)


def test_model_client_error_keeps_its_status(errors: DaemonProcess) -> None:
    response = httpx.post(f"{errors.http_url}/predict", json={"raise": "client_error"})
    assert _error(response, 422, "invalid_request_error") == "field 'x' must be positive"


def test_unserialisable_result_is_500(errors: DaemonProcess) -> None:
    response = httpx.post(f"{errors.http_url}/predict", json={"raise": "unserialisable"})
    assert "cannot be sent as JSON" in _error(response, 500, "model_error")
    _still_serving(errors)


def test_body_over_limit_by_content_length_is_413(small_limit: DaemonProcess) -> None:
    response = httpx.post(f"{small_limit.http_url}/predict", content=b"x" * (LIMIT + 1))
    assert str(LIMIT) in _error(response, 413, "request_too_large")
    _still_serving(small_limit)


def test_declared_length_over_limit_is_413_before_the_body_arrives(
        small_limit: DaemonProcess) -> None:
    # Only the headers and a few bytes are sent: the answer can come from Content-Length alone.
    host, port = small_limit.http_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n{\"a\"" % (100 * LIMIT))
        head = sock.recv(65536).split(b"\r\n", 1)[0]
    assert head == b"HTTP/1.1 413 Request Entity Too Large"
    _still_serving(small_limit)


def test_chunked_body_over_limit_is_413_without_buffering_it(small_limit: DaemonProcess) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(10_000):  # 40 MB
            yield b"y" * LIMIT

    before = small_limit.peak_rss_mib()
    response = httpx.post(f"{small_limit.http_url}/predict", content=body())
    _error(response, 413, "request_too_large")
    assert small_limit.peak_rss_mib() - before < 16  # far below the 40 MB sent
    _still_serving(small_limit)


def test_body_at_limit_is_accepted(small_limit: DaemonProcess) -> None:
    payload = b'"' + b"z" * (LIMIT - 2) + b'"'
    response = httpx.post(f"{small_limit.http_url}/predict", content=payload)
    assert response.status_code == 200 and len(response.json()) == LIMIT - 2
