"""What Truss models return and raise, taken as Truss takes it: starlette/fastapi responses,
bytes, and exceptions carrying an HTTP `status_code`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from daemon import codec
from daemon.errors import ClientError, ModelError, NotReady, TwinserveError
from daemon.request import Request, Response

log = logging.getLogger("twinserve.model")


def as_response(result: Any, binary: bool, method: str) -> Any:
    """Bytes and response objects go out as they are; a binary (msgpack) call gets msgpack."""
    if isinstance(result, Response):
        return result
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result))
    body, status = getattr(result, "body", None), getattr(result, "status_code", None)
    if isinstance(body, bytes) and isinstance(status, int):
        # starlette/fastapi Response objects, so Truss models keep theirs.
        return _as_ours(result, body, status)
    if binary:
        try:
            return Response(codec.pack(result))
        except TypeError as exc:
            raise ModelError(f"{method} returned a value that cannot be sent as msgpack: {exc}") \
                from exc
    return result


def is_response(result: Any) -> bool:
    """A response object the model built itself (ours, or starlette's / fastapi's)."""
    return isinstance(result, Response) or (
        isinstance(getattr(result, "status_code", None), int)
        and (isinstance(getattr(result, "body", None), bytes)
             or hasattr(result, "body_iterator")))


def streaming_response(result: Any) -> tuple[AsyncIterator[Any], Response] | None:
    """A starlette StreamingResponse's body iterator and its head (status, content type,
    headers), or None for anything else."""
    chunks, status = getattr(result, "body_iterator", None), getattr(result, "status_code", None)
    if chunks is None or not isinstance(status, int) or not hasattr(chunks, "__anext__"):
        return None
    return chunks, _as_ours(result, b"", status)


def _as_ours(result: Any, body: bytes, status: int) -> Response:
    """A starlette response's status, content type and headers, with `body`; the framing
    headers are the transport's to write."""
    headers = {str(k): str(v) for k, v in dict(getattr(result, "headers", {})).items()}
    content_type = headers.pop("content-type", None) or getattr(result, "media_type", None)
    for framing in ("content-length", "transfer-encoding"):
        headers.pop(framing, None)
    return Response(body, status, content_type or "application/octet-stream", headers)


def model_error(method: str, exc: BaseException, request: Request) -> TwinserveError:
    """Translate an exception from model code into the hierarchy; log real failures once."""
    if isinstance(exc, TwinserveError):
        return exc
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        # fastapi.HTTPException and look-alikes, so Truss models keep their statuses.
        detail = getattr(exc, "detail", None) or str(exc) or "error"
        message = detail if isinstance(detail, str) else repr(detail)
        if status < 500:
            return ClientError(message, status)
        # A server error the model chose to send: its message goes as given, and the log
        # gets the traceback, as for any failure of the model's.
        log.error("%s raised while handling request %s (HTTP %d, sent as given)", method,
                  request.request_id, status, exc_info=(type(exc), exc, exc.__traceback__))
        if status == 503:
            return NotReady(message)
        return ModelError(message)
    log.error("%s raised while handling request %s", method, request.request_id,
              exc_info=(type(exc), exc, exc.__traceback__))
    return ModelError.unexpected(method)
