"""OpenAI's wire shapes that every /v1 route shares: error bodies and SSE events."""

from __future__ import annotations

from typing import Any

from daemon import codec
from daemon.engine.generation import FinishReason, Usage

# Our error kinds -> the `type` OpenAI's API uses for the same situation.
_ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "not_found_error": "invalid_request_error",
    "method_not_allowed": "invalid_request_error",
    "authentication_error": "authentication_error",
    "overloaded_error": "rate_limit_error",
    "unavailable_error": "server_error",
    "timeout_error": "timeout_error",
}
_CODES = {404: "not_found", 413: "request_too_large", 429: "rate_limit_exceeded",
          401: "invalid_api_key", 503: "unavailable", 504: "timeout"}

DONE = b"data: [DONE]\n\n"


def error_payload(kind: str, message: str, status: int, request_id: str,
                  param: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(kind, "server_error" if status >= 500 else kind),
            "param": param,
            "code": _CODES.get(status),
            "request_id": request_id,
        }
    }


def sse_event(chunk: Any) -> bytes:
    """One streamed chunk: str/bytes as they are (the model's own SSE), else a `data:` event."""
    if isinstance(chunk, (bytes, str)):
        return codec.encode_chunk(chunk)
    return b"data: " + codec.dumps(chunk) + b"\n\n"


def named_sse_event(chunk: Any) -> bytes:
    """The Responses API's framing: `event: <type>` before each `data:`, and no [DONE]."""
    event = chunk.get("type") if isinstance(chunk, dict) else None
    if isinstance(event, str):
        return b"event: " + event.encode() + b"\ndata: " + codec.dumps(chunk) + b"\n\n"
    return sse_event(chunk)


def usage_payload(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def finish_reason(reason: FinishReason) -> str:
    """OpenAI's name for why a choice ended; a cancelled one reads as stopped (its client is
    normally gone, and OpenAI has no word for it)."""
    return "length" if reason == "length" else "stop"


# Keys OpenAI's APIs define that change nothing here, so they are accepted and ignored.
IGNORED_KEYS = frozenset({"model", "user", "metadata", "store", "service_tier",
                          "parallel_tool_calls", "safety_identifier", "prompt_cache_key",
                          "prompt_cache_retention", "prompt_cache_options", "verbosity"})
