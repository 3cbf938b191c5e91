"""Truncation speed: npgpt.sampling's top-p, top-k and min-p vs transformers' warpers.

    python benchmarks/bench_sampling.py [--rows 32] [--vocab 50257] [--repeats 7]

Logits: float32 (rows, vocab) drawn N(0, 3^2) (a GPT-2-sized vocabulary and a batch of 32).
npgpt avoids full sorts: top-k bounds the k-th largest by chunk maxima and partially sorts
the few candidates; top-p bins the logits into 1024 buckets, finds the bucket where the mass
crosses p and sorts only that bucket; min-p is one comparison in logit space. transformers
runs its warpers on the same values as a torch tensor (torch's default threads;
``--torch-threads`` changes it). Both are
timed in the same run, alternately; the kept sets are checked equal first.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from npgpt import sampling  # noqa: E402
from common import has, interleaved_medians, print_table, thread_note  # noqa: E402

CASES = [("top_p", 0.9, "TopPLogitsWarper"), ("top_k", 50, "TopKLogitsWarper"),
         ("min_p", 0.1, "MinPLogitsWarper")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own default)")
    args = parser.parse_args(argv)
    if has("torch"):
        import torch
        if args.torch_threads is not None:
            torch.set_num_threads(args.torch_threads)
        print(thread_note())
    logits = (np.random.default_rng(0).normal(size=(args.rows, args.vocab)) * 3).astype(np.float32)

    rows = []
    for name, param, hf_name in CASES:
        fn = getattr(sampling, name)
        runs = {"npgpt": lambda fn=fn, param=param: fn(logits, param)}
        if has("transformers") and has("torch"):
            import torch
            from transformers.generation import logits_process

            warper = getattr(logits_process, hf_name)(param)
            scores = torch.from_numpy(logits)
            runs["transformers"] = lambda warper=warper, scores=scores: warper(None, scores)
            same = np.array_equal(np.isinf(fn(logits, param)), np.isinf(warper(None, scores).numpy()))
            if not same:
                print(f"warning: {name} kept sets differ from transformers")
        times = interleaved_medians(runs, repeats=args.repeats)
        ours = times["npgpt"]
        theirs = times.get("transformers")
        rows.append([f"{name}({param})", f"{ours * 1e3:.2f}",
                     "-" if theirs is None else f"{theirs * 1e3:.2f}",
                     "-" if theirs is None else f"{theirs / ours:.1f}x"])
    print(f"float32 logits ({args.rows}, {args.vocab}), median of {args.repeats}:")
    print_table(rows, ["transform", "npgpt ms", "transformers ms", "npgpt speed-up"])
    return rows


if __name__ == "__main__":
    main()
