"""ModelService: translate gRPC calls into `Request`s and pipeline results into messages.

Nothing model-facing happens here; that is ModelPipeline's job. A client that cancels or
runs past its deadline cancels the handler task, and the pipeline (or closing the
ChunkStream) turns that into a disconnect that stops the model's work. Every RPC runs
through `_serve`, which owns auth, the call record and the error mapping; the RPCs differ
only in how they build the body and how they send the result.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import grpc.aio

from daemon import codec
from daemon.errors import BodyTimeout, TwinserveError
from daemon.grpc import errors, raw
from daemon.grpc.errors import REQUEST_ID_KEY, Refused
from daemon.grpc.messages import Malformed, metadata_headers, parser
from daemon.grpc.session import GrpcChannel, status_for_close
from daemon.model.interrupt import error_instead
from daemon.model.pipeline import ModelPipeline
from daemon.model.signature import SESSION_METHOD
from daemon.model.streams import ChunkStream
from daemon.observe import UNMATCHED, CallObserver
from daemon.request import BodySource, BytesBody, Request, new_request_id
from daemon.websocket import ABNORMAL
from twinserve_wire import service
from twinserve_wire.proto.v1.model_pb2 import (
    InvokeRequest,
    InvokeResponse,
    PredictRequest,
    PredictResponse,
    PredictStreamRequest,
    PredictStreamResponse,
    SessionFrame,
    UploadRequest,
)

log = logging.getLogger("twinserve.grpc")

DEFAULT_ROUTE = "predict"

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
Reply = Callable[[Request, Any], Awaitable[T]]
"""Turns the pipeline's result into the RPC's answer: a message, or None once it wrote a stream."""
Run = Callable[[Request], Awaitable[T]]
"""A whole call: the pipeline's work and the answer sent."""


class ModelServicer:
    """The handlers of twinserve.v1.ModelService, bound to one pipeline."""

    def __init__(self, pipeline: ModelPipeline, observer: CallObserver) -> None:
        self._pipeline = pipeline
        self._body_limits = pipeline.body_limits
        self._observer = observer

    def handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        return {
            service.PREDICT: grpc.unary_unary_rpc_method_handler(
                self.predict,
                request_deserializer=parser(PredictRequest),
                response_serializer=PredictResponse.SerializeToString,
            ),
            service.PREDICT_STREAM: grpc.unary_stream_rpc_method_handler(
                self.predict_stream,
                request_deserializer=parser(PredictStreamRequest),
                response_serializer=PredictStreamResponse.SerializeToString,
            ),
            service.INVOKE: grpc.unary_unary_rpc_method_handler(
                self.invoke,
                request_deserializer=parser(InvokeRequest),
                response_serializer=InvokeResponse.SerializeToString,
            ),
            service.INVOKE_STREAM: grpc.unary_stream_rpc_method_handler(
                self.invoke_stream,
                request_deserializer=parser(InvokeRequest),
                response_serializer=InvokeResponse.SerializeToString,
            ),
            service.UPLOAD: grpc.stream_unary_rpc_method_handler(
                self.upload,
                request_deserializer=parser(UploadRequest),
                response_serializer=InvokeResponse.SerializeToString,
            ),
            service.SESSION: grpc.stream_stream_rpc_method_handler(
                self.session,
                request_deserializer=parser(SessionFrame),
                response_serializer=SessionFrame.SerializeToString,
            ),
        }

    # -- the RPCs ---------------------------------------------------------------------------

    async def predict(self, message: PredictRequest | Malformed,
                      context: Context) -> PredictResponse:
        if isinstance(message, Malformed):
            return await self._refuse(message.error(), context)
        request = self._to_request(context, message.route, BytesBody(message.json))

        async def reply(request: Request, result: Any) -> PredictResponse:
            await _refuse_stream(result, request.route, service.PREDICT_STREAM, service.PREDICT)
            return PredictResponse(json=codec.encode_result(request.route, result))

        return await self._serve(request, context, self._call(reply))

    async def predict_stream(self, message: PredictStreamRequest | Malformed,
                             context: Context) -> None:
        if isinstance(message, Malformed):
            await self._refuse(message.error(), context)
            return
        request = self._to_request(context, message.route, BytesBody(message.json))

        def single(route: str, result: Any) -> PredictStreamResponse:
            return PredictStreamResponse(json=codec.encode_result(route, result))

        await self._serve(request, context,
                          self._call(_stream_reply(context, single, _chunk_message)))

    async def invoke(self, message: InvokeRequest | Malformed, context: Context) -> InvokeResponse:
        if isinstance(message, Malformed):
            return await self._refuse(message.error(), context)
        request = self._to_request(context, message.route, BytesBody(message.data),
                                   message.content_type)

        async def reply(request: Request, result: Any) -> InvokeResponse:
            await _refuse_stream(result, request.route, service.INVOKE_STREAM, service.INVOKE)
            return raw.response_for(request.route, result)

        return await self._serve(request, context, self._call(reply))

    async def invoke_stream(self, message: InvokeRequest | Malformed,
                            context: Context) -> None:
        if isinstance(message, Malformed):
            await self._refuse(message.error(), context)
            return
        request = self._to_request(context, message.route, BytesBody(message.data),
                                   message.content_type)
        await self._serve(request, context,
                          self._call(_stream_reply(context, raw.response_for, raw.chunk_response)))

    async def upload(self, messages: AsyncIterator[UploadRequest | Malformed],
                     context: Context) -> InvokeResponse:
        rest = aiter(messages)
        idle_s = self._body_limits.idle_timeout_s
        try:
            async with asyncio.timeout(idle_s):
                # No message at all is a broken-off upload too: UploadBody finds no `last`.
                first = await anext(rest, None) or UploadRequest()
        except TimeoutError:
            return await self._refuse(BodyTimeout(idle_s), context)
        if isinstance(first, Malformed):
            return await self._refuse(first.error(), context)
        request = self._to_request(context, first.route, raw.UploadBody(first, rest),
                                   first.content_type)

        async def reply(request: Request, result: Any) -> InvokeResponse:
            await _refuse_stream(result, request.route, "", service.UPLOAD)
            return raw.response_for(request.route, result)

        return await self._serve(request, context, self._call(reply))

    async def session(self, messages: AsyncIterator[SessionFrame | Malformed],
                      context: Context) -> None:
        """A session with the model's websocket method; its frames are read and written
        through the context (grpc/session.py), not `messages`."""
        request = self._to_request(context, SESSION_METHOD, BytesBody(b""))

        async def run(request: Request) -> None:
            ws = await self._pipeline.session(request, GrpcChannel(context, request.request_id))
            status = status_for_close(ws.close_code or ABNORMAL)
            if status is not grpc.StatusCode.OK:
                raise Refused(status, ws.close_reason or f"session closed ({ws.close_code})")

        await self._serve(request, context, run)

    # -- shared by every RPC ----------------------------------------------------------------

    def _call(self, reply: Reply[T]) -> Run[T]:
        """A call of the pipeline's route, answered by `reply`."""
        call = self._pipeline.call

        async def run(request: Request) -> T:
            return await reply(request, await call(request.route, request))

        return run

    async def _serve(self, request: Request, context: Context, run: Run[T]) -> T:
        """Run the call and send its answer; every way out is recorded and mapped once."""
        started = time.perf_counter()
        # Aborts stay outside the try: context.abort() raises AbortError, an Exception.
        try:
            answer = await run(request)
        except asyncio.CancelledError:
            # Ended by the server while its answer was being written (time limit, drain, a
            # client that stopped reading): the client is told why, as grpc.aio sends no
            # status for a cancelled handler. Ended by the client: nothing to send.
            error = error_instead(request)
            if error is None:
                self._done(request, started, grpc.StatusCode.CANCELLED)
                raise
            self._done(request, started, errors.code_for(error))
            await errors.abort(context, error, request.request_id)
        except Refused as refused:
            self._done(request, started, refused.code)
            await errors.abort_refused(context, refused, request.request_id)
        except TwinserveError as err:
            self._done(request, started, errors.code_for(err))
            await errors.abort(context, err, request.request_id)
        except Exception:
            self._done(request, started, grpc.StatusCode.INTERNAL)
            await errors.abort_internal(context, request.request_id)
        self._done(request, started, grpc.StatusCode.OK)
        return answer

    async def _refuse(self, error: TwinserveError, context: Context) -> NoReturn:
        """Refuse a call before it has a route: its message does not parse (grpc.aio's own
        answer would be UNKNOWN, with the parser's words), or never came. Counted like any."""
        request = self._to_request(context, UNMATCHED, BytesBody(b""))
        self._done(request, time.perf_counter(), errors.code_for(error))
        await errors.abort(context, error, request.request_id)

    def _done(self, request: Request, started: float, code: grpc.StatusCode) -> None:
        self._observer.finished("grpc", request.route, code.name, started, request.request_id)

    def _to_request(self, context: Context, route: str, body: BodySource,
                    content_type: str | None = None) -> Request:
        """`content_type` None: a JSON RPC; "" on a raw RPC means application/octet-stream."""
        headers = metadata_headers(context.invocation_metadata())
        request_id = headers.get(REQUEST_ID_KEY) or new_request_id()
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        if content_type is None:
            content_type = raw.JSON
        return Request(transport="grpc", route=route or DEFAULT_ROUTE, request_id=request_id,
                       body=body, limits=self._body_limits, headers=headers,
                       content_type=content_type or raw.DEFAULT_CONTENT_TYPE)


async def _refuse_stream(result: Any, route: str, stream_rpc: str, rpc: str) -> None:
    """A unary RPC cannot carry a stream: stop the model's generator and say which RPC can."""
    if isinstance(result, ChunkStream):
        await result.aclose()
        instead = f"call {stream_rpc} instead of {rpc}" if stream_rpc else \
            f"{rpc} answers with one message"
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION, f"{route} streams its output; {instead}")


def _stream_reply(context: Context, single: Callable[[str, Any], Any],
                  per_chunk: Callable[[str, Any], Any]) -> Reply[None]:
    """Write a ChunkStream message by message as the model yields, or a plain result as one."""

    async def reply(request: Request, result: Any) -> None:
        if not isinstance(result, ChunkStream):
            await context.write(single(request.route, result))
            return
        try:
            async for chunk in result:
                try:
                    await context.write(per_chunk(request.route, chunk))
                except grpc.aio.InternalError:
                    # The client can no longer receive (it cancelled while this write waited
                    # on it, or its deadline passed): grpc.aio fails the write instead of
                    # cancelling the task. The call ends as a cancel, not an error of ours.
                    raise asyncio.CancelledError from None
        finally:
            await result.aclose()

    return reply


def _chunk_message(route: str, chunk: Any) -> PredictStreamResponse:
    """Keep the chunk's type: str -> text, bytes -> data, anything else -> JSON."""
    if isinstance(chunk, str):
        return PredictStreamResponse(text=chunk)
    if isinstance(chunk, bytes):
        return PredictStreamResponse(data=chunk)
    return PredictStreamResponse(json=codec.json_chunk(route, chunk))
