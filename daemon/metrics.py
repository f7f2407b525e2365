"""The daemon's Prometheus metrics, in a registry of its own.

A registry per daemon (not prometheus_client's global one) keeps tests that build several
engines in one process from seeing each other's counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Cancel latencies we care about are a few milliseconds; the tail up to a second shows stalls.
_CANCEL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """Everything the daemon exports at GET /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.engine_in_flight = Gauge(
            "twinserve_engine_in_flight",
            "Generations submitted to the engine and not finished (queued or running).",
            registry=self.registry,
        )
        self.engine_cancelled = Counter(
            "twinserve_engine_cancelled",
            "Generations stopped by a cancel (client disconnect or ResponseIterator.cancel()).",
            registry=self.registry,
        )
        self.engine_generated_tokens = Counter(
            "twinserve_engine_generated_tokens",
            "Tokens produced by the engine's backend, including ones a stop sequence cut off.",
            registry=self.registry,
        )
        self.engine_cancel_seconds = Histogram(
            "twinserve_engine_cancel_seconds",
            "From a cancel reaching the engine to its backend having stopped.",
            buckets=_CANCEL_BUCKETS,
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)
