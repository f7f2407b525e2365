"""The grpc.aio server: ModelService, health and reflection on one port, on the daemon's loop."""

from __future__ import annotations

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from daemon.auth import AuthCheck
from daemon.config import Config
from daemon.grpc.auth import ApiKeyInterceptor
from daemon.grpc.health import HealthServicer
from daemon.grpc.servicer import ModelServicer
from daemon.model.pipeline import ModelPipeline
from daemon.observe import CallObserver
from twinserve_wire import service

# Room for the message envelope (route, field tags) around a body of max_request_bytes, so a
# body just over the limit meets the Request's own check and its clear message.
_ENVELOPE_BYTES = 64 * 1024


_STREAM_WINDOW_BYTES = 4 * 1024 * 1024


class GrpcServer:
    """Owns one grpc.aio.Server; `start()` binds and returns the port, `stop()` closes it,
    giving calls in flight `close_grace_s` (or the drain's time) to finish."""

    def __init__(self, pipeline: ModelPipeline, config: Config, observer: CallObserver,
                 auth: AuthCheck | None, *, close_grace_s: float) -> None:
        self._pipeline = pipeline
        self._config = config
        self._observer = observer
        self._auth = auth
        self._close_grace_s = close_grace_s
        self._server: grpc.aio.Server | None = None
        self._health = HealthServicer(pipeline, (service.SERVICE_NAME,))

    async def start(self) -> int:
        max_body = self._config.model.runtime.max_request_bytes
        # The key is checked as a call arrives, before its message is read (grpc/auth.py).
        interceptors = [ApiKeyInterceptor(self._auth, self._observer)] if self._auth else []
        server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.max_receive_message_length", max_body + _ENVELOPE_BYTES),
            # The same limit for gRPC metadata as for an HTTP header; soft = hard, so every
            # call over it is refused rather than some of them.
            ("grpc.max_metadata_size", self._config.model.runtime.max_header_bytes),
            ("grpc.absolute_max_metadata_size", self._config.model.runtime.max_header_bytes),
            ("grpc.max_send_message_length", -1),
            # Without this a second daemon could silently share the port (SO_REUSEPORT).
            ("grpc.so_reuseport", 0),
            # HTTP/2 rapid reset (CVE-2023-44487): only with a limit set (grpc sets none) does
            # grpc refuse new streams while this many, cancelled ones included, are still
            # allocated. Each one let through is a call this loop must start and end, queued
            # ahead of everyone's calls: under scripts/attack.py's flood, gRPC p99 was 28 ms
            # at 256, 11-12 at 64, 8.5 at 32 and 7 at 16, against 7.5 with the same flood on a
            # twin daemon (2 cores shared with attacker and prober; 1.8 ms unloaded). A lower
            # limit caps every client too: at 32 a client has at most 32 calls open per
            # connection (grpc queues the rest: a chat client sharing one channel, sessions),
            # and one that starts more at once on a fresh connection can see a few refused
            # (UNAVAILABLE). So 256 by default; server.grpc_max_concurrent_streams lowers it
            # (README, "Hostile and careless clients").
            ("grpc.max_concurrent_streams", self._config.server.grpc_max_concurrent_streams),
            # A fixed 4 MiB receive window per call instead of grpc's BDP probing, which let
            # 20-140 MiB of an upload run ahead of the model (measured); HTTP/2 flow control
            # then holds the client back. Loopback upload speed is unchanged (docs/raw.md),
            # and 4 MiB a round trip is 80 MiB/s at 50 ms.
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", _STREAM_WINDOW_BYTES),
            *_idle_options(self._config.model.runtime.idle_timeout_s),
        ])
        handlers = ModelServicer(self._pipeline, self._observer).handlers()
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.SERVICE_NAME, handlers),))
        # Registered methods skip grpc's per-call generic handler lookup.
        server.add_registered_method_handlers(service.SERVICE_NAME, handlers)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (service.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        server_config = self._config.server
        port = server.add_insecure_port(f"{server_config.host}:{server_config.grpc_port}")
        await server.start()
        self._server = server
        return port

    def readiness_changed(self) -> None:
        """Tell health Watch streams now (the model loaded, or the drain began)."""
        self._health.changed()

    async def stop(self, grace_s: float | None = None) -> None:
        """Close the port and refuse new calls (grpc sends every connection GOAWAY), let
        calls in flight finish for up to `grace_s` (default `close_grace_s`), then cancel
        them; returns once none is left. A later call with a shorter grace cuts an earlier
        one's wait short (grpc.aio's stop allows that)."""
        if self._server is not None:
            self._health.close()  # Watch streams never end by themselves
            await self._server.stop(self._close_grace_s if grace_s is None else grace_s)


def _idle_options(idle_timeout_s: float | None) -> list[tuple[str, int]]:
    """A connection with no call open is sent GOAWAY after runtime.idle_timeout_s, and one
    that has not finished its HTTP/2 handshake by then is dropped."""
    if idle_timeout_s is None:
        return []
    idle_ms = max(1, round(idle_timeout_s * 1000))
    return [("grpc.max_connection_idle_ms", idle_ms),
            ("grpc.server_handshake_timeout_ms", idle_ms)]
