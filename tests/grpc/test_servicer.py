"""What only a raw gRPC client can see: request ids, bad bytes, unknown methods, metadata."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from tests.conftest import StartDaemon
from tests.harness import EXAMPLES, MODELS, DaemonProcess
from twinserve_wire import service
from twinserve_wire.proto.v1.model_pb2 import PredictRequest, PredictResponse


@pytest.fixture(scope="module")
def echo(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(EXAMPLES / "echo")


@pytest.fixture
def predict(echo: DaemonProcess) -> Iterator[Any]:
    with grpc.insecure_channel(echo.grpc_target) as channel:
        yield channel.unary_unary(service.method_path(service.PREDICT),
                                  request_serializer=PredictRequest.SerializeToString,
                                  response_deserializer=PredictResponse.FromString)


def trailing(call: Any) -> dict[str, str]:
    return dict(call.trailing_metadata())


def test_request_id_is_taken_from_metadata_or_made(predict: Any) -> None:
    response, call = predict.with_call(PredictRequest(json=b"[1]"),
                                       metadata=[("x-request-id", "req-42")])
    assert response.json == b"[1]"
    assert trailing(call)["x-request-id"] == "req-42"
    _, first = predict.with_call(PredictRequest(json=b"[1]"))
    _, second = predict.with_call(PredictRequest(json=b"[1]"))
    made = {trailing(first)["x-request-id"], trailing(second)["x-request-id"]}
    assert len(made) == 2 and all(len(rid) >= 16 for rid in made)


def test_invalid_json_is_invalid_argument_with_the_http_message(
        predict: Any, echo: DaemonProcess) -> None:
    with pytest.raises(grpc.RpcError) as info:
        predict(PredictRequest(json=b'{"a": '), metadata=[("x-request-id", "bad-1")])
    err: Any = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailing(err)["x-request-id"] == "bad-1"
    http = httpx.post(f"{echo.http_url}/predict", content=b'{"a": ')
    assert http.status_code == 400
    assert err.details() == http.json()["error"]["message"]
    assert predict(PredictRequest(json=b"{}")).json == b"{}"


def test_empty_body_is_invalid_argument(predict: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        predict(PredictRequest())
    err: Any = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty" in err.details()


def test_route_field_selects_the_route(predict: Any) -> None:
    assert predict(PredictRequest(route="predict", json=b"2")).json == b"2"
    with pytest.raises(grpc.RpcError) as info:
        predict(PredictRequest(route="postprocess", json=b"2"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_unknown_method_is_unimplemented(echo: DaemonProcess) -> None:
    with grpc.insecure_channel(echo.grpc_target) as channel:
        nope: Any = channel.unary_unary(f"/{service.SERVICE_NAME}/Nope")
        with pytest.raises(grpc.RpcError) as info:
            nope(b"")
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_binary_metadata_is_left_out_of_headers(start_daemon_per_test: StartDaemon) -> None:
    daemon = start_daemon_per_test(MODELS / "raw_request")
    with grpc.insecure_channel(daemon.grpc_target) as channel:
        predict = channel.unary_unary(service.method_path(service.PREDICT),
                                      request_serializer=PredictRequest.SerializeToString,
                                      response_deserializer=PredictResponse.FromString)
        response = predict(PredictRequest(json=b"{}"),
                           metadata=(("x-test-header", "t"), ("blob-bin", b"\x00\x01")))
        assert b'"header":"t"' in response.json
