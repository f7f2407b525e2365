"""Run both front ends on one event loop around one model pipeline and engine, start to shutdown.

The drain, on the first SIGTERM (docs/drain.md):
1. At once, readiness (`/health/ready`, gRPC health) turns NOT_SERVING and every HTTP answer
   says `Connection: close`; new connections and calls are still accepted and served.
2. After `runtime.drain_grace_s`, time for load balancers to stop sending calls here, both
   ports close: gRPC sends GOAWAY, idle HTTP connections are closed. Calls in flight finish,
   for up to `runtime.drain_timeout_s`, then are cancelled.
3. The engine closes and the process exits 0.
SIGINT (Ctrl-C at a terminal, where no load balancer is waiting) drains without the grace. A
second SIGTERM or SIGINT exits at once, with status 128 + the signal's number.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import NoReturn

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
        self._grace_s = 0.0  # how long the drain keeps serving new calls; set with _stop
        observer = CallObserver(metrics)
        auth = auth_check(config.server.api_key)
        self._http = HttpServer(pipeline, config, metrics, observer, auth,
                                close_grace_s=_CLOSE_GRACE_SECONDS)
        self._grpc = GrpcServer(pipeline, config, observer, auth,
                                close_grace_s=_CLOSE_GRACE_SECONDS)
        self.http_port: int | None = None
        self.grpc_port: int | None = None

    def request_stop(self, grace_s: float = 0.0) -> None:
        """Begin the drain: readiness fails now, new calls are still served for `grace_s`."""
        if self._stop.is_set():
            return
        self._grace_s = grace_s
        self.pipeline.announce_draining()
        self._http.start_draining()
        self._grpc.readiness_changed()
        self._stop.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            _exit_at_once(sig, self.pipeline.in_flight)
        grace_s = self.config.model.runtime.drain_grace_s if sig == signal.SIGTERM else 0.0
        self.request_stop(grace_s)
        log.info("%s: draining; readiness is NOT_SERVING, new calls still served for %gs%s",
                 sig.name, grace_s,
                 " (runtime.drain_grace_s)" if sig == signal.SIGTERM else "")

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        await self.startup()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            load = asyncio.create_task(self._load())
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({load, stop}, return_when=asyncio.FIRST_COMPLETED)
            grace_s = 0.0  # a daemon that never was ready has no load balancer to wait for
            if load.done():
                if load.exception() is not None:
                    exc = load.exception()
                    log.error("model load failed; exiting", exc_info=exc)
                    stop.cancel()
                    return 1
                log.info("model %s loaded; ready", self.config.model.model_name)
                self._grpc.readiness_changed()
                await stop
                grace_s = self._grace_s
            else:
                load.cancel()
            await self.drain(grace_s)
            return 0
        finally:
            await self.shutdown()

    async def drain(self, grace_s: float = 0.0) -> None:
        """Keep serving for `grace_s` (readiness already says draining), then close both
        ports, let calls in flight finish for up to runtime.drain_timeout_s and cancel what
        is left."""
        started = time.monotonic()
        if grace_s > 0:
            await asyncio.sleep(grace_s)
        timeout = self.config.model.runtime.drain_timeout_s
        grpc_stopped = asyncio.ensure_future(
            self._grpc.stop(timeout + _CANCEL_GRACE_SECONDS + _CLOSE_GRACE_SECONDS))
        await self._http.close_listeners()
        log.info("draining: ports closed; %d call(s) in flight, waiting up to %gs",
                 self.pipeline.in_flight, timeout)
        if not await self.pipeline.wait_idle(timeout):
            log.warning("drain timeout: cancelling %d call(s) still in flight",
                        self.pipeline.in_flight)
            self.pipeline.cancel_in_flight()
            await self.pipeline.wait_idle(_CANCEL_GRACE_SECONDS)
        self.pipeline.start_draining()  # nothing new starts while the engine closes
        # What gRPC still holds is no call of the model's: a call grpc took in as it shut
        # down and never handed over (grpc/grpc#41785), or a client's reflection stream.
        await self._grpc.stop(_CLOSE_GRACE_SECONDS)
        await grpc_stopped
        log.info("drained in %.2fs", time.monotonic() - started)

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


def _exit_at_once(sig: signal.Signals, in_flight: int) -> NoReturn:
    """A second signal: the operator wants out now. No more waiting for calls or threads."""
    code = 128 + sig
    log.error("%s during the drain: exiting at once with status %d, cutting off %d call(s)",
              sig.name, code, in_flight)
    logging.shutdown()
    os._exit(code)
