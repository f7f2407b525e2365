"""Per-call counters and latency histograms, kept in plain Python and exported at scrape time.

Every finished call (both transports) lands here, so this is the hot path: prometheus_client's
labelled metrics take a lock and build a key per update, which showed in the echo benchmark.
These are updated only on the event-loop thread, so they need no lock; the collector turns
them into `twinserve_requests_total` and `twinserve_request_duration_seconds` when scraped.
A front end looks its route's `RouteStats` up once (HTTP: when the route is added) and
records into it directly.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 120.0)


class RouteStats:
    """The calls of one (transport, route): counts by answer, and a duration histogram."""

    __slots__ = ("calls", "counts", "total", "_bounds")

    def __init__(self, bounds: list[float]) -> None:
        self.calls: dict[str | int, int] = {}  # by HTTP status or gRPC code name
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self._bounds = bounds

    def record(self, code: str | int, seconds: float) -> None:
        self.calls[code] = self.calls.get(code, 0) + 1
        self.counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self.total += seconds


class CallStats(Collector):
    def __init__(self, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self._bounds = list(buckets)
        self._routes: dict[tuple[str, str], RouteStats] = {}

    def route(self, transport: str, route: str) -> RouteStats:
        """The stats of one (transport, route); callers keep route labels few."""
        stats = self._routes.get((transport, route))
        if stats is None:
            stats = self._routes[(transport, route)] = RouteStats(self._bounds)
        return stats

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        calls = CounterMetricFamily(
            "twinserve_requests",
            "Finished calls, by transport, route and answer (HTTP status or gRPC code name).",
            labels=["transport", "route", "code"])
        durations = HistogramMetricFamily(
            "twinserve_request_duration_seconds",
            "From a call's arrival to its answer (the end of the stream, for streams).",
            labels=["transport", "route"])
        bounds = [*map(str, self._bounds), "+Inf"]
        for (transport, route), stats in list(self._routes.items()):
            for code, count in list(stats.calls.items()):
                calls.add_metric([transport, route, str(code)], count)
            cumulative, running = [], 0
            for bound, count in zip(bounds, stats.counts):
                running += count
                cumulative.append((bound, running))
            durations.add_metric([transport, route], cumulative, stats.total)
        yield calls
        yield durations
