"""Per-call counters and latency histograms, kept in plain Python and exported at scrape time.

Every finished call (both transports) lands here, so this is the hot path: prometheus_client's
labelled metrics take a lock and build a key per update, several microseconds a call.
These are updated only on the event-loop thread, so they need no lock; the collector turns
them into `twinserve_requests_total` and `twinserve_request_duration_seconds` when scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 120.0)


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)  # the last one is +Inf
        self.total = 0.0


class CallStats(Collector):
    def __init__(self, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self._bounds = list(buckets)
        self._calls: dict[tuple[str, str, str], int] = {}
        self._durations: dict[tuple[str, str], _Histogram] = {}

    def record(self, transport: str, route: str, code: str, seconds: float) -> None:
        key = (transport, route, code)
        self._calls[key] = self._calls.get(key, 0) + 1
        histogram = self._durations.get((transport, route))
        if histogram is None:
            histogram = self._durations[(transport, route)] = _Histogram(len(self._bounds))
        histogram.counts[bisect.bisect_left(self._bounds, seconds)] += 1
        histogram.total += seconds

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        calls = CounterMetricFamily(
            "twinserve_requests",
            "Finished calls, by transport, route and answer (HTTP status or gRPC code name).",
            labels=["transport", "route", "code"])
        for key, count in list(self._calls.items()):
            calls.add_metric(list(key), count)
        yield calls
        durations = HistogramMetricFamily(
            "twinserve_request_duration_seconds",
            "From a call's arrival to its answer (the end of the stream, for streams).",
            labels=["transport", "route"])
        for (transport, route), histogram in list(self._durations.items()):
            cumulative, running = [], 0
            for bound, count in zip([*map(str, self._bounds), "+Inf"], histogram.counts):
                running += count
                cumulative.append((bound, running))
            durations.add_metric([transport, route], cumulative, histogram.total)
        yield durations
