"""GPT-2 124M shape: decode at batch 1 and 8, a 512-token prefill, peak memory, and the
memory-bandwidth roofline, npgpt against transformers holding the same weights.

    python benchmarks/bench_scale.py [--new-tokens 24] [--repeats 3] [--quick]

The model has GPT-2 small's shape (V 50,257, context 1,024, d_model 768, 12 heads, 12 layers;
pre-norm, tanh GELU, tied embeddings) with random weights (N(0, 0.02²)). transformers loads the
very same weights from a folder written by ``model.save_gpt2``; greedy tokens are checked equal
before timing. Rows:

- decode, batch 1 and batch 8: greedy ``generate`` of ``--new-tokens`` tokens after an 8-token
  prompt, tokens/s (new tokens × rows / time);
- prefill: ``generate`` with one new token after a 512-token prompt (the forward pass over
  the prompt into a fresh KV cache is nearly all of it), ms;
- roofline: a decode step must read every weight the model multiplies by (the blocks and the
  output projection, 495 MB in float32); one sweep over the model's own weight arrays
  (``np.add.reduce`` on each) measures how fast this machine reads them, giving the most tokens
  per second batch-1 decoding can reach; npgpt's batch-1 rate is quoted as a fraction of it;
- peak RSS: a child process loads the model and runs batch-8 decoding, or a 1,000-token prompt,
  and reports its peak resident memory, next to the weights' bytes.

Both libraries use their default threads, timed alternately with half a second of rest before
each call (so that neither runs while the other's threads still spin). ``--quick`` skips
transformers and the memory rows.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import npgpt  # noqa: E402
from common import has, interleaved_medians, print_table, thread_note  # noqa: E402

SHAPE = dict(vocab_size=50257, context_length=1024, d_model=768, num_heads=12, num_layers=12,
             gelu="tanh", residual="pre_norm", tie_embeddings=True, output_bias=False)


def gpt2_small(seed=0):
    return npgpt.GPT(npgpt.GPTConfig(**SHAPE), seed=seed)


def weight_bytes(model):
    """Bytes a decode step reads: every parameter but the position table (one row of it)."""
    return sum(v.nbytes for k, v in model.params.items() if k != "position_encoding.weight")


def sweep_seconds(model, repeats=5):
    """Median time to read every weight array once, each in the fastest way this machine
    has: a matrix-vector product ``W @ v`` for each matrix (BLAS's gemv, reading W row by
    row), ``np.add.reduce`` for the vectors."""
    arrays = [v for k, v in model.params.items() if k != "position_encoding.weight"]
    ones = {a.shape[-1]: np.ones(a.shape[-1], dtype=a.dtype) for a in arrays}
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for a in arrays:
            if a.ndim == 2:
                a @ ones[a.shape[1]]
            else:
                np.add.reduce(a)
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def peak_rss(workload, new_tokens):
    """Peak resident memory (bytes) of a child process running ``workload``."""
    code = f"""
import sys, numpy as np
sys.path.insert(0, {os.path.dirname(HERE)!r}); sys.path.insert(0, {HERE!r})
from bench_scale import gpt2_small
import npgpt
model = gpt2_small()
if {workload!r} == "batch 8":
    prompts = np.random.default_rng(0).integers(0, 50257, (8, 8))
    npgpt.generate(model, prompts, max_new_tokens={new_tokens})
else:
    prompt = np.random.default_rng(0).integers(0, 50257, 1000)
    npgpt.generate(model, prompt, max_new_tokens=8)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        print(int(line.split()[1]) * 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="npgpt only, no memory rows")
    args = parser.parse_args(argv)
    n = args.new_tokens
    model = gpt2_small()
    rng = np.random.default_rng(0)
    prompt1 = rng.integers(0, SHAPE["vocab_size"], (1, 8))
    prompt8 = rng.integers(0, SHAPE["vocab_size"], (8, 8))
    long = rng.integers(0, SHAPE["vocab_size"], (1, 512))

    def prefill():
        return npgpt.generate(model, long, max_new_tokens=1)

    runs = {
        "decode, batch 1": {"npgpt": lambda: npgpt.generate(model, prompt1, max_new_tokens=n)},
        "decode, batch 8": {"npgpt": lambda: npgpt.generate(model, prompt8, max_new_tokens=n)},
        "prefill, 512 tokens": {"npgpt": prefill},
    }
    if has("transformers") and has("torch") and not args.quick:
        import torch
        from transformers import GPT2LMHeadModel

        folder = tempfile.mkdtemp(prefix="bench-scale-")
        model.save_gpt2(folder)
        hf = GPT2LMHeadModel.from_pretrained(folder).eval()
        hf.generation_config.pad_token_id = 0
        print(thread_note())

        def hf_generate(ids, new=n):
            ids = torch.from_numpy(ids)
            with torch.no_grad():
                return hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   max_new_tokens=new, min_new_tokens=new)

        runs["decode, batch 1"]["transformers"] = lambda: hf_generate(prompt1)
        runs["decode, batch 8"]["transformers"] = lambda: hf_generate(prompt8)
        runs["prefill, 512 tokens"]["transformers"] = lambda: hf_generate(long, new=1)
        for rows in (prompt1, prompt8, long):
            new = 1 if rows is long else n
            same = np.array_equal(npgpt.generate(model, rows, max_new_tokens=new).sequences,
                                  hf_generate(rows, new).numpy())
            print(f"npgpt and transformers generate the same tokens ({rows.shape[0]} x "
                  f"{rows.shape[1]} prompt): {same}")

    table, results = [], {}
    for name, fns in runs.items():
        times = interleaved_medians(fns, repeats=args.repeats, warmup=1, pause=0.5)
        results[name] = times
        ours, theirs = times["npgpt"], times.get("transformers")
        if name.startswith("decode"):
            rows = 1 if "1" in name.split(",")[1] else 8
            cells = [f"{n * rows / ours:,.1f} tok/s",
                     "-" if theirs is None else f"{n * rows / theirs:,.1f} tok/s"]
        else:
            cells = [f"{ours * 1e3:,.0f} ms", "-" if theirs is None else f"{theirs * 1e3:,.0f} ms"]
        table.append([name] + cells + ["-" if theirs is None else f"{theirs / ours:.2f}x"])

    bytes_per_step = weight_bytes(model)
    sweep = sweep_seconds(model)
    ceiling = 1.0 / sweep
    batch1 = n / results["decode, batch 1"]["npgpt"]
    table.append(["roofline, batch 1", f"{batch1:,.1f} tok/s",
                  f"ceiling {ceiling:,.1f} tok/s ({bytes_per_step / sweep / 1e9:.1f} GB/s over "
                  f"{bytes_per_step / 1e6:,.0f} MB)", f"{batch1 / ceiling:.0%} of it"])
    if not args.quick:
        for workload in ("batch 8", "1,000-token prompt"):
            rss = peak_rss(workload, n)
            table.append([f"peak RSS, {workload}", f"{rss / 1e9:.2f} GB",
                          f"weights {bytes_per_step / 1e9:.2f} GB", f"{rss / bytes_per_step:.2f}x the weights"])
    print(f"GPT-2 124M shape, {n} new tokens, medians of {args.repeats}:")
    print_table(table, ["workload", "npgpt", "transformers / reference", "npgpt speed-up"])
    return table


if __name__ == "__main__":
    main()
