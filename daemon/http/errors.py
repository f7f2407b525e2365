"""TwinserveError -> HTTP status and JSON body, in one place for the HTTP front end."""

from __future__ import annotations

import logging

from aiohttp import web

from daemon import codec
from daemon.errors import (
    ClientError,
    DeadlineExceeded,
    ModelDefinitionError,
    ModelError,
    NotReady,
    Overloaded,
    TwinserveError,
)

log = logging.getLogger("twinserve.http")

_STATUS_BY_CLASS: tuple[tuple[type[TwinserveError], int], ...] = (
    (Overloaded, 429),
    (NotReady, 503),
    (DeadlineExceeded, 504),
    (ModelError, 500),
    (ModelDefinitionError, 500),
)

# aiohttp's own refusals (unknown route, wrong method, ...) get our body shape too.
_KIND_BY_STATUS = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def status_for(err: TwinserveError) -> int:
    if isinstance(err, ClientError):
        return err.status
    for cls, status in _STATUS_BY_CLASS:
        if isinstance(err, cls):
            return status
    return 500


def error_body(kind: str, message: str, request_id: str) -> bytes:
    return codec.dumps({"error": {"type": kind, "message": message, "request_id": request_id}})


def error_response(err: TwinserveError, request_id: str) -> web.Response:
    response = _json_error(status_for(err), err.kind, err.message, request_id)
    if isinstance(err, Overloaded):
        response.headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return response


def http_exception_response(exc: web.HTTPException, request: web.BaseRequest,
                            request_id: str) -> web.Response:
    """aiohttp's own refusals, reworded to name what was asked for."""
    status = exc.status
    kind = _KIND_BY_STATUS.get(status, "http_error")
    message = exc.text or exc.reason
    if status == 404:
        message = f"no route for {request.method} {request.path}"
    elif status == 405:
        allowed = exc.headers.get("Allow", "")
        message = f"{request.method} is not allowed on {request.path}; use {allowed}"
    response = _json_error(status, kind, message, request_id)
    if status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def internal_error_response(request_id: str) -> web.Response:
    return _json_error(500, "internal_error", "internal server error", request_id)


def _json_error(status: int, kind: str, message: str, request_id: str) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(kind, message, request_id),
        content_type="application/json",
        headers={"X-Request-Id": request_id},
    )
