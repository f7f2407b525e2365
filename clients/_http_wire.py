"""What the HTTP front end sends back, decoded: errors, values and streamed chunks.

Shared by the blocking and the asyncio HTTP clients; no I/O here.
"""

from __future__ import annotations

import codecs
import json
from typing import Any, Protocol

import httpx

from clients._errors import TwinserveError, error_from_http, error_from_stream_line
from clients._options import decode_json
from clients._raw import RawResponse
from clients._sse import SseDecoder

_ERROR_LINE_START = b'{"error":'


def path_for(route: str) -> str:
    """`predict` -> /predict; the /v1 routes by name: `chat_completions` -> /v1/chat/completions."""
    if route == "predict":
        return "/predict"
    return "/v1/" + route.replace("_", "/")


def is_json(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.startswith("application/json")


def error_from_response(response: httpx.Response) -> TwinserveError:
    """An HTTP error answer whose body has been read."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    error = error_from_http(response.status_code, body, _text_of(response))
    if error.request_id is None:
        error.request_id = response.headers.get("x-request-id")
    return error


def raw_response(response: httpx.Response) -> RawResponse:
    """A raw call's answer, read whole; an error status raises as for every call."""
    if response.status_code >= 400:
        raise error_from_response(response)
    return RawResponse(response.content, response.headers.get("content-type", ""))


def _text_of(response: httpx.Response) -> str | None:
    """A model's own error body, when it reads as text: the gRPC front end sends the same."""
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media.startswith("text/") or media in ("application/json", "application/problem+json"):
        return response.content.decode("utf-8", errors="replace").strip() or None
    return None


def needs_stream(route: str, response: httpx.Response) -> TwinserveError:
    """A unary call whose route streams: the error the gRPC front end gives for the same."""
    return TwinserveError("FAILED_PRECONDITION",
                          f"{route} streams its output; call predict_stream() instead",
                          response.headers.get("x-request-id"))


def error_from_transport(exc: httpx.HTTPError) -> TwinserveError:
    if isinstance(exc, httpx.TimeoutException):
        return TwinserveError("DEADLINE_EXCEEDED", f"timed out: {exc}")
    return TwinserveError("UNAVAILABLE", f"{type(exc).__name__}: {exc}")


class ChunkDecoder(Protocol):
    """A streamed body's pieces in, the chunks (or events) it carried out."""

    def feed(self, piece: bytes) -> list[Any]: ...

    def end(self) -> list[Any]: ...

    def broken(self) -> TwinserveError: ...


def decoder_for(content_type: str) -> ChunkDecoder:
    """The /v1 routes stream server-sent events: decoded into their JSON payloads, as the
    gRPC front end sends them; any other stream into the chunks the model yielded."""
    if content_type.startswith("text/event-stream"):
        return SseDecoder()
    return StreamDecoder(content_type)


class StreamDecoder:
    """A streamed body back into the chunks the model yielded.

    The content type says what the first chunk was: text/plain -> str, octet-stream -> bytes,
    x-ndjson -> one JSON value per line, application/json -> a plain value (one chunk).
    HTTP does not keep chunk boundaries, so str and bytes chunks may arrive merged or split;
    JSON chunks are exact. A stream that fails after it started ends with a JSON error line
    and no terminating chunk; a piece that looks like that line is held back until the
    next piece shows it was data after all.
    """

    def __init__(self, content_type: str) -> None:
        if content_type.startswith("text/"):
            self._mode = "text"
        elif content_type.startswith("application/x-ndjson"):
            self._mode = "ndjson"
        elif content_type.startswith("application/json"):
            self._mode = "json"
        else:
            self._mode = "bytes"
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = b""
        self._held: tuple[Any, TwinserveError] | None = None

    def feed(self, piece: bytes) -> list[Any]:
        out = self._release()
        if self._mode in ("json", "ndjson"):
            self._buffer += piece
            if self._mode == "ndjson":
                *lines, self._buffer = self._buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        out += self._hold_or_pass(decode_json(line), decode_json(line))
            return out
        if piece.startswith(_ERROR_LINE_START) and piece.endswith(b"\n"):
            try:
                return out + self._hold_or_pass(piece, json.loads(piece))
            except ValueError:
                pass
        chunk = self._as_chunk(piece)
        return out + [chunk] if chunk else out  # "" while a UTF-8 character is split

    def end(self) -> list[Any]:
        """The body ended cleanly: whatever is left."""
        out = self._release()
        if self._mode == "json":
            out.append(decode_json(self._buffer))
        elif self._mode == "ndjson" and self._buffer.strip():
            out.append(decode_json(self._buffer))
        elif self._mode == "text":
            tail = self._text.decode(b"", final=True)
            if tail:
                out.append(tail)
        return out

    def broken(self) -> TwinserveError:
        """The body was cut off: the server's error line, or a generic error."""
        if self._held is not None:
            return self._held[1]
        return TwinserveError("UNAVAILABLE", "the stream was cut off before it ended")

    def _hold_or_pass(self, chunk: Any, parsed: Any) -> list[Any]:
        error = error_from_stream_line(parsed)
        if error is None:
            return [chunk if self._mode == "ndjson" else self._as_chunk(chunk)]
        self._held = (chunk, error)
        return []

    def _release(self) -> list[Any]:
        if self._held is None:
            return []
        chunk, self._held = self._held[0], None
        return [chunk if self._mode == "ndjson" else self._as_chunk(chunk)]

    def _as_chunk(self, piece: bytes) -> Any:
        return self._text.decode(piece) if self._mode == "text" else piece
