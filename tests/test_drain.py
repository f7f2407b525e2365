"""The drain on SIGTERM, observed from outside on both transports (docs/drain.md): readiness
turns NOT_SERVING at once while new calls are still served for runtime.drain_grace_s; then
both ports refuse connections (gRPC sends GOAWAY, idle HTTP connections are closed, answers
during the drain say `Connection: close`), calls in flight finish, and the process exits 0.
SIGINT drains without the grace; a second signal exits at once, non-zero."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from grpc_health.v1 import health_pb2

from clients import GrpcClient, HttpClient
from tests.conftest import StartDaemon
from tests.grpc.test_health import Health
from tests.harness import MODELS, DaemonProcess, copy_model

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
READINESS_FLIP_S = 0.1  # the target, SIGTERM to NOT_SERVING

# A stream of 30 chunks 0.1 s apart: about 3 s, outlasting the tests' grace.
LONG_STREAM = {"mode": "async", "kind": "json", "n": 30, "delay": 0.1}


def _streaming_model(tmp_path: Path, grace: float, timeout: float = 10) -> Path:
    return copy_model(tmp_path, MODELS / "streaming",
                      f"runtime:\n  predict_concurrency: 8\n  drain_grace_s: {grace}\n"
                      f"  drain_timeout_s: {timeout}\n")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _wait_refused(port: int, timeout: float) -> float:
    """The monotonic time at which connections to `port` are first refused."""
    deadline = time.monotonic() + timeout
    while not _refused(port):
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} still accepts connections after {timeout}s")
        time.sleep(0.02)
    return time.monotonic()


def _wait_not_ready(daemon: DaemonProcess, timeout: float = 5.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        ready = httpx.get(f"{daemon.http_url}/health/ready")
        if ready.status_code == 503:
            assert "draining" in ready.json()["error"]["message"]
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"/health/ready still {ready.status_code} after {timeout}s")


class RawHttp:
    """One HTTP/1.1 connection spoken by hand, to see exactly what the server does with it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._buffer = b""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        data = b"" if body is None else json.dumps(body).encode()
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                          + data)
        while b"\r\n\r\n" not in self._buffer:
            self._read()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers["content-length"])
        while len(self._buffer) < length:
            self._read()
        payload, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(status_line.split()[1]), headers, json.loads(payload)

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self._buffer += chunk

    def wait_closed(self, timeout: float) -> float:
        """The monotonic time at which the server closed the connection cleanly (EOF, no
        reset, nothing more sent)."""
        self.sock.settimeout(timeout)
        assert self.sock.recv(1) == b""
        return time.monotonic()

    def close(self) -> None:
        self.sock.close()


class RawH2:
    """An HTTP/2 connection to the gRPC port that makes no call, to see the server's GOAWAY.
    Frames are read by hand: h2 would refuse the PING grpc sends after its GOAWAY."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(H2_PREFACE + _h2_frame(H2_SETTINGS, 0, b""))
        self._buffer = b""

    def frames(self, timeout: float) -> list[tuple[int, bytes]]:
        """(type, payload) of the frames that arrive within `timeout`; settings and pings are
        acknowledged."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return []
        if not data:
            raise ConnectionError("closed without GOAWAY")
        self._buffer += data
        frames = []
        while len(self._buffer) >= 9 and len(self._buffer) >= 9 + _h2_length(self._buffer):
            length = _h2_length(self._buffer)
            kind, flags = self._buffer[3], self._buffer[4]
            payload, self._buffer = self._buffer[9:9 + length], self._buffer[9 + length:]
            if kind in (H2_SETTINGS, H2_PING) and not flags & H2_ACK:
                self.sock.sendall(_h2_frame(kind, H2_ACK, payload if kind == H2_PING else b""))
            frames.append((kind, payload))
        return frames

    def close(self) -> None:
        self.sock.close()


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS, H2_PING, H2_GOAWAY, H2_ACK = 0x4, 0x6, 0x7, 0x1


def _h2_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + bytes(4) + payload


def _h2_length(buffer: bytes) -> int:
    return int.from_bytes(buffer[:3], "big")


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Things with a close() method, closed after the test."""
    things: list[Any] = []
    yield things
    for thing in things:
        thing.close()


def test_sigterm_serves_through_the_grace_then_closes_both_ports(
        start_daemon_per_test: StartDaemon, tmp_path: Path, closing: list[Any]) -> None:
    grace = 2.0
    daemon = start_daemon_per_test(_streaming_model(tmp_path, grace))
    http, rpc = HttpClient(daemon.http_url), GrpcClient(daemon.grpc_target)
    health = Health(daemon.grpc_target)
    closing += [http, rpc, health.channel]
    in_flight = [http.predict_stream(LONG_STREAM), rpc.predict_stream(LONG_STREAM)]
    assert [next(stream) for stream in in_flight] == [{"i": 0}, {"i": 0}]
    watch = health.watch()
    assert next(watch).status == SERVING

    signalled = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert next(watch).status == NOT_SERVING
    assert time.monotonic() - signalled < READINESS_FLIP_S
    assert _wait_not_ready(daemon) - signalled < READINESS_FLIP_S
    assert health.check() == NOT_SERVING

    # The grace: new connections and calls are still served, on both transports.
    answer = httpx.post(f"{daemon.http_url}/predict", json={"mode": "value"})
    assert answer.status_code == 200 and answer.json() == {"not": "streamed"}
    assert answer.headers["connection"] == "close"
    with GrpcClient(daemon.grpc_target) as fresh:
        assert fresh.predict({"mode": "value"}) == {"not": "streamed"}
        assert list(fresh.predict_stream({"mode": "async", "n": 2})) == [{"i": 0}, {"i": 1}]
    assert time.monotonic() - signalled < grace, "the checks above took the whole grace"

    # Then both ports refuse new connections, and not before the grace is over.
    refused = [_wait_refused(port, grace + 2) - signalled
               for port in (daemon.http_port, daemon.grpc_port)]
    assert all(grace <= seconds < grace + 0.5 for seconds in refused), refused
    assert list(watch) == []  # the Watch stream ended (OK) as the port closed

    # The calls in flight finish in full, and the process exits 0 once they have.
    for stream in in_flight:
        assert [chunk["i"] for chunk in stream] == list(range(1, 30))
    assert daemon.wait_exit(10) == 0
    assert time.monotonic() - signalled < 3.0 + 1.0  # the longest call (3 s) + 1 s
    assert "drain timeout" not in daemon.log


def test_keep_alive_connections_are_closed_cleanly(start_daemon_per_test: StartDaemon,
                                                   tmp_path: Path, closing: list[Any]) -> None:
    """A connection that answers during the drain says `Connection: close` and is closed
    after the answer; one that stays idle is closed (FIN, nothing sent) once the grace is
    over, when no load balancer should be sending on it any more, while a call in flight
    still holds the process."""
    grace = 1.5
    daemon = start_daemon_per_test(_streaming_model(tmp_path, grace))
    idle, busy = RawHttp(daemon.http_port), RawHttp(daemon.http_port)
    http = HttpClient(daemon.http_url)
    closing += [idle, busy, http]
    for connection in (idle, busy):
        status, headers, _ = connection.call("GET", "/health/live")
        assert status == 200 and headers.get("connection") != "close"  # kept alive
    stream = http.predict_stream(LONG_STREAM)  # about 3 s: the daemon outlives the grace
    assert next(stream) == {"i": 0}

    signalled = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    _wait_not_ready(daemon)
    status, headers, body = busy.call("POST", "/predict", {"mode": "value"})
    assert (status, headers["connection"], body) == (200, "close", {"not": "streamed"})
    assert busy.wait_closed(1.0) - signalled < grace
    assert grace <= idle.wait_closed(grace + 2) - signalled < grace + 0.5
    assert [chunk["i"] for chunk in stream] == list(range(1, 30))
    assert daemon.wait_exit(10) == 0


def test_grpc_connections_get_goaway_after_the_grace(start_daemon_per_test: StartDaemon,
                                                     tmp_path: Path,
                                                     closing: list[Any]) -> None:
    grace = 1.5
    daemon = start_daemon_per_test(_streaming_model(tmp_path, grace))
    h2_connection = RawH2(daemon.grpc_port)
    closing.append(h2_connection)
    while h2_connection.frames(0.2):
        pass  # the server's settings and acks

    signalled = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    _wait_not_ready(daemon)
    goaway: bytes | None = None
    while goaway is None:
        assert time.monotonic() - signalled < grace + 2, "no GOAWAY"
        goaway = next((payload for kind, payload in h2_connection.frames(0.1)
                       if kind == H2_GOAWAY), None)
    assert time.monotonic() - signalled >= grace
    assert int.from_bytes(goaway[4:8], "big") == 0  # NO_ERROR: a graceful shutdown
    assert daemon.wait_exit(10) == 0


def test_sigint_drains_without_the_grace(start_daemon_per_test: StartDaemon, tmp_path: Path,
                                         closing: list[Any]) -> None:
    daemon = start_daemon_per_test(_streaming_model(tmp_path, grace=30))
    http = HttpClient(daemon.http_url)
    closing.append(http)
    stream = http.predict_stream(LONG_STREAM)
    assert next(stream) == {"i": 0}
    signalled = time.monotonic()
    daemon.proc.send_signal(signal.SIGINT)
    for port in (daemon.http_port, daemon.grpc_port):
        assert _wait_refused(port, 2) - signalled < 1.0
    assert [chunk["i"] for chunk in stream] == list(range(1, 30))
    assert daemon.wait_exit(10) == 0


@pytest.mark.parametrize("first, second", [(signal.SIGTERM, signal.SIGINT),
                                           (signal.SIGINT, signal.SIGTERM),
                                           (signal.SIGTERM, signal.SIGTERM)],
                         ids=["term-int", "int-term", "term-term"])
def test_a_second_signal_exits_at_once(start_daemon_per_test: StartDaemon, tmp_path: Path,
                                       closing: list[Any], first: signal.Signals,
                                       second: signal.Signals) -> None:
    """In the grace (after SIGTERM) or in the wait for calls in flight (after SIGINT), a
    second signal ends the process at once with 128 + its number."""
    daemon = start_daemon_per_test(_streaming_model(tmp_path, grace=30, timeout=30))
    rpc = GrpcClient(daemon.grpc_target)
    closing.append(rpc)
    endless = rpc.predict_stream({"mode": "async", "n": 100000, "delay": 0.05})
    assert next(endless) == {"i": 0}
    daemon.proc.send_signal(first)
    daemon.wait_for_log("draining;")
    signalled = time.monotonic()
    daemon.proc.send_signal(second)
    assert daemon.wait_exit(5) == 128 + second
    assert time.monotonic() - signalled < 1.0
    assert f"{second.name} during the drain: exiting at once" in daemon.log
