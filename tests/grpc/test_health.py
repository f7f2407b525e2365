"""grpc.health.v1 follows the model: NOT_SERVING while loading or unhealthy, SERVING when ready."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2

from clients import GrpcClient
from tests.conftest import StartDaemon
from tests.harness import MODELS, DaemonProcess
from twinserve_wire.service import SERVICE_NAME

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class Health:
    """Raw grpc.health.v1 calls, as a Kubernetes probe or grpc-health-probe makes them."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self._check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)
        self._watch = self.channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString)

    def check(self, service: str = "") -> int:
        response = self._check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(response.status)

    def watch(self, service: str = "") -> Any:
        """The streaming call: iterate it for statuses, cancel() it when done."""
        return self._watch(health_pb2.HealthCheckRequest(service=service), timeout=20)


def wait_for(fn: object, want: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn() == want:  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"never got {want!r}")


def test_not_serving_while_loading_then_serving(start_daemon_per_test: StartDaemon,
                                                tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    daemon = start_daemon_per_test(MODELS / "lifecycle", wait="listening",
                                   env={"LIFECYCLE_LOAD_GATE": str(gate)})
    health = Health(daemon.grpc_target)
    assert health.check() == NOT_SERVING
    assert health.check(SERVICE_NAME) == NOT_SERVING
    watch = health.watch()
    assert next(watch).status == NOT_SERVING
    gate.touch()
    assert next(watch).status == SERVING
    watch.cancel()
    assert health.check() == SERVING
    assert health.check(SERVICE_NAME) == SERVING
    health.channel.close()


@pytest.fixture(scope="module")
def lifecycle(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "lifecycle")


def test_unhealthy_model_is_not_serving(lifecycle: DaemonProcess) -> None:
    health = Health(lifecycle.grpc_target)
    client = GrpcClient(lifecycle.grpc_target)
    try:
        assert health.check() == SERVING
        watch = health.watch(SERVICE_NAME)
        assert next(watch).status == SERVING
        assert client.predict({"healthy": False}) == {"healthy": False}
        assert health.check() == NOT_SERVING
        assert httpx.get(f"{lifecycle.http_url}/health/ready").status_code == 503
        assert next(watch).status == NOT_SERVING
        client.predict({"healthy": True})
        assert health.check() == SERVING
        assert next(watch).status == SERVING
        watch.cancel()
    finally:
        client.close()
        health.channel.close()


def test_unknown_service(lifecycle: DaemonProcess) -> None:
    health = Health(lifecycle.grpc_target)
    with pytest.raises(grpc.RpcError) as info:
        health.check("no.such.Service")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    watch = health.watch("no.such.Service")
    assert next(watch).status == SERVICE_UNKNOWN
    watch.cancel()
    assert health.check() == SERVING
    health.channel.close()
