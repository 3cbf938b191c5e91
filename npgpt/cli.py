"""The ``npgpt`` command line (prints; the library never does)."""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _generate(args) -> int:
    from . import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=65, context_length=256, d_model=128, num_heads=4, num_layers=4,
                    residual="seed")
    model = GPT(cfg, seed=args.seed, init="torch")
    ids = np.array(args.prompt_ids, dtype=np.int64)
    cache = model.new_cache(1)
    logits = model(ids[None, :], cache=cache, last_only=True)
    out = list(ids)
    for _ in range(args.max_new_tokens):
        token = int(np.argmax(logits[0]))
        out.append(token)
        logits = model(np.array([[token]]), cache=cache, last_only=True)
    print(" ".join(map(str, out)))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="npgpt", description="GPT in NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="greedy continuation of token ids on a fresh model")
    gen.add_argument("--prompt-ids", type=int, nargs="+", default=[0, 1, 2])
    gen.add_argument("--max-new-tokens", type=int, default=20)
    gen.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return _generate(args)


if __name__ == "__main__":
    sys.exit(main())
