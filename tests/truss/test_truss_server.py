"""Truss's model-server tests (basetenlabs/truss
`truss/tests/templates/server/test_truss_server.py`), run against a real twinserve daemon.

Truss builds its `BasetenEndpoints` in-process around a `ModelWrapper` and calls them with
MagicMock requests; here the same model code runs in a daemon and the same inputs go over
HTTP, with the same expected outcome. Truss's `truss_container_fs` is its test_data
`test_truss` as built into a container; here it is that truss, copied unchanged into
tests/truss/models/test_truss (`app_path` copies it again where a test rewrites its model).
Adaptations, each also noted where it is made:

- Clients are httpx; `print()`s Truss reads from the server's captured stdout are read
  from the daemon's log.

Not ported:
- test_disconnect_watcher_sets_event_from_worker_thread: when Truss's watcher starts to poll
  `receive()` (only once entered) is internal; the part model code sees, the event set in a
  sync generator's worker thread when the client goes, is
  test_sync_generator_observes_tcp_disconnect.
- test_disconnect_watcher_stops_when_context_exits: that Truss cancels its polling task on
  leaving the context is internal; nothing a model or client can observe.
- test_execute_request_sets_none_when_no_request_id_header: Truss's context holds None with
  no `x-baseten-request-id`; twinserve generates a request id then (documented), so there
  is no user-visible behaviour to carry over.
- test_websocket_sets_request_id_in_context: WebSocket; issue 17 ports WebSocket tests.
- test_execute_request_sets_request_id_in_context: `x-baseten-request-id` is set by
  Baseten's platform; twinserve takes a call's id from `X-Request-Id` (both transports) and
  puts it on every log line of the call (README, "Coming from Truss").
- test_hot_reload_endpoint, test_hot_reload_with_namespace_subpackage: POST /hot-reload
  serves Baseten's `truss watch` development loop, which swaps a live deployment's code;
  a self-hosted twinserve is restarted to load new code (README, "Coming from Truss").
"""

from __future__ import annotations

import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgpack
import pytest

from tests.conftest import StartDaemon
from tests.harness import DaemonProcess
from tests.truss.conftest import TrussServer

MODELS = Path(__file__).resolve().parent / "models"


@pytest.fixture
def app_path(tmp_path: Path) -> Path:
    """A copy of test_truss, for a test that rewrites its model code."""
    return Path(shutil.copytree(MODELS / "test_truss", tmp_path / "app"))


def _predict_url(daemon: DaemonProcess) -> str:
    return f"{daemon.http_url}/v1/models/model:predict"


def test_execute_request_installs_disconnect_watcher(truss_server: TrussServer) -> None:
    # Truss: a predict taking only the request (skip_input_parsing: no inputs) is given a
    # request whose `state.watch_disconnect` is callable; an assertion in model code is a 500.
    model = """
    from fastapi import Request
    from starlette.responses import Response


    class Model:
        async def predict(self, request: Request):
            assert callable(request.state.watch_disconnect)
            return Response()
    """
    daemon = truss_server(model)

    response = httpx.post(_predict_url(daemon), content=b"")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream; charset=binary", "Application/Octet-Stream"],
)
def test_binary_request_accepts_content_type_variants(
        start_daemon_per_test: StartDaemon, content_type: str) -> None:
    daemon = start_daemon_per_test(MODELS / "test_truss")
    body = msgpack.packb({})  # truss_msgpack_serialize({})

    response = httpx.post(_predict_url(daemon), content=body,
                          headers={"Content-Type": content_type})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert msgpack.unpackb(response.content) == {"predictions": []}


def test_truss_server_termination(start_daemon_per_test: StartDaemon) -> None:
    # The server should come up; poll instead of a fixed sleep.
    daemon = start_daemon_per_test(MODELS / "test_truss", wait="listening")
    port = daemon.http_port
    assert _wait_for(lambda: _is_server_listening(port)), "server never started"
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.wait_exit(timeout=30)
    assert daemon.proc.poll() is not None
    assert _wait_for(lambda: not _is_server_listening(port)), "port still in use"


def test_sync_generator_observes_tcp_disconnect(app_path: Path,
                                                start_daemon_per_test: StartDaemon) -> None:
    model_file = app_path / "model" / "model.py"
    model_file.write_text(
        """\
from typing import Any

from fastapi import Request


class Model:
    def __init__(self, **kwargs) -> None:
        pass

    def load(self) -> None:
        pass

    def predict(self, model_input: Any, request: Request):
        with request.state.watch_disconnect() as disconnected:
            yield b"first"
            if disconnected.wait(timeout=5):
                print("SYNC_DISCONNECT_OBSERVED", flush=True)
            else:
                print("SYNC_DISCONNECT_MISSED", flush=True)
"""
    )
    daemon = start_daemon_per_test(app_path, wait="listening")
    port = daemon.http_port

    model_url = f"http://127.0.0.1:{port}/v1/models/x-4:predict"
    ready_url = f"http://127.0.0.1:{port}/v1/models/x-4"

    def model_is_ready() -> bool:
        try:
            return httpx.get(ready_url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert _wait_for(model_is_ready), "model server never became ready"

    with httpx.Client(timeout=5) as client:
        with client.stream("POST", model_url, json={}) as response:
            response.raise_for_status()
            assert next(response.iter_bytes()) == b"first"

    # Truss reads the server's stdout; the daemon's log is where a model's output goes.
    assert _wait_for(
        lambda: "SYNC_DISCONNECT_OBSERVED" in daemon.log,
        timeout_sec=8,
        poll_sec=0.1,
    ), f"synchronous generator did not observe the TCP disconnect:\n{daemon.log}"
    assert "SYNC_DISCONNECT_MISSED" not in daemon.log

    daemon.proc.send_signal(signal.SIGTERM)
    daemon.wait_exit(timeout=30)
    assert daemon.proc.poll() is not None
    assert _wait_for(lambda: not _is_server_listening(port)), "port still in use"


def _is_server_listening(port: int) -> bool:
    """Truss's helper: whether something accepts connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_for(condition: Callable[[], bool], timeout_sec: float = 10.0,
              poll_sec: float = 0.05) -> bool:
    """Whether `condition` turned true within `timeout_sec`, polled every `poll_sec`."""
    deadline = time.monotonic() + timeout_sec
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_sec)
    return condition()
