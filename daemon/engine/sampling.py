"""Sampling parameters under OpenAI's names, validated once, with our defaults spelled out.

Backends receive every value explicitly, so a backend's own defaults (TensorRT-LLM's
max_tokens=32, a checkpoint's generation_config) never decide what a client gets. Reading
them from a request body is the API adapters' job (`daemon/openai/sampling.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from daemon.errors import InvalidInput

DEFAULT_MAX_TOKENS = 256
# No model we serve has a longer context; backends check the model's own (prompt included).
MAX_TOKENS = 1 << 20
MAX_STOP_SEQUENCES = 4
MAX_STOP_TOKEN_IDS = 64
MAX_N = 8


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0  # OpenAI's default; 0 decodes greedily
    top_p: float = 1.0
    top_k: int = 0  # 0: off (OpenAI has no top_k)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    # vLLM's extensions, which serving benchmarks send.
    ignore_eos: bool = False  # generate past the model's end-of-sequence token
    min_tokens: int = 0  # the model's end-of-sequence token is held back until this many
    repetition_penalty: float = 1.0  # 1: off
    stop_token_ids: tuple[int, ...] = ()  # token ids that end the output, besides EOS

    def __post_init__(self) -> None:
        _check_int("max_tokens", self.max_tokens, low=1, high=MAX_TOKENS)
        _check_float("temperature", self.temperature, 0.0, 2.0)
        _check_float("top_p", self.top_p, 0.0, 1.0)
        if self.top_p == 0.0:
            raise InvalidInput("top_p: must be greater than 0 and at most 1, got 0", "top_p")
        _check_int("top_k", self.top_k, low=0)
        _check_int("n", self.n, low=1, high=MAX_N)
        if self.seed is not None:
            _check_int("seed", self.seed, low=0)
        if not isinstance(self.ignore_eos, bool):
            raise InvalidInput(f"ignore_eos: expected true or false, got {self.ignore_eos!r}",
                               "ignore_eos")
        _check_int("min_tokens", self.min_tokens, low=0)
        if self.min_tokens > self.max_tokens:
            raise InvalidInput(f"min_tokens: must be at most max_tokens ({self.max_tokens}), "
                               f"got {self.min_tokens}", "min_tokens")
        _check_float("repetition_penalty", self.repetition_penalty, 0.0, 2.0)
        if self.repetition_penalty == 0.0:
            raise InvalidInput("repetition_penalty: must be greater than 0 and at most 2, got 0",
                               "repetition_penalty")
        if len(self.stop_token_ids) > MAX_STOP_TOKEN_IDS:
            raise InvalidInput(f"stop_token_ids: at most {MAX_STOP_TOKEN_IDS} ids, "
                               f"got {len(self.stop_token_ids)}", "stop_token_ids")
        for token_id in self.stop_token_ids:
            _check_int("stop_token_ids", token_id, low=0)
        if len(self.stop) > MAX_STOP_SEQUENCES:
            raise InvalidInput(f"stop: at most {MAX_STOP_SEQUENCES} sequences, "
                               f"got {len(self.stop)}", "stop")
        for sequence in self.stop:
            if not isinstance(sequence, str) or not sequence:
                raise InvalidInput(f"stop: expected non-empty strings, got {sequence!r}", "stop")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _kind(value: Any) -> str:
    return type(value).__name__


def _check_int(name: str, value: Any, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name}: expected an integer, got {_kind(value)} {value!r}", name)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidInput(f"{name}: must be {bound}, got {value}", name)


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{name}: expected a number, got {_kind(value)} {value!r}", name)
    if not low <= value <= high:
        raise InvalidInput(f"{name}: must be between {low:g} and {high:g}, got {value}", name)
