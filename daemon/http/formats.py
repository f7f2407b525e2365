"""Which wire format a route speaks: its error body shape and how its stream is framed.

Truss's routes (`/v1/models/{name}...`, `/invocations`, `/ping`) answer errors as Truss
does, `{"error": "..."}`; `/predict` with ours; the `/v1` API routes as OpenAI or Anthropic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from daemon import codec
from daemon.anthropic import wire as anthropic_wire
from daemon.openai import wire as openai_wire

ErrorPayload = Callable[[str, str, int, str, "str | None"], Any]


@dataclasses.dataclass(frozen=True)
class WireFormat:
    name: str
    error_payload: ErrorPayload  # (kind, message, status, request_id, param) -> JSON value
    encode_chunk: Callable[[Any], bytes]
    stream_content_type: str | None  # None: chosen by the first chunk's type
    stream_end: bytes = b""  # written after a stream whose events we framed ourselves


def _twinserve_error(kind: str, message: str, status: int, request_id: str,
                     param: str | None) -> Any:
    return {"error": {"type": kind, "message": message, "request_id": request_id}}


def _truss_error(kind: str, message: str, status: int, request_id: str,
                 param: str | None) -> Any:
    """Truss's shape, which Truss clients parse. The request id is in X-Request-Id, and in
    the message of a server error too, to find it in the log."""
    if status >= 500:
        return {"error": f"{message} (request id {request_id})"}
    return {"error": message}


def _anthropic_error(kind: str, message: str, status: int, request_id: str,
                     param: str | None) -> Any:
    return anthropic_wire.error_payload(kind, message, status, request_id)


PREDICT = WireFormat("twinserve", _twinserve_error, codec.encode_chunk, None)
TRUSS = WireFormat("truss", _truss_error, codec.encode_chunk, None)
OPENAI = WireFormat("openai", openai_wire.error_payload, openai_wire.sse_event,
                    "text/event-stream", stream_end=openai_wire.DONE)
OPENAI_RESPONSES = WireFormat("openai", openai_wire.error_payload, openai_wire.named_sse_event,
                              "text/event-stream")
ANTHROPIC = WireFormat("anthropic", _anthropic_error, anthropic_wire.sse_event,
                       "text/event-stream")

_OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                           "/v1/models"})


def for_path(path: str) -> WireFormat:
    if path.startswith("/v1/models/") or path in ("/invocations", "/ping"):
        return TRUSS
    if path == "/v1/messages":
        return ANTHROPIC
    if path == "/v1/responses":
        return OPENAI_RESPONSES
    if path in _OPENAI_PATHS:
        return OPENAI
    return PREDICT
