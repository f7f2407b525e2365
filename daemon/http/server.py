"""The aiohttp server: the model routes, health and metrics on one port, on the daemon's loop."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from daemon.auth import AuthCheck
from daemon.config import Config
from daemon.http.boundary import Boundary
from daemon.http.keepalive import KEEP_ALIVE, KeepAlive
from daemon.http.routes import Routes
from daemon.metrics import Metrics
from daemon.model.pipeline import ModelPipeline
from daemon.observe import CallObserver

# A refused body (413) is read and dropped for at most this long, so the client sees the
# answer instead of a reset; never buffered.
_LINGER_SECONDS = 2.0
_NEVER_S = 1e9  # runtime.idle_timeout_s: null


class HttpServer:
    """Owns one aiohttp runner; `start()` binds and returns the port, `stop()` closes it,
    giving open connections `close_grace_s` to finish. The drain goes through
    `start_draining()` and `close_listeners()` first."""

    def __init__(self, pipeline: ModelPipeline, config: Config, metrics: Metrics,
                 observer: CallObserver, auth: AuthCheck | None, *,
                 close_grace_s: float) -> None:
        self._pipeline = pipeline
        self._config = config
        self._metrics = metrics
        self._observer = observer
        self._auth = auth
        self._close_grace_s = close_grace_s
        self._runner: web.AppRunner | None = None
        self._keep_alive = KeepAlive()

    def app(self) -> web.Application:
        """The routes, each wrapped once in the error boundary (no middleware)."""
        app = web.Application()  # aiohttp's client_max_size applies only to read()/post(),
        # which the routes never call: the body limit is the Request's.
        app[KEEP_ALIVE] = self._keep_alive
        Routes(self._pipeline, self._config, self._metrics).add_to(
            app.router, Boundary(self._observer, self._auth, self._keep_alive))
        return app

    async def start(self) -> int:
        runtime = self._config.model.runtime
        runner = web.AppRunner(
            self.app(),
            handler_cancellation=True,  # a client that disconnects cancels its handler at once
            lingering_time=_LINGER_SECONDS,
            access_log=None,  # ours is CallObserver's, the same for both transports
            max_line_size=runtime.max_header_bytes,
            max_field_size=runtime.max_header_bytes,
            shutdown_timeout=self._close_grace_s,
            # aiohttp closes a connection that has no request in progress this long after it
            # connected or last answered: the keep-alive idle limit, and also the limit on
            # sending a request's headers (slow-loris), as one timer.
            keepalive_timeout=runtime.idle_timeout_s or _NEVER_S,  # 0 would mean "at once"
            auto_decompress=False,  # http/body.py inflates, counting as it goes
        )
        await runner.setup()
        server_config = self._config.server
        await web.TCPSite(runner, server_config.host, server_config.http_port).start()
        self._runner = runner
        return int(runner.addresses[0][1])

    def start_draining(self) -> None:
        """From now on every answer says `Connection: close` and closes its connection;
        connections are still accepted and served (daemon/http/keepalive.py)."""
        self._keep_alive.end()

    async def close_listeners(self) -> None:
        """Refuse new connections and close the idle ones. A connection with a request in
        progress is left alone: its answer says `Connection: close` if it began during the
        drain, and aiohttp's own close would drop the rest of a body still arriving."""
        runner = self._runner
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        await asyncio.sleep(0)  # as aiohttp's cleanup: what was received becomes a request
        if runner.server is not None:
            for connection in runner.server.connections:
                if _idle(connection):
                    connection.force_close()

    async def stop(self) -> None:
        """Stop accepting, let open requests finish for up to the grace, then close."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _idle(connection: RequestHandler) -> bool:
    """Waiting for its next request with none received: aiohttp's own test before it closes
    an idle keep-alive connection (web_protocol.py `_process_keepalive`), which has no
    public form. tests/test_drain.py fails if this stops finding idle connections."""
    waiter = connection._waiter
    return waiter is not None and not waiter.done()
