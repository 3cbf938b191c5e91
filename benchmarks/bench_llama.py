"""SmolLM2-135M's shape, Llama-family block: greedy decoding tokens/s, npgpt against
transformers' ``LlamaForCausalLM`` holding the same weights, and the memory-bandwidth roofline.

    python benchmarks/bench_llama.py [--quick] [--repeats 5] [--threads both|default|1]

The model has SmolLM2-135M's configuration (vocabulary 49,152, d_model 576, 30 layers, 9 query
heads and 3 key/value heads of size 64, SwiGLU with 1,536 hidden units, RMSNorm, rotary
positions with theta 100,000, tied embeddings, context 2,048) and random weights: transformers
builds it (``LlamaForCausalLM(LlamaConfig(...))``, seeded), saves it as a Hugging Face folder
(``save_pretrained``), and ``npgpt.load`` reads that folder, so both run the very same float32
weights. Greedy tokens are checked identical before timing (neither side stops at an
end-of-sequence token).

Two workloads at batch 1: a short prompt (8 tokens, 64 new) and a longer one (256 tokens, 32
new); tokens/s = new tokens / the whole ``generate`` call (the prompt's forward pass included).
Each runs with both libraries at their default threads (NumPy's BLAS and npgpt's elementwise
threads on every core, torch's default), then with both at one thread (``torch.set_num_threads(1)``;
OpenBLAS's thread count set through its C API, and ``npgpt._threads.WORKERS = 1``). npgpt and
transformers are timed alternately, with half a second of rest before each call, and the
medians quoted.

Roofline: a batch-1 decode step must read every weight once (the tied table whole, for the
output projection) and the keys and values cached so far. The machine's read bandwidth is
measured here with the same threads (a matrix-vector product over a 512 MB matrix, the median
of several); bytes per token times tokens/s over that bandwidth is the fraction of the memory
bound each library reaches.
"""

import argparse
import ctypes
import glob
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import npgpt  # noqa: E402
from npgpt import _threads  # noqa: E402
from common import has, interleaved_medians, print_table  # noqa: E402

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                    max_position_embeddings=2048, rope_theta=100000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, hidden_act="silu", attention_bias=False,
                    mlp_bias=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)


def transformers_model(seed=0):
    """A random LlamaForCausalLM of SmolLM2-135M's shape (float32, eval mode)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).eval()


def openblas_set_threads():
    """NumPy's OpenBLAS ``set_num_threads`` function, or None when it cannot be found."""
    import numpy
    libs = glob.glob(os.path.join(os.path.dirname(numpy.__file__) + ".libs", "*openblas*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                return getattr(lib, name)
    return None


def set_threads(n, torch):
    """Both libraries on n threads (None: their defaults); a note saying what was set."""
    n_default = os.cpu_count() or 1
    set_blas = openblas_set_threads()
    count = n or n_default
    if set_blas is not None:
        set_blas(count)
    _threads.WORKERS = max(1, min(count, 8))
    torch.set_num_threads(count)
    blas = f"{count}" if set_blas is not None else "unchanged (OpenBLAS API not found)"
    return f"NumPy BLAS {blas}, npgpt workers {_threads.WORKERS}, torch {torch.get_num_threads()}"


def read_bandwidth(repeats=7):
    """Bytes per second a matrix-vector product reads from a 512 MB float32 matrix (median)."""
    matrix = np.ones((8192, 16384), dtype=np.float32)
    vector = np.ones(16384, dtype=np.float32)
    matrix @ vector
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matrix @ vector
        times.append(time.perf_counter() - start)
    return matrix.nbytes / float(np.median(times))


def bytes_per_token(model, context):
    """What a batch-1 decode step reads: every parameter once, and the cached keys and values
    of ``context`` tokens in every layer."""
    cfg = model.config
    weights = sum(a.nbytes for a in model.params.values())
    kv = 2 * cfg.num_layers * cfg.kv_heads * cfg.head_size * context * model.dtype.itemsize
    return weights + kv


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short run: fewer tokens, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per library (default 5)")
    parser.add_argument("--threads", choices=["both", "default", "1"], default="both",
                        help="default threads, one thread, or both runs (default)")
    args = parser.parse_args(argv)
    if not (has("torch") and has("transformers")):
        print("bench_llama.py builds its model with transformers: install torch and transformers")
        return 0
    import torch

    repeats = args.repeats or (2 if args.quick else 5)
    workloads = [("short", 8, 16 if args.quick else 64), ("long", 64 if args.quick else 256, 8 if args.quick else 32)]
    hf = transformers_model()
    hf.generation_config.eos_token_id = None                     # both decode every token asked for
    folder = tempfile.mkdtemp(prefix="bench-llama-")
    try:
        hf.save_pretrained(folder)
        model = npgpt.load(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)

    def runs(prompt, n):
        def ours():
            return npgpt.generate(model, prompt, max_new_tokens=n).sequences

        def theirs():
            ids = torch.from_numpy(prompt)
            with torch.no_grad():
                return hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   max_new_tokens=n, pad_token_id=0).numpy()
        return ours, theirs

    print(f"SmolLM2-135M shape ({model.num_parameters():,} parameters, float32), random weights, "
          f"batch 1, greedy; medians of {repeats} alternating calls")
    rows = []
    settings = {"both": [None, 1], "default": [None], "1": [1]}[args.threads]
    for threads in settings:
        note = set_threads(threads, torch)
        bandwidth = read_bandwidth()
        print(f"threads: {note}; read bandwidth {bandwidth / 1e9:.1f} GB/s")
        for name, T, n in workloads:
            prompt = rng.integers(0, SMOLLM2_135M["vocab_size"], (1, T))
            ours, theirs = runs(prompt, n)
            same = np.array_equal(ours(), theirs())
            print(f"  {name} prompt ({T} tokens + {n} new): npgpt and transformers generate the "
                  f"same tokens: {same}")
            times = interleaved_medians({"npgpt": ours, "transformers": theirs}, repeats=repeats,
                                        warmup=1, pause=0.5)
            rate, their_rate = n / times["npgpt"], n / times["transformers"]
            per_token = bytes_per_token(model, T + n / 2)
            rows.append([f"{T} + {n}", "default" if threads is None else str(threads),
                         f"{rate:,.1f}", f"{their_rate:,.1f}", f"{rate / their_rate:.2f}x",
                         f"{per_token * rate / bandwidth:.0%}", f"{per_token * their_rate / bandwidth:.0%}",
                         "yes" if same else "NO"])
    print()
    print_table(rows, ["prompt + new", "threads", "npgpt tok/s", "transformers tok/s",
                       "npgpt / transformers", "npgpt roofline", "transformers roofline",
                       "same tokens"])
    print(f"\nroofline: ({bytes_per_token(model, 0) / 1e6:,.0f} MB of weights + the KV cache "
          f"read per token) x tok/s / read bandwidth; tok/s counts the whole generate call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
