"""What every finished call leaves behind, whichever transport carried it: the request
metrics and one access-log line."""

from __future__ import annotations

import time

from daemon.logs import log_access
from daemon.metrics import Metrics


class CallObserver:
    def __init__(self, metrics: Metrics) -> None:
        self._calls = metrics.calls

    def finished(self, transport: str, route: str, code: str | int, started: float,
                 request_id: str) -> None:
        """`started` is the call's time.perf_counter() on arrival."""
        self._calls.record(transport, route, str(code), time.perf_counter() - started)
        log_access(transport, route, code, started, request_id)
