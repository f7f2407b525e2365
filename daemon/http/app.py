"""The aiohttp application: the routes, each wrapped once in the error boundary."""

from __future__ import annotations

from aiohttp import web

from daemon.auth import AuthCheck
from daemon.config import Config
from daemon.http.boundary import Boundary
from daemon.http.routes import Routes
from daemon.metrics import Metrics
from daemon.model.pipeline import ModelPipeline
from daemon.observe import CallObserver


def build_app(pipeline: ModelPipeline, config: Config, metrics: Metrics,
              observer: CallObserver, auth: AuthCheck | None) -> web.Application:
    # aiohttp's own whole-body limit; HttpBody turns its refusal into PayloadTooLarge.
    app = web.Application(client_max_size=config.model.runtime.max_request_bytes)
    Routes(pipeline, config, metrics).add_to(app.router, Boundary(observer, auth))
    return app
