"""Run both front ends on one event loop around one model pipeline and engine, start to shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

from daemon.auth import auth_check
from daemon.config import Config
from daemon.engine.core import EngineCore
from daemon.grpc.server import GrpcServer
from daemon.http.server import HttpServer
from daemon.metrics import Metrics
from daemon.model.pipeline import ModelPipeline
from daemon.observe import CallObserver

log = logging.getLogger("twinserve")

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
        observer = CallObserver(metrics)
        auth = auth_check(config.server.api_key)
        self._http = HttpServer(pipeline, config, metrics, observer, auth,
                                close_grace_s=_CLOSE_GRACE_SECONDS)
        self._grpc = GrpcServer(pipeline, config, observer, auth,
                                close_grace_s=_CLOSE_GRACE_SECONDS)
        self.http_port: int | None = None
        self.grpc_port: int | None = None

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
        self.http_port = await self._http.start()
        self.grpc_port = await self._grpc.start()
        host = self.config.server.host
        log.info("listening http=%s:%s grpc=%s:%s", host, self.http_port, host, self.grpc_port)

    async def shutdown(self) -> None:
        await self._grpc.stop()
        await self._http.stop()
        if self.engine is not None:
            await self.engine.close()
        self.pipeline.close()
