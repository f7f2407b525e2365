"""Logging set-up: text or JSON lines on stderr, each carrying the id of its request.

The access log (one line per finished call) is the only per-call log, so it has a fast
path: its lines are formatted directly, without a LogRecord, and written in batches, at
most `ACCESS_FLUSH_S` after the call or as soon as any other record is logged, so lines
keep their order. Through `logging`, with a write(2) a call, it halved the throughput of a
small echo (figures in the README's Performance section).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, TextIO

from daemon import codec
from daemon.request import current_request

ACCESS_LOGGER = "twinserve.access"
ACCESS_FLUSH_S = 0.05  # the longest an access line waits before it is written
_ACCESS_BATCH = 256  # lines: written at once when this many wait


class _RequestIdFilter(logging.Filter):
    """Stamps every record with the request being handled in this context, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request = current_request.get()
            record.request_id = request.request_id if request is not None else None
        return True


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:  # a record from the engine process, formatted there
            entry["exc_info"] = record.exc_text
        return _json_line(entry)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, with the access log's pending lines written ahead of every other record."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._flush_scheduled = False

    def add_access_line(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            if len(self._pending) < _ACCESS_BATCH:
                if self._flush_scheduled:
                    return
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None  # not on an event loop: no timer to wait for
                if loop is not None:
                    self._flush_scheduled = True
                    loop.call_later(ACCESS_FLUSH_S, self.flush)
                    return
            self._write_pending()
            self._flush_stream()

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle() holds the lock around emit().
        self._write_pending()
        super().emit(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._flush_scheduled = False
            self._write_pending()
            self._flush_stream()

    def _flush_stream(self) -> None:
        try:
            super().flush()
        except (OSError, ValueError):
            pass

    def _write_pending(self) -> None:
        if not self._pending:
            return
        lines = "".join(self._pending)
        self._pending.clear()
        try:
            self.stream.write(lines)
        except (OSError, ValueError):
            pass  # stderr is gone (closed, broken pipe): the lines have nowhere to go


class AccessLog:
    """Writes access lines through the handler `configure()` installed, in its format."""

    def __init__(self) -> None:
        self.enabled = False
        self._handler: _Handler | None = None
        self._json = False
        self._second = -1
        self._stamp = ""

    def setup(self, handler: _Handler | None, json_lines: bool) -> None:
        self._handler = handler
        self._json = json_lines
        self.enabled = handler is not None

    def write(self, transport: str, route: str, code: str | int, seconds: float,
              request_id: str) -> None:
        """One line per finished call: `http predict 200 1.2ms`."""
        handler = self._handler
        if handler is None:
            return
        now = time.time()
        duration_ms = round(seconds * 1000, 3)
        message = f"{transport} {route} {code} {duration_ms:.1f}ms"
        if self._json:
            line = _json_line({"ts": _iso_utc(now), "level": "INFO", "logger": ACCESS_LOGGER,
                               "message": message, "request_id": request_id,
                               "transport": transport, "route": route, "code": code,
                               "duration_ms": duration_ms})
        else:
            line = (f"{self._local_stamp(now)},{int(now * 1000) % 1000:03d} INFO "
                    f"{ACCESS_LOGGER}: {message} [request_id={request_id}]")
        handler.add_access_line(line + "\n")

    def _local_stamp(self, now: float) -> str:
        """logging's default asctime, to the second, formatted once a second."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return self._stamp


access_log = AccessLog()


def configure(level: str, fmt: str, access: bool) -> None:
    """Send all logs to stderr in `fmt` ("text" or "json"); `access` switches the access log."""
    handler = _Handler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in root.handlers:
        old.flush()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Set the access logger's level to WARNING (or disable it) to silence access lines too.
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.disabled = not access
    on = access and logger.isEnabledFor(logging.INFO)
    access_log.setup(handler if on else None, fmt == "json")


def _iso_utc(created: float) -> str:
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            + f".{int(created * 1000) % 1000:03d}Z")


def _json_line(entry: dict[str, Any]) -> str:
    return codec.dumps(entry).decode()
