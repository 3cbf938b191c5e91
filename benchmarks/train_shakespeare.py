"""The training targets, reproducible: nanoGPT's CPU "baby GPT" run and the bundled model.

    python benchmarks/train_shakespeare.py baby      # nanoGPT's CPU run: target val loss <= 1.88
    python benchmarks/train_shakespeare.py bundled   # the model shipped as "shakespeare-char"

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
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", choices=sorted(RUNS))
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--out", default=None, help="output folder (default: runs/<run>)")
    args = parser.parse_args(argv)
    if not os.path.exists(args.data):
        sys.exit(f"tiny Shakespeare not found at {args.data}; pass --data")
    out = args.out or os.path.join("runs", args.run)
    cmd = [sys.executable, "-m", "npgpt.cli", "train", "--data", args.data, "--out", out] + RUNS[args.run]
    print("command: npgpt " + " ".join(shlex.quote(c) for c in cmd[3:]), flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO)
    print(f"wall time: {time.perf_counter() - start:.0f} s (exit code {result.returncode})")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
