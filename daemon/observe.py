"""What every finished call leaves behind, whichever transport carried it: the request
metrics and one access-log line."""

from __future__ import annotations

import time
from collections.abc import Callable

from daemon.logs import access_log
from daemon.metrics import Metrics
from daemon.model.signature import ENDPOINT_METHODS, SESSION_METHOD

Finished = Callable[[str | int, float, str], None]
"""(code, started, request_id): records one finished call; `started` is its
time.perf_counter() on arrival."""

_MODEL_ROUTES = frozenset((*ENDPOINT_METHODS, SESSION_METHOD))
UNMATCHED = "unmatched"  # the route label of every call that named no model route
# Counted, but not in the access log: Prometheus scrapes every few seconds (Truss also
# leaves them out).
_UNLOGGED = frozenset({"/metrics"})


class CallObserver:
    def __init__(self, metrics: Metrics) -> None:
        self._calls = metrics.calls
        self._recorders: dict[tuple[str, str], Finished] = {}

    def recorder(self, transport: str, route: str) -> Finished:
        """The recorder of one route, for a front end to keep and call per finished call."""
        recorder = self._recorders.get((transport, route))
        if recorder is None:
            record = self._calls.route(transport, route).record
            quiet = route in _UNLOGGED

            def recorder(code: str | int, started: float, request_id: str) -> None:
                seconds = time.perf_counter() - started
                record(code, seconds)
                if access_log.enabled and not quiet:
                    access_log.write(transport, route, code, seconds, request_id)

            self._recorders[(transport, route)] = recorder
        return recorder

    def finished(self, transport: str, route: str, code: str | int, started: float,
                 request_id: str) -> None:
        """Record a call to a model route named by the client (gRPC's `route` field); any
        name that is not a model route is labelled UNMATCHED, so labels stay few."""
        label = route if route in _MODEL_ROUTES else UNMATCHED
        self.recorder(transport, label)(code, started, request_id)
