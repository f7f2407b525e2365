"""One client interface over both transports, for the parity, gRPC and hardening suites;
the fixtures that use it (`transport`, `client_for`) are in conftest.py."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any, Protocol

from clients import GrpcClient, HttpClient
from tests.harness import DaemonProcess

TRANSPORTS = ("http", "grpc")


class Client(Protocol):
    def predict(self, obj: Any, *, route: str = ...) -> Any: ...
    def predict_stream(self, obj: Any, *, route: str = ...) -> Generator[Any, None, None]: ...
    def close(self) -> None: ...


def connect(daemon: DaemonProcess, transport: str, **options: Any) -> Client:
    if transport == "http":
        return HttpClient(daemon.http_url, **options)
    return GrpcClient(daemon.grpc_target, **options)


def wait_until_calls_run_alone(client: Client, timeout: float = 10.0) -> None:
    """For tests/models/concurrency: wait until a call runs with no other call still in the
    model, e.g. a sync predict whose caller gave up (a time limit, a client leaving) and
    whose thread sleeps on. Probes with a call between two peak reports; resets the peak."""
    deadline = time.monotonic() + timeout
    while True:
        client.predict({"report": True})  # reset the peak
        client.predict({"sleep": 0})
        peak = client.predict({"report": True})["peak"]
        if peak == 1:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"calls still overlap in the model after {timeout}s "
                                 f"(peak {peak})")
        time.sleep(0.05)
