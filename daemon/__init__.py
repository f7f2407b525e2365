"""twinserve: what model code imports."""

from daemon.errors import ClientError as ClientError
from daemon.request import Request as Request
from daemon.request import Response as Response

__all__ = ["ClientError", "Request", "Response"]
