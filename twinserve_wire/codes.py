"""HTTP-style statuses -> gRPC status codes: one table for the gRPC front end and the clients.

Model code answers with HTTP numbers (`ClientError(status=...)`, fastapi-style exceptions);
the gRPC front end sends the nearest gRPC code, and the HTTP client library reports HTTP
answers under the same code names, so one error reads the same on both transports.

A 4xx without a closer gRPC meaning becomes INVALID_ARGUMENT rather than FAILED_PRECONDITION:
the request as sent cannot be served and resending it unchanged will not help, whereas
FAILED_PRECONDITION says the *system* is in the wrong state (kept for 412 and 428, which
mean exactly that).
"""

from __future__ import annotations

import grpc

_CODE_BY_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    428: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def code_for_status(status: int) -> grpc.StatusCode:
    """The gRPC code nearest to an HTTP status (400-599)."""
    code = _CODE_BY_STATUS.get(status)
    if code is not None:
        return code
    if 400 <= status < 500:
        return grpc.StatusCode.INVALID_ARGUMENT
    if 500 <= status < 600:
        return grpc.StatusCode.INTERNAL
    return grpc.StatusCode.UNKNOWN
