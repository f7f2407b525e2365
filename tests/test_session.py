"""Sessions with a model's `websocket` method, through real daemons and the client library,
over a WebSocket (/v1/websocket) and the gRPC Session RPC alike; raw clients where a test
needs what the library never sends (an abrupt drop, a malformed frame)."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import websockets.sync.client

from clients import (
    AsyncGrpcClient,
    AsyncHttpClient,
    GrpcClient,
    HttpClient,
    Session,
    SessionClosed,
    TwinserveError,
)
from tests.conftest import StartDaemon
from tests.harness import EXAMPLES, MODELS, DaemonProcess, copy_model
from tests.scrape import metric
from tests.transports import TRANSPORTS
from twinserve_wire import service
from twinserve_wire.proto.v1.model_pb2 import SessionClose, SessionFrame

SESSION = MODELS / "session"


@pytest.fixture(scope="module")
def daemon(start_daemon: StartDaemon) -> DaemonProcess:
    return start_daemon(SESSION)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_session(daemon: DaemonProcess, transport: str, **options: Any) -> Session:
    client: HttpClient | GrpcClient = HttpClient(daemon.http_url, **options) \
        if transport == "http" else GrpcClient(daemon.grpc_target, **options)
    return client.websocket()


def closed_with(session: Session) -> SessionClosed:
    with pytest.raises(SessionClosed) as caught:
        session.receive()
    return caught.value


def ended(daemon: DaemonProcess, transport: str) -> list[str]:
    """How the model's earlier sessions ended, as it recorded them."""
    with open_session(daemon, transport) as session:
        session.send_text("stats")
        answer: list[str] = json.loads(session.receive_text())
        return answer


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


# -- frames and closes ----------------------------------------------------------------------


def test_text_bytes_and_json_frames(daemon: DaemonProcess, transport: str) -> None:
    with open_session(daemon, transport, headers={"x-custom": "yes"}) as session:
        session.send_text("echo:hello")
        assert session.receive_text() == "hello"
        session.send_text("bytes")
        session.send_bytes(b"\x00\xff")
        assert session.receive_bytes() == b"\x00\xff"
        session.send_text("json")
        session.send_json({"a": [1, "ü"]})
        assert session.receive_json() == {"a": [1, "ü"]}
        session.send_text("whoami")
        who = session.receive_json()
        assert who["header"] == "yes" and who["query"] == {}
        assert who["request_id"] == session.request_id and session.request_id
    assert session.closed == (1000, "")


def test_the_clients_request_id_names_the_session(daemon: DaemonProcess,
                                                  transport: str) -> None:
    with open_session(daemon, transport, headers={"x-request-id": "mine-1"}) as session:
        assert session.request_id == "mine-1"
        session.send_text("whoami")
        assert session.receive_json()["request_id"] == "mine-1"


def test_iterating_a_session_ends_at_its_close(daemon: DaemonProcess, transport: str) -> None:
    with open_session(daemon, transport) as session:
        session.send_text("flood:3")
        session.send_text("close:4001:enough")
        frames = list(session)
    assert frames == ["x" * 1024] * 3
    assert session.closed == (4001, "enough")
    with pytest.raises(SessionClosed):
        session.send_text("echo:late")


def test_iter_json_and_the_asgi_style_send(daemon: DaemonProcess, transport: str) -> None:
    with open_session(daemon, transport) as session:
        session.send_text("sum")
        for n, total in ((1, 1), (2, 3), (4, 7)):
            session.send_json({"n": n})
            assert session.receive_json() == total
    with open_session(daemon, transport) as session:
        session.send_text("asgi-close")
        assert session.receive_text() == "via send"
        closed = closed_with(session)
    assert (closed.code, closed.reason) == (4004, "asgi")


def test_a_session_waits_for_the_model_to_load(start_daemon_per_test: StartDaemon,
                                               tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    loading = start_daemon_per_test(SESSION, wait="listening",
                                    env={"SESSION_LOAD_GATE": str(gate)})
    for transport in TRANSPORTS:
        with pytest.raises(TwinserveError) as refused:
            open_session(loading, transport)
        assert refused.value.code == "UNAVAILABLE" and "loading" in refused.value.message
    gate.touch()
    loading.wait_ready()
    for transport in TRANSPORTS:
        with open_session(loading, transport) as session:
            session.send_text("echo:loaded")
            assert session.receive_text() == "loaded"


def test_returning_closes_normally(daemon: DaemonProcess, transport: str) -> None:
    with open_session(daemon, transport) as session:
        session.send_text("return")
        assert closed_with(session).code == 1000
    assert "returned" in ended(daemon, transport)


def test_client_close_reaches_the_model(daemon: DaemonProcess, transport: str) -> None:
    session = open_session(daemon, transport)
    session.send_text("echo:x")
    assert session.receive_text() == "x"
    session.close(4002, "done here")
    wait_for(lambda: "disconnect:4002" in ended(daemon, transport))


def test_model_exception_closes_1011_and_serving_goes_on(daemon: DaemonProcess,
                                                          transport: str) -> None:
    with open_session(daemon, transport) as session:
        session.send_text("raise")
        closed = closed_with(session)
    assert closed.code == 1011
    assert closed.reason.startswith("websocket failed with an unexpected error")
    assert "the model failed on purpose" not in closed.reason  # the log has it, not the client
    request_id = closed.reason.rsplit("request id ", 1)[1].rstrip(")")
    daemon.wait_for_log(f"websocket raised while handling session {request_id}")
    daemon.wait_for_log("ValueError: the model failed on purpose", f"request_id={request_id}")
    with open_session(daemon, transport) as session:
        session.send_text("echo:still here")
        assert session.receive_text() == "still here"


@pytest.mark.parametrize(("send", "code", "words"), [
    (lambda s: s.send_bytes(b"not a command"), 1003, "expected a text frame"),
    (lambda s: (s.send_text("json"), s.send_text("{not json")), 1007, "not valid JSON"),
    (lambda s: s.send_text("echo:" + "y" * 70_000), 1009, ""),
])
def test_frames_the_model_cannot_take_close_the_session(
        daemon: DaemonProcess, transport: str, send: Callable[[Session], Any], code: int,
        words: str) -> None:
    with open_session(daemon, transport) as session:
        send(session)
        closed = closed_with(session)
    assert closed.code == code and words in closed.reason
    with open_session(daemon, transport) as session:  # the daemon serves on
        session.send_text("echo:ok")
        assert session.receive_text() == "ok"


# -- the client going away ------------------------------------------------------------------


def _raw_websocket(daemon: DaemonProcess) -> socket.socket:
    """A WebSocket opened by hand, so that it can be dropped without a close frame."""
    host, port = daemon.http_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/websocket HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    return sock


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + \
        bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class _RawGrpcSession:
    """The Session RPC without the client library, to cancel it or send what it never does."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self._channel = grpc.insecure_channel(daemon.grpc_target)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        session: Any = self._channel.stream_stream(service.method_path(service.SESSION))
        self.call = session(iter(self._outbox.get, None))
        self.call.initial_metadata()

    def send(self, data: bytes) -> None:
        self._outbox.put(data)

    def frames(self) -> Iterator[SessionFrame]:
        for data in self.call:
            yield SessionFrame.FromString(data)

    def close(self) -> None:
        self.call.cancel()
        self._channel.close()


def test_client_gone_ends_the_models_loop(daemon: DaemonProcess, transport: str) -> None:
    before = ended(daemon, transport).count("disconnect:1006")
    session = open_session(daemon, transport)
    session.send_text("echo:x")
    assert session.receive_text() == "x"
    session.abort()  # the connection or call dropped, no close frame
    assert session.closed == (1006, "")
    wait_for(lambda: ended(daemon, transport).count("disconnect:1006") > before)
    wait_for(lambda: metric(daemon, f'twinserve_sessions{{transport="{transport}"}}') == 0)


def test_a_model_not_receiving_is_cancelled_after_the_grace(daemon: DaemonProcess,
                                                            transport: str) -> None:
    before = ended(daemon, transport).count("cancelled")
    if transport == "http":
        sock = _raw_websocket(daemon)
        sock.sendall(_masked_text("sleep:30"))
        time.sleep(0.2)
        sock.close()
    else:
        raw = _RawGrpcSession(daemon)
        raw.send(SessionFrame(text="sleep:30").SerializeToString())
        time.sleep(0.2)
        raw.close()
    started = time.monotonic()
    wait_for(lambda: ended(daemon, transport).count("cancelled") > before)
    assert time.monotonic() - started < 5  # runtime.cancel_grace_s is 1 s here, not 30
    assert daemon.wait_for_log("still running 1s after its client left; cancelled")


# -- refused before the session opens ------------------------------------------------------


def test_the_key_is_checked_before_accepting(start_daemon: StartDaemon,
                                             transport: str) -> None:
    guarded = start_daemon(SESSION, env={"TWINSERVE_API_KEY": "sesame"})
    with pytest.raises(TwinserveError) as refused:
        open_session(guarded, transport)
    assert refused.value.code == "UNAUTHENTICATED"
    with open_session(guarded, transport, api_key="sesame") as session:
        session.send_text("echo:in")
        assert session.receive_text() == "in"
    closed = f'twinserve_sessions_closed_total{{code="1000",transport="{transport}"}}'
    assert metric(guarded, closed) == 1  # the refused one never opened
    for direction in ("received", "sent"):
        assert metric(guarded, f'twinserve_session_frames_total{{direction="{direction}",'
                               f'transport="{transport}"}}') == 1


def test_sessions_hold_slots_and_a_full_line_is_refused(
        start_daemon: StartDaemon, tmp_path_factory: pytest.TempPathFactory,
        transport: str) -> None:
    root = copy_model(tmp_path_factory.mktemp("one-slot"), SESSION,
                      "runtime:\n  predict_concurrency: 1\n  max_queue: 0\n")
    one = start_daemon(root)
    with open_session(one, transport) as session:
        with pytest.raises(TwinserveError) as refused:
            open_session(one, transport)
        assert refused.value.code == "RESOURCE_EXHAUSTED"
        session.send_text("echo:first")
        assert session.receive_text() == "first"
    with open_session(one, transport) as session:  # the slot is free again
        session.send_text("echo:second")
        assert session.receive_text() == "second"


def test_a_model_without_websocket_closes_1003(start_daemon: StartDaemon,
                                                transport: str) -> None:
    echo = start_daemon(EXAMPLES / "echo")
    with open_session(echo, transport) as session:
        closed = closed_with(session)
    refusal = "WebSocket is not implemented on this deployment."
    assert (closed.code, closed.reason) == (1003, refusal)
    echo.wait_for_log(refusal)


def test_a_plain_get_needs_the_upgrade(daemon: DaemonProcess) -> None:
    answer = httpx.get(f"{daemon.http_url}/v1/websocket")
    assert answer.status_code == 426
    assert "WebSocket connections only" in answer.json()["error"]["message"]


def test_no_predict_on_a_session_model(daemon: DaemonProcess) -> None:
    answer = httpx.post(f"{daemon.http_url}/predict", json={})
    assert answer.status_code == 404
    assert "does not implement predict" in answer.json()["error"]["message"]


# -- malformed gRPC frames -----------------------------------------------------------------


@pytest.mark.parametrize(("data", "words"), [
    (b"\xff\xff\xff", "not a valid twinserve.v1.SessionFrame"),
    (SessionFrame().SerializeToString(), "an empty SessionFrame"),
], ids=["not-protobuf", "empty-frame"])
def test_malformed_grpc_frames_close_1002(daemon: DaemonProcess, data: bytes,
                                          words: str) -> None:
    raw = _RawGrpcSession(daemon)
    raw.send(data)
    frames: list[SessionFrame] = []
    with pytest.raises(grpc.RpcError) as failed:
        for frame in raw.frames():
            frames.append(frame)
    raw.close()
    assert [f.close.code for f in frames] == [1002] and words in frames[0].close.reason
    assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_close_codes_become_statuses(daemon: DaemonProcess) -> None:
    raw = _RawGrpcSession(daemon)
    raw.send(SessionFrame(text="raise").SerializeToString())
    frames: list[SessionFrame] = []
    with pytest.raises(grpc.RpcError) as failed:
        for frame in raw.frames():
            frames.append(frame)
    raw.close()
    assert [f.close.code for f in frames] == [1011]
    assert failed.value.code() is grpc.StatusCode.INTERNAL
    assert failed.value.details() == frames[0].close.reason


def test_a_grpc_client_close_frame_ends_the_call_ok(daemon: DaemonProcess) -> None:
    raw = _RawGrpcSession(daemon)
    raw.send(SessionFrame(close=SessionClose(code=1000, reason="bye")).SerializeToString())
    assert list(raw.frames()) == []
    assert raw.call.code() is grpc.StatusCode.OK
    raw.close()


# -- time limits and shutdown -------------------------------------------------------------


@pytest.fixture(scope="module")
def short_idle(start_daemon: StartDaemon,
               tmp_path_factory: pytest.TempPathFactory) -> DaemonProcess:
    root = copy_model(tmp_path_factory.mktemp("idle"), SESSION,
                      "runtime:\n  predict_concurrency: 8\n  session_idle_timeout_s: 1\n"
                      "  cancel_grace_s: 1\n")
    return start_daemon(root)


def test_an_idle_session_is_closed_1001(short_idle: DaemonProcess, transport: str) -> None:
    with open_session(short_idle, transport) as session:
        session.send_text("echo:a")
        assert session.receive_text() == "a"
        started = time.monotonic()
        closed = closed_with(session)
    assert closed.code == 1001 and "runtime.session_idle_timeout_s" in closed.reason
    assert 0.9 < time.monotonic() - started < 5


def test_a_client_that_stops_reading_is_closed_as_idle(short_idle: DaemonProcess) -> None:
    sock = _raw_websocket(short_idle)
    sock.sendall(_masked_text("flood:100000"))  # ~100 MiB, never read
    wait_for(lambda: metric(short_idle, 'twinserve_sessions_closed_total{code="1001",'
                                        'transport="http"}') >= 1)
    sock.close()
    wait_for(lambda: metric(short_idle, 'twinserve_sessions{transport="http"}') == 0)


def test_pings_keep_an_http_session_and_an_unanswered_one_drops_it(
        start_daemon_per_test: StartDaemon, tmp_path: Path) -> None:
    root = copy_model(tmp_path, SESSION, "runtime:\n  transport:\n    kind: websocket\n"
                      "    ping_interval_seconds: 0.5\n    ping_timeout_seconds: 0.5\n")
    pinging = start_daemon_per_test(root)
    # websockets answers pings: its session stays open past several intervals.
    with websockets.sync.client.connect(f"ws://{pinging.http_url[7:]}/v1/websocket") as ws:
        time.sleep(1.6)
        ws.send("echo:alive")
        assert ws.recv() == "alive"
    # A hand-made client never answers: dropped after one interval and the timeout.
    sock = _raw_websocket(pinging)
    wait_for(lambda: metric(pinging, 'twinserve_sessions_closed_total{code="1006",'
                                     'transport="http"}') == 1, timeout=5)
    sock.close()


def test_drain_closes_sessions_1001_then_exits_0(start_daemon_per_test: StartDaemon,
                                                  tmp_path: Path, transport: str) -> None:
    root = copy_model(tmp_path, SESSION, "runtime:\n  predict_concurrency: 4\n"
                      "  drain_grace_s: 0\n  drain_timeout_s: 1\n")
    draining = start_daemon_per_test(root)
    with open_session(draining, transport) as session:
        session.send_text("echo:before")
        assert session.receive_text() == "before"
        draining.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        closed = closed_with(session)
    assert closed.code == 1001 and "drain_timeout_s" in closed.reason
    assert 0.9 < time.monotonic() - started < 5
    assert draining.wait_exit(10) == 0


def test_a_starlette_model_catches_starlettes_disconnect(start_daemon_per_test: StartDaemon,
                                                        tmp_path: Path) -> None:
    """A model written for fastapi catches fastapi's WebSocketDisconnect and compares
    starlette's states: the daemon's are those when the model has imported them."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.py").write_text(
        "import fastapi\n"
        "from starlette.websockets import WebSocketState\n\n\n"
        "class Model:\n"
        "    async def websocket(self, websocket: fastapi.WebSocket):\n"
        "        await websocket.accept()  # the daemon has: a no-op\n"
        "        assert websocket.client_state == WebSocketState.CONNECTED\n"
        "        try:\n"
        "            async for text in websocket.iter_text():\n"
        "                await websocket.send_text(text)\n"
        "            print('iteration ended at the close')\n"
        "            await websocket.receive_text()\n"
        "        except fastapi.WebSocketDisconnect as gone:\n"
        "            print('caught', gone.code, websocket.client_state.name, flush=True)\n")
    (tmp_path / "config.yaml").write_text("runtime:\n  predict_concurrency: 2\n")
    starlette_model = start_daemon_per_test(tmp_path)
    session = open_session(starlette_model, "http")
    session.send_text("ping")
    assert session.receive_text() == "ping"
    session.close(4005, "done")
    starlette_model.wait_for_log("iteration ended at the close")
    starlette_model.wait_for_log("caught 4005 DISCONNECTED")


def test_a_client_gone_cancels_the_sessions_engine_work(start_daemon: StartDaemon,
                                                        transport: str) -> None:
    engine = start_daemon(MODELS / "engine_session")
    cancelled = metric(engine, "twinserve_engine_cancelled_total")
    session = open_session(engine, transport)
    session.send_text("tell me a long story")
    for _ in range(3):
        session.receive_text()
    assert metric(engine, "twinserve_engine_in_flight") == 1  # 1000 tokens: ~20 s to go
    session.abort()
    wait_for(lambda: metric(engine, "twinserve_engine_in_flight") == 0, timeout=2)
    assert metric(engine, "twinserve_engine_cancelled_total") == cancelled + 1


async def test_the_async_clients_give_the_same_session(daemon: DaemonProcess,
                                                       transport: str) -> None:
    client: AsyncHttpClient | AsyncGrpcClient = AsyncHttpClient(daemon.http_url) \
        if transport == "http" else AsyncGrpcClient(daemon.grpc_target)
    async with client:
        async with client.websocket() as session:
            await session.send_text("echo:hi")
            assert await session.receive_text() == "hi"
            await session.send_text("json")
            await session.send_json([1, 2])
            assert await session.receive_json() == [1, 2]
            await session.send_text("flood:2")
            await session.send_text("close:4003:over")
            assert [frame async for frame in session] == ["x" * 1024] * 2
        assert session.closed == (4003, "over")
        opened = await client.websocket()  # awaited rather than entered
        await opened.send_text("bytes")
        await opened.send_bytes(b"\x07")
        assert await opened.receive_bytes() == b"\x07"
        assert await opened.close() == (1000, "")


def test_sessions_open_in_the_drains_grace_and_not_after(start_daemon_per_test: StartDaemon,
                                                         tmp_path: Path) -> None:
    root = copy_model(tmp_path, SESSION, "runtime:\n  predict_concurrency: 4\n"
                      "  drain_grace_s: 3\n  drain_timeout_s: 1\n")
    draining = start_daemon_per_test(root)
    draining.proc.send_signal(signal.SIGTERM)
    draining.wait_for_log("draining; readiness is NOT_SERVING")
    assert httpx.get(f"{draining.http_url}/health/ready").status_code == 503
    for transport in TRANSPORTS:  # load balancers may still send sessions here
        with open_session(draining, transport) as session:
            session.send_text("echo:in the grace")
            assert session.receive_text() == "in the grace"
    assert draining.wait_exit(10) == 0


def _close_code_from(sock: socket.socket) -> int:
    """The code of the close frame the daemon sends (skipping any data frame before it)."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        assert chunk, "the connection closed without a close frame"
        data += chunk
        while len(data) >= 2:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            if len(data) < 2 + length:
                break
            if opcode == 0x8:
                return int.from_bytes(data[2:4], "big")
            data = data[2 + length:]


@pytest.mark.parametrize(("frame", "code"), [
    (bytes([0x81, 0x82]) + bytes(4) + b"\xff\xfe", 1007),  # a text frame that is not UTF-8
    (bytes([0x83, 0x80]) + bytes(4), 1002),  # a reserved opcode
], ids=["invalid-utf8", "reserved-opcode"])
def test_websocket_protocol_errors_close_with_their_codes(daemon: DaemonProcess, frame: bytes,
                                                          code: int) -> None:
    sock = _raw_websocket(daemon)
    sock.sendall(frame)
    assert _close_code_from(sock) == code
    sock.close()
    with open_session(daemon, "http") as session:  # the daemon serves on
        session.send_text("echo:ok")
        assert session.receive_text() == "ok"
