"""What only a gRPC client sees of the raw RPCs: InvokeStream, refusals, and Upload's body
pulled message by message (bounded memory, the size limit, a client cancelling midway)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import msgpack
import pytest

from tests.conftest import StartDaemon
from tests.harness import MODELS, DaemonProcess, copy_model
from tests.scrape import wait_for_metric
from twinserve_wire import service
from twinserve_wire.proto.v1.model_pb2 import InvokeRequest, InvokeResponse, UploadRequest

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def streaming(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(MODELS / "streaming")


@pytest.fixture(scope="module")
def upload(start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    root = copy_model(tmp_path_factory.mktemp("upload"), MODELS / "upload",
                      f"model_name: upload\nruntime:\n  max_request_bytes: {300 * MiB}\n")
    return start_daemon(root)


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.invoke = channel.unary_unary(
            service.method_path(service.INVOKE),
            request_serializer=InvokeRequest.SerializeToString,
            response_deserializer=InvokeResponse.FromString)
        self.invoke_stream = channel.unary_stream(
            service.method_path(service.INVOKE_STREAM),
            request_serializer=InvokeRequest.SerializeToString,
            response_deserializer=InvokeResponse.FromString)
        self.upload = channel.stream_unary(
            service.method_path(service.UPLOAD),
            request_serializer=UploadRequest.SerializeToString,
            response_deserializer=InvokeResponse.FromString)


def stubs_for(daemon: DaemonProcess) -> Iterator[Stubs]:
    with grpc.insecure_channel(daemon.grpc_target, options=[
            ("grpc.max_receive_message_length", -1)]) as channel:
        yield Stubs(channel)


@pytest.fixture
def to_streaming(streaming: DaemonProcess) -> Iterator[Stubs]:
    yield from stubs_for(streaming)


@pytest.fixture
def to_upload(upload: DaemonProcess) -> Iterator[Stubs]:
    yield from stubs_for(upload)


def as_json(spec: Any) -> InvokeRequest:
    return InvokeRequest(content_type="application/json", data=json.dumps(spec).encode())


# -- InvokeStream and refusals -------------------------------------------------------------------


@pytest.mark.parametrize("kind, content_type, data", [
    ("bytes", "application/octet-stream", [b"b0;", b"b1;", b"b2;"]),
    ("str", "text/plain; charset=utf-8", [b"chunk-0\n", b"chunk-1\n", b"chunk-2\n"]),
    ("json", "application/json", [b'{"i":0}', b'{"i":1}', b'{"i":2}']),
])
def test_invoke_stream_sends_one_message_per_chunk(to_streaming: Stubs, kind: str,
                                                  content_type: str, data: list[bytes]) -> None:
    messages = list(to_streaming.invoke_stream(as_json({"mode": "async", "kind": kind})))
    assert [(m.content_type, m.data) for m in messages] == [(content_type, d) for d in data]


def test_invoke_stream_of_a_plain_value_is_one_message(to_streaming: Stubs) -> None:
    messages = list(to_streaming.invoke_stream(as_json({"mode": "value"})))
    assert [(m.content_type, m.data) for m in messages] == [
        ("application/json", b'{"not":"streamed"}')]


@pytest.mark.parametrize("rpc", ["invoke", "upload"])
def test_unary_raw_call_on_a_streaming_route_is_refused(to_streaming: Stubs, rpc: str) -> None:
    message = as_json({"mode": "async", "n": 100, "delay": 0.01})
    with pytest.raises(grpc.RpcError) as info:
        if rpc == "invoke":
            to_streaming.invoke(message)
        else:
            first = UploadRequest.FromString(message.SerializeToString())  # same field numbers
            to_streaming.upload(iter([first, UploadRequest(last=True)]))
    err: Any = info.value
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "predict streams its output" in err.details()
    report = to_streaming.invoke(as_json({"mode": "report"}))
    assert report.content_type == "application/json"


def test_empty_content_type_means_octet_stream(start_daemon: StartDaemon) -> None:
    binary = start_daemon(MODELS / "binary")
    for stubs in stubs_for(binary):
        answer = stubs.invoke(InvokeRequest(data=msgpack.packb({"a": 1})))
        assert answer.content_type == "application/octet-stream"
        assert msgpack.unpackb(answer.data) == {"got": {"a": 1}}


def test_upload_marked_last_at_once_is_an_empty_body(to_upload: Stubs) -> None:
    answer = to_upload.upload(iter([UploadRequest(last=True)]))
    assert json.loads(answer.data)["bytes"] == 0


@pytest.mark.parametrize("messages", [[], [UploadRequest(data=b"abc")]], ids=["none", "some"])
def test_upload_that_ends_without_last_is_not_a_short_body(
        to_upload: Stubs, messages: list[UploadRequest]) -> None:
    with pytest.raises(grpc.RpcError) as info:
        to_upload.upload(iter(messages))
    err: Any = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ended without a message with last=true" in err.details()
    ok = to_upload.upload(iter([UploadRequest(data=b"abc", last=True)]))
    assert json.loads(ok.data)["bytes"] == 3


# -- Upload: memory, limit, cancellation ----------------------------------------------------------


def test_200_mib_upload_streams_through_in_bounded_memory(upload: DaemonProcess,
                                                          to_upload: Stubs) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    expected = hashlib.sha256()
    for _ in range(200):
        expected.update(block)

    def messages() -> Iterator[UploadRequest]:
        yield UploadRequest(content_type="application/octet-stream", data=block)
        for _ in range(199):
            yield UploadRequest(data=block)
        yield UploadRequest(last=True)

    before = upload.peak_rss_mib()
    answer = json.loads(to_upload.upload(messages(), timeout=60).data)
    grown_mib = upload.peak_rss_mib() - before
    assert answer == {"bytes": 200 * MiB, "chunks": 200, "sha256": expected.hexdigest()}
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB"


def test_upload_over_the_limit_is_resource_exhausted(start_daemon: StartDaemon,
                                                     tmp_path: Path) -> None:
    daemon = start_daemon(copy_model(tmp_path, MODELS / "upload",
                                     "runtime:\n  max_request_bytes: 100000\n"))
    for stubs in stubs_for(daemon):
        with pytest.raises(grpc.RpcError) as info:
            stubs.upload(UploadRequest(data=b"x" * 50_000) for _ in range(10))
        err: Any = info.value
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_request_bytes (100000 bytes)" in err.details()
        ok = stubs.upload(iter([UploadRequest(data=b"x" * 1000, last=True)]))
        assert json.loads(ok.data)["bytes"] == 1000


def test_client_cancelling_mid_upload_cancels_the_model(upload: DaemonProcess,
                                                        to_upload: Stubs) -> None:
    def aborted() -> int:
        answer = to_upload.invoke(InvokeRequest(), metadata=(("x-report", "1"),))
        count: int = json.loads(answer.data)["aborted"]
        return count

    before = aborted()
    sent = threading.Event()
    release = threading.Event()

    def messages() -> Iterator[UploadRequest]:
        for _ in range(5):
            yield UploadRequest(data=b"y" * 100_000)
        sent.set()
        release.wait(10)  # hold the call open, mid-upload

    call = to_upload.upload.future(messages())
    try:
        assert sent.wait(5)
        # the call is in the model, which is now waiting for the next piece
        wait_for_metric(upload, "twinserve_in_flight", 1, 5)
        call.cancel()
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while aborted() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert aborted() == before + 1
    answer = json.loads(to_upload.upload(iter([UploadRequest(data=b"z" * 10, last=True)])).data)
    assert answer["bytes"] == 10
