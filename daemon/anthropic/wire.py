"""Anthropic's wire shapes for /v1/messages: error bodies and named SSE events."""

from __future__ import annotations

from typing import Any

from daemon import codec

_ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "request_too_large": "request_too_large",
    "not_found_error": "not_found_error",
    "method_not_allowed": "invalid_request_error",
    "authentication_error": "authentication_error",
    "overloaded_error": "rate_limit_error",
    "unavailable_error": "overloaded_error",
    "timeout_error": "timeout_error",
}


def error_payload(kind: str, message: str, status: int, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": _ERROR_TYPES.get(kind, "api_error"), "message": message},
        "request_id": request_id,
    }


def sse_event(chunk: Any) -> bytes:
    """A dict with a `type` becomes `event: <type>` + `data:`; str/bytes go out as they are."""
    if isinstance(chunk, (bytes, str)):
        return codec.encode_chunk(chunk)
    event = chunk.get("type", "message") if isinstance(chunk, dict) else "message"
    return b"event: " + str(event).encode() + b"\ndata: " + codec.dumps(chunk) + b"\n\n"
