"""Backend `hf`: transformers' continuous batching, so concurrent requests share each step.

One `ContinuousBatchingManager` (transformers' own scheduler and paged KV cache) runs the
model in its background thread; requests join and leave the running batch between steps.
Its outputs come back on the event loop through `register_result_handler`, one cumulative
`GenerationOutput` per step, and are turned into text deltas here. A cancel goes to
`cancel_request`, which drops the request and frees its cache blocks before the next step.

If the generation loop itself dies (a failing forward pass), every request in the batch
gets the failure, the backend reports itself unavailable, and a fresh manager is started
for the next requests.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from daemon.engine.cancel import CancelSignal
from daemon.engine.chat_prompt import tokenized
from daemon.engine.detokenize import IncrementalDetokenizer
from daemon.engine.generation import Delta, FinishReason, GenerationRequest
from daemon.errors import InvalidInput, ModelDefinitionError, ModelError, NotReady

log = logging.getLogger("twinserve.engine.hf")

MiB = 1024 * 1024
PAGE_TOKENS = 64  # tokens per KV-cache page; small pages waste less on short requests

_CANCELLED = object()  # queue marker: the request was cancelled from our side
_RESTARTING = "the hf engine is restarting after a failure; retry shortly"


class HfBackend:
    name = "hf"

    def __init__(self, *, model: str | None, cache_dir: Path, device: str = "cpu",
                 dtype: str = "auto", max_batch_size: int = 32, kv_cache_mib: int = 512,
                 max_batch_tokens: int = 512) -> None:
        self.max_batch_size = max_batch_size
        self._model_ref = model
        self._cache_dir = cache_dir
        self._device = device
        self._dtype = dtype
        self._kv_cache_mib = kv_cache_mib
        self._max_batch_tokens = max_batch_tokens
        self._model: Any = None
        self._tokenizer: Any = None
        self._manager: Any = None
        self._eos: frozenset[int] = frozenset()
        self._context = 0  # most tokens (prompt and output) one request may hold
        self._ids = itertools.count()
        self._recovering: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.load)
        self._manager = await asyncio.to_thread(self._start_manager)

    def load(self) -> None:
        """Load the tokenizer and weights (blocking); `start()` runs it in a thread."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._model_ref is None:
            from daemon.engine.embedded import converted_dir

            source: str | Path = converted_dir(self._cache_dir)
        else:
            source = self._model_ref
        # The library's own start-up chatter, in a format of its own; ours is one line.
        logging.getLogger("ContinuousBatchingLogger").setLevel(logging.WARNING)
        dtype = "auto" if self._dtype == "auto" else getattr(torch, self._dtype)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(source)
            model: Any = AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype, attn_implementation="sdpa")
        except OSError as exc:
            raise ModelDefinitionError(f"engine.model: cannot load {source!r}: {exc}") from exc
        self._model = model.to(self._device).eval()
        eos = self._model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        if self._tokenizer.eos_token_id is not None:
            eos_ids.append(self._tokenizer.eos_token_id)
        self._eos = frozenset(int(i) for i in eos_ids if i is not None)
        log.info("hf backend loaded %s on %s as %s", source, self._device, self._model.dtype)

    def new_manager(self) -> Any:
        """A manager with this backend's cache and batch settings, greedy, not started: the
        library as it comes (scripts/bench_serving.py's ceiling runs it so)."""
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        text_config = self._model.config.get_text_config()
        blocks = max(1, self._kv_cache_mib * MiB // self._block_bytes(text_config))
        self._context = min(blocks * PAGE_TOKENS,
                            int(getattr(text_config, "max_position_embeddings", 1 << 30)))
        return self._model.init_continuous_batching(
            generation_config=GenerationConfig(  # type: ignore[no-untyped-call]
                do_sample=False,  # argmax; sampled rows are drawn in hf_sampling
                max_new_tokens=1, eos_token_id=sorted(self._eos),
                pad_token_id=self._tokenizer.pad_token_id or min(self._eos, default=0)),
            continuous_batching_config=ContinuousBatchingConfig(
                page_size=PAGE_TOKENS, num_blocks=blocks,
                max_batch_tokens=self._max_batch_tokens,
                max_requests_per_batch=self.max_batch_size,
                allow_block_sharing=False, use_cuda_graph=False))

    def token_ids(self, text: str) -> list[int]:
        """A raw prompt's token ids, as /v1/completions sends it (no chat template)."""
        ids: list[int] = self._tokenizer(text).input_ids
        return ids

    def _start_manager(self) -> Any:
        """A started manager, with our per-request sampling, warmed up by one tiny request."""
        from daemon.engine.hf_sampling import BatchSampling, request_kwargs

        manager = self.new_manager()
        manager.logit_processor = BatchSampling(sorted(self._eos))
        manager.start()
        manager.add_request([int(min(self._eos, default=0))], request_id="twinserve-warmup",
                            max_new_tokens=2, streaming=False,
                            **request_kwargs(greedy=True, temperature=1.0, top_k=0, top_p=1.0,
                                             min_tokens=0, seed=None))
        warmup = manager.get_result(request_id="twinserve-warmup", timeout=120)
        if warmup is None or warmup.error is not None:
            raise ModelDefinitionError("engine: the hf backend's first generation failed; "
                                       "see the log above")
        log.info("hf continuous batching: up to %d requests a step, a %d MiB KV cache in "
                 "pages of %d tokens, context %d tokens", self.max_batch_size,
                 self._kv_cache_mib, PAGE_TOKENS, self._context)
        return manager

    def _block_bytes(self, text_config: Any) -> int:
        """Bytes of one KV-cache page: keys and values of every layer for PAGE_TOKENS tokens."""
        heads = getattr(text_config, "num_attention_heads")
        kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
        head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
        per_token = 2 * text_config.num_hidden_layers * kv_heads * head_dim
        return int(PAGE_TOKENS * per_token * self._model.dtype.itemsize)

    async def close(self) -> None:
        if self._recovering is not None:
            await asyncio.shield(self._recovering)
        manager, self._manager = self._manager, None
        if manager is not None:
            await asyncio.to_thread(manager.stop, block=True, timeout=30)
        self._model = None

    # -- what the core asks ---------------------------------------------------------------------

    def batch_size(self) -> int:
        processor = getattr(self._manager, "batch_processor", None)
        if processor is None:
            return 0
        return len(processor.scheduler.active_requests)

    def unavailable(self) -> str | None:
        return _RESTARTING if self._recovering is not None else None

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        sampling = request.sampling
        if sampling.repetition_penalty != 1.0:
            raise InvalidInput("repetition_penalty: not available with the hf backend "
                               "(transformers' continuous batching has no per-request "
                               "repetition penalty); leave it at 1", "repetition_penalty")
        return tokenized(request, self._tokenizer, self._context)

    # -- one generation -----------------------------------------------------------------------

    async def generate(self, request: GenerationRequest,
                       cancel: CancelSignal) -> AsyncIterator[Delta]:
        from daemon.engine.hf_sampling import request_kwargs

        manager = self._manager
        if manager is None or self._recovering is not None:  # it failed while this one queued
            raise NotReady(_RESTARTING)
        ids = request.prompt_token_ids
        assert ids is not None, "EngineCore.submit() prepares every request"
        sampling = request.sampling
        request_id = f"{request.request_id or 'generation'}#{next(self._ids)}"
        outputs: asyncio.Queue[Any] = asyncio.Queue()
        manager.register_result_handler(request_id, outputs.put_nowait)
        stops = set(sampling.stop_token_ids) | (set() if sampling.ignore_eos else self._eos)
        detokenizer = IncrementalDetokenizer(self._tokenizer)
        finished = False

        def on_cancel() -> None:
            manager.cancel_request(request_id)
            outputs.put_nowait(_CANCELLED)

        try:
            accepted = manager.add_request(
                list(ids), request_id=request_id, max_new_tokens=sampling.max_tokens,
                streaming=True, eos_token_id=sorted(stops) or -1,
                **request_kwargs(greedy=sampling.greedy, temperature=sampling.temperature,
                                 top_k=sampling.top_k, top_p=sampling.top_p,
                                 min_tokens=0 if sampling.ignore_eos else sampling.min_tokens,
                                 seed=sampling.seed))
            if accepted is None:
                self._recover(manager)
                raise NotReady(_RESTARTING)
            cancel.on_cancel(on_cancel)
            yield Delta(prompt_tokens=len(ids))
            seen = 0
            while True:
                output = await outputs.get()
                if output is _CANCELLED:
                    finished = True
                    yield Delta(finish_reason="cancelled")
                    return
                if output.error is not None:
                    finished = True
                    log.error("hf generation %s failed: %s", request_id, output.error)
                    self._recover(manager)
                    raise ModelError("the hf engine failed while generating; it is restarting")
                tokens = output.generated_tokens[seen:]
                seen = len(output.generated_tokens)
                if tokens:
                    yield Delta(text=detokenizer.add(tokens), token_ids=tuple(tokens))
                if output.is_finished():
                    finished = True
                    tail = detokenizer.flush()
                    if tail:
                        yield Delta(text=tail)
                    yield Delta(finish_reason=_finish_reason(output.generated_tokens, stops))
                    return
        finally:
            if not finished:  # left early: the consumer failed or was cancelled
                manager.cancel_request(request_id)
            _forget_handler(manager, request_id)

    # -- recovery -------------------------------------------------------------------------------

    def _recover(self, failed: Any) -> None:
        """Replace a manager whose generation loop died; one recovery at a time."""
        if self._recovering is not None or failed is not self._manager:
            return
        if failed.background_thread_status.fatal_error is None and failed.is_running():
            return  # one request failed; the loop itself carries on

        async def recover() -> None:
            try:
                await asyncio.to_thread(failed.stop, block=True, timeout=30)
                self._manager = await asyncio.to_thread(self._start_manager)
                log.warning("hf engine restarted after a failure")
            except Exception:
                log.exception("hf engine could not restart; it stays unavailable")
            finally:
                if self._manager is not failed:
                    self._recovering = None

        log.error("hf engine: the generation loop died; restarting it")
        self._recovering = asyncio.get_running_loop().create_task(recover())


def _finish_reason(generated: list[int], stops: set[int]) -> FinishReason:
    return "stop" if generated and generated[-1] in stops else "length"


def _forget_handler(manager: Any, request_id: str) -> None:
    """Drop the result handler of a request that ends without a final output (a cancel).

    The library removes a handler only when it delivers a finished output, and a cancelled
    request never gets one; transformers has no public call for this.
    """
    router = manager.output_router
    with router._lock:
        router.result_handlers.pop(request_id, None)
