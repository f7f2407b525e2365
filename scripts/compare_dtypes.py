"""Greedy output of the embedded model in another dtype, against float32, on fixed prompts.

Runs the hf backend in this process once per dtype (one request at a time, so the batch
plays no part) and prints, per prompt, whether the outputs match and the first token where
they part. This is the quality half of choosing the embedded model's `engine.dtype`.

    python scripts/compare_dtypes.py --dtype bfloat16 --tokens 48
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.config import default_cache_dir  # noqa: E402
from daemon.engine.cancel import CancelSignal  # noqa: E402
from daemon.engine.generation import GenerationRequest  # noqa: E402
from daemon.engine.hf import HfBackend  # noqa: E402
from daemon.engine.sampling import SamplingParams  # noqa: E402

PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "List three primary colours.",
    "What is 12 times 12?",
    "Translate 'good morning' into Spanish.",
    "Give me a name for a black cat.",
    "Why is the sky blue?",
    "Write a short story about a lighthouse keeper.",
    "What does a compiler do?",
)


async def outputs(dtype: str, tokens: int) -> list[tuple[int, ...]]:
    backend = HfBackend(model=None, cache_dir=default_cache_dir(os.environ), dtype=dtype,
                        max_batch_size=1)
    await backend.start()
    try:
        results = []
        for prompt in PROMPTS:
            request = backend.prepare(GenerationRequest(
                messages=[{"role": "user", "content": prompt}],
                sampling=SamplingParams(max_tokens=tokens, temperature=0.0)))
            ids: list[int] = []
            async for delta in backend.generate(request,
                                                CancelSignal(asyncio.get_running_loop())):
                ids.extend(delta.token_ids)
            results.append(tuple(ids))
        return results
    finally:
        await backend.close()


async def main_async(dtype: str, tokens: int) -> None:
    reference = await outputs("float32", tokens)
    other = await outputs(dtype, tokens)
    same = 0
    for prompt, ref, out in zip(PROMPTS, reference, other):
        parted = next((i for i, (a, b) in enumerate(zip(ref, out)) if a != b),
                      None if len(ref) == len(out) else min(len(ref), len(out)))
        same += parted is None
        verdict = "same" if parted is None else f"differs from token {parted}"
        print(f"{verdict:>24}  {prompt}")
    print(f"{dtype} vs float32: {same}/{len(PROMPTS)} prompts give the same {tokens} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    asyncio.run(main_async(args.dtype, args.tokens))


if __name__ == "__main__":
    main()
