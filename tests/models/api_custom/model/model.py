"""A custom model that serves some /v1 routes itself, each way a model may answer."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

from daemon import ClientError, Request


class Model:
    def predict(self, model_input: Any) -> Any:
        return model_input

    def chat_completions(self, body: dict[str, Any]) -> Any:
        if body.get("stream"):
            return self._chat_chunks(body)
        return {"id": "chat-1", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "custom answer"}}]}

    def _chat_chunks(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for word in ("custom", " answer"):
            yield {"id": "chat-1", "object": "chat.completion.chunk", "model": body.get("model"),
                   "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
        if body.get("unencodable"):
            yield {"not", "json"}  # type: ignore[misc]  # a set: no JSON for it
        raise_at_end = body.get("fail")
        if raise_at_end:
            raise RuntimeError("lost the thread")

    async def completions(self, body: dict[str, Any], request: Request) -> AsyncIterator[str]:
        yield f"data: {{\"via\": \"{request.transport}\"}}\n\n"
        yield "data: [DONE]\n\n"

    async def messages(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        yield {"type": "message_start", "message": {"id": "msg-1"}}
        yield {"type": "message_stop"}

    def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("input"):
            raise ClientError("'input' must not be empty", status=400)
        return {"object": "list", "data": [{"object": "embedding", "index": 0,
                                            "embedding": [0.0, 1.0]}]}
