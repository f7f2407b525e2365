"""The hf engine failing mid-batch: every request in the batch gets a clear error on its
transport, readiness says so while the engine restarts, and later requests are served. And
a request the engine refuses to add: it alone fails, the batch it joined goes on."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from clients import TwinserveError
from tests.conftest import StartDaemon
from tests.engine.test_batching import WAIT_S, batch_size, wait_for_batch
from tests.harness import MODELS, DaemonProcess
from tests.transports import connect

pytest.importorskip("transformers", reason="the hf backend needs the `hf` extra")


@pytest.fixture(scope="module")
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "engine_fault", timeout=300)


def test_a_failing_step_fails_the_batch_and_the_engine_recovers(daemon: DaemonProcess) -> None:
    body = {"prompt": "The capital of France is", "max_tokens": 200, "ignore_eos": True}
    errors: list[BaseException | None] = []

    def generate(transport: str) -> None:
        client = connect(daemon, transport, timeout=WAIT_S)
        try:
            client.completions(body)  # type: ignore[attr-defined]
            errors.append(None)
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    calls = [threading.Thread(target=generate, args=(t,)) for t in ("http", "http", "grpc")]
    for call in calls:
        call.start()
    wait_for_batch(daemon, 3)
    readiness: list[int] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            readiness.append(httpx.get(f"{daemon.http_url}/health/ready", timeout=5).status_code)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    armed = httpx.post(f"{daemon.http_url}/predict", json={"inject": "engine_failure"},
                       timeout=WAIT_S)
    assert armed.json() == {"armed": True}
    for call in calls:
        call.join(WAIT_S)
    assert len(errors) == 3
    for error in errors:
        assert isinstance(error, TwinserveError), error
        assert error.code == "INTERNAL"
        assert "injected" not in error.message  # the cause is in the log, not the answer
        assert "engine failed" in error.message
    deadline = time.monotonic() + WAIT_S
    while not readiness or readiness[-1] != 200 or 503 not in readiness:
        assert time.monotonic() < deadline, f"readiness went {sorted(set(readiness))}"
        time.sleep(0.01)
    watching.set()
    watcher.join()
    first_503 = readiness.index(503)
    assert 200 in readiness[first_503:]  # unready while restarting, then ready again
    client = connect(daemon, "grpc", timeout=WAIT_S)
    try:
        answer: dict[str, Any] = client.completions(  # type: ignore[attr-defined]
            {"prompt": "Hello", "max_tokens": 4, "ignore_eos": True})
    finally:
        client.close()
    assert answer["usage"]["completion_tokens"] == 4
    assert batch_size(daemon) == 0


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_a_request_the_engine_refuses_fails_alone(daemon: DaemonProcess, transport: str) -> None:
    running: list[dict[str, Any]] = []
    body = {"prompt": "The capital of France is", "max_tokens": 40, "ignore_eos": True}

    def generate() -> None:
        client = connect(daemon, transport, timeout=WAIT_S)
        try:
            running.append(client.completions(body))  # type: ignore[attr-defined]
        finally:
            client.close()

    other = threading.Thread(target=generate)
    other.start()
    wait_for_batch(daemon, 1)
    armed = httpx.post(f"{daemon.http_url}/predict", json={"inject": "refused_add"},
                       timeout=WAIT_S)
    assert armed.json() == {"armed": True}
    client = connect(daemon, transport, timeout=WAIT_S)
    try:
        with pytest.raises(TwinserveError) as caught:
            client.completions({"prompt": "Hello", "max_tokens": 4})  # type: ignore[attr-defined]
    finally:
        client.close()
    assert caught.value.code == "INTERNAL"  # HTTP 500, named as gRPC names it
    assert caught.value.message.startswith("the hf engine could not start this generation")
    assert "Traceback" not in caught.value.message
    other.join(WAIT_S)
    assert [answer["usage"]["completion_tokens"] for answer in running] == [40]
    daemon.wait_for_log("hf engine: could not add request")
