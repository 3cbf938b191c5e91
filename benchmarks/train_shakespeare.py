"""The training targets, reproducible: nanoGPT's CPU "baby GPT" run (and a Llama-style model of
its size), and the bundled model.

    python benchmarks/train_shakespeare.py baby      # nanoGPT's CPU run: target val loss <= 1.88
    python benchmarks/train_shakespeare.py baby-llama   # the same with the Llama-style block
    python benchmarks/train_shakespeare.py bundled   # the model shipped as "shakespeare-char"
    python benchmarks/train_shakespeare.py bundle    # runs/bundled -> npgpt/data (float16)
    python benchmarks/train_shakespeare.py draft     # the bundled model's draft for speculative decoding
    python benchmarks/train_shakespeare.py bundle-draft   # runs/draft -> npgpt/data (float16)

Each runs ``npgpt train`` on tiny Shakespeare (../shared/data/tinyshakespeare.txt next to the
repository, or --data), first 90% train / last 10% validation, prints the exact command, the
best validation loss and the wall time.
"""

import argparse
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "tinyshakespeare.txt")

RUNS = {
    # nanoGPT config/train_shakespeare_char.py with its CPU overrides ("baby GPT")
    "baby": ["--layers", "4", "--heads", "4", "--d-model", "128", "--context", "64",
             "--batch-size", "12", "--steps", "2000", "--lr", "1e-3", "--min-lr", "1e-4",
             "--warmup", "100", "--dropout", "0.0", "--beta2", "0.99", "--weight-decay", "0.1",
             "--grad-clip", "1.0", "--eval-interval", "250", "--eval-iters", "100"],
    # the bundled model (npgpt/data/shakespeare-char.safetensors)
    "bundled": ["--layers", "4", "--heads", "4", "--d-model", "192", "--context", "128",
                "--batch-size", "16", "--steps", "5000", "--lr", "2e-3", "--min-lr", "2e-4",
                "--warmup", "200", "--dropout", "0.1", "--beta2", "0.99", "--weight-decay", "0.1",
                "--grad-clip", "1.0", "--eval-interval", "500", "--eval-iters", "50"],
    # its draft (npgpt/data/shakespeare-char-draft.safetensors): one block, d_model 128, the
    # tanh GELU (cheaper than erf): a decoding step costs about a fifth of the model's
    "draft": ["--layers", "1", "--heads", "4", "--d-model", "128", "--context", "128",
              "--gelu", "tanh", "--batch-size", "16", "--steps", "8000", "--lr", "2e-3",
              "--min-lr", "2e-4", "--warmup", "200", "--dropout", "0.0", "--beta2", "0.99",
              "--weight-decay", "0.1", "--grad-clip", "1.0", "--eval-interval", "1000",
              "--eval-iters", "50"],
}
# the Llama-style block (RMSNorm, rotary positions, SwiGLU) with baby GPT's settings; its SwiGLU
# width is chosen so that it has the GPT's parameter count (npgpt.train.matched_ffn_dim)
RUNS["baby-llama"] = ["--arch", "llama"] + RUNS["baby"]
BUNDLED = {"bundle": ("bundled", "shakespeare-char"), "bundle-draft": ("draft", "shakespeare-char-draft")}


def bundle(run_dir, data_path, name):
    """Store the best model of a run in npgpt/data as float16 under ``name`` and report its
    loss on the whole validation split, before and after the rounding."""
    import numpy as np

    sys.path.insert(0, REPO)
    import npgpt
    from npgpt.train import split_corpus, split_loss

    model = npgpt.load(os.path.join(run_dir, "model.safetensors"))
    text = open(data_path, encoding="utf-8").read()
    _, val = split_corpus(np.array(model.tokenizer.encode(text)))
    target = os.path.join(REPO, "npgpt", "data", name + ".safetensors")
    model.save(target, dtype=np.float16)
    shipped = npgpt.load(target)
    print(f"validation loss over the whole split: float32 {split_loss(model, val):.4f}, "
          f"as shipped (float16) {split_loss(shipped, val):.4f}")
    print(f"wrote {target} ({os.path.getsize(target) / 1e6:.2f} MB, "
          f"{model.num_parameters():,} parameters)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", choices=sorted(RUNS) + sorted(BUNDLED))
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--out", default=None, help="output folder (default: runs/<run>)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.data):
        sys.exit(f"tiny Shakespeare not found at {args.data}; pass --data")
    if args.run in BUNDLED:
        run, name = BUNDLED[args.run]
        return bundle(args.out or os.path.join("runs", run), args.data, name)
    out = args.out or os.path.join("runs", args.run)
    cmd = [sys.executable, "-m", "npgpt.cli", "train", "--data", args.data, "--out", out] + RUNS[args.run]
    print("command: npgpt " + " ".join(shlex.quote(c) for c in cmd[3:]), flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO)
    print(f"wall time: {time.perf_counter() - start:.0f} s (exit code {result.returncode})")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
