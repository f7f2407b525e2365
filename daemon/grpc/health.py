"""grpc.health.v1 answered from the pipeline itself, so probes see what HTTP /health/ready sees.

The stock HealthServicer holds statuses someone must push; ours asks the pipeline on every
Check (loading, failed, draining, or `is_healthy()` False -> NOT_SERVING), and Watch polls
it, sending a message whenever the status changes. The server wakes the Watch streams when it
knows readiness changed (the model loaded, the drain began), so a client that balances on
them learns at once, and ends them when it shuts down, so they hold no drain up.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from daemon.model.pipeline import ModelPipeline

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

Context = grpc.aio.ServicerContext[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


class HealthServicer(health_pb2_grpc.HealthServicer):
    """Health of the whole server ("") and of each named service; all share the model's."""

    def __init__(self, pipeline: ModelPipeline, services: tuple[str, ...],
                 watch_interval: float = 0.5) -> None:
        self._pipeline = pipeline
        self._services = frozenset(("", *services))
        self._watch_interval = watch_interval
        self._changed = asyncio.Event()  # replaced each time it is set
        self._closed = False

    def changed(self) -> None:
        """Readiness may have changed: every Watch stream checks now, not at its next poll."""
        self._changed.set()
        self._changed = asyncio.Event()

    def close(self) -> None:
        """End every Watch stream (status OK): the server is shutting down."""
        self._closed = True
        self.changed()

    async def _status(self) -> int:
        return SERVING if await self._pipeline.not_ready_reason() is None else NOT_SERVING

    async def Check(self, request: health_pb2.HealthCheckRequest,  # noqa: N802 - gRPC name
                    context: Context) -> health_pb2.HealthCheckResponse:
        if request.service not in self._services:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=await self._status())

    async def Watch(self, request: health_pb2.HealthCheckRequest,  # noqa: N802 - gRPC name
                    context: Context) -> None:
        # Per the protocol, an unknown service is reported, and the call stays open.
        last: Any = None
        while not self._closed:
            changed = self._changed
            status = (await self._status() if request.service in self._services
                      else SERVICE_UNKNOWN)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            try:
                await asyncio.wait_for(changed.wait(), self._watch_interval)
            except asyncio.TimeoutError:
                pass
