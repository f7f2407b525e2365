"""Answers in whatever form the input asks: a value, bytes, or a response object."""

from typing import Any

from daemon import Response


class StarletteLikeResponse:
    """Shaped like starlette.responses.Response, which Truss models return."""

    def __init__(self, content: bytes, status_code: int, media_type: str) -> None:
        self.body = content
        self.status_code = status_code
        self.media_type = media_type
        self.headers = {"content-type": media_type, "content-length": str(len(content)),
                        "x-from": "starlette"}


class Model:
    def predict(self, model_input: Any) -> Any:
        kind = model_input.get("as") if isinstance(model_input, dict) else None
        if kind == "bytes":
            return b"\x00\x01raw"
        if kind == "response":
            return Response(b"a,b\n1,2\n", status=201, content_type="text/csv",
                            headers={"X-Extra": "yes"})
        if kind == "refusal":
            return Response(b"no such thing\n", status=404, content_type="text/plain")
        if kind == "starlette":
            return StarletteLikeResponse(b"<p>hi</p>", 202, "text/html")
        return {"got": model_input}
