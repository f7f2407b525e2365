"""twinserve: what model code imports."""

from daemon.errors import ClientError as ClientError
from daemon.request import Request as Request

__all__ = ["ClientError", "Request"]
