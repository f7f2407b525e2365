"""Backend `hf`: transformers' generate() in a worker thread, streamed back to the loop.

generate() blocks, so each generation runs in a thread of its own; a TextIteratorStreamer
subclass hands text to the loop as it is decoded, and a StoppingCriteria polls the cancel
signal between tokens, so a cancel stops the thread within about one token. The thread is
always joined before the generation counts as finished.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from daemon.engine.cancel import CancelSignal
from daemon.engine.generation import Delta, FinishReason, GenerationRequest
from daemon.errors import ModelDefinitionError

log = logging.getLogger("twinserve.engine.hf")

Push = Callable[["_Piece | BaseException | None"], None]


class _Piece:
    __slots__ = ("text", "token_ids")

    def __init__(self, text: str, token_ids: tuple[int, ...]) -> None:
        self.text = text
        self.token_ids = token_ids


class HfBackend:
    name = "hf"

    def __init__(self, *, model: str | None, cache_dir: Path, device: str = "cpu",
                 capacity: int = 1) -> None:
        self.capacity = capacity
        self._model_ref = model
        self._cache_dir = cache_dir
        self._device = device
        self._model: Any = None
        self._tokenizer: Any = None

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._model_ref is None:
            from daemon.engine.embedded import converted_dir

            source: str | Path = converted_dir(self._cache_dir)
        else:
            source = self._model_ref
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(source)
            model: Any = AutoModelForCausalLM.from_pretrained(source)
            self._model = model.to(self._device)
        except OSError as exc:
            raise ModelDefinitionError(f"engine.model: cannot load {source!r}: {exc}") from exc
        self._model.eval()
        log.info("hf backend loaded %s on %s", source, self._device)

    async def close(self) -> None:
        self._model = None

    def encode(self, request: GenerationRequest) -> Any:
        """Token ids (a 1 x length tensor) for the prompt, through the chat template if chat."""
        tokenizer = self._tokenizer
        if request.messages is not None:
            text = tokenizer.apply_chat_template(list(request.messages), tokenize=False,
                                                 add_generation_prompt=True)
        else:
            text = request.prompt
        return tokenizer(text, return_tensors="pt").input_ids.to(self._device)

    def generate_kwargs(self, request: GenerationRequest) -> dict[str, Any]:
        """Every sampling knob set from our parameters, none left to generation_config."""
        from transformers import GenerationConfig

        sampling = request.sampling
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=sampling.max_tokens,
            min_new_tokens=0,
            do_sample=not sampling.greedy,
            temperature=sampling.temperature if not sampling.greedy else None,
            top_p=sampling.top_p if not sampling.greedy else None,
            top_k=sampling.top_k if not sampling.greedy and sampling.top_k else None,
            num_return_sequences=1,
            repetition_penalty=None,
            eos_token_id=self._model.generation_config.eos_token_id,
            pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
        )
        return {"generation_config": config}

    async def generate(self, request: GenerationRequest, cancel: CancelSignal) -> AsyncIterator[Delta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Piece | BaseException | None] = asyncio.Queue()

        def push(item: _Piece | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                pass  # loop closed at shutdown; nobody is listening

        input_ids = self.encode(request)
        prompt_tokens = int(input_ids.shape[-1])
        thread = threading.Thread(
            target=self._generate_in_thread,
            args=(input_ids, self.generate_kwargs(request), request.sampling.seed, cancel, push),
            name="twinserve-hf-generate", daemon=True)
        thread.start()
        generated = 0
        ended = False
        try:
            yield Delta(prompt_tokens=prompt_tokens)
            while True:
                item = await queue.get()
                if item is None:
                    ended = True
                    break
                if isinstance(item, BaseException):
                    ended = True  # the thread has returned
                    raise item
                generated += len(item.token_ids)
                yield Delta(text=item.text, token_ids=item.token_ids)
        finally:
            if not ended:
                cancel.set()  # we are leaving early (error, or the task was cancelled)
            await asyncio.shield(asyncio.to_thread(thread.join))
        finish: FinishReason
        if cancel.is_set():
            finish = "cancelled"
        elif generated >= request.sampling.max_tokens:
            finish = "length"
        else:
            finish = "stop"
        yield Delta(finish_reason=finish)

    def _generate_in_thread(self, input_ids: Any, kwargs: dict[str, Any], seed: int | None,
                            cancel: CancelSignal, push: Push) -> None:
        import torch
        from transformers import StoppingCriteriaList

        try:
            if seed is not None:
                torch.manual_seed(seed)  # process-wide; generations run one at a time on CPU
            with torch.inference_mode():
                self._model.generate(
                    input_ids, attention_mask=torch.ones_like(input_ids),
                    streamer=_make_streamer(self._tokenizer, push),
                    stopping_criteria=StoppingCriteriaList([_cancel_criteria(cancel.event)]),
                    **kwargs)
        except BaseException as exc:
            push(exc)
        else:
            push(None)


def _make_streamer(tokenizer: Any, push: Push) -> Any:
    from transformers import TextIteratorStreamer

    class LoopStreamer(TextIteratorStreamer):
        """Hands each decoded piece, with its token ids, to the event loop as it comes."""

        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self._ids: list[int] = []

        def put(self, value: Any) -> None:
            if not (self.skip_prompt and self.next_tokens_are_prompt):
                self._ids.extend(int(t) for t in value.reshape(-1).tolist())
            super().put(value)  # type: ignore[no-untyped-call]

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            ids, self._ids = self._ids, []
            if text or ids:
                push(_Piece(text, tuple(ids)))

    return LoopStreamer()


def _cancel_criteria(event: threading.Event) -> Any:
    from transformers import StoppingCriteria

    class CancelCriteria(StoppingCriteria):
        """Ends generate() at the next token once the cancel signal is set."""

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool,
                              device=input_ids.device)

    return CancelCriteria()
