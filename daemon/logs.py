"""Logging set-up: text or JSON lines, each carrying the id of the request it belongs to."""

from __future__ import annotations

import json
import logging
import sys
import time

from daemon.request import current_request

access_log = logging.getLogger("twinserve.access")


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
    _EXTRA = ("request_id", "transport", "route", "code", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in self._EXTRA:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, fmt: str, access: bool) -> None:
    """Send all logs to stderr in `fmt` ("text" or "json"); `access` switches the access log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    access_log.disabled = not access


def log_access(transport: str, route: str, code: str | int, seconds: float,
               request_id: str) -> None:
    """One line per finished call: `http predict 200 1.2ms`."""
    if access_log.disabled or not access_log.isEnabledFor(logging.INFO):
        return
    duration_ms = round(seconds * 1000, 3)
    access_log.info("%s %s %s %.1fms", transport, route, code, duration_ms,
                    extra={"request_id": request_id, "transport": transport, "route": route,
                           "code": code, "duration_ms": duration_ms})
