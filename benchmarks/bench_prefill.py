"""Long prompts on GPT-2 124M's shape: prefill time against transformers at 512 and 2,048
tokens, and npgpt's peak memory for a 4,096-token prompt.

    python benchmarks/bench_prefill.py [--lengths 512,2048] [--repeats 3] [--memory-tokens 4096]
                                       [--threads N]

The model has GPT-2 small's shape (V 50,257, d_model 768, 12 heads, 12 layers, tanh GELU, tied
embeddings) with a 4,096-token context and random weights; transformers' GPT2LMHeadModel loads
the same weights from a folder written by ``save_gpt2`` (its default attention: SDPA, causal).
Prefill = a ``generate`` call making one token after the prompt (the prompt's forward pass into
a fresh KV cache is nearly all of it). npgpt's attention takes a long prompt in blocks of
queries that meet only the keys they may see, each thread taking whole heads
(``npgpt/_prefill.py``). Threads: each library's own choice (npgpt: :mod:`npgpt.threads`,
which takes one thread while other processes keep a core busy; torch: every core), or
``--threads N`` on both.
Alternating calls, half a second of rest before each, medians. Peak memory: the largest
amount NumPy held (``tracemalloc``) during the call, beyond the weights, over the weights' bytes.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import npgpt  # noqa: E402
from npgpt import threads  # noqa: E402

SHAPE = dict(vocab_size=50257, context_length=4096, d_model=768, num_heads=12, num_layers=12,
             gelu="tanh", tie_embeddings=True, output_bias=False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="512,2048")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="force N threads on both libraries")
    args = parser.parse_args(argv)
    with threads.using(args.threads):
        run(args)


def run(args):
    model = npgpt.GPT(npgpt.GPTConfig(**SHAPE), seed=0, init="gpt2")
    rng = np.random.default_rng(0)
    weights = sum(a.nbytes for a in model.params.values())
    print(f"GPT-2 124M shape, context 4,096; load {os.getloadavg()[0]:.2f}; medians of {args.repeats}")
    reference = None
    try:
        import torch
        from transformers import GPT2LMHeadModel
        folder = tempfile.mkdtemp()
        model.save_gpt2(folder)
        reference = GPT2LMHeadModel.from_pretrained(folder).eval()
        if args.threads:
            torch.set_num_threads(args.threads)
    except ImportError:
        print("(transformers not installed: npgpt alone)")
    for T in (int(t) for t in args.lengths.split(",")):
        prompt = rng.integers(0, SHAPE["vocab_size"], T)
        runs = {"npgpt": lambda: npgpt.generate(model, prompt, max_new_tokens=1)}
        if reference is not None:
            ids = torch.from_numpy(prompt)[None]

            def hf(ids=ids):
                with torch.no_grad():
                    reference.generate(ids, max_new_tokens=1, do_sample=False, pad_token_id=0)
            runs["transformers"] = hf
        for fn in runs.values():
            fn()
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                time.sleep(0.5)
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(t) for name, t in times.items()}
        ratio = med["transformers"] / med["npgpt"] if "transformers" in med else float("nan")
        print(f"prefill {T:>5} tokens (load {os.getloadavg()[0]:.2f}): npgpt {med['npgpt'] * 1000:,.0f} ms ({threads.get_num_threads()} threads)"
              + (f", transformers {med['transformers'] * 1000:,.0f} ms ({torch.get_num_threads()} threads): "
                 f"npgpt {ratio:.2f}x as fast" if "transformers" in med else ""), flush=True)
    T = args.memory_tokens
    prompt = rng.integers(0, SHAPE["vocab_size"], T)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    npgpt.generate(model, prompt, max_new_tokens=1)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    print(f"peak memory of a {T:,}-token prefill beyond the weights: {peak / 2**20:,.0f} MiB = "
          f"{peak / weights:.2f}x the weights ({weights / 2**20:,.0f} MiB)")


if __name__ == "__main__":
    main()
