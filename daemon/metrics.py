"""The daemon's Prometheus metrics, in a registry of its own.

A registry per daemon (not prometheus_client's global one) keeps tests that build several
engines in one process from seeing each other's counts. /metrics also exports the global
registry, which holds what model code registers with prometheus_client's defaults.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from daemon.call_stats import CallStats

# Cancel latencies we care about are a few milliseconds; the tail up to a second shows stalls.
_CANCEL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
_TOKEN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
        self.engine_batch_size = Gauge(
            "twinserve_engine_batch_size",
            "Generations in the batch the engine's backend is running now.",
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "twinserve_engine_time_to_first_token_seconds",
            "From a generation's submission to the engine to its first token.",
            buckets=_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.inter_token_latency = Histogram(
            "twinserve_engine_inter_token_seconds",
            "Between consecutive tokens (or deltas) of one generation.",
            buckets=_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.engine_queue_seconds = Histogram(
            "twinserve_engine_queue_seconds",
            "From a generation's submission until the backend takes it into its batch "
            "(engine.max_batch_size reached: it waits).",
            buckets=_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "twinserve_engine_prompt_tokens",
            "Prompt tokens of generations the engine ran (tokens in).",
            registry=self.registry,
        )
        self.completion_tokens = Counter(
            "twinserve_engine_completion_tokens",
            "Completion tokens of finished generations (tokens out, as delivered).",
            registry=self.registry,
        )

        self.calls = CallStats()
        self.registry.register(self.calls)
        self.in_flight = Gauge(
            "twinserve_in_flight",
            "Model calls being handled (queued, running or streaming), both transports.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "twinserve_queue_depth",
            "Model calls waiting for a runtime.predict_concurrency slot.",
            registry=self.registry,
        )
        self.body_memory = Gauge(
            "twinserve_body_memory_bytes",
            "Request-body memory held (raw and parsed) out of runtime.max_body_memory_bytes.",
            registry=self.registry,
        )
        self.cancellations = Counter(
            "twinserve_cancellations",
            "Model calls ended early, by reason: client_disconnect, timeout, drain, or "
            "write_timeout (the client stopped reading its stream).",
            ["reason"],
            registry=self.registry,
        )
        self.sessions = Gauge(
            "twinserve_sessions",
            "Open sessions of the model's websocket method (HTTP WebSocket or gRPC Session).",
            ["transport"],
            registry=self.registry,
        )
        self.sessions_closed = Counter(
            "twinserve_sessions_closed",
            "Sessions ended, by the WebSocket close code (1000 normal, 1001 idle or drain, "
            "1006 client gone, 1011 model error, ...).",
            ["transport", "code"],
            registry=self.registry,
        )
        self.session_frames = Counter(
            "twinserve_session_frames",
            "Frames of sessions, by direction (received from or sent to clients), counted "
            "as each session ends.",
            ["transport", "direction"],
            registry=self.registry,
        )
        self._session_counters: dict[str, SessionCounters] = {}
        self.model_load_seconds = Gauge(
            "twinserve_model_load_seconds",
            "How long the model's construction and load() took.",
            registry=self.registry,
        )

    def session_counters(self, transport: str) -> SessionCounters:
        """One transport's session metrics, with their labels bound once."""
        counters = self._session_counters.get(transport)
        if counters is None:
            counters = self._session_counters[transport] = SessionCounters(self, transport)
        return counters

    def track(self, in_flight: Callable[[], float], queue_depth: Callable[[], float],
              body_memory: Callable[[], float]) -> None:
        """Read the in-flight, queue and body-memory gauges from their owner at scrape time."""
        self.in_flight.set_function(in_flight)
        self.queue_depth.set_function(queue_depth)
        self.body_memory.set_function(body_memory)

    def exposition(self) -> bytes:
        """The Prometheus text format (version 0.0.4): ours, then prometheus_client's global
        registry, where a model's own metrics are (as in Truss) beside the process and
        Python collectors."""
        return generate_latest(self.registry) + generate_latest(REGISTRY)


class SessionCounters:
    """The session metrics of one transport."""

    def __init__(self, metrics: Metrics, transport: str) -> None:
        self._transport = transport
        self._open = metrics.sessions.labels(transport)
        self._closed = metrics.sessions_closed
        self._received = metrics.session_frames.labels(transport, "received")
        self._sent = metrics.session_frames.labels(transport, "sent")

    def opened(self) -> None:
        self._open.inc()

    def closed(self, code: int) -> None:
        self._open.dec()
        self._closed.labels(self._transport, str(code)).inc()

    def frames(self, received: int, sent: int) -> None:
        self._received.inc(received)
        self._sent.inc(sent)
