"""grpc.health.v1 answered from the pipeline itself, so probes see what HTTP /health/ready sees.

The stock HealthServicer holds statuses someone must push; ours asks the pipeline on every
Check (loading, failed, or `is_healthy()` False -> NOT_SERVING), and Watch polls it, sending
a message whenever the status changes.
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
        while True:
            status = (await self._status() if request.service in self._services
                      else SERVICE_UNKNOWN)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            await asyncio.sleep(self._watch_interval)
