"""A gRPC client that cancels, or whose deadline passes, stops the engine's backend: on
predict and on the /v1 routes' streams."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest

from clients import AsyncGrpcClient, GrpcClient, TwinserveError
from tests.conftest import StartDaemon
from tests.harness import MODELS, DaemonProcess
from tests.scrape import assert_backend_stopped, metric, wait_for_metric
from twinserve_wire import service
from twinserve_wire.proto.v1.model_pb2 import PredictRequest, PredictResponse

LONG = {"prompt": "x", "max_tokens": 10_000}


@pytest.fixture(scope="module")
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "engine_simulated")


def test_streaming_cancel_stops_the_backend(daemon: DaemonProcess) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    with GrpcClient(daemon.grpc_target) as client:
        chunks = client.predict_stream({**LONG, "stream": True})
        assert next(chunks) and next(chunks)
        assert metric(daemon, "twinserve_engine_in_flight") == 1
        chunks.close()  # cancels the call
    assert_backend_stopped(daemon, cancelled)
    assert metric(daemon, 'twinserve_cancellations_total{reason="client_disconnect"}') >= 1


def test_unary_cancel_stops_the_backend(daemon: DaemonProcess) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        predict = channel.unary_unary(service.method_path(service.PREDICT),
                                      request_serializer=PredictRequest.SerializeToString,
                                      response_deserializer=PredictResponse.FromString)
        future = predict.future(PredictRequest(json=b'{"prompt": "x", "max_tokens": 10000}'))
        wait_for_metric(daemon, "twinserve_engine_in_flight", 1, 5)
        future.cancel()
    assert_backend_stopped(daemon, cancelled)


def test_deadline_stops_the_backend(daemon: DaemonProcess) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    started = time.monotonic()
    with GrpcClient(daemon.grpc_target, timeout=0.3) as client:
        with pytest.raises(TwinserveError) as info:
            client.predict(LONG)
    assert info.value.code == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 2
    assert_backend_stopped(daemon, cancelled)


def test_keeps_serving_after_cancels(daemon: DaemonProcess) -> None:
    with GrpcClient(daemon.grpc_target) as client:
        assert len(client.predict({"prompt": "x", "max_tokens": 2})["text"].split()) == 2


@pytest.mark.parametrize(("call", "body"), [
    ("chat_completions_stream", {"messages": [{"role": "user", "content": "x"}]}),
    ("completions_stream", {"prompt": "x"}),
    ("messages_stream", {"model": "m", "messages": [{"role": "user", "content": "x"}]}),
    ("responses_stream", {"input": "x"}),
])
def test_leaving_a_v1_stream_stops_the_backend(daemon: DaemonProcess, call: str,
                                               body: dict[str, Any]) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    limit = "max_output_tokens" if call == "responses_stream" else "max_tokens"
    with GrpcClient(daemon.grpc_target) as client:
        events = getattr(client, call)({**body, limit: 10_000})
        for _ in range(6):  # past the opening events, into the deltas
            next(events)
        assert metric(daemon, "twinserve_engine_in_flight") == 1
        events.close()  # cancels the call
    assert_backend_stopped(daemon, cancelled)


async def test_leaving_an_async_v1_stream_stops_the_backend(daemon: DaemonProcess) -> None:
    cancelled = metric(daemon, "twinserve_engine_cancelled_total")
    async with AsyncGrpcClient(daemon.grpc_target) as client:
        events = client.chat_completions_stream({"messages": [{"role": "user", "content": "x"}],
                                                 "max_tokens": 10_000})
        for _ in range(3):
            await anext(events)
        await events.aclose()
    assert_backend_stopped(daemon, cancelled)
