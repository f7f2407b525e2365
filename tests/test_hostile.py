"""Hostile and careless clients: none of them stalls the model, makes the daemon buffer what
it will refuse, or reads a secret. Each defect of issue 14 against a real daemon, on both
transports where it applies (scripts/attack.py runs the same attacks at scale)."""

from __future__ import annotations

import collections
import concurrent.futures
import gzip
import json
import resource
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.errors
import httpx
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from clients import GrpcClient, TwinserveError
from tests.conftest import StartDaemon
from tests.grpc.test_health import Health
from tests.harness import EXAMPLES, MODELS, DaemonProcess, copy_model
from tests.scrape import metric, wait_for_metric
from twinserve_wire import service
from twinserve_wire.proto.v1.model_pb2 import PredictRequest, PredictResponse, UploadRequest

KEY = "k3y-for-hostile"
AUTH = {"Authorization": f"Bearer {KEY}"}
METADATA = (("authorization", f"Bearer {KEY}"),)
SECRET = "SECRET-MARKER-5f1c"  # what the model's exceptions carry (tests/models/hostile)


@pytest.fixture(scope="module")
def hostile(start_daemon: StartDaemon) -> DaemonProcess:
    """One slot, a key, and 1 s idle, body-idle and write timeouts (config.yaml)."""
    return start_daemon(MODELS / "hostile", env={"TWINSERVE_API_KEY": KEY})


@pytest.fixture
def channel(hostile: DaemonProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(hostile.grpc_target) as channel:
        yield channel


def post(daemon: DaemonProcess, body: Any, timeout: float = 10) -> httpx.Response:
    return httpx.post(f"{daemon.http_url}/predict", json=body, headers=AUTH, timeout=timeout)


def connect(daemon: DaemonProcess, port: int | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port or daemon.http_port))
    sock.settimeout(10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the daemon sends until it closes the connection (or 10 s pass)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def closes_within(sock: socket.socket, bound_s: float) -> float:
    """How long the daemon took to close `sock`, which must happen within `bound_s`."""
    started = time.monotonic()
    read_until_closed(sock)
    elapsed = time.monotonic() - started
    assert elapsed < bound_s, f"connection still open after {elapsed:.1f}s"
    return elapsed


def ok_while(daemon: DaemonProcess, attack: concurrent.futures.Future[Any]) -> None:
    """A normal call, made while `attack` holds (or held) the model's one slot, is served."""
    started = time.monotonic()
    assert post(daemon, {"n": 1}).json() == {"n": 1}
    assert time.monotonic() - started < 5
    attack.result(timeout=10)


# -- one client cannot hold the model's slot --------------------------------------------------


def test_a_stalled_body_is_408_and_frees_the_slot(hostile: DaemonProcess) -> None:
    with connect(hostile) as sock, concurrent.futures.ThreadPoolExecutor(1) as pool:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                     KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"n\": ")
        answer = pool.submit(read_until_closed, sock)
        ok_while(hostile, answer)
        head, _, body = answer.result().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert "runtime.body_idle_timeout_s" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize("sent", [b"", b'{"n": '], ids=["nothing", "a-few-bytes"])
def test_stalled_bodies_queued_for_the_slot_expire_together(hostile: DaemonProcess,
                                                            sent: bytes) -> None:
    """Their idle time counts from when their bytes last came, not from when each gets the
    one slot: five stalled bodies do not cost five body_idle_timeout_s in turn, whether they
    never started or sent a few bytes first (taken in while they waited)."""
    sockets = [connect(hostile) for _ in range(5)]
    try:
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            for sock in sockets:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                             KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n" + sent)
            answers = [pool.submit(read_until_closed, sock) for sock in sockets]
            started = time.monotonic()
            assert post(hostile, {"n": 8}).json() == {"n": 8}
            # One idle timeout, then a quarter second each to see that nothing came.
            assert time.monotonic() - started < 1 + 5 * 0.25 + 1.5
            assert all(a.result().startswith(b"HTTP/1.1 408 ") for a in answers)
    finally:
        for sock in sockets:
            sock.close()


def test_a_body_that_stalls_while_queued_is_refused_in_the_queue(
        hostile: DaemonProcess) -> None:
    """It never takes the slot: refused once idle for body_idle_timeout_s (1 s), while the
    call ahead of it (a body trickling in for 3 s) still holds the slot."""
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
            + b"\r\nContent-Length: 14\r\n\r\n")
    with connect(hostile) as slow, connect(hostile) as stalled, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow.sendall(head + b'{"n": ')
        wait_for_metric(hostile, "twinserve_in_flight", 1, 5)  # it holds the one slot

        def trickle() -> bytes:
            for _ in range(6):  # 3 s, never idle for 1 s
                time.sleep(0.5)
                slow.sendall(b" ")
            slow.sendall(b"1}")
            return read_until_closed(slow)

        slow_answer = pool.submit(trickle)
        started = time.monotonic()
        stalled.sendall(head + b'{"n"')
        refused = stalled.recv(4096)  # the answer (the connection is closed later)
        assert time.monotonic() - started < 2.5
        assert refused.startswith(b"HTTP/1.1 408 ") and not slow_answer.done()
        assert b'"n":1' in slow_answer.result(timeout=10)


@pytest.mark.parametrize("sent", [0, 1], ids=["no-message", "one-message"])
def test_a_stalled_grpc_upload_is_deadline_exceeded(hostile: DaemonProcess,
                                                   channel: grpc.Channel, sent: int) -> None:
    upload: Any = channel.stream_unary(service.method_path(service.UPLOAD),
                                  request_serializer=UploadRequest.SerializeToString)
    release = threading.Event()

    def messages() -> Iterator[UploadRequest]:
        if sent:
            yield UploadRequest(data=b'{"n": ', content_type="application/json")
        release.wait(10)

    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            call = pool.submit(upload, messages(), metadata=METADATA, timeout=10)
            ok_while(hostile, pool.submit(lambda: None))
            with pytest.raises(grpc.RpcError) as info:
                call.result(timeout=10)
    finally:
        release.set()
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "runtime.body_idle_timeout_s" in str(info.value.details())


def test_a_body_that_trickles_past_body_timeout_s_is_408(
        start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = copy_model(tmp_path_factory.mktemp("trickle"), MODELS / "hostile",
                      "model_name: trickle\nruntime:\n  body_idle_timeout_s: 1\n"
                      "  body_timeout_s: 1.5\n")
    daemon = start_daemon(root)
    with connect(daemon) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        sock.settimeout(0.4)
        answer = b""
        for _ in range(20):  # a byte every 0.4 s: never idle for 1 s, never done
            try:
                sock.sendall(b" ")
                answer += sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if answer:
                break
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert "runtime.body_timeout_s" in json.loads(body)["error"]["message"]


def test_a_malformed_message_mid_upload_is_invalid_argument(channel: grpc.Channel) -> None:
    upload: Any = channel.stream_unary(service.method_path(service.UPLOAD))  # bytes as is
    first = UploadRequest(data=b'{"n": ', content_type="application/json").SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        upload(iter([first, b"\xff\xff\xff\xff"]), metadata=METADATA, timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "the request is not a valid twinserve.v1.UploadRequest message"


def test_a_client_that_stops_reading_its_stream_frees_the_slot(hostile: DaemonProcess) -> None:
    before = metric(hostile, 'twinserve_cancellations_total{reason="write_timeout"}')
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", hostile.http_port))
        body = b'{"do": "flood"}'
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                     KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        # ...and reads nothing: the daemon's writes fill the buffers and stall.
        started = time.monotonic()
        assert post(hostile, {"n": 2}).json() == {"n": 2}
        assert time.monotonic() - started < 8
    after = metric(hostile, 'twinserve_cancellations_total{reason="write_timeout"}')
    assert after == before + 1
    hostile.wait_for_log("runtime.write_timeout_s")


def test_a_grpc_client_that_stops_reading_its_stream_frees_the_slot(
        hostile: DaemonProcess, channel: grpc.Channel) -> None:
    before = metric(hostile, 'twinserve_cancellations_total{reason="write_timeout"}')
    stream: Any = channel.unary_stream(service.method_path(service.PREDICT_STREAM),
                                  request_serializer=PredictRequest.SerializeToString)
    call = stream(PredictRequest(json=b'{"do": "flood"}'), metadata=METADATA, timeout=30)
    try:
        next(call)  # the stream has started; now it is left unread
        started = time.monotonic()
        assert post(hostile, {"n": 3}).json() == {"n": 3}
        assert time.monotonic() - started < 8
        # Read at last, the stream ends with a status saying why, not in silence.
        with pytest.raises(grpc.RpcError) as info:
            for _ in call:
                pass
        assert time.monotonic() - started < 15  # well before the client's own deadline
    finally:
        call.cancel()
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "runtime.write_timeout_s" in str(info.value.details())
    after = metric(hostile, 'twinserve_cancellations_total{reason="write_timeout"}')
    assert after == before + 1


def test_cancelling_a_grpc_stream_stalled_on_its_reader_counts_as_cancelled(
        hostile: DaemonProcess, channel: grpc.Channel) -> None:
    cancelled = 'twinserve_requests_total{code="CANCELLED",route="predict",transport="grpc"}'
    before = metric(hostile, cancelled)
    stream: Any = channel.unary_stream(service.method_path(service.PREDICT_STREAM),
                                       request_serializer=PredictRequest.SerializeToString)
    call = stream(PredictRequest(json=b'{"do": "flood"}'), metadata=METADATA, timeout=30)
    next(call)
    time.sleep(0.3)  # the daemon's writes now wait on this reader (well before write_timeout_s)
    call.cancel()
    wait_for_metric(hostile, cancelled, before + 1, 5)
    assert "unhandled error" not in hostile.log


# -- idle and half-sent connections are closed ------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b"POST /predict HTTP/1.1\r\nHost: x\r\n"],
                         ids=["idle", "half-sent-headers"])
def test_idle_and_slow_http_connections_are_closed(hostile: DaemonProcess, sent: bytes) -> None:
    with connect(hostile) as sock:
        sock.sendall(sent)
        closes_within(sock, 5)


def test_a_keep_alive_connection_is_closed_when_idle(hostile: DaemonProcess) -> None:
    with connect(hostile) as sock:
        body = b'{"n": 4}'
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                     KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        closes_within(sock, 5)


def test_a_grpc_connection_that_never_speaks_is_closed(hostile: DaemonProcess) -> None:
    with connect(hostile, hostile.grpc_port) as sock:
        closes_within(sock, 5)


def rapid_reset(daemon: DaemonProcess, streams: int) -> tuple[int, collections.Counter[int]]:
    """HTTP/2 rapid reset (CVE-2023-44487): `streams` authenticated Predict HEADERS, each
    cancelled at once (RST_STREAM CANCEL), in writes of 200 as scripts/attack.py sends them,
    on one connection. Returns the stream limit the daemon announced (SETTINGS), and the
    RST_STREAM codes that it sent back by the time it answers a PING sent after the streams
    (counted from the raw frames: h2 reports none for streams that this side has reset)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    headers = [(":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
               (":path", service.method_path(service.PREDICT)),
               ("content-type", "application/grpc"), ("te", "trailers"),
               ("authorization", f"Bearer {KEY}")]
    codes: collections.Counter[int] = collections.Counter()

    def read_frames(sock: socket.socket) -> None:
        frames = b""
        while data := sock.recv(65536):
            frames += data
            while len(frames) >= 9 and len(frames) >= 9 + int.from_bytes(frames[:3], "big"):
                length, kind, flags = int.from_bytes(frames[:3], "big"), frames[3], frames[4]
                if kind == 3:  # RST_STREAM
                    codes[int.from_bytes(frames[9:13], "big")] += 1
                elif kind == 6 and flags & 1 and frames[9:17] == b"settled!":
                    return
                frames = frames[9 + length:]
        raise AssertionError("the daemon closed the connection")

    with connect(daemon, daemon.grpc_port) as sock:
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        conn.receive_data(sock.recv(65536))  # the daemon's SETTINGS, acknowledged below
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reading = pool.submit(read_frames, sock)
            for _ in range(streams // 200):
                for _ in range(200):
                    stream_id = conn.get_next_available_stream_id()
                    conn.send_headers(stream_id, headers)
                    conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                sock.sendall(conn.data_to_send())
            conn.ping(b"settled!")
            sock.sendall(conn.data_to_send())
            reading.result(timeout=30)
    return conn.remote_settings.max_concurrent_streams, codes


def test_a_rapid_reset_flood_is_refused_past_the_stream_limit(hostile: DaemonProcess,
                                                              channel: grpc.Channel) -> None:
    """grpc refuses a new stream while server.grpc_max_concurrent_streams (32 in this
    model's config) of the connection's, cancelled ones included, are still allocated: the
    flood's streams beyond that cost the daemon no call, and a client on another connection
    is served meanwhile."""
    predict: Any = channel.unary_unary(service.method_path(service.PREDICT))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flood = pool.submit(rapid_reset, hostile, 10000)
        message = PredictRequest(json=b'{"n": 1}').SerializeToString()
        answer = PredictResponse.FromString(predict(message, metadata=METADATA, timeout=10))
        limit, codes = flood.result(timeout=60)
    assert json.loads(answer.json) == {"n": 1}
    assert limit == 32
    assert codes[h2.errors.ErrorCodes.REFUSED_STREAM] > 0, codes


# -- no secret in any response ----------------------------------------------------------------


def test_no_exception_text_reaches_an_http_client(hostile: DaemonProcess) -> None:
    failed = post(hostile, {"do": "raise"})
    assert failed.status_code == 500 and SECRET not in failed.text
    assert failed.json()["error"]["request_id"] == failed.headers["x-request-id"]
    with httpx.stream("POST", f"{hostile.http_url}/predict", json={"do": "raise_mid_stream"},
                      headers=AUTH, timeout=10) as response:
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):  # cut, not a complete body
            for chunk in response.iter_raw():
                received += chunk
    assert b'"i":0' in received and b"model_error" in received
    assert SECRET.encode() not in received
    hostile.wait_for_log(SECRET, "weights.bin")  # the log has the text
    hostile.wait_for_log(SECRET, "expired")


def test_no_exception_text_reaches_a_grpc_client(hostile: DaemonProcess) -> None:
    with GrpcClient(hostile.grpc_target, api_key=KEY, timeout=10) as client:
        with pytest.raises(TwinserveError) as unary:
            client.predict({"do": "raise"})
        with pytest.raises(TwinserveError) as streamed:
            for _ in client.predict_stream({"do": "raise_mid_stream"}):
                pass
    for error in (unary.value, streamed.value):
        assert error.code == "INTERNAL" and SECRET not in error.message and error.request_id


def test_readiness_says_not_ready_without_the_reason(hostile: DaemonProcess) -> None:
    post(hostile, {"do": "unhealthy"})
    try:
        ready = httpx.get(f"{hostile.http_url}/health/ready", timeout=10)
        assert ready.status_code == 503 and SECRET not in ready.text
        assert Health(hostile.grpc_target).check() == health_pb2.HealthCheckResponse.NOT_SERVING
        lines = hostile.wait_for_log("Exception while checking if model is healthy")
        assert lines and SECRET in hostile.log  # the traceback, in the log only
    finally:
        post(hostile, {"do": "healthy"})


# -- malformed and unauthenticated input ------------------------------------------------------


@pytest.mark.parametrize("header", [b"Authorization: Bearer \xff\xfe", b"x-api-key: caf\xe9"])
def test_a_key_that_is_not_utf8_is_401(hostile: DaemonProcess, header: bytes) -> None:
    with connect(hostile) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n" + header +
                     b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 401 ")
    assert post(hostile, {"n": 5}).status_code == 200


def test_a_malformed_protobuf_is_invalid_argument(hostile: DaemonProcess,
                                                  channel: grpc.Channel) -> None:
    counted = 'twinserve_requests_total{code="INVALID_ARGUMENT",route="unmatched",transport="grpc"}'
    before = metric(hostile, counted)
    predict: Any = channel.unary_unary(service.method_path(service.PREDICT))  # bytes as is
    with pytest.raises(grpc.RpcError) as info:
        predict(b"\xff\xff\xff\xff", metadata=METADATA, timeout=10)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "the request is not a valid twinserve.v1.PredictRequest message"
    assert metric(hostile, counted) == before + 1
    assert "DecodeError" not in hostile.log  # a refusal, not an error with a traceback


def test_unauthenticated_grpc_messages_are_refused_unread(hostile: DaemonProcess,
                                                          channel: grpc.Channel) -> None:
    predict: Any = channel.unary_unary(service.method_path(service.PREDICT))
    message = PredictRequest(json=b"[" + b"0," * (30 << 20) + b"0]").SerializeToString()
    before = hostile.peak_rss_mib()
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        calls = [pool.submit(predict, message, timeout=30) for _ in range(5)]
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call.result()
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # Five 60 MiB messages read whole would be 300 MiB; refused unread, each costs at most
    # its stream's flow-control window.
    assert hostile.peak_rss_mib() - before < 64


def test_an_unauthenticated_upload_that_sends_nothing_is_answered(hostile: DaemonProcess,
                                                                  channel: grpc.Channel) -> None:
    upload: Any = channel.stream_unary(service.method_path(service.UPLOAD))
    release = threading.Event()

    def nothing() -> Iterator[bytes]:
        release.wait(10)
        yield from ()

    started = time.monotonic()
    try:
        with pytest.raises(grpc.RpcError) as info:
            upload(nothing(), timeout=10)
    finally:
        release.set()
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert time.monotonic() - started < 1  # before runtime.body_idle_timeout_s could end it


def test_reflection_needs_the_key_and_health_does_not(hostile: DaemonProcess,
                                                      channel: grpc.Channel) -> None:
    reflect = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/"
                                    "ServerReflectionInfo",
                                    request_serializer=reflection_pb2.ServerReflectionRequest
                                    .SerializeToString,
                                    response_deserializer=reflection_pb2.ServerReflectionResponse
                                    .FromString)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.RpcError) as info:
        list(reflect(iter([ask]), timeout=10))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    answer = list(reflect(iter([ask]), metadata=METADATA, timeout=10))
    names = [s.name for s in answer[0].list_services_response.service]
    assert service.SERVICE_NAME in names
    assert Health(hostile.grpc_target).check() == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(("headers", "status"), [
    (b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 999999999999", b"413"),
    (b"Authorization: Bearer wrong\r\nContent-Length: 10", b"401"),
])
def test_expect_continue_is_refused_before_the_body(hostile: DaemonProcess, headers: bytes,
                                                    status: bytes) -> None:
    with connect(hostile) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n" +
                     headers + b"\r\n\r\n")
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 " + status + b" "), head[:40]


def test_expect_continue_is_answered_for_an_acceptable_request(hostile: DaemonProcess) -> None:
    with connect(hostile) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 8\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b'{"n": 6}')
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_json_nested_too_deep_is_400(hostile: DaemonProcess) -> None:
    deep = httpx.post(f"{hostile.http_url}/predict", content=b"[" * 1000 + b"]" * 1000,
                      headers={**AUTH, "Content-Type": "application/json"}, timeout=10)
    assert deep.status_code == 400
    assert deep.json()["error"]["message"] == "request body nests deeper than 128 levels"
    nested: Any = []
    for _ in range(127):
        nested = [nested]
    assert post(hostile, nested).json() == nested


# -- memory: what a body costs is bounded before it is read -----------------------------------


@pytest.fixture(scope="module")
def tight(start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    """A sleeping model with one slot and 128 MiB for request bodies."""
    root = copy_model(tmp_path_factory.mktemp("tight"), MODELS / "concurrency",
                      "model_name: tight\nruntime:\n  predict_concurrency: 1\n"
                      f"  max_body_memory_bytes: {128 << 20}\n")
    return start_daemon(root)


def test_a_body_too_dense_to_parse_is_413_before_parsing(tight: DaemonProcess) -> None:
    dense = b"[" + b",".join([b"{}"] * (2 << 20)) + b"]"  # 6 MiB, ~140 MiB once parsed
    before = tight.peak_rss_mib()
    answer = httpx.post(f"{tight.http_url}/predict", content=dense,
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 413
    assert "runtime.max_body_memory_bytes (128 MiB)" in answer.json()["error"]["message"]
    assert tight.peak_rss_mib() - before < 64  # read (6 MiB), measured, never parsed


def test_a_grpc_message_too_dense_to_parse_is_refused_unparsed(tight: DaemonProcess) -> None:
    before = tight.peak_rss_mib()
    with GrpcClient(tight.grpc_target, timeout=30) as client:
        with pytest.raises(TwinserveError) as info:
            client.predict([{}] * (2 << 20))  # a 6 MiB message, ~140 MiB once parsed
    assert info.value.code == "RESOURCE_EXHAUSTED"
    assert "runtime.max_body_memory_bytes" in info.value.message
    assert tight.peak_rss_mib() - before < 64


def test_large_bodies_waiting_for_the_model_share_the_body_memory(tight: DaemonProcess) -> None:
    body = json.dumps({"sleep": 0.3, "pad": [0.123456] * (2 << 20)}).encode()  # 18 MiB
    before = tight.peak_rss_mib()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: httpx.post(
            f"{tight.http_url}/predict", content=body, timeout=60,
            headers={"Content-Type": "application/json"}), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    # Parsed (~80 MiB each) and waiting for the one slot together, eight bodies would hold
    # ~800 MiB; the pool lets in what fits in 128 MiB, and the rest wait unread.
    assert tight.peak_rss_mib() - before < 128 + 128
    assert metric(tight, "twinserve_body_memory_bytes") == 0  # all given back


@pytest.mark.parametrize(("encoding", "body", "status"), [
    ("gzip", gzip.compress(b'{"n": 7}'), 200),
    ("deflate", zlib.compress(b'{"n": 7}'), 200),
    ("gzip", b"\x1f\x8b\x08\x00 not really gzip", 400),
    ("gzip", gzip.compress(b'{"n": 7}')[:-12], 400),  # cut short
    ("br", b"\x0b\x02\x80{}\x03", 415),
])
def test_compressed_bodies(hostile: DaemonProcess, encoding: str, body: bytes,
                           status: int) -> None:
    answer = httpx.post(f"{hostile.http_url}/predict", content=body, timeout=10, headers={
        **AUTH, "Content-Type": "application/json", "Content-Encoding": encoding})
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json() == {"n": 7}


def test_a_gzip_bomb_is_413_without_inflating_it(tight: DaemonProcess) -> None:
    bomb = gzip.compress(b" " * (512 << 20), compresslevel=9)  # ~0.5 MB -> 512 MiB
    before = tight.peak_rss_mib()
    answer = httpx.post(f"{tight.http_url}/predict", content=bomb, timeout=30, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "request_too_large"
    assert tight.peak_rss_mib() - before < 64 + 32  # at most the 64 MiB limit was inflated


def test_the_daemon_takes_the_hard_open_files_limit(
        start_daemon_per_test: StartDaemon) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 1024:
        pytest.skip(f"this machine's hard limit ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the daemon inherits it
    try:
        daemon = start_daemon_per_test(EXAMPLES / "echo", wait="listening")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert line.split()[3:5] == [str(hard), str(hard)]


def test_a_call_that_would_be_refused_is_refused_before_its_body(
        start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = copy_model(tmp_path_factory.mktemp("full"), MODELS / "concurrency",
                      "model_name: full\nruntime:\n  predict_concurrency: 1\n  max_queue: 0\n")
    daemon = start_daemon(root)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        busy = pool.submit(httpx.post, f"{daemon.http_url}/predict", json={"sleep": 2},
                           timeout=10)
        deadline = time.monotonic() + 5
        while metric(daemon, "twinserve_in_flight") != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with connect(daemon) as sock:  # a 1 MiB body announced, none of it sent
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 1048576\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 429 ")
        assert busy.result().status_code == 200
