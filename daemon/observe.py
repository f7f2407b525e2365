"""What every finished call leaves behind, whichever transport carried it: the request
metrics and one access-log line."""

from __future__ import annotations

import time
from typing import Any

from daemon.logs import log_access
from daemon.metrics import Metrics


class CallObserver:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # prometheus_client's labels() takes a lock and builds a key on every call; the label
        # sets are few, so resolve each once (a hot path: every request passes here).
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def finished(self, transport: str, route: str, code: str | int, started: float,
                 request_id: str) -> None:
        """`started` is the call's time.perf_counter() on arrival."""
        key = (transport, route, str(code))
        children = self._children.get(key)
        if children is None:
            children = (self._metrics.requests.labels(*key),
                        self._metrics.request_duration.labels(transport, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
        log_access(transport, route, code, started, request_id)
