"""Backend `hf`: transformers' continuous batching, so concurrent requests share each step.

The model and the library's `ContinuousBatchingManager` (its scheduler and paged KV cache)
run in an engine process of their own (`daemon/engine/hf_engine.py`), so the model's
steps never wait for the daemon's event loop, nor the loop for them. Here, in the daemon,
prompts are tokenized and checked, the engine's new token ids are turned into text deltas,
and a cancel is sent on at once; the engine hands it to `cancel_request`, which drops the
request and frees its cache blocks before the next step.

If the engine process ends unasked (its batch loop died on a failing forward pass, or it
was killed), every request it was running gets the failure, the backend reports itself
unavailable, and a fresh engine process is started for the next requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from daemon.engine.cancel import CancelSignal
from daemon.engine.chat_prompt import tokenized
from daemon.engine.detokenize import IncrementalDetokenizer
from daemon.engine.generation import Delta, FinishReason, GenerationRequest
from daemon.engine.hf_engine import EngineSettings
from daemon.errors import InvalidInput, ModelDefinitionError, ModelError, NotReady

log = logging.getLogger("twinserve.engine.hf")

_RESTARTING = "the hf engine is restarting after a failure; retry shortly"
_FAILED = "the hf engine failed while generating; it is restarting"
STOP_TIMEOUT_S = 30  # for the engine process to stop its batch loop and exit

# A request's queue carries (new_ids, finished) for each step, this marker once it is
# cancelled from our side, or the exception that ends it.
_CANCELLED = ("cancelled",)
# Why the engine process may end a request, by what it says: its batch loop had died when
# the request arrived; the library raised adding it (the engine logged why).
_ENDINGS: dict[str, Callable[[], Exception]] = {
    "rejected": lambda: NotReady(_RESTARTING),
    "refused": lambda: ModelError("the hf engine could not start this generation"),
}


class HfBackend:
    name = "hf"

    def __init__(self, *, model: str | None, cache_dir: Path, device: str = "cpu",
                 dtype: str = "auto", max_batch_size: int = 32, kv_cache_mib: int = 512,
                 max_batch_tokens: int = 512, threads: int | None = None) -> None:
        self.max_batch_size = max_batch_size
        self._model_ref = model
        self._cache_dir = cache_dir
        # The weights' location is settled by start(): the embedded model is converted first.
        self.settings = EngineSettings(
            source=model or "", device=device, dtype=dtype, max_batch_size=max_batch_size,
            kv_cache_mib=kv_cache_mib, max_batch_tokens=max_batch_tokens,
            threads=threads)
        self._tokenizer: Any = None
        self._eos: frozenset[int] = frozenset()
        self._context = 0  # most tokens (prompt and output) one request may hold
        self._engine: EngineProcess | None = None
        self._streams: dict[str, asyncio.Queue[tuple[Any, ...] | Exception]] = {}
        self._batch_size = 0
        self._ids = itertools.count()
        self._recovering: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.settings = await asyncio.to_thread(self.engine_settings)
        from transformers import AutoTokenizer

        self._tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained,
                                                  self.settings.source)
        self._engine = await self._start_engine()

    def engine_settings(self) -> EngineSettings:
        """The engine's settings, converting the embedded model first if it is the one."""
        source = self.settings.source
        if self._model_ref is None:
            from daemon.engine.embedded import converted_dir

            source = str(converted_dir(self._cache_dir))
        return dataclasses.replace(self.settings, source=source,
                                   log_level=log.getEffectiveLevel())

    async def _start_engine(self) -> EngineProcess:
        engine = EngineProcess(self.settings, self._on_message, self._on_lost)
        context, eos = await engine.start()
        self._context, self._eos = context, frozenset(eos)
        log.info("hf engine process %s ready", engine.pid)
        return engine

    async def close(self) -> None:
        self._closing = True
        if self._recovering is not None:
            await asyncio.shield(self._recovering)
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.stop()

    # -- what the core asks ---------------------------------------------------------------------

    @property
    def engine_pid(self) -> int | None:
        """The engine process's pid, while one runs."""
        return self._engine.pid if self._engine is not None else None

    def batch_size(self) -> int:
        return self._batch_size if self._engine is not None else 0

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

        engine = self._engine
        if engine is None or self._recovering is not None:  # it failed while this one queued
            raise NotReady(_RESTARTING)
        ids = request.prompt_token_ids
        assert ids is not None, "EngineCore.submit() prepares every request"
        sampling = request.sampling
        request_id = f"{request.request_id or 'generation'}#{next(self._ids)}"
        stops = set(sampling.stop_token_ids) | (set() if sampling.ignore_eos else self._eos)
        outputs: asyncio.Queue[tuple[Any, ...] | Exception] = asyncio.Queue()
        self._streams[request_id] = outputs
        detokenizer = IncrementalDetokenizer(self._tokenizer)
        generated: list[int] = []
        finished = False

        def on_cancel() -> None:
            engine.send(("cancel", request_id))
            outputs.put_nowait(_CANCELLED)

        try:
            if not engine.send(("add", request_id, list(ids), sampling.max_tokens,
                                sorted(stops) or -1, request_kwargs(
                                    greedy=sampling.greedy, temperature=sampling.temperature,
                                    top_k=sampling.top_k, top_p=sampling.top_p,
                                    min_tokens=0 if sampling.ignore_eos
                                    else sampling.min_tokens,
                                    seed=sampling.seed))):
                finished = True
                raise NotReady(_RESTARTING)
            cancel.on_cancel(on_cancel)
            yield Delta(prompt_tokens=len(ids))
            while True:
                output = await outputs.get()
                if output is _CANCELLED:
                    finished = True
                    yield Delta(finish_reason="cancelled")
                    return
                if isinstance(output, Exception):
                    finished = True
                    raise output
                tokens, done = output
                if tokens:
                    generated.extend(tokens)
                    yield Delta(text=detokenizer.add(tokens), token_ids=tuple(tokens))
                if done:
                    finished = True
                    tail = detokenizer.flush()
                    if tail:
                        yield Delta(text=tail)
                    yield Delta(finish_reason=_finish_reason(generated, stops))
                    return
        finally:
            del self._streams[request_id]
            if not finished:  # left early: the consumer failed or was cancelled
                engine.send(("cancel", request_id))

    # -- what the engine process says -----------------------------------------------------------

    def _on_message(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "outputs":
            _, outputs, self._batch_size = message
            for request_id, tokens, done, error in outputs:
                stream = self._streams.get(request_id)
                if stream is None:
                    continue
                if error is not None:
                    log.error("hf generation %s failed: %s", request_id, error)
                    stream.put_nowait(ModelError(_FAILED))
                else:
                    stream.put_nowait((tokens, done))
        elif kind in _ENDINGS:
            stream = self._streams.get(message[1])
            if stream is not None:
                stream.put_nowait(_ENDINGS[kind]())

    def _on_lost(self, engine: EngineProcess) -> None:
        """The engine process ended unasked: fail what it ran, and start another."""
        if engine is not self._engine:
            return
        self._engine = None
        self._batch_size = 0
        for stream in self._streams.values():
            stream.put_nowait(ModelError(_FAILED))  # it ran in the engine that ended
        if self._closing:
            return

        async def recover() -> None:
            try:
                await engine.stop()
                log.error("hf engine: the engine process ended (exit code %s); starting "
                          "another", engine.exitcode)
                self._engine = await self._start_engine()
                log.warning("hf engine restarted after a failure")
            except Exception:
                log.exception("hf engine could not restart; it stays unavailable")
            finally:
                if self._engine is not None:
                    self._recovering = None

        self._recovering = asyncio.get_running_loop().create_task(recover())


def _finish_reason(generated: list[int], stops: set[int]) -> FinishReason:
    return "stop" if generated and generated[-1] in stops else "length"


class EngineProcess:
    """The engine process as the daemon sees it: started, sent to, read on the event loop,
    stopped; `on_lost` is called once if it ends unasked.

    It is `python -m daemon.engine.hf_engine`, given its end of a socket pair: a fresh
    interpreter (never a fork of this one and its threads) that, unlike multiprocessing's
    spawn, does not run the parent's main script again.
    """

    def __init__(self, settings: EngineSettings,
                 on_message: Callable[[tuple[Any, ...]], None],
                 on_lost: Callable[[EngineProcess], None]) -> None:
        self._settings = settings
        self._on_message = on_message
        self._on_lost = on_lost
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ready: asyncio.Future[tuple[int, list[int]]] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exitcode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def start(self) -> tuple[int, list[int]]:
        """Start the process; returns (context tokens, end-of-sequence ids) once it is ready."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "daemon.engine.hf_engine", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
            self._conn = Connection(ours.detach())
        self._ready = loop.create_future()
        loop.add_reader(self._conn.fileno(), self._readable)
        self.send(("settings", self._settings))
        try:
            return await self._ready
        except BaseException:
            await self.stop()
            raise

    def send(self, message: tuple[Any, ...]) -> bool:
        """False if the process is gone (its end is then noticed by the reader)."""
        if self._conn is None or self._stopping:
            return False
        try:
            self._conn.send(message)
            return True
        except OSError:
            return False

    async def stop(self) -> None:
        """Ask the process to end, and wait for it (killing it after STOP_TIMEOUT_S)."""
        if self._stopping:
            return
        self.send(("stop",))
        self._stopping = True
        self._close_connection()
        process = self._process
        if process is None:
            return
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("hf engine: the engine process did not stop in %d s; killing it",
                      STOP_TIMEOUT_S)
            process.kill()
            await asyncio.to_thread(process.wait)

    def _readable(self) -> None:
        assert self._conn is not None
        try:
            while self._conn.poll():
                self._dispatch(self._conn.recv())
        except (EOFError, OSError):
            self._close_connection()
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(ModelDefinitionError(
                    "engine: the hf engine process ended while loading; see the log"))
            elif not self._stopping:
                self._on_lost(self)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "log":
            fields = message[1]
            logging.getLogger(fields["name"]).handle(logging.makeLogRecord(fields))
        elif kind == "ready":
            assert self._ready is not None
            self._ready.set_result((message[1], message[2]))
        elif kind == "failed":
            assert self._ready is not None
            self._ready.set_exception(ModelDefinitionError(message[1]))
        else:
            self._on_message(message)

    def _close_connection(self) -> None:
        if self._conn is not None:
            asyncio.get_running_loop().remove_reader(self._conn.fileno())
            self._conn.close()
            self._conn = None
