"""The one exception the client library raises for server errors, on either transport."""

from __future__ import annotations

from typing import Any

from twinserve_wire.codes import code_for_status

# The error line the HTTP front end writes when a stream fails after it started carries only
# the error's "type"; these are the gRPC codes the gRPC front end sends for the same errors.
# The /v1 routes name some kinds as OpenAI and Anthropic do (daemon/openai/wire.py,
# daemon/anthropic/wire.py).
_CODE_BY_KIND = {
    "invalid_request_error": "INVALID_ARGUMENT",
    "request_too_large": "RESOURCE_EXHAUSTED",
    "not_found_error": "NOT_FOUND",
    "authentication_error": "UNAUTHENTICATED",
    "overloaded_error": "RESOURCE_EXHAUSTED",
    "unavailable_error": "UNAVAILABLE",
    "timeout_error": "DEADLINE_EXCEEDED",
    "model_error": "INTERNAL",
    "internal_error": "INTERNAL",
    "rate_limit_error": "RESOURCE_EXHAUSTED",
    "server_error": "INTERNAL",
    "api_error": "INTERNAL",
}


class TwinserveError(Exception):
    """The server refused or failed a call, or could not be reached.

    Attributes:
        code: the gRPC status name ("INVALID_ARGUMENT", "INTERNAL", ...). HTTP statuses are
            mapped to the same names, so one error reads the same on both transports.
        message: the server's message.
        request_id: the server's id for the call, when it sent one (to find it in its log).
    """

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


def error_from_http(status: int, body: Any, text: str | None = None) -> TwinserveError:
    """An HTTP error answer: `{"error": {"message", "request_id", ...}}`, or anything else
    (then `text`, the body when it reads as text, is the message)."""
    message, request_id = _message_and_id(body)
    if message is None:
        message = text if text is not None else f"HTTP {status}"
    return TwinserveError(code_for_status(status).name, message, request_id)


def error_from_stream_line(body: Any) -> TwinserveError | None:
    """The error line (or SSE event) that ends a failed HTTP stream, or None if `body` is not
    one: `{"error": {...}}`, or Anthropic's `{"type": "error", "error": {...}, "request_id"}`."""
    if not (isinstance(body, dict) and isinstance(body.get("error"), dict)):
        return None
    if set(body) != {"error"} and set(body) != {"type", "error", "request_id"}:
        return None
    if len(body) > 1 and body["type"] != "error":
        return None
    kind = body["error"].get("type")
    message, request_id = _message_and_id(body)
    if not isinstance(kind, str) or message is None:
        return None
    return TwinserveError(_CODE_BY_KIND.get(kind, "INTERNAL"), message, request_id)


def _message_and_id(body: Any) -> tuple[str | None, str | None]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    message = error.get("message")
    request_id = error.get("request_id", body.get("request_id"))
    return (message if isinstance(message, str) else None,
            request_id if isinstance(request_id, str) else None)
