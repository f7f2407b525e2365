"""Per-request sampling inside one continuous batch, as transformers logits processors.

transformers' continuous batching decides greedy or sampled once for the whole batch, and
its per-request warpers sort the whole vocabulary for every row on every step (half the
throughput at 16 streams on CPU, measured). So the batch always samples, and these
processors, written against the library's `ContinuousBatchingLogitsProcessor` interface,
shape each row as its request asks and skip the rows that ask for nothing:

- greedy is top-k 1: only the best token survives, so sampling picks it;
- top-k uses `torch.topk`, top-p sorts only the rows that set it;
- min_tokens holds the model's end-of-sequence tokens back while a request is short.

Each processor reads one value per request from `logit_processor_kwargs` (the library's
per-request channel, one int32 row per processor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessorList
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
    ContinuousBatchingLogitsProcessorList,
)

_MASKED = -float("inf")


class _Temperature(ContinuousBatchingLogitsProcessor):
    supported_kwargs = {"temperature": float}
    ignored_kwargs = ()

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.copy_(torch.ones_like(int32_tensor, dtype=torch.float32).view(torch.int32))

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        values = [r.state.logit_processor_kwargs.get("temperature", 1.0)
                  for r in requests_with_new_token]
        return torch.tensor(values, dtype=torch.float32).view(torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        temperatures = tensor_arg[: scores.size(0)].view(torch.float32)
        return scores / temperatures.unsqueeze(-1)


class _TopK(ContinuousBatchingLogitsProcessor):
    """k = 0: off; k = 1: greedy."""

    supported_kwargs = {"top_k": int}
    ignored_kwargs = ()

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.fill_(0)

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        return torch.tensor([r.state.logit_processor_kwargs.get("top_k", 0)
                             for r in requests_with_new_token], dtype=torch.int32)

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


class _TopP(ContinuousBatchingLogitsProcessor):
    """p = 1: off. Keeps the smallest set of tokens whose probability reaches p."""

    supported_kwargs = {"top_p": float}
    ignored_kwargs = ()

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.copy_(torch.ones_like(int32_tensor, dtype=torch.float32).view(torch.int32))

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        values = [r.state.logit_processor_kwargs.get("top_p", 1.0)
                  for r in requests_with_new_token]
        return torch.tensor(values, dtype=torch.float32).view(torch.int32)

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


class _MinTokens(ContinuousBatchingLogitsProcessor):
    supported_kwargs = {"min_tokens": int}
    ignored_kwargs = ()

    def __init__(self, eos_token_ids: Sequence[int]) -> None:
        self._eos = torch.tensor(list(eos_token_ids), dtype=torch.long)

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.fill_(0)

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        return torch.tensor([
            int(r.state.generated_len() < r.state.logit_processor_kwargs.get("min_tokens", 0))
            for r in requests_with_new_token], dtype=torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        rows = tensor_arg[: scores.size(0)].nonzero().squeeze(1)
        if rows.numel() == 0 or self._eos.numel() == 0:
            return scores
        scores[rows.unsqueeze(-1), self._eos.unsqueeze(0)] = _MASKED
        return scores


class BatchSampling(ContinuousBatchingLogitsProcessorList):
    """The processors above, in the order they must run, as the manager's processor list."""

    def __init__(self, eos_token_ids: Sequence[int]) -> None:
        processors = [_Temperature(), _TopK(), _TopP(), _MinTokens(eos_token_ids)]
        super().__init__(LogitsProcessorList(processors), per_request_processors=False)
        self.tensors_required = len(processors)  # one int32 row of arguments each


def request_kwargs(*, greedy: bool, temperature: float, top_k: int, top_p: float,
                   min_tokens: int) -> dict[str, Any]:
    """The per-request values for `add_request(**kwargs)`."""
    if greedy:
        return {"temperature": 1.0, "top_k": 1, "top_p": 1.0, "min_tokens": min_tokens}
    return {"temperature": float(temperature), "top_k": int(top_k), "top_p": float(top_p),
            "min_tokens": min_tokens}
