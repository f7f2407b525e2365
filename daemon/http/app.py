"""The aiohttp application: shared objects under typed keys, and the one error boundary."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from daemon.config import Config
from daemon.errors import TwinserveError
from daemon.http import formats, routes
from daemon.http.errors import error_response, http_exception_response, internal_error_response
from daemon.auth import AuthCheck
from daemon.http.keys import AUTH, CONFIG, METRICS, OBSERVER, PIPELINE, route_label, set_request_id
from daemon.metrics import Metrics
from daemon.model.pipeline import ModelPipeline
from daemon.observe import CallObserver
from daemon.request import new_request_id

log = logging.getLogger("twinserve.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Probes and scrapes stay open when an API key is configured.
OPEN_PATHS = frozenset({"/", "/health/live", "/health/ready", "/metrics"})
CLIENT_CLOSED = 499  # nginx's code for "the client went away first", for metrics and logs


@web.middleware
async def error_boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id, check its key, turn every failure into an error answer
    exactly once, and account for the call."""
    started = time.perf_counter()
    request_id = request.headers.get("X-Request-Id") or new_request_id()
    set_request_id(request, request_id)
    status = CLIENT_CLOSED
    try:
        response = await _answer(request, handler, request_id)
        status = response.status
        return response
    finally:
        request.app[OBSERVER].finished("http", route_label(request), status, started, request_id)


async def _answer(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
    try:
        if request.path not in OPEN_PATHS:
            request.app[AUTH](request.headers)
        return await handler(request)
    except TwinserveError as err:
        return error_response(err, request_id, formats.for_path(request.path))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_exception_response(exc, request, request_id, formats.for_path(request.path))
    except Exception:
        log.exception("unhandled error in request %s", request_id)
        return internal_error_response(request_id, formats.for_path(request.path))


def build_app(pipeline: ModelPipeline, config: Config, metrics: Metrics,
              observer: CallObserver, auth: AuthCheck) -> web.Application:
    # aiohttp's own whole-body limit; HttpBody turns its refusal into PayloadTooLarge.
    app = web.Application(
        middlewares=[error_boundary],
        client_max_size=config.model.runtime.max_request_bytes,
    )
    app[PIPELINE] = pipeline
    app[CONFIG] = config
    app[METRICS] = metrics
    app[OBSERVER] = observer
    app[AUTH] = auth
    routes.add_routes(app)
    return app
