"""TwinserveError -> HTTP status and error body, in one place for the HTTP front end.

The body's shape follows the route's wire format (ours, OpenAI's or Anthropic's).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from daemon import codec
from daemon.errors import (
    ClientError,
    DeadlineExceeded,
    InvalidInput,
    ModelDefinitionError,
    ModelError,
    NotReady,
    Overloaded,
    TwinserveError,
)
from daemon.http.formats import WireFormat
from daemon.http.headers import REQUEST_ID

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


def error_payload(err: TwinserveError, request_id: str, wire: WireFormat) -> Any:
    param = err.param if isinstance(err, InvalidInput) else None
    return wire.error_payload(err.kind, err.message, status_for(err), request_id, param)


def error_body(err: TwinserveError, request_id: str, wire: WireFormat) -> bytes:
    return codec.dumps(error_payload(err, request_id, wire))


def error_response(err: TwinserveError, request_id: str, wire: WireFormat) -> web.Response:
    response = _response(status_for(err), error_body(err, request_id, wire), request_id)
    if isinstance(err, Overloaded):
        response.headers["Retry-After"] = str(max(1, round(err.retry_after)))
    return response


def http_exception_response(exc: web.HTTPException, request: web.BaseRequest,
                            request_id: str, wire: WireFormat) -> web.Response:
    """aiohttp's own refusals, reworded to name what was asked for."""
    status = exc.status
    kind = _KIND_BY_STATUS.get(status, "http_error")
    message = exc.text or exc.reason
    if status == 404:
        message = f"no route for {request.method} {request.path}"
    elif status == 405:
        allowed = exc.headers.get("Allow", "")
        message = f"{request.method} is not allowed on {request.path}; use {allowed}"
    body = codec.dumps(wire.error_payload(kind, message, status, request_id, None))
    response = _response(status, body, request_id)
    if status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def internal_error_response(request_id: str, wire: WireFormat) -> web.Response:
    body = codec.dumps(wire.error_payload("internal_error", "internal server error", 500,
                                          request_id, None))
    return _response(500, body, request_id)


def _response(status: int, body: bytes, request_id: str) -> web.Response:
    response = web.Response(status=status, body=body, content_type="application/json")
    response.headers[REQUEST_ID] = request_id
    return response
