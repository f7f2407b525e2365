"""The `Request` an HTTP call gives model code."""

from __future__ import annotations

from collections.abc import Mapping

from daemon.http.body import HttpBody
from daemon.request import Request


class HttpRequest(Request):
    """The `Request` of an HTTP call: its path and query string are decoded only when read,
    from the aiohttp request its body holds."""

    _body_source: HttpBody

    @property
    def query(self) -> Mapping[str, str]:
        return self._body_source.request.query

    @property
    def path(self) -> str:
        return self._body_source.request.path
