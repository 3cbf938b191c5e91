"""What a growing KV cache costs: generation with the cache allocated as tokens come
(``npgpt._decoder.ROOM`` slots past the prompt, then doubling) against the same generation
with the cache allocated in full up front, in the same run.

    python benchmarks/bench_kv_growth.py [--new-tokens 1000] [--repeats 5]

Two seed-size models (V=65, d_model 128, 4 heads, 4 layers, context 2048): GPT's block and
the Llama family's. Greedy decoding of ``--new-tokens`` tokens from a 16-token prompt, batch
1 and batch 4, ``context_overflow="exact"`` (the cache holds everything: it grows from 272
slots to 1,016 in two doublings). The outputs are checked identical first; then the median
time of each (interleaved, 0.5 s rest before each call) and their ratio.
"""

import argparse
import os
import sys
from unittest import mock

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import npgpt  # noqa: E402
from npgpt import _decoder  # noqa: E402
from common import interleaved_medians, print_table, thread_note  # noqa: E402

SHAPE = dict(vocab_size=65, context_length=2048, d_model=128, num_heads=4, num_layers=4)
LLAMA = dict(norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=2, output_bias=False)


def run(model, prompt, new_tokens, room):
    with mock.patch.object(_decoder, "ROOM", room):
        return npgpt.generate(model, prompt, max_new_tokens=new_tokens).sequences


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for name, extra in (("GPT", {}), ("Llama", LLAMA)):
        model = npgpt.GPT(npgpt.GPTConfig(**SHAPE, **extra), seed=0)
        for batch in (1, 4):
            prompt = np.random.default_rng(0).integers(0, SHAPE["vocab_size"], (batch, 16))
            grown = run(model, prompt, args.new_tokens, _decoder.ROOM)
            full = run(model, prompt, args.new_tokens, 10 ** 9)
            assert np.array_equal(grown, full), "growth changed the output"
            times = interleaved_medians(
                {"growing": lambda: run(model, prompt, args.new_tokens, _decoder.ROOM),
                 "full": lambda: run(model, prompt, args.new_tokens, 10 ** 9)},
                repeats=args.repeats, pause=0.5)
            tokens = args.new_tokens * batch
            rows.append([name, batch, f"{tokens / times['growing']:,.0f}",
                         f"{tokens / times['full']:,.0f}", f"{times['full'] / times['growing']:.3f}"])
    print(thread_note())
    print_table(rows, ["model", "batch", "growing cache (tokens/s)", "full cache (tokens/s)",
                       "speed ratio growing/full"])


if __name__ == "__main__":
    main()
