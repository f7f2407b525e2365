"""Server-sent events back into the JSON events the /v1 routes streamed; no I/O here.

The OpenAI routes send `data: <json>` events and end with `data: [DONE]`; /v1/messages and
/v1/responses put an `event: <type>` line before each `data:` line, and that type is also the
payload's "type", so the payload alone is the event. A stream that fails after it started
ends with an error event and no terminating chunk (daemon/http/streaming.py); an event that
looks like one is held back until the next event shows it was data after all.
"""

from __future__ import annotations

import json
from typing import Any

from clients._errors import TwinserveError, error_from_stream_line

_DONE = "[DONE]"


class SseDecoder:
    """Pieces of a text/event-stream body in, the events' decoded `data` out.

    A `data` that is not JSON comes out as its text.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._held: tuple[Any, TwinserveError] | None = None

    def feed(self, piece: bytes) -> list[Any]:
        self._buffer = (self._buffer + piece).replace(b"\r\n", b"\n")
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        out: list[Any] = []
        for block in blocks:
            out += self._event(block)
        return out

    def end(self) -> list[Any]:
        """The body ended cleanly: a last event without its blank line is still an event."""
        out = self._event(self._buffer) if self._buffer.strip() else []
        self._buffer = b""
        return self._release() + out

    def broken(self) -> TwinserveError:
        """The body was cut off: the server's error event, or a generic error."""
        if self._held is not None:
            return self._held[1]
        return TwinserveError("UNAVAILABLE", "the stream was cut off before it ended")

    def _event(self, block: bytes) -> list[Any]:
        data = [line[5:].removeprefix(b" ") for line in block.split(b"\n")
                if line.startswith(b"data:")]
        if not data:
            return []  # a comment, or an `event:`/`id:`/`retry:` line alone
        text = b"\n".join(data).decode("utf-8", errors="replace")
        if text == _DONE:
            return self._release()
        try:
            value: Any = json.loads(text)
        except ValueError:
            return [*self._release(), text]
        out = self._release()
        error = error_from_stream_line(value)
        if error is None:
            return [*out, value]
        self._held = (value, error)
        return out

    def _release(self) -> list[Any]:
        if self._held is None:
            return []
        value, self._held = self._held[0], None
        return [value]
