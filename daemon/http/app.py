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
    # The body limit is the Request's (runtime.max_request_bytes); aiohttp's own,
    # client_max_size, applies only to its read()/post(), which the routes never call.
    app = web.Application()
    Routes(pipeline, config, metrics).add_to(app.router, Boundary(observer, auth))
    return app
