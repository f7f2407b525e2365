"""predict takes only the request: the body reaches it unread and unparsed."""

from typing import Any

from daemon import Request


class Model:
    async def predict(self, request: Request) -> dict[str, Any]:
        body = await request.body()
        return {
            "transport": request.transport,
            "length": len(body),
            "prefix": body[:16].decode(errors="replace"),
            "header": request.headers.get("x-test-header"),
            "query": dict(request.query),
        }
