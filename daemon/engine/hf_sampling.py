"""Per-request sampling inside one continuous batch, as transformers logits processors.

transformers' continuous batching decides greedy or sampled once for the whole batch; its
per-request warpers sort the whole vocabulary for every row on every step, and its sampler
(`torch.multinomial`) is slow on CPU: together they halved the 16-stream throughput
(docs/engine.md). So the batch decodes greedily (argmax), and these processors, written against
the library's `ContinuousBatchingLogitsProcessor` interface, shape each row as its request
asks and skip the rows that ask for nothing:

- top-k uses `torch.topk`, top-p sorts only the rows that set it;
- min_tokens holds the model's end-of-sequence tokens back while a request is short;
- a sampled row is drawn last, and its draw made the only token the argmax can pick. The
  draw of each step comes from the request's own seed and position when it has one, so a
  seeded request draws the same tokens whatever else shares its batch. Greedy rows are
  left alone: plain argmax, as the library's greedy decoding.

Each processor reads one value per request from `logit_processor_kwargs` (the library's
per-request channel, one int32 row per processor).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessorList
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
    ContinuousBatchingLogitsProcessorList,
)

_MASKED = -float("inf")


class _PerRequest(ContinuousBatchingLogitsProcessor):
    """One number per request, carried in the library's int32 argument row (a float as its
    bits): by default the request's `key` kwarg, else `default`."""

    ignored_kwargs = ()
    key: str
    default: float
    is_float = False

    def value(self, state: Any) -> float:
        value: float = state.logit_processor_kwargs.get(self.key, self.default)
        return value

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.copy_(self._encode([self.default] * int32_tensor.numel())
                           .reshape(int32_tensor.shape))

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        return self._encode([self.value(r.state) for r in requests_with_new_token])

    def _encode(self, values: list[float]) -> torch.Tensor:
        if self.is_float:
            return torch.tensor(values, dtype=torch.float32).view(torch.int32)
        return torch.tensor(values, dtype=torch.int32)


class _Temperature(_PerRequest):
    supported_kwargs = {"temperature": float}
    key, default, is_float = "temperature", 1.0, True

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        temperatures = tensor_arg[: scores.size(0)].view(torch.float32)
        if bool((temperatures == 1.0).all()):
            return scores
        return scores / temperatures.unsqueeze(-1)


class _TopK(_PerRequest):
    """k = 0: off."""

    supported_kwargs = {"top_k": int}
    key, default = "top_k", 0

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        k = tensor_arg[: scores.size(0)]
        rows = (k > 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            return scores
        ks = k[rows].clamp(max=scores.size(-1)).long()
        best = torch.topk(scores[rows], int(ks.max()), dim=-1).values
        threshold = best.gather(-1, (ks - 1).unsqueeze(-1))
        picked = scores[rows]
        scores[rows] = picked.masked_fill(picked < threshold, _MASKED)
        return scores


class _TopP(_PerRequest):
    """p = 1: off. Keeps the smallest set of tokens whose probability reaches p."""

    supported_kwargs = {"top_p": float}
    key, default, is_float = "top_p", 1.0, True

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        p = tensor_arg[: scores.size(0)].view(torch.float32)
        rows = (p < 1.0).nonzero().squeeze(1)
        if rows.numel() == 0:
            return scores
        ordered, order = torch.sort(scores[rows], dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        # A token goes when the ones before it already reach p; the best one always stays.
        drop = (probs.cumsum(dim=-1) - probs) >= p[rows].unsqueeze(-1)
        drop[:, 0] = False
        picked = scores[rows]
        scores[rows] = picked.masked_fill(drop.scatter(-1, order, drop), _MASKED)
        return scores


class _MinTokens(_PerRequest):
    """Argument per row: 1 while the request is still short of its min_tokens."""

    supported_kwargs = {"min_tokens": int}
    key, default = "min_tokens", 0

    def __init__(self, eos_token_ids: Sequence[int]) -> None:
        self._eos = torch.tensor(list(eos_token_ids), dtype=torch.long)

    def value(self, state: Any) -> float:
        return int(state.generated_len() < super().value(state))

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        rows = tensor_arg[: scores.size(0)].nonzero().squeeze(1)
        if rows.numel() == 0 or self._eos.numel() == 0:
            return scores
        scores[rows.unsqueeze(-1), self._eos.unsqueeze(0)] = _MASKED
        return scores


class _Sample(_PerRequest):
    """Draws the token of each sampling row and leaves it the only one the argmax can pick.

    One uniform number per row, through the inverse of the row's cumulative distribution:
    a few times cheaper than Gumbel noise or `torch.multinomial`, which draw a random number
    for every token of the vocabulary. Argument per row: -1 for greedy (left alone), else
    the seed of this step's draw.
    """

    supported_kwargs = {"sampling_seed": int}
    key, default = "sampling_seed", -1

    def value(self, state: Any) -> float:
        return _step_seed(state.logit_processor_kwargs.get(self.key, GREEDY),
                          state.generated_len())

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        seeds = tensor_arg[: scores.size(0)]
        rows = (seeds >= 0).nonzero().squeeze(1)
        if rows.numel() == 0:
            return scores
        # Summed in float64: in float32, the rounding near 1 over a whole vocabulary would
        # widen or erase the shares of the many unlikely tokens.
        cdf = scores[rows].softmax(dim=-1).double().cumsum(dim=-1)
        draws = torch.tensor([random.Random(int(seed)).random() for seed in seeds[rows]],
                             dtype=cdf.dtype, device=cdf.device)
        # right=True: the first token whose cumulative probability passes the draw, never a
        # zero-probability one before it.
        picked = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(-1), right=True)
        picked = picked.clamp(max=scores.size(-1) - 1)
        scores[rows.unsqueeze(-1), picked] = float("inf")
        return scores


GREEDY = -2  # sampling_seed of a greedy request
UNSEEDED = -1  # sampling_seed of a sampled request without a seed


def _step_seed(sampling_seed: int, position: int) -> int:
    if sampling_seed == GREEDY:
        return -1
    if sampling_seed == UNSEEDED:
        return random.getrandbits(31)
    return hash((sampling_seed, position)) & 0x7FFFFFFF  # ints hash the same in every run


class BatchSampling(ContinuousBatchingLogitsProcessorList):
    """The processors above, in the order they must run, as the manager's processor list."""

    def __init__(self, eos_token_ids: Sequence[int]) -> None:
        processors = [_Temperature(), _TopK(), _TopP(), _MinTokens(eos_token_ids), _Sample()]
        super().__init__(LogitsProcessorList(processors), per_request_processors=False)
        self.tensors_required = len(processors)  # one int32 row of arguments each


def request_kwargs(*, greedy: bool, temperature: float, top_k: int, top_p: float,
                   min_tokens: int, seed: int | None) -> dict[str, Any]:
    """The per-request values for `add_request(**kwargs)`."""
    if greedy:
        return {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_tokens": min_tokens,
                "sampling_seed": GREEDY}
    return {"temperature": float(temperature), "top_k": int(top_k), "top_p": float(top_p),
            "min_tokens": min_tokens,
            "sampling_seed": UNSEEDED if seed is None else seed & 0x7FFFFFFF}
