"""Run both front ends on one event loop around one model pipeline and engine, start to shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from daemon.auth import auth_check
from daemon.config import Config
from daemon.engine.core import EngineCore
from daemon.grpc.server import GrpcServer
from daemon.http.app import build_app
from daemon.metrics import Metrics
from daemon.model.pipeline import ModelPipeline
from daemon.observe import CallObserver

log = logging.getLogger("twinserve")

_LINGER_SECONDS = 2.0
# After the drain, what is left (health watches, idle connections) gets this long.
_CLOSE_GRACE_SECONDS = 1.0
# After a drain ran out and cancelled the stragglers, how long they may take to unwind.
_CANCEL_GRACE_SECONDS = 5.0


class Server:
    """Owns the listeners', the pipeline's and the engine's lifetimes.

    uvicorn's startup/main_loop/shutdown: listeners first, then the engine and the model
    load (ready once both are done); at the end the listeners stop before the engine closes.
    """

    def __init__(self, config: Config, pipeline: ModelPipeline, *, metrics: Metrics,
                 engine: EngineCore | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.metrics = metrics
        self.engine = engine
        self._stop = asyncio.Event()
        self._http: web.AppRunner | None = None
        self.http_port: int | None = None
        self._grpc: GrpcServer | None = None
        self.grpc_port: int | None = None
        self._observer = CallObserver(metrics)
        self._auth = auth_check(config.server.api_key)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        await self.startup()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            load = asyncio.create_task(self._load())
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({load, stop}, return_when=asyncio.FIRST_COMPLETED)
            if load.done():
                if load.exception() is not None:
                    exc = load.exception()
                    log.error("model load failed; exiting", exc_info=exc)
                    stop.cancel()
                    return 1
                log.info("model %s loaded; ready", self.config.model.model_name)
                await stop
            else:
                load.cancel()
            await self.drain()
            return 0
        finally:
            await self.shutdown()

    async def drain(self) -> None:
        """Refuse new calls at once (readiness and gRPC health turn NOT_SERVING), let calls in
        flight finish for up to runtime.drain_timeout_s, then cancel what is left."""
        timeout = self.config.model.runtime.drain_timeout_s
        self.pipeline.start_draining()
        log.info("draining: %d call(s) in flight, waiting up to %gs", self.pipeline.in_flight,
                 timeout)
        if await self.pipeline.wait_idle(timeout):
            return
        log.warning("drain timeout: cancelling %d call(s) still in flight",
                    self.pipeline.in_flight)
        self.pipeline.cancel_in_flight()
        await self.pipeline.wait_idle(_CANCEL_GRACE_SECONDS)

    async def _load(self) -> None:
        if self.engine is not None:
            await self.engine.start()
        await self.pipeline.load()

    async def startup(self) -> None:
        server = self.config.server
        runner = web.AppRunner(
            build_app(self.pipeline, self.config, self.metrics, self._observer, self._auth),
            handler_cancellation=True,  # a client that disconnects cancels its handler at once
            # A refused body (413) is read and dropped for at most this long, so the client
            # sees the answer instead of a reset; never buffered.
            lingering_time=_LINGER_SECONDS,
            access_log=None,  # ours is CallObserver's, the same for both transports
            max_line_size=self.config.model.runtime.max_header_bytes,
            max_field_size=self.config.model.runtime.max_header_bytes,
            shutdown_timeout=_CLOSE_GRACE_SECONDS,
        )
        await runner.setup()
        await web.TCPSite(runner, server.host, server.http_port).start()
        self._http = runner
        self.http_port = _bound_port(runner)
        self._grpc = GrpcServer(self.pipeline, self.config, self._observer, self._auth)
        self.grpc_port = await self._grpc.start()
        log.info("listening http=%s:%s grpc=%s:%s", server.host, self.http_port,
                 server.host, self.grpc_port)

    async def shutdown(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(_CLOSE_GRACE_SECONDS)
            self._grpc = None
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        if self.engine is not None:
            await self.engine.close()
        self.pipeline.close()


def _bound_port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    return int(address[1])
