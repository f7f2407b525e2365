"""Whether HTTP answers may leave their connection open for another request: the drain says no.

An HTTP/1.1 server cannot close a keep-alive connection without racing a request the client
may be sending on it at that moment; only an answer that says `Connection: close` ends a
connection cleanly, because the client reads it before it would reuse the connection. So
from the first moment of the drain every answer says so (and its connection is closed once
it is written), while connections that stay idle are closed only after the drain's grace,
when load balancers have stopped sending calls here (daemon/http/server.py).
"""

from __future__ import annotations

from aiohttp import web


class KeepAlive:
    """One per HTTP server; `ending` is set once, when the drain begins."""

    def __init__(self) -> None:
        self.ending = False

    def end(self) -> None:
        self.ending = True

    def settle(self, response: web.StreamResponse) -> None:
        """Called before `response` goes out: during the drain it says `Connection: close`.
        (An answer whose headers went out before the drain began keeps its connection; the
        drain closes that connection once it is idle.)"""
        if self.ending and not response.prepared:
            response.force_close()


KEEP_ALIVE = web.AppKey("keep_alive", KeepAlive)
"""The server's KeepAlive, for code that prepares a response itself (streams)."""
