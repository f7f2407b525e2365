"""gRPC clients for twinserve.v1.ModelService, blocking and asyncio."""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any

import grpc
import grpc.aio

from clients._api import ApiCalls, AsyncApiCalls
from clients._errors import TwinserveError
from clients._options import DEFAULT_ROUTE, CallOptions, decode_json, encode_json
from clients._raw import DEFAULT_CONTENT_TYPE, AsyncRawBody, RawBody, RawResponse
from clients._session import OpeningSession, Session
from clients._session_grpc import AsyncGrpcFrames, GrpcFrames
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

# Responses may be as large as the server sends; grpc's default cap is 4 MiB.
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1)]


def _bind(channel: Any) -> tuple[Any, Any, Any, Any, Any]:
    """Predict, PredictStream, Invoke, Upload and Session on `channel`, sync or asyncio alike
    (both channel kinds make multicallables with the same calls)."""
    return (
        channel.unary_unary(service.method_path(service.PREDICT),
                            request_serializer=PredictRequest.SerializeToString,
                            response_deserializer=PredictResponse.FromString),
        channel.unary_stream(service.method_path(service.PREDICT_STREAM),
                             request_serializer=PredictStreamRequest.SerializeToString,
                             response_deserializer=PredictStreamResponse.FromString),
        channel.unary_unary(service.method_path(service.INVOKE),
                            request_serializer=InvokeRequest.SerializeToString,
                            response_deserializer=InvokeResponse.FromString),
        channel.stream_unary(service.method_path(service.UPLOAD),
                             request_serializer=UploadRequest.SerializeToString,
                             response_deserializer=InvokeResponse.FromString),
        channel.stream_stream(service.method_path(service.SESSION),
                              request_serializer=SessionFrame.SerializeToString,
                              response_deserializer=SessionFrame.FromString),
    )


class GrpcClient(ApiCalls):
    """Blocking client for a twinserve daemon's gRPC port (plaintext, e.g. "host:50051").

    Args:
        timeout: seconds per call (the gRPC deadline); None for no limit.
        api_key: sent as `authorization: Bearer <key>` metadata.
        headers: more metadata for every call (keys are lower-cased).
    """

    def __init__(self, target: str, *, timeout: float | None = None, api_key: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self._options = CallOptions(timeout, api_key, dict(headers or {}))
        self._metadata = self._options.header_items()
        self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        (self._predict, self._predict_stream, self._invoke, self._upload,
         self._session) = _bind(self._channel)

    def predict(self, obj: Any, *, route: str = DEFAULT_ROUTE) -> Any:
        """Call `route` with `obj` as its JSON input; returns the decoded JSON result."""
        message = PredictRequest(route=route, json=encode_json(obj))
        try:
            response = self._predict(message, timeout=self._options.timeout,
                                     metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        return decode_json(response.json)

    def predict_stream(self, obj: Any, *,
                       route: str = DEFAULT_ROUTE) -> Generator[Any, None, None]:
        """Yield the route's chunks (str, bytes or JSON values) as they arrive.

        Closing the generator early cancels the call, and with it the model's work.
        """
        message = PredictStreamRequest(route=route, json=encode_json(obj))
        call = self._predict_stream(message, timeout=self._options.timeout,
                                    metadata=self._metadata)
        try:
            for chunk in call:
                yield chunk_value(chunk)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            call.cancel()

    def predict_raw(self, data: RawBody, *, content_type: str = DEFAULT_CONTENT_TYPE,
                    route: str = DEFAULT_ROUTE) -> RawResponse:
        """Send `data` as the body with its content type; returns the answer's bytes and type.

        bytes go as one Invoke call; an iterable of bytes as an Upload call, one message per
        piece, sent as the iterable produces them.
        """
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                response: InvokeResponse = self._invoke(
                    InvokeRequest(route=route, content_type=content_type, data=bytes(data)),
                    timeout=self._options.timeout, metadata=self._metadata)
            else:
                response = self._upload(upload_messages(route, content_type, data),
                                        timeout=self._options.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        return RawResponse(response.data, response.content_type)

    def websocket(self) -> Session:
        """Open a session with the model's `websocket` method (the Session RPC), as
        HttpClient.websocket does over a WebSocket; the timeout applies to opening it."""
        return Session(GrpcFrames(self._session, self._metadata, self._options.timeout))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGrpcClient(AsyncApiCalls):
    """asyncio client for a twinserve daemon's gRPC port; options as for GrpcClient.

    Create it inside the event loop that uses it.
    """

    def __init__(self, target: str, *, timeout: float | None = None, api_key: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self._options = CallOptions(timeout, api_key, dict(headers or {}))
        self._metadata = self._options.header_items()
        self._channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        (self._predict, self._predict_stream, self._invoke, self._upload,
         self._session) = _bind(self._channel)

    async def predict(self, obj: Any, *, route: str = DEFAULT_ROUTE) -> Any:
        """Call `route` with `obj` as its JSON input; returns the decoded JSON result."""
        message = PredictRequest(route=route, json=encode_json(obj))
        try:
            response: PredictResponse = await self._predict(
                message, timeout=self._options.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        return decode_json(response.json)

    async def predict_stream(self, obj: Any, *,
                             route: str = DEFAULT_ROUTE) -> AsyncGenerator[Any, None]:
        """Yield the route's chunks as they arrive; `aclose()` early cancels the call."""
        message = PredictStreamRequest(route=route, json=encode_json(obj))
        call = self._predict_stream(message, timeout=self._options.timeout,
                                    metadata=self._metadata)
        try:
            async for chunk in call:
                yield chunk_value(chunk)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            call.cancel()

    async def predict_raw(self, data: AsyncRawBody, *,
                          content_type: str = DEFAULT_CONTENT_TYPE,
                          route: str = DEFAULT_ROUTE) -> RawResponse:
        """As GrpcClient.predict_raw; the pieces may also come from an async iterable."""
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                response: InvokeResponse = await self._invoke(
                    InvokeRequest(route=route, content_type=content_type, data=bytes(data)),
                    timeout=self._options.timeout, metadata=self._metadata)
            else:
                response = await self._upload(
                    async_upload_messages(route, content_type, data),
                    timeout=self._options.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc
        return RawResponse(response.data, response.content_type)

    def websocket(self) -> OpeningSession:
        """As GrpcClient.websocket: `async with client.websocket() as session:`, or await it."""
        return OpeningSession(lambda: AsyncGrpcFrames.open(self._session, self._metadata,
                                                           self._options.timeout))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncGrpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def upload_messages(route: str, content_type: str,
                    pieces: Iterable[bytes]) -> Iterator[UploadRequest]:
    """One message per piece; the first names the call, a final one marks the end."""
    framer = _UploadFramer(route, content_type)
    for piece in pieces:
        yield framer.piece(piece)
    yield framer.end()


async def async_upload_messages(route: str, content_type: str,
                                pieces: Iterable[bytes] | AsyncIterable[bytes],
                                ) -> AsyncIterator[UploadRequest]:
    if not isinstance(pieces, AsyncIterable):
        for message in upload_messages(route, content_type, pieces):
            yield message
        return
    framer = _UploadFramer(route, content_type)
    async for piece in pieces:
        yield framer.piece(piece)
    yield framer.end()


class _UploadFramer:
    """UploadRequest framing (proto/twinserve/v1/model.proto): route and content type on the
    first message, `last` on the final one, which the server requires to accept the body."""

    def __init__(self, route: str, content_type: str) -> None:
        self._head: UploadRequest | None = UploadRequest(route=route, content_type=content_type)

    def piece(self, data: bytes) -> UploadRequest:
        message = self._take_head()
        message.data = bytes(data)
        return message

    def end(self) -> UploadRequest:
        message = self._take_head()
        message.last = True
        return message

    def _take_head(self) -> UploadRequest:
        head, self._head = self._head, None
        return head if head is not None else UploadRequest()


def chunk_value(chunk: PredictStreamResponse) -> Any:
    """A stream message back into what the model yielded."""
    kind = chunk.WhichOneof("chunk")
    if kind == "text":
        return chunk.text
    if kind == "data":
        return chunk.data
    if kind == "json":
        return decode_json(chunk.json)
    raise TwinserveError("INTERNAL", "the server sent an empty stream message")


def error_from_rpc(exc: grpc.RpcError) -> TwinserveError:
    if not isinstance(exc, (grpc.Call, grpc.aio.AioRpcError)):
        return TwinserveError("UNKNOWN", str(exc))
    request_id = None
    for key, value in exc.trailing_metadata() or ():
        if key == "x-request-id" and isinstance(value, str):
            request_id = value
    return TwinserveError(exc.code().name, exc.details() or "", request_id)
