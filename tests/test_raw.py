"""Raw bytes calls (`predict_raw`) give the same answers and errors over HTTP and gRPC.

Bytes go as one HTTP POST / gRPC Invoke; an iterable as a chunked HTTP upload / a gRPC Upload
(client streaming). Each case runs once per transport through the client library, against
one daemon per model, and every error case checks the daemon keeps serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgpack
import pytest

from clients import AsyncGrpcClient, AsyncHttpClient, RawResponse, TwinserveError
from tests.conftest import Daemons
from tests.harness import EXAMPLES, MODELS
from tests.scrape import wait_for_metric
from twinserve_wire.proto.v1.tensors_pb2 import Tensor, TensorBatch, TensorBatchStats

PROTOBUF = "application/x-protobuf"


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def json_of(answer: RawResponse) -> Any:
    assert answer.content_type == "application/json"
    return json.loads(answer.data)


def tensor_batch() -> TensorBatch:
    return TensorBatch(
        tensors=[Tensor(name="weights", shape=[2, 3], values=[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]),
                 Tensor(name="bias", shape=[], values=[-0.25]),
                 Tensor(name="empty", shape=[0], values=[])],
        metadata={"source": "test", "step": "7"},
    )


# -- the same Request, whichever way the bytes came --------------------------------------------


def test_raw_bytes_reach_a_request_only_method_untouched(client_for: Any, transport: str) -> None:
    client = client_for(MODELS / "raw_request")
    answer = client.predict_raw(b"\x00\x01 not json at all", content_type="image/x-test")
    assert json_of(answer) == {"transport": transport, "length": 18,
                                         "prefix": "\x00\x01 not json at a",
                                         "header": None, "query": {}}


def test_octet_stream_is_msgpack_both_ways(client_for: Any) -> None:
    payload = {"data": b"\x00\xff", "n": [1, 2]}
    answer = client_for(MODELS / "binary").predict_raw(msgpack.packb(payload))
    assert answer.content_type == "application/octet-stream"
    assert msgpack.unpackb(answer.data) == {"got": payload}


def test_msgpack_convention_holds_for_an_upload_too(client_for: Any) -> None:
    packed = msgpack.packb({"blob": bytes(range(256)) * 100})
    answer = client_for(MODELS / "binary").predict_raw(pieces(packed, 4096))
    assert msgpack.unpackb(answer.data) == {"got": {"blob": bytes(range(256)) * 100}}


def test_malformed_msgpack_is_invalid_argument(client_for: Any) -> None:
    client = client_for(MODELS / "binary")
    with pytest.raises(TwinserveError) as info:
        client.predict_raw(b"\xc1")
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.message.startswith("request body is not valid msgpack")
    assert client.predict_raw(msgpack.packb(1)).data == msgpack.packb({"got": 1})


def test_response_object_keeps_its_content_type(client_for: Any) -> None:
    answer = client_for(MODELS / "binary").predict_raw(b'{"as": "response"}',
                                                      content_type="application/json")
    assert (answer.data, answer.content_type) == (b"a,b\n1,2\n", "text/csv")


def test_bytes_result_is_octet_stream(client_for: Any) -> None:
    answer = client_for(MODELS / "binary").predict_raw(b'{"as": "bytes"}',
                                                      content_type="application/json")
    assert (answer.data, answer.content_type) == (b"\x00\x01raw", "application/octet-stream")


def test_response_with_an_error_status_is_that_error(client_for: Any) -> None:
    client = client_for(MODELS / "binary")
    with pytest.raises(TwinserveError) as info:
        client.predict_raw(b'{"as": "refusal"}', content_type="application/json")
    assert (info.value.code, info.value.message) == ("NOT_FOUND", "no such thing")
    assert client.predict_raw(b"[1]", content_type="application/json").data == b'{"got":[1]}'


# -- uploads ------------------------------------------------------------------------------------


def test_upload_arrives_in_pieces_as_sent(client_for: Any) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    answer = json_of(client_for(MODELS / "upload").predict_raw(pieces(data, 64 * 1024)))
    assert answer["bytes"] == len(data)
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    assert answer["chunks"] > 1


def test_uploads_queued_for_the_slot_arrive_whole(client_for: Any, daemons: Daemons) -> None:
    """While a call waits for the model's one slot, its first bytes are taken in ahead of
    the model (body_prefetch.py); the model still reads every byte, in order."""
    client = client_for(MODELS / "upload")
    release = threading.Event()
    data = [bytes([i]) * 300_000 + bytes(range(256)) * i for i in range(4)]

    def held(index: int) -> Iterator[bytes]:
        yield data[index][:1000]
        if index == 0:
            release.wait(10)  # holds the slot while the others queue behind it
        yield from pieces(data[index][1000:], 48 * 1024)

    daemon = daemons(MODELS / "upload")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(client.predict_raw, held(0))]
        wait_for_metric(daemon, "twinserve_in_flight", 1, 10)
        answers += [pool.submit(client.predict_raw, held(i)) for i in range(1, 4)]
        wait_for_metric(daemon, "twinserve_queue_depth", 3, 10)
        release.set()
        for index, answer in enumerate(answers):
            got = json_of(answer.result(timeout=30))
            assert (got["bytes"], got["sha256"]) == \
                (len(data[index]), hashlib.sha256(data[index]).hexdigest())


def test_empty_upload_is_an_empty_body(client_for: Any) -> None:
    answer = json_of(client_for(MODELS / "upload").predict_raw(iter(())))
    assert (answer["bytes"], answer["sha256"]) == (0, hashlib.sha256().hexdigest())


@pytest.mark.parametrize("async_pieces", [False, True])
async def test_async_clients_send_bytes_and_uploads(daemons: Daemons, transport: str,
                                                    async_pieces: bool) -> None:
    daemon = daemons(MODELS / "upload")
    client: AsyncHttpClient | AsyncGrpcClient = (
        AsyncHttpClient(daemon.http_url) if transport == "http"
        else AsyncGrpcClient(daemon.grpc_target))

    async def agen() -> AsyncIterator[bytes]:
        for piece in (b"ab", b"cd", b"ef"):
            await asyncio.sleep(0)
            yield piece

    try:
        whole = json_of(await client.predict_raw(b"abcdef"))
        streamed = json_of(await client.predict_raw(
            agen() if async_pieces else [b"ab", b"cd", b"ef"]))
    finally:
        await client.close()
    assert whole["sha256"] == streamed["sha256"] == hashlib.sha256(b"abcdef").hexdigest()


# -- examples/protobuf-upload -------------------------------------------------------------------


@pytest.mark.parametrize("as_upload", [False, True])
def test_protobuf_example_answers_stats_in_protobuf(client_for: Any, as_upload: bool) -> None:
    body = tensor_batch().SerializeToString()
    client = client_for(EXAMPLES / "protobuf-upload")
    answer = client.predict_raw(pieces(body, 7) if as_upload else body, content_type=PROTOBUF)
    assert answer.content_type == PROTOBUF
    stats = TensorBatchStats.FromString(answer.data)
    assert dict(stats.metadata) == {"source": "test", "step": "7"}
    weights, bias, empty = stats.tensors
    assert (weights.name, list(weights.shape), weights.count) == ("weights", [2, 3], 6)
    assert (weights.sum, weights.mean, weights.min, weights.max) == (21.5, 21.5 / 6, 1.0, 6.5)
    assert (bias.name, list(bias.shape), bias.count, bias.sum) == ("bias", [], 1, -0.25)
    assert (empty.name, empty.count) == ("empty", 0)


def test_protobuf_example_json_twin_gives_the_same_stats(client_for: Any) -> None:
    body = b'{"tensors": [{"name": "w", "shape": [2], "values": [1.5, 2.5]}], "metadata": {}}'
    answer = client_for(EXAMPLES / "protobuf-upload").predict_raw(
        body, content_type="application/json")
    assert json_of(answer)["tensors"][0] == {
        "name": "w", "shape": [2], "count": 2, "sum": 4.0, "mean": 2.0, "min": 1.5, "max": 2.5}


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05ab"], ids=["garbage", "truncated"])
def test_malformed_protobuf_is_invalid_argument(client_for: Any, body: bytes) -> None:
    client = client_for(EXAMPLES / "protobuf-upload")
    with pytest.raises(TwinserveError) as info:
        client.predict_raw(body, content_type=PROTOBUF)
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.message.startswith("body is not a valid twinserve.v1.TensorBatch")
    assert info.value.request_id
    ok = client.predict_raw(tensor_batch().SerializeToString(), content_type=PROTOBUF)
    assert len(TensorBatchStats.FromString(ok.data).tensors) == 3


def test_shape_that_does_not_match_the_values_is_invalid_argument(client_for: Any) -> None:
    bad = TensorBatch(tensors=[Tensor(name="t", shape=[2, 2], values=[1.0])])
    with pytest.raises(TwinserveError) as info:
        client_for(EXAMPLES / "protobuf-upload").predict_raw(bad.SerializeToString(),
                                                            content_type=PROTOBUF)
    assert info.value.code == "INVALID_ARGUMENT"
    assert "shape [2, 2] holds 4 values, got 1" in info.value.message


def test_unsupported_content_type_is_refused(client_for: Any) -> None:
    with pytest.raises(TwinserveError) as info:
        client_for(EXAMPLES / "protobuf-upload").predict_raw(b"x", content_type="text/csv")
    assert info.value.code == "INVALID_ARGUMENT"  # 415: a 4xx without a closer gRPC code
    assert "not text/csv" in info.value.message
