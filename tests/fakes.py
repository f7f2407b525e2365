"""Hand-written test doubles that implement the real interfaces (never MagicMock)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any


from daemon.engine.cancel import CancelSignal
from daemon.engine.generation import Delta, GenerationRequest
from daemon.errors import InvalidInput

# -- an engine backend --------------------------------------------------------------------


class ScriptedBackend:
    """A Backend that yields the given pieces, one per `step` (an asyncio.Event per piece
    when `gated`), and records what it was asked and whether it saw the cancel."""

    name = "scripted"

    def __init__(self, pieces: Sequence[str] = ("a", "b", "c"), *, max_batch_size: int = 4,
                 gated: bool = False, fail_after: int | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.pieces = list(pieces)
        self.gated = gated
        self.fail_after = fail_after
        self.requests: list[GenerationRequest] = []
        self.running = 0
        self.max_running = 0
        self.unavailable_reason: str | None = None  # as a backend recovering from a failure
        self.saw_cancel = 0
        self.started = False
        self.closed = False
        self.step = asyncio.Event()

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        if request.prompt == "too long":
            raise InvalidInput("prompt: longer than this backend's context", "prompt")
        return request

    def batch_size(self) -> None:
        return None

    def unavailable(self) -> str | None:
        return self.unavailable_reason

    async def generate(self, request: GenerationRequest,
                       cancel: CancelSignal) -> AsyncIterator[Delta]:
        self.requests.append(request)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            yield Delta(prompt_tokens=3)
            for i, piece in enumerate(self.pieces[: request.sampling.max_tokens]):
                if self.fail_after is not None and i == self.fail_after:
                    raise RuntimeError("backend exploded")
                if self.gated:
                    self.step.clear()
                    step = asyncio.ensure_future(self.step.wait())
                    stopped = asyncio.ensure_future(cancel.sleep(float("inf")))
                    await asyncio.wait({step, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    step.cancel()
                    stopped.cancel()
                if cancel.is_set():
                    self.saw_cancel += 1
                    yield Delta(finish_reason="cancelled")
                    return
                yield Delta(text=piece, token_ids=(i,))
            finished = len(self.pieces) <= request.sampling.max_tokens
            yield Delta(finish_reason="stop" if finished else "length")
        finally:
            self.running -= 1


# -- TensorRT-LLM's LLM API, as the trtllm adapter uses it ---------------------------------


@dataclasses.dataclass
class FakeTrtSamplingParams:
    """tensorrt_llm.SamplingParams' fields that matter here, with its defaults."""

    max_tokens: int = 32
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    n: int = 1
    ignore_eos: bool = False
    min_tokens: int | None = None
    repetition_penalty: float | None = None
    stop_token_ids: list[int] | None = None
    add_special_tokens: bool = True


@dataclasses.dataclass
class FakeCompletionOutput:
    index: int = 0
    text: str = ""
    token_ids: list[int] = dataclasses.field(default_factory=list)
    text_diff: str = ""
    token_ids_diff: list[int] = dataclasses.field(default_factory=list)
    finish_reason: str | None = None


class FakeRequestOutput:
    """Like tensorrt_llm.RequestOutput: one object, updated in place as tokens arrive.

    Iterate it with `async for`. Items carry `tokens_per_item` tokens in turn (0 or
    several, as the real executor's may). `abort()` raises once the request has finished,
    as the executor's does; before that the stream ends with one final item whose
    finish_reason is 'cancelled' and which carries one more token. `ignore_abort`: the
    request sits in the executor's waiting queue, and an abort ends it with no final item.
    """

    def __init__(self, prompt: str | list[int], params: FakeTrtSamplingParams,
                 words: Sequence[str],
                 token_delay: float, *, ignore_abort: bool = False,
                 tokens_per_item: Sequence[int] = (1,)) -> None:
        self.prompt = prompt
        self.prompt_token_ids = prompt if isinstance(prompt, list) else \
            list(range(len(prompt.split())))
        self.outputs = [FakeCompletionOutput()]
        self.finished = False
        self.aborted = 0
        self.late_aborts = 0
        self._params = params
        self._words = list(words)
        self._delay = token_delay
        self._ignore_abort = ignore_abort
        self._tokens_per_item = list(tokens_per_item)
        self._abort_event = asyncio.Event()

    def abort(self) -> None:
        if self.finished:
            self.late_aborts += 1
            raise RuntimeError("abort() on a finished request")
        self.aborted += 1
        if not self._ignore_abort:
            self._abort_event.set()

    def __aiter__(self) -> AsyncIterator[FakeRequestOutput]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[FakeRequestOutput]:
        out = self.outputs[0]
        item = 0
        while len(out.token_ids) < self._params.max_tokens:
            try:
                await asyncio.wait_for(self._abort_event.wait(), self._delay)
            except asyncio.TimeoutError:
                pass
            if self._abort_event.is_set():
                self._add_tokens(out, 1)
                out.finish_reason = "cancelled"
                self.finished = True
                yield self
                return
            if self._ignore_abort and self.aborted:
                await asyncio.sleep(3600)  # waiting in the queue: no final item, ever
            count = self._tokens_per_item[item % len(self._tokens_per_item)]
            item += 1
            self._add_tokens(out, min(count, self._params.max_tokens - len(out.token_ids)))
            done = len(out.token_ids) == self._params.max_tokens
            out.finish_reason = "length" if done else None
            self.finished = done
            yield self

    def _add_tokens(self, out: FakeCompletionOutput, count: int) -> None:
        ids = list(range(len(out.token_ids), len(out.token_ids) + count))
        words = [self._words[i % len(self._words)] for i in ids]
        out.text_diff = "".join(w if i == 0 else " " + w for i, w in zip(ids, words))
        out.token_ids_diff = ids
        out.text += out.text_diff
        out.token_ids.extend(ids)


class FakeTransformersTokenizer:
    """tensorrt_llm's TransformersTokenizer: the Hugging Face tokenizer, as `.tokenizer`."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer


class FakeLLM:
    """tensorrt_llm.LLM: generate_async is a plain call that must run on the loop thread."""

    def __init__(self, words: Sequence[str] = ("tok",), token_delay: float = 0.001,
                 *, ignore_abort: bool = False, tokens_per_item: Sequence[int] = (1,),
                 tokenizer: Any = None) -> None:
        self.tokenizer = FakeTransformersTokenizer(tokenizer)
        self.calls: list[tuple[str | list[int], FakeTrtSamplingParams]] = []
        self.outputs: list[FakeRequestOutput] = []
        self.shut_down = False
        self._words = words
        self._delay = token_delay
        self._ignore_abort = ignore_abort
        self._tokens_per_item = tokens_per_item

    def generate_async(self, prompt: str | list[int], sampling_params: FakeTrtSamplingParams,
                       streaming: bool = False) -> FakeRequestOutput:
        asyncio.get_running_loop()  # raises off the loop thread, as the real one misbehaves
        assert streaming
        self.calls.append((prompt, sampling_params))
        output = FakeRequestOutput(prompt, sampling_params, self._words, self._delay,
                                   ignore_abort=self._ignore_abort,
                                   tokens_per_item=self._tokens_per_item)
        self.outputs.append(output)
        return output

    def shutdown(self) -> None:
        self.shut_down = True


def trt_request_output_fields() -> tuple[str, ...]:
    """The RequestOutput attributes the adapter reads (checked against the real class)."""
    return ("outputs", "prompt_token_ids", "abort", "finished")


@dataclasses.dataclass
class FakeVllmSamplingParams:
    """vllm.SamplingParams' fields that the adapter sets (it sets every one)."""

    n: int
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int | None
    ignore_eos: bool
    min_tokens: int
    repetition_penalty: float
    stop_token_ids: list[int]
    output_kind: str


@dataclasses.dataclass
class FakeVllmOutput:
    """A RequestOutput under output_kind DELTA: what is new in `outputs[0]`."""

    request_id: str
    prompt_token_ids: list[int] | None
    outputs: list[FakeCompletionOutput]
    finished: bool


@dataclasses.dataclass
class FakeModelConfig:
    max_model_len: int


class FakeAsyncLLM:
    """vllm's v1 AsyncLLM: `generate()` an async generator of delta outputs, one token each
    `token_delay` s; `abort(id)` ends a running request at its next step with one last
    output whose finish_reason is 'abort'; closing the generator aborts it too. `running`
    holds the ids of requests not finished, as the engine's scheduler would."""

    def __init__(self, tokenizer: Any, *, max_model_len: int = 2048,
                 words: Sequence[str] = ("tok",), token_delay: float = 0.001) -> None:
        self.tokenizer = tokenizer
        self.model_config = FakeModelConfig(max_model_len)
        self.calls: list[tuple[Any, FakeVllmSamplingParams, str]] = []
        self.running: set[str] = set()
        self.aborted: list[str] = []
        self.shut_down = False
        self._words = words
        self._delay = token_delay
        self._abort_events: dict[str, asyncio.Event] = {}

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompt: Any, params: FakeVllmSamplingParams,
                 request_id: str) -> AsyncIterator[FakeVllmOutput]:
        if request_id in self.running:
            raise ValueError(f"request id {request_id} already running")
        self.calls.append((prompt, params, request_id))
        return self._stream(prompt["prompt_token_ids"], params, request_id)

    async def abort(self, request_ids: str | list[str]) -> None:
        for request_id in [request_ids] if isinstance(request_ids, str) else request_ids:
            if request_id in self.running:
                self.aborted.append(request_id)
                self._abort_events[request_id].set()

    async def _stream(self, prompt_ids: list[int], params: FakeVllmSamplingParams,
                      request_id: str) -> AsyncIterator[FakeVllmOutput]:
        self.running.add(request_id)
        aborted = self._abort_events[request_id] = asyncio.Event()
        made = 0
        try:
            while True:
                try:
                    await asyncio.wait_for(aborted.wait(), self._delay)
                except asyncio.TimeoutError:
                    pass
                if aborted.is_set():
                    self.running.discard(request_id)  # finished before its last output
                    yield FakeVllmOutput(request_id, None, [FakeCompletionOutput(
                        finish_reason="abort")], True)
                    return
                word = self._words[made % len(self._words)]
                made += 1
                done = made == params.max_tokens
                if done:
                    self.running.discard(request_id)
                yield FakeVllmOutput(
                    request_id, prompt_ids if made == 1 else None,
                    [FakeCompletionOutput(text=word if made == 1 else " " + word,
                                          token_ids=[made], finish_reason="length" if done
                                          else None)], done)
                if done:
                    return
        finally:  # finished, aborted, or the generator closed: the scheduler drops it
            if request_id in self.running and not aborted.is_set() and made < params.max_tokens:
                self.aborted.append(request_id)
            self.running.discard(request_id)
            del self._abort_events[request_id]

    def shutdown(self) -> None:
        self.shut_down = True
