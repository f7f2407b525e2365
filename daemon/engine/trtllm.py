"""Backend `trtllm`: TensorRT-LLM's LLM API (1.x), on NVIDIA GPUs.

Facts this adapter relies on (and tests/fakes.py reproduces): `generate_async(prompt,
sampling_params, streaming=True)` is a plain call that must be made on the event-loop
thread and returns a RequestOutput used with `async for`; every item is that same object,
updated in place, with `outputs[0].text_diff`, `.token_ids_diff` and `.finish_reason`, and
an item may carry 0 or several tokens; `abort()` is called only while the request runs
(`finished` false, as trtllm-serve guards it), after which the stream ends with one item
whose finish_reason is 'cancelled' and which may still carry tokens, except for a request
aborted in the executor's waiting queue, which yields nothing more (a watchdog ends it);
a prompt may be text or a list of token ids, which is not encoded again: chats go as ids,
with their contents tokenized as text; `LLM.tokenizer` wraps the Hugging Face tokenizer as
its `.tokenizer`.
SamplingParams' own defaults (max_tokens=32, greedy) are never relied on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from daemon.engine.cancel import CancelSignal
from daemon.engine.chat_prompt import chat_token_ids
from daemon.engine.generation import Delta, FinishReason, GenerationRequest, output_deltas

log = logging.getLogger("twinserve.engine.trtllm")

# TensorRT-LLM's CompletionOutput.finish_reason -> ours (OpenAI's, plus "cancelled").
# 'timeout' is its own per-request time budget running out: the output was cut short, as
# with "length".
FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "timeout": "length",
    "cancelled": "cancelled",
}


class TrtllmBackend:
    name = "trtllm"

    def __init__(self, llm_factory: Callable[[], Any], sampling_params_type: Callable[..., Any],
                 *, max_batch_size: int = 256, abort_timeout_s: float = 5.0) -> None:
        self.max_batch_size = max_batch_size
        self._llm_factory = llm_factory
        self._sampling_params_type = sampling_params_type
        self._abort_timeout = abort_timeout_s
        self.llm: Any = None

    @classmethod
    def from_model(cls, model: str, *, max_batch_size: int = 256,
                   abort_timeout_s: float = 5.0) -> TrtllmBackend:
        """The real package; imported here so the daemon starts without it elsewhere."""
        try:
            import tensorrt_llm
        except (ImportError, OSError, RuntimeError) as exc:  # a missing libcuda is OSError
            from daemon.errors import ModelDefinitionError

            raise ModelDefinitionError(
                f"engine.backend: trtllm needs the tensorrt_llm package (NVIDIA GPU, "
                f"Python 3.12): {exc}") from exc
        return cls(lambda: tensorrt_llm.LLM(model=model), tensorrt_llm.SamplingParams,
                   max_batch_size=max_batch_size, abort_timeout_s=abort_timeout_s)

    async def start(self) -> None:
        self.llm = await asyncio.to_thread(self._llm_factory)

    async def close(self) -> None:
        llm, self.llm = self.llm, None
        shutdown = getattr(llm, "shutdown", None)
        if callable(shutdown):
            await asyncio.to_thread(shutdown)

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        return request  # TensorRT-LLM checks lengths against its engine itself

    def batch_size(self) -> None:
        return None  # the generations the core runs (the executor's own batch is not exposed)

    def unavailable(self) -> str | None:
        return None

    def sampling_params(self, request: GenerationRequest) -> Any:
        sampling = request.sampling
        kwargs: dict[str, Any] = {"max_tokens": sampling.max_tokens, "n": 1}
        if not sampling.greedy:
            # Unset temperature/top_p/top_k means greedy to TensorRT-LLM, so sampling is
            # asked for by setting them; temperature 0 leaves them unset.
            kwargs["temperature"] = sampling.temperature
            kwargs["top_p"] = sampling.top_p
            if sampling.top_k:
                kwargs["top_k"] = sampling.top_k
        if sampling.seed is not None:
            kwargs["seed"] = sampling.seed
        # vLLM's extensions, under the same names in TensorRT-LLM's SamplingParams.
        if sampling.ignore_eos:
            kwargs["ignore_eos"] = True
        if sampling.min_tokens:
            kwargs["min_tokens"] = sampling.min_tokens
        if sampling.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = sampling.repetition_penalty
        if sampling.stop_token_ids:
            kwargs["stop_token_ids"] = list(sampling.stop_token_ids)
        return self._sampling_params_type(**kwargs)

    def prompt(self, request: GenerationRequest) -> str | list[int]:
        """A completion's text, or a chat's token ids with what its messages say tokenized
        as text (daemon/engine/chat_prompt.py); ids are not encoded again, so the template's
        BOS is not doubled."""
        if request.messages is None:
            assert request.prompt is not None
            return request.prompt
        # LLM.tokenizer wraps the Hugging Face tokenizer (TransformersTokenizer.tokenizer).
        tokenizer = getattr(self.llm.tokenizer, "tokenizer", self.llm.tokenizer)
        return chat_token_ids(tokenizer, request.messages)

    async def generate(self, request: GenerationRequest,
                       cancel: CancelSignal) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        # A plain call on the loop thread: it enqueues the request and returns at once.
        output = self.llm.generate_async(self.prompt(request), self.sampling_params(request),
                                         streaming=True)
        items = output.__aiter__()
        pending: list[asyncio.Future[Any]] = []
        watchdog: list[asyncio.TimerHandle] = []
        gave_up = False

        def give_up() -> None:
            nonlocal gave_up
            gave_up = True
            for future in pending:
                future.cancel()

        def abort() -> None:
            # Only while it runs, as trtllm-serve does: abort() on a finished request is an
            # error in the executor.
            if not output.finished:
                output.abort()

        cancel.on_cancel(abort)  # on the loop thread
        cancel.on_cancel(lambda: watchdog.append(loop.call_later(self._abort_timeout, give_up)))
        first = True
        try:
            while True:
                if gave_up:  # the watchdog fired while no wait was under way
                    yield Delta(finish_reason="cancelled")
                    return
                # A task per item, so the watchdog can end a wait already under way when
                # the abort came.
                next_item = asyncio.ensure_future(items.__anext__())
                pending[:] = [next_item]
                try:
                    item = await next_item
                except StopAsyncIteration:
                    yield Delta(finish_reason="cancelled" if cancel.is_set() else "stop")
                    return
                except asyncio.CancelledError:
                    if not gave_up:
                        raise
                    # Aborted in the executor's waiting queue, a request yields no final item.
                    log.warning("trtllm request %s: no final item %.1f s after abort; "
                                "giving up", request.request_id, self._abort_timeout)
                    yield Delta(finish_reason="cancelled")
                    return
                completion = item.outputs[0]
                prompt_tokens = len(item.prompt_token_ids) if first else None
                first = False
                for delta in output_deltas(completion.text_diff, completion.token_ids_diff,
                                           prompt_tokens, completion.finish_reason,
                                           FINISH_REASONS):
                    yield delta
                if completion.finish_reason is not None:
                    return
        finally:
            for handle in watchdog:
                handle.cancel()
