"""The hf backend's engine process: the model and transformers' continuous batching, run
away from the daemon's event loop.

In one process, the model's generation thread and the event loop take turns at one
interpreter lock, so each waits on the other's Python work. vLLM splits its API server
from its engine core for this reason, and so do we. Measured at 16 streams, the
inter-token p99 was 124-129 ms with the split against 167-424 ms without, at the same
throughput (docs/engine.md). The daemon (`daemon/engine/hf.py`) tokenizes, detokenizes
and streams; this process only runs the batch.

It talks to the daemon over one `multiprocessing` connection, in pickled tuples:

    daemon -> engine   ("settings", EngineSettings)   first, once
    daemon -> engine   ("add", id, prompt_ids, max_new_tokens, stop_ids, sampling_kwargs)
                       ("cancel", id)
                       ("stop",)
    engine -> daemon   ("ready", context_tokens, eos_ids)   once, after a warm-up request
                       ("failed", message)                   instead, if loading failed
                       ("outputs", [(id, new_ids, finished, error), ...], batch_size)
                       ("rejected", id)                      the batch loop has died
                       ("refused", id)                       adding it raised (logged)
                       ("log", record_fields)                every log record, for the daemon

`batch_size` is the library's own count of requests in the running batch, sent with each
step's outputs and, while a cancel is pending, as soon as the library has dropped it.

The process ends when told to stop, when the daemon goes away (its end of the connection
closes), or when the library's batch loop dies (a failing forward pass): the daemon then
starts a fresh one. It ignores SIGINT and SIGTERM: a Ctrl-C in a terminal, or a service
manager signalling the whole group, reaches the daemon too, and the daemon drains before
it stops its engine.
"""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("twinserve.engine.hf")

MiB = 1024 * 1024
PAGE_TOKENS = 64  # tokens per KV-cache page; small pages waste less on short requests
CANCEL_POLL_S = 0.001  # while a cancel is pending: how often to look whether the library took it
LIVENESS_S = 0.5  # how often the command loop checks that the batch loop still runs


@dataclass(frozen=True)
class EngineSettings:
    """What the engine process needs to load and batch; `source` is a checkpoint directory
    or a Hugging Face id."""

    source: str
    device: str = "cpu"
    dtype: str = "auto"
    max_batch_size: int = 32
    kv_cache_mib: int = 512
    max_batch_tokens: int = 512
    threads: int | None = None  # torch's intra-op threads in the engine; None: one per CPU
    log_level: int = logging.INFO


@dataclass
class Loaded:
    """A loaded model with what batching needs to know about it."""

    model: Any
    tokenizer: Any
    eos: list[int]
    pad_token_id: int
    blocks: int  # KV-cache pages
    context: int  # most tokens (prompt and output) one request may hold


def load(settings: EngineSettings) -> Loaded:
    """Load the tokenizer and weights (blocking, seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils.logging import disable_progress_bar

    from daemon.errors import ModelDefinitionError

    # The library's own start-up chatter and progress bar, in formats of their own (a bar
    # would land in the middle of a JSON log); ours is one line.
    logging.getLogger("ContinuousBatchingLogger").setLevel(logging.WARNING)
    disable_progress_bar()  # type: ignore[no-untyped-call]
    dtype = "auto" if settings.dtype == "auto" else getattr(torch, settings.dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(settings.source)
        model: Any = AutoModelForCausalLM.from_pretrained(
            settings.source, dtype=dtype, attn_implementation="sdpa")
    except OSError as exc:
        raise ModelDefinitionError(
            f"engine.model: cannot load {settings.source!r}: {exc}") from exc
    model = model.to(settings.device).eval()
    eos = model.generation_config.eos_token_id
    eos_ids = list(eos) if isinstance(eos, list) else [eos]
    if tokenizer.eos_token_id is not None:
        eos_ids.append(tokenizer.eos_token_id)
    eos_ids = sorted({int(i) for i in eos_ids if i is not None})
    text_config = model.config.get_text_config()
    blocks = max(1, settings.kv_cache_mib * MiB // _block_bytes(text_config, model.dtype))
    context = min(blocks * PAGE_TOKENS,
                  int(getattr(text_config, "max_position_embeddings", 1 << 30)))
    log.info("hf backend loaded %s on %s as %s, %d torch threads", settings.source,
             settings.device, model.dtype, torch.get_num_threads())
    return Loaded(model=model, tokenizer=tokenizer, eos=eos_ids,
                  pad_token_id=tokenizer.pad_token_id or min(eos_ids, default=0),
                  blocks=blocks, context=context)


def _block_bytes(text_config: Any, dtype: Any) -> int:
    """Bytes of one KV-cache page: keys and values of every layer for PAGE_TOKENS tokens."""
    heads = getattr(text_config, "num_attention_heads")
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    per_token = 2 * text_config.num_hidden_layers * kv_heads * head_dim
    return int(PAGE_TOKENS * per_token * dtype.itemsize)


def new_manager(loaded: Loaded, settings: EngineSettings) -> Any:
    """A manager with these cache and batch settings, greedy, not started: the library as it
    comes (scripts/bench_serving.py's ceiling runs it so)."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    return loaded.model.init_continuous_batching(
        generation_config=GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=False,  # argmax; sampled rows are drawn in hf_sampling
            max_new_tokens=1, eos_token_id=loaded.eos, pad_token_id=loaded.pad_token_id),
        continuous_batching_config=ContinuousBatchingConfig(
            page_size=PAGE_TOKENS, num_blocks=loaded.blocks,
            max_batch_tokens=settings.max_batch_tokens,
            max_requests_per_batch=settings.max_batch_size,
            allow_block_sharing=False, use_cuda_graph=False))


def start_manager(loaded: Loaded, settings: EngineSettings) -> Any:
    """A started manager, with our per-request sampling, warmed up by one tiny request."""
    from daemon.engine.hf_sampling import BatchSampling, request_kwargs
    from daemon.errors import ModelDefinitionError

    manager = new_manager(loaded, settings)
    manager.logit_processor = BatchSampling(loaded.eos)
    manager.start()
    manager.add_request([min(loaded.eos, default=0)], request_id="twinserve-warmup",
                        max_new_tokens=2, streaming=False,
                        **request_kwargs(greedy=True, temperature=1.0, top_k=0, top_p=1.0,
                                         min_tokens=0, seed=None))
    warmup = manager.get_result(request_id="twinserve-warmup", timeout=120)
    if warmup is None or warmup.error is not None:
        manager.stop(block=True, timeout=30)
        raise ModelDefinitionError("engine: the hf backend's first generation failed; "
                                   "see the log above")
    log.info("hf continuous batching: up to %d requests a step, a %d MiB KV cache in pages "
             "of %d tokens, context %d tokens", settings.max_batch_size,
             settings.kv_cache_mib, PAGE_TOKENS, loaded.context)
    return manager


# -- the process ----------------------------------------------------------------------------------

def main(fd: int) -> None:
    """The engine process's entry point: `fd` is its end of the daemon's socket pair, on
    which the settings come first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        kind, settings = conn.recv()
    except EOFError:
        return
    assert kind == "settings"
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    channel = _Channel(conn)
    root = logging.getLogger()
    root.handlers[:] = [_ChannelLogHandler(channel)]
    root.setLevel(settings.log_level)
    try:
        loaded = load(settings)
        manager = start_manager(loaded, settings)
    except Exception as exc:
        from daemon.errors import ModelDefinitionError

        if not isinstance(exc, ModelDefinitionError):
            log.exception("hf engine: loading failed")
        channel.send(("failed", str(exc) if isinstance(exc, ModelDefinitionError)
                      else "engine: the hf backend could not load its model; see the log"))
        return
    channel.send(("ready", loaded.context, loaded.eos))
    Engine(channel, manager).run()


class _Channel:
    """The connection to the daemon; both of the engine's threads send on it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> bool:
        """False once the daemon is gone."""
        with self._lock:
            try:
                self.conn.send(message)
                return True
            except OSError:
                return False


class _ChannelLogHandler(logging.Handler):
    """Hands each log record to the daemon, which logs it in its own format."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {"name": record.name, "levelno": record.levelno,
                      "levelname": record.levelname, "msg": record.getMessage(),
                      "created": record.created, "msecs": record.msecs,
                      "exc_text": (self.formatter or logging.Formatter()).formatException(
                          record.exc_info) if record.exc_info else None}
            self._channel.send(("log", fields))
        except Exception:
            self.handleError(record)


@dataclass(frozen=True)
class _Cancelled:
    """Put on the library's output queue by the command loop: the reporter should watch
    until the library has dropped `request_id`."""

    request_id: str


class Engine:
    """A started manager, driven over a channel: the command loop on this thread, and a
    reporter thread that forwards the library's outputs."""

    def __init__(self, channel: _Channel, manager: Any) -> None:
        self._channel = channel
        self._manager = manager
        self._outputs: queue.Queue[Any] = manager.output_router.output_queue
        self._stopping = False

    def run(self) -> None:
        reporter = threading.Thread(target=self._report, name="hf-engine-reporter",
                                    daemon=True)
        reporter.start()
        try:
            self._serve()
        finally:
            self._stopping = True
            self._manager.stop(block=True, timeout=30)
            self._outputs.put(None)  # wakes the reporter to end
            reporter.join(timeout=5)

    def _serve(self) -> None:
        conn = self._channel.conn
        while True:
            try:
                if not conn.poll(LIVENESS_S):
                    if not self._manager.is_running():
                        log.error("hf engine: the batch loop has died; this engine process "
                                  "ends and the daemon starts another")
                        return
                    continue
                message = conn.recv()
            except (EOFError, OSError):
                return  # the daemon is gone
            kind = message[0]
            if kind == "add":
                _, request_id, prompt_ids, max_new_tokens, stop_ids, kwargs = message
                try:
                    accepted = self._manager.add_request(
                        prompt_ids, request_id=request_id, max_new_tokens=max_new_tokens,
                        streaming=True, eos_token_id=stop_ids, **kwargs)
                except Exception:  # this request's fault, not the batch's: the rest go on
                    log.exception("hf engine: could not add request %s", request_id)
                    self._channel.send(("refused", request_id))
                    continue
                if accepted is None:
                    self._channel.send(("rejected", request_id))
            elif kind == "cancel":
                self._manager.cancel_request(message[1])
                self._outputs.put(_Cancelled(message[1]))
            elif kind == "stop":
                return

    def _report(self) -> None:
        """Forward each step's outputs as new token ids, with the batch size."""
        sent: dict[str, int] = {}  # tokens forwarded so far, per request
        cancelled: set[str] = set()  # their late outputs are dropped
        leaving: set[str] = set()  # finished or cancelled, and maybe still counted in the batch
        batch_size = 0
        while True:
            try:
                items = [self._outputs.get(timeout=CANCEL_POLL_S if leaving else None)]
            except queue.Empty:
                items = []
            while not self._outputs.empty():
                items.append(self._outputs.get_nowait())
            forward = []
            for item in items:
                if item is None:
                    if self._stopping:
                        return
                elif isinstance(item, _Cancelled):
                    cancelled.add(item.request_id)
                    leaving.add(item.request_id)
                    sent.pop(item.request_id, None)
                elif item.request_id not in cancelled:
                    seen = sent.pop(item.request_id, 0)
                    if item.is_finished():
                        leaving.add(item.request_id)
                    else:
                        sent[item.request_id] = len(item.generated_tokens)
                    forward.append((item.request_id, item.generated_tokens[seen:],
                                    item.is_finished(), item.error))
            scheduler = self._manager.batch_processor.scheduler  # made by start_manager()
            leaving = {i for i in leaving
                       if i in scheduler.active_requests or i in scheduler.waiting_requests}
            cancelled &= leaving
            now = len(scheduler.active_requests)
            if forward or now != batch_size:
                batch_size = now
                if not self._channel.send(("outputs", forward, batch_size)):
                    return


if __name__ == "__main__":
    main(int(sys.argv[1]))
