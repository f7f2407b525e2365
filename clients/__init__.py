"""twinserve's Python client library: the same calls over HTTP or gRPC, blocking or asyncio.

    from clients import GrpcClient, HttpClient, TwinserveError

    with GrpcClient("127.0.0.1:50051", timeout=10) as client:
        client.predict({"x": 1})
        for chunk in client.predict_stream({"x": 1}):
            ...
        answer = client.predict_raw(b"...", content_type="application/x-protobuf")
        answer.data, answer.content_type
        client.chat_completions({"messages": [...]})  # the /v1 APIs: also completions,
        for event in client.messages_stream({...}):   # embeddings, messages, responses
            ...
        with client.websocket() as session:           # a model's websocket method
            session.send_text("hi")
            session.receive_text()
"""

# `import X as X` marks each name as a deliberate re-export for type checkers.
from clients._errors import TwinserveError as TwinserveError
from clients._grpc import AsyncGrpcClient as AsyncGrpcClient
from clients._grpc import GrpcClient as GrpcClient
from clients._http import AsyncHttpClient as AsyncHttpClient
from clients._http import HttpClient as HttpClient
from clients._raw import RawResponse as RawResponse
from clients._session import AsyncSession as AsyncSession
from clients._session import Session as Session
from clients._session import SessionClosed as SessionClosed

__all__ = [
    "AsyncGrpcClient",
    "AsyncHttpClient",
    "AsyncSession",
    "GrpcClient",
    "HttpClient",
    "RawResponse",
    "Session",
    "SessionClosed",
    "TwinserveError",
]
