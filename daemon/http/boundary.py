"""The one error boundary every HTTP route is wrapped in.

It is a per-route wrapper rather than an aiohttp middleware: a middleware costs several
coroutine layers and a cache lookup on every request, which on a small echo was a fifth of
the daemon's whole per-request time. The route's label and wire format are fixed when it
is added, so the hot path decides nothing it could decide once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import HttpVersion11, hdrs, web

from daemon.auth import AuthCheck
from daemon.errors import TwinserveError
from daemon.http import formats
from daemon.http.body import HttpBody
from daemon.http.errors import error_response, http_exception_response, internal_error_response
from daemon.http.formats import WireFormat
from daemon.http.headers import REQUEST_ID
from daemon.http.keepalive import KeepAlive
from daemon.observe import CallObserver
from daemon.request import BodyLimits, new_request_id

log = logging.getLogger("twinserve.http")

Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]
"""A route's own work: (request, request id) -> response; errors are raised, not answered."""

CLIENT_CLOSED = 499  # nginx's code for "the client went away first", for metrics and logs


class Boundary:
    """Gives every request an id, checks its key, turns every failure into an error answer
    exactly once, accounts for the call, and during the drain has the answer close its
    connection."""

    def __init__(self, observer: CallObserver, auth: AuthCheck | None,
                 keep_alive: KeepAlive) -> None:
        self._observer = observer
        self._auth = auth
        self._keep_alive = keep_alive

    def wrap(self, handler: Handler, label: str, wire: WireFormat | None,
             open_: bool = False) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """`label`: the metrics and access-log route; `wire`: the error body shape (None: by
        path); `open_`: no API key needed (probes and scrapes)."""
        finished = self._observer.recorder("http", label)
        auth = None if open_ else self._auth
        keep_alive = self._keep_alive

        async def boundary(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            request_id = request.headers.get(REQUEST_ID) or new_request_id()
            status = CLIENT_CLOSED
            try:
                try:
                    if auth is not None:
                        auth(request.headers)
                    response = await handler(request, request_id)
                except TwinserveError as err:
                    response = error_response(err, request_id, wire or _by_path(request))
                except web.HTTPException as exc:
                    if exc.status < 400:
                        raise
                    response = http_exception_response(exc, request, request_id,
                                                       wire or _by_path(request))
                except Exception:
                    log.exception("unhandled error in request %s", request_id)
                    response = internal_error_response(request_id, wire or _by_path(request))
                status = response.status
                if keep_alive.ending:
                    keep_alive.settle(response)
                return response
            finally:
                finished(status, started, request_id)

        boundary.__name__ = getattr(handler, "__name__", label)
        return boundary

    def expect(self, label: str, wire: WireFormat,
               limits: BodyLimits) -> Callable[[web.Request], Awaitable[web.Response | None]]:
        """The answer to `Expect: 100-continue`: "continue" only for a request the route would
        take, so a client that would be refused (wrong key, declared body too large) hears so
        before it sends the body."""
        finished = self._observer.recorder("http", label)
        auth = self._auth

        async def expect(request: web.Request) -> web.Response | None:
            started = time.perf_counter()
            try:
                if auth is not None:
                    auth(request.headers)
                limits.check_size(HttpBody(request).declared_length() or 0)  # as read later
            except TwinserveError as err:
                request_id = request.headers.get(REQUEST_ID) or new_request_id()
                response = error_response(err, request_id, wire)
                finished(response.status, started, request_id)
                return response
            if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
                raise web.HTTPExpectationFailed(text="only 'Expect: 100-continue' is supported")
            if request.version == HttpVersion11:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0  # the answer's own bytes start after it
            return None

        return expect


def _by_path(request: web.Request) -> WireFormat:
    return formats.for_path(request.path)
