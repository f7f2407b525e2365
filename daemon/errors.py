"""The one exception hierarchy that model code, the pipeline and the engine raise.

These exceptions know nothing about HTTP or gRPC; each transport maps them once
(`daemon/http/errors.py`, `daemon/grpc/errors.py`).

    TwinserveError                 base of everything below
    ├── ClientError                the caller's fault; model code raises it with its own status
    │   ├── InvalidInput           malformed body, bad parameters
    │   ├── PayloadTooLarge        body over runtime.max_request_bytes
    │   ├── BodyTimeout            body stalled or too slow (runtime.body_*timeout_s)
    │   ├── NotFound               no such route, or the model lacks the method
    │   └── Unauthenticated        missing or wrong API key
    ├── Overloaded                 admission refused; carries retry_after seconds
    ├── NotReady                   model still loading, unhealthy, or draining
    ├── DeadlineExceeded           the request ran past its time budget
    ├── ModelError                 model code raised (or returned something unusable)
    └── ModelDefinitionError       model.py / config.yaml break the contract (load time)
        └── ConfigError            config.yaml or a flag is invalid; names the key
"""

from __future__ import annotations


class TwinserveError(Exception):
    """Base class: every error a client can see derives from it."""

    kind = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(TwinserveError):
    """The request cannot be served as sent.

    Model code raises this to answer with its own status (an HTTP-style number,
    400-499, which the gRPC front end maps to the nearest status code).
    """

    kind = "invalid_request_error"

    def __init__(self, message: str, status: int = 400) -> None:
        if not 400 <= status <= 499:
            raise ValueError(f"ClientError status must be 400-499, got {status}")
        super().__init__(message)
        self.status = status


class InvalidInput(ClientError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message, 400)
        self.param = param  # the offending field, when there is one


class PayloadTooLarge(ClientError):
    kind = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds runtime.max_request_bytes ({limit} bytes)", 413)
        self.limit = limit


class BodyTimeout(ClientError):
    """The request body stalled for `idle_s` (runtime.body_idle_timeout_s), or, with None,
    took longer than runtime.body_timeout_s in all."""

    kind = "timeout_error"

    def __init__(self, idle_s: float | None) -> None:
        super().__init__(
            "the request body took too long to arrive (runtime.body_timeout_s)" if idle_s is None
            else f"the request body stalled: nothing arrived for {idle_s:g}s "
                 "(runtime.body_idle_timeout_s)", 408)


class NotFound(ClientError):
    kind = "not_found_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class Unauthenticated(ClientError):
    kind = "authentication_error"

    def __init__(self, message: str = "missing or invalid API key") -> None:
        super().__init__(message, 401)


class Overloaded(TwinserveError):
    kind = "overloaded_error"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(TwinserveError):
    kind = "unavailable_error"


class DeadlineExceeded(TwinserveError):
    kind = "timeout_error"


class ModelError(TwinserveError):
    """Model code failed. The message is safe to show; the traceback stays in the log."""

    kind = "model_error"

    @classmethod
    def unexpected(cls, what: str) -> ModelError:
        """`what` raised an exception nobody meant for the client: its text may hold
        anything (a path, a connection string with its password), so the client gets only
        this, and the request id the error carries finds the traceback in the log."""
        return cls(f"{what} failed with an unexpected error; the server log has the details "
                   "under this request's id")


class ModelDefinitionError(TwinserveError):
    kind = "model_definition_error"


class ConfigError(ModelDefinitionError):
    kind = "config_error"
