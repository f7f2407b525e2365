"""Which backend an `engine:` section names; heavy backends are imported only when named."""

from __future__ import annotations

from pathlib import Path

from daemon.config import EngineConfig
from daemon.engine.backend import Backend


def build_backend(config: EngineConfig, cache_dir: Path) -> Backend:
    if config.backend == "simulated":
        from daemon.engine.simulated import SimulatedBackend

        return SimulatedBackend(token_delay_ms=config.token_delay_ms,
                                max_batch_size=config.max_batch_size or 64)
    if config.backend == "hf":
        from daemon.engine.hf import HfBackend

        return HfBackend(model=config.model, cache_dir=cache_dir, device=config.device,
                         dtype=config.dtype, max_batch_size=config.max_batch_size or 32,
                         kv_cache_mib=config.kv_cache_mib or 512,
                         max_batch_tokens=config.max_batch_tokens, threads=config.threads)
    if config.backend == "vllm":
        from daemon.engine.vllm import VllmBackend

        return VllmBackend.from_config(config, cache_dir)
    if config.backend == "trtllm":
        from daemon.engine.trtllm import TrtllmBackend

        return TrtllmBackend.from_model(config.model or str(_embedded(cache_dir)),
                                        max_batch_size=config.max_batch_size or 256,
                                        abort_timeout_s=config.abort_timeout_s)
    raise ValueError(f"unknown engine backend {config.backend!r}")  # config.py rejects these


def prepare(config: EngineConfig | None, cache_dir: Path) -> Path | None:
    """Do the slow part of a first start ahead of it: for a backend that would run the
    embedded model, convert it into `cache_dir` (once). Returns what it made, or None
    when the model has nothing to prepare (no engine, the simulated backend, or weights
    named by engine.model, which load as they are)."""
    if config is None or config.backend == "simulated" or config.model is not None:
        return None
    return _embedded(cache_dir)


def _embedded(cache_dir: Path) -> Path:
    """The embedded model as a Hugging Face checkpoint directory (converted on first use)."""
    from daemon.engine.embedded import converted_dir

    return converted_dir(cache_dir)
