"""ModelService: translate gRPC calls into `Request`s and pipeline results into messages.

Nothing model-facing happens here; that is ModelPipeline's job. A client that cancels or
runs past its deadline cancels the handler task, and the pipeline (or closing the
ChunkStream) turns that into a disconnect that stops the model's work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
import grpc.aio

from daemon import codec
from daemon.auth import AuthCheck
from daemon.errors import ModelError, TwinserveError
from daemon.grpc import errors, service
from daemon.grpc.errors import REQUEST_ID_KEY
from daemon.grpc.proto.v1.model_pb2 import (
    PredictRequest,
    PredictResponse,
    PredictStreamRequest,
    PredictStreamResponse,
)
from daemon.model.pipeline import ChunkStream, ModelPipeline
from daemon.observe import CallObserver
from daemon.request import BytesBody, Headers, Request, new_request_id

log = logging.getLogger("twinserve.grpc")

DEFAULT_ROUTE = "predict"

PredictContext = grpc.aio.ServicerContext[PredictRequest, PredictResponse]
StreamContext = grpc.aio.ServicerContext[PredictStreamRequest, PredictStreamResponse]


class ModelServicer:
    """The handlers of twinserve.v1.ModelService, bound to one pipeline."""

    def __init__(self, pipeline: ModelPipeline, max_body_bytes: int, observer: CallObserver,
                 auth: AuthCheck) -> None:
        self._pipeline = pipeline
        self._max_body_bytes = max_body_bytes
        self._observer = observer
        self._auth = auth

    def handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        return {
            service.PREDICT: grpc.unary_unary_rpc_method_handler(
                self.predict,
                request_deserializer=PredictRequest.FromString,
                response_serializer=PredictResponse.SerializeToString,
            ),
            service.PREDICT_STREAM: grpc.unary_stream_rpc_method_handler(
                self.predict_stream,
                request_deserializer=PredictStreamRequest.FromString,
                response_serializer=PredictStreamResponse.SerializeToString,
            ),
        }

    async def predict(self, message: PredictRequest, context: PredictContext) -> PredictResponse:
        started = time.perf_counter()
        request = self._to_request(message, context)
        # Aborts stay outside the try: context.abort() raises AbortError, an Exception.
        try:
            self._auth(request.headers)
            result = await self._pipeline.call(request.route, request)
            if isinstance(result, ChunkStream):
                await result.aclose()
                body = None
            else:
                body = codec.encode_result(request.route, result)
        except asyncio.CancelledError:
            self._done(request, started, grpc.StatusCode.CANCELLED)
            raise
        except TwinserveError as err:
            self._done(request, started, errors.code_for(err))
            await errors.abort(context, err, request.request_id)
        except Exception:
            self._done(request, started, grpc.StatusCode.INTERNAL)
            await errors.abort_internal(context, request.request_id)
        if body is None:
            self._done(request, started, grpc.StatusCode.FAILED_PRECONDITION)
            await errors.abort_needs_stream(context, request.route, request.request_id)
        self._done(request, started, grpc.StatusCode.OK)
        return PredictResponse(json=body)

    async def predict_stream(self, message: PredictStreamRequest, context: StreamContext) -> None:
        started = time.perf_counter()
        request = self._to_request(message, context)
        try:
            self._auth(request.headers)
            result = await self._pipeline.call(request.route, request)
            if not isinstance(result, ChunkStream):
                await context.write(
                    PredictStreamResponse(json=codec.encode_result(request.route, result)))
            else:
                try:
                    async for chunk in result:
                        await context.write(_chunk_message(request.route, chunk))
                finally:
                    await result.aclose()
        except asyncio.CancelledError:
            self._done(request, started, grpc.StatusCode.CANCELLED)
            raise
        except TwinserveError as err:
            self._done(request, started, errors.code_for(err))
            await errors.abort(context, err, request.request_id)
        except Exception:
            self._done(request, started, grpc.StatusCode.INTERNAL)
            await errors.abort_internal(context, request.request_id)
        self._done(request, started, grpc.StatusCode.OK)

    def _done(self, request: Request, started: float, code: grpc.StatusCode) -> None:
        self._observer.finished("grpc", request.route, code.name, started, request.request_id)

    def _to_request(self, message: PredictRequest | PredictStreamRequest,
                    context: grpc.aio.ServicerContext[Any, Any]) -> Request:
        # Binary (`-bin`) metadata arrives as bytes; model code sees text headers only.
        headers = Headers({key: value for key, value in context.invocation_metadata() or ()
                           if isinstance(value, str)})
        request_id = headers.get(REQUEST_ID_KEY) or new_request_id()
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        return Request(
            transport="grpc",
            route=message.route or DEFAULT_ROUTE,
            body=BytesBody(message.json),
            max_body_bytes=self._max_body_bytes,
            request_id=request_id,
            headers=headers,
        )


def _chunk_message(route: str, chunk: Any) -> PredictStreamResponse:
    """Keep the chunk's type: str -> text, bytes -> data, anything else -> JSON."""
    if isinstance(chunk, str):
        return PredictStreamResponse(text=chunk)
    if isinstance(chunk, bytes):
        return PredictStreamResponse(data=chunk)
    try:
        return PredictStreamResponse(json=codec.dumps(chunk))
    except TypeError as exc:
        raise ModelError(f"{route} yielded a chunk that cannot be sent as JSON: {exc}") from exc
