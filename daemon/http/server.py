"""The aiohttp server: the model routes, health and metrics on one port, on the daemon's loop."""

from __future__ import annotations

from aiohttp import web

from daemon.auth import AuthCheck
from daemon.config import Config
from daemon.http.boundary import Boundary
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
    giving open connections `close_grace_s` to finish."""

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

    def app(self) -> web.Application:
        """The routes, each wrapped once in the error boundary (no middleware)."""
        app = web.Application()  # aiohttp's client_max_size applies only to read()/post(),
        # which the routes never call: the body limit is the Request's.
        Routes(self._pipeline, self._config, self._metrics).add_to(
            app.router, Boundary(self._observer, self._auth))
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

    async def stop(self) -> None:
        """Stop accepting, let open requests finish for up to the grace, then close."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
