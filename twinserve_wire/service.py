"""The ModelService's name and method paths, read from the generated descriptor.

The .proto stays the one source of truth: the server's handlers and the client library's
callables are both bound to these paths, instead of to grpcio-tools' untyped `_pb2_grpc`
module.
"""

from __future__ import annotations

from twinserve_wire.proto.v1 import model_pb2

_SERVICE = model_pb2.DESCRIPTOR.services_by_name["ModelService"]

SERVICE_NAME: str = _SERVICE.full_name
"""`twinserve.v1.ModelService`, as health checks and reflection name it."""

PREDICT = "Predict"
PREDICT_STREAM = "PredictStream"
INVOKE = "Invoke"
INVOKE_STREAM = "InvokeStream"
UPLOAD = "Upload"
SESSION = "Session"

for _method in (PREDICT, PREDICT_STREAM, INVOKE, INVOKE_STREAM, UPLOAD, SESSION):
    if _method not in _SERVICE.methods_by_name:  # pragma: no cover - caught by tests at once
        raise RuntimeError(f"{SERVICE_NAME} has no method {_method}; regenerate the protos")


def method_path(method: str) -> str:
    """The HTTP/2 path a client calls, e.g. `/twinserve.v1.ModelService/Predict`."""
    return f"/{SERVICE_NAME}/{method}"
