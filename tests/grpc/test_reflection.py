"""Server reflection lists and describes our services, as grpcurl uses it."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.conftest import StartDaemon
from tests.harness import EXAMPLES
from twinserve_wire.service import SERVICE_NAME


@pytest.fixture(scope="module")
def channel(start_daemon: StartDaemon) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(start_daemon(EXAMPLES / "echo").grpc_target) as chan:
        yield chan


def test_lists_services(channel: grpc.Channel) -> None:
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {SERVICE_NAME, "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= services


def test_describes_model_service(channel: grpc.Channel) -> None:
    pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    model = pool.FindServiceByName(SERVICE_NAME)
    assert {m.name: (m.client_streaming, m.server_streaming) for m in model.methods} == {
        "Predict": (False, False), "PredictStream": (False, True),
        "Invoke": (False, False), "InvokeStream": (False, True), "Upload": (True, False),
        "Session": (True, True)}
    chunk = pool.FindMessageTypeByName("twinserve.v1.PredictStreamResponse")
    assert [f.name for f in chunk.oneofs_by_name["chunk"].fields] == ["text", "data", "json"]
