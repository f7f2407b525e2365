"""twinserve: what model code imports."""

from daemon.errors import ClientError as ClientError
from daemon.request import Request as Request
from daemon.request import Response as Response
from daemon.websocket import WebSocket as WebSocket
from daemon.websocket import WebSocketDisconnect as WebSocketDisconnect

__all__ = ["ClientError", "Request", "Response", "WebSocket", "WebSocketDisconnect"]
