"""A client that goes away stops the engine's backend: through a real daemon over HTTP.

The daemon serves the built-in text model over the simulated backend (20 ms a token), and
the backend's state is read from outside through GET /metrics.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.conftest import StartDaemon
from tests.harness import MODELS, DaemonProcess
from tests.scrape import assert_backend_stopped, metric


@pytest.fixture(scope="module")
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "engine_simulated")


def test_unary_answer(daemon: DaemonProcess) -> None:
    reply = httpx.post(f"{daemon.http_url}/predict", json={"prompt": "a b", "max_tokens": 3},
                       timeout=10)
    assert reply.status_code == 200
    body = reply.json()
    assert body["finish_reason"] == "length" and len(body["text"].split()) == 3
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_invalid_sampling_parameter_is_a_400_naming_it(daemon: DaemonProcess) -> None:
    reply = httpx.post(f"{daemon.http_url}/predict",
                       json={"prompt": "x", "temperature": 9}, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"].startswith("temperature: ")


def test_metrics_are_prometheus_text(daemon: DaemonProcess) -> None:
    reply = httpx.get(f"{daemon.http_url}/metrics", timeout=5)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    assert "# TYPE twinserve_engine_in_flight gauge" in reply.text


def test_streaming_disconnect_stops_the_backend(daemon: DaemonProcess) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{daemon.http_url}/predict",
                           json={"prompt": "x", "max_tokens": 10_000, "stream": True}) as reply:
            chunks = reply.iter_text()
            assert next(chunks)
            assert next(chunks)
            assert metric(daemon, "twinserve_engine_in_flight") == 1
    # leaving the blocks closed the connection mid-stream
    assert_backend_stopped(daemon, cancelled)


def test_unary_disconnect_stops_the_backend(daemon: DaemonProcess) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    tokens = metric(daemon, "twinserve_engine_generated_tokens_total")
    body = json.dumps({"prompt": "x", "max_tokens": 10_000}).encode()
    with socket.create_connection(("127.0.0.1", daemon.http_port)) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.monotonic() + 5
        while metric(daemon, "twinserve_engine_generated_tokens_total") < tokens + 3:
            assert time.monotonic() < deadline, "the generation never got going"
            time.sleep(0.005)
    assert_backend_stopped(daemon, cancelled)


def test_daemon_keeps_serving_after_disconnects(daemon: DaemonProcess) -> None:
    reply = httpx.post(f"{daemon.http_url}/predict", json={"prompt": "x", "max_tokens": 2,
                                                           "stream": True}, timeout=10)
    assert reply.status_code == 200 and len(reply.text.split()) == 2


def test_custom_model_receives_the_engine(start_daemon_per_test: StartDaemon) -> None:
    process = start_daemon_per_test(MODELS / "engine_custom")
    reply = httpx.post(f"{process.http_url}/predict",
                       json={"prompt": "x", "max_tokens": 2}, timeout=10)
    assert reply.status_code == 200
    assert len(reply.json()["shouted"].split()) == 2 and reply.json()["shouted"].isupper()
