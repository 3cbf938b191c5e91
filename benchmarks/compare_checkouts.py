"""Did a change make npgpt slower? Time this checkout against another one, in one process.

    git worktree add /tmp/npgpt-before HEAD~3          # or any other copy of the repository
    python benchmarks/compare_checkouts.py /tmp/npgpt-before [--repeats 21]

The other checkout's package is imported under another name beside this one, and every
workload (the ones the benchmark scripts time: greedy generation in the three model forms, beam
search, top-p / top-k / min-p on GPT-2-sized logits, a training step, and, when
``NPGPT_GPT2_TIKTOKEN`` names GPT-2's rank file, BPE encoding; when SmolLM2-135M-Instruct's GGUF
is cached (``tests/fixtures/fetch_models.py``), its greedy decoding) runs from both, alternately,
in the same process. That matters here: two processes running the same code can differ by
10-20% on this machine, because glibc's malloc returns freed memory to the system at
different moments and every large temporary array then costs page faults. In one process
both checkouts see the same heap. Prints each workload's medians and the ratio this/other.
"""

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import npgpt  # noqa: E402
from common import print_table  # noqa: E402

SHAPE = dict(vocab_size=65, context_length=256, d_model=128, num_heads=4, num_layers=4)


def import_other(path):
    """The package ``npgpt`` of another checkout, imported as ``npgpt_other``."""
    folder = tempfile.mkdtemp(prefix="npgpt-other-")
    os.symlink(os.path.join(os.path.abspath(path), "npgpt"), os.path.join(folder, "npgpt_other"))
    sys.path.insert(0, folder)
    return importlib.import_module("npgpt_other")


def workloads(pkg):
    """name -> callable, built with the given package."""
    sampling = importlib.import_module(pkg.__name__ + ".sampling")
    train = importlib.import_module(pkg.__name__ + ".train")
    prompt = np.random.default_rng(0).integers(0, 65, 8)
    seed_model = pkg.GPT(pkg.GPTConfig(**SHAPE, residual="seed", gelu="exact"), seed=0)
    gpt2 = pkg.GPT(pkg.GPTConfig(**SHAPE, residual="pre_norm", gelu="tanh", tie_embeddings=True,
                                 output_bias=False), seed=0, init="torch")
    gpt2.params["token_embedding.weight"] *= np.float32(0.3)
    llama = pkg.GPT(pkg.GPTConfig(**SHAPE, norm="rmsnorm", positions="rope", mlp="swiglu",
                                  num_kv_heads=2, output_bias=False), seed=0, init="torch")
    logits = (np.random.default_rng(0).normal(size=(32, 50257)) * 3).astype(np.float32)
    small = pkg.GPTConfig(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)
    state = train.TrainState.new(pkg.GPT(small, seed=0), train.TrainConfig(batch_size=12, steps=10**6))
    data = np.random.default_rng(0).integers(0, 65, 10000)
    batches = np.random.default_rng(0)

    def train_step():
        x, y = train.get_batch(data, 12, 64, batches)
        train.train_step(state, x, y)

    runs = {
        "greedy 200 tokens, the seed's model": lambda: pkg.generate(seed_model, prompt, max_new_tokens=200),
        "greedy 200 tokens, GPT-2 form": lambda: pkg.generate(gpt2, prompt, max_new_tokens=200),
        "greedy 200 tokens, Llama form": lambda: pkg.generate(llama, prompt, max_new_tokens=200),
        "beam search, 4 beams, 100 tokens": lambda: pkg.generate(gpt2, prompt, max_new_tokens=100, num_beams=4),
        "top_p(0.9), (32, 50257)": lambda: sampling.top_p(logits, 0.9),
        "top_k(50), (32, 50257)": lambda: sampling.top_k(logits, 50),
        "min_p(0.1), (32, 50257)": lambda: sampling.min_p(logits, 0.1),
        "training step, batch 12 x 64": train_step,
    }
    from bench_busy import PROMPT_37, smollm2_path
    if os.path.exists(smollm2_path()):
        smollm2 = pkg.load(smollm2_path())
        chat = smollm2.tokenizer.encode(PROMPT_37, add_special_tokens=False)
        runs["SmolLM2-135M, 37-token prompt + 24 greedy tokens"] = (
            lambda: pkg.generate(smollm2, chat, max_new_tokens=24))
    rank_file = os.environ.get("NPGPT_GPT2_TIKTOKEN")
    if rank_file:
        from bench_tokenize import english_text
        tokenizers = importlib.import_module(pkg.__name__ + ".tokenizers")
        tok = tokenizers.BPETokenizer.from_tiktoken(rank_file, tokenizers.GPT2_SPECIAL_TOKENS)
        text = english_text()

        def encode_cold():
            tok._cache.clear()
            tok.encode(text)
        runs["encode 1 MB, cold cache"] = encode_cold
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="another checkout of the repository")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--only", default="", help="run only the workloads whose names contain this text")
    args = parser.parse_args(argv)
    other = import_other(args.other)
    mine, theirs = workloads(npgpt), workloads(other)
    rows = []
    for name in mine:
        if name not in theirs or args.only not in name:
            continue
        times = {"this": [], "other": []}
        pair = [("this", mine[name]), ("other", theirs[name])]
        for fn in (mine[name], theirs[name]):
            fn()                                                  # warm-up
        for i in range(args.repeats):
            for side, fn in pair if i % 2 else pair[::-1]:
                start = time.perf_counter()
                fn()
                times[side].append(time.perf_counter() - start)
        this, that = statistics.median(times["this"]), statistics.median(times["other"])
        rows.append([name, f"{this * 1e3:.2f}", f"{that * 1e3:.2f}", f"{this / that:.3f}"])
    print(f"this checkout: {HERE}\nother: {os.path.abspath(args.other)}\n"
          f"medians of {args.repeats}, alternating, one process:")
    print_table(rows, ["workload", "this ms", "other ms", "this / other"])


if __name__ == "__main__":
    main()
