"""Speculative decoding speed: the bundled model with the bundled draft against the bundled
model alone, greedy and sampling, for a few numbers of proposals a round.

    python benchmarks/bench_speculative.py [--new-tokens 100] [--repeats 7] [--ks 2 3 4 5]

``npgpt.load("shakespeare-char")`` (4 layers, d_model 192) with
``npgpt.load("shakespeare-char-draft")`` as the draft, one prompt of batch 1 whose new tokens
stay within the context (128). Each timed call makes ``--samples`` sequences (sampling: seeds
0, 1, ...), plain and speculative calls alternating (``interleaved_medians``); the table
shows the median tokens/s, the speed-up over plain generation, and the acceptance rate
(proposals accepted / proposals). Speculative decoding runs with generate's defaults (4
proposals at first, the heuristic schedule, the confidence stop at 0.4) and with k proposals
every round (``draft_schedule="constant", draft_confidence=0``). Greedy outputs are checked
equal to plain greedy first.

The second table says why the speed-up is what it is: the median time of one draft step, one
model step and one verification pass of k + 1 tokens (each a cached forward pass, as the
decoding loop runs them), and the speed-up those predict for an acceptance rate a per
proposal: a round of k proposals costs k draft steps and one verification and makes
(1 - a^(k+1)) / (1 - a) tokens on average, where plain decoding pays one model step a token
(the loop's own work, processing and bookkeeping, comes on top of both).
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import npgpt  # noqa: E402
from npgpt import inference  # noqa: E402
from npgpt.model import positions_and_mask  # noqa: E402
from common import interleaved_medians, print_table, thread_note  # noqa: E402

PROMPT = "ROMEO:\nBut soft, what light"
MODES = {"greedy": dict(),
         "sampling (T=0.8, top-p 0.95)": dict(do_sample=True, temperature=0.8, top_p=0.95)}


def run(model, ids, n, samples, draft=None, k=None, schedule=None, **options):
    """``samples`` generations (seeds 0, 1, ...): the last output and the mean acceptance.
    ``schedule`` None: generate's defaults (k proposals at first, the heuristic schedule,
    the confidence stop); "constant": k proposals every round, no confidence stop."""
    rates = []
    for seed in range(samples):
        extra = dict(draft_model=draft, num_draft_tokens=k) if draft is not None else {}
        if schedule == "constant":
            extra.update(draft_schedule="constant", draft_confidence=0.0)
        seed_option = dict(seed=seed) if options.get("do_sample") else {}
        out = npgpt.generate(model, ids, max_new_tokens=n, **options, **seed_option, **extra)
        rates.append(out.acceptance_rate)
    return out, (None if draft is None else float(np.mean(rates)))


def speed_table(model, draft, ids, args):
    """Rows: mode, k, tokens/s, speed-up, acceptance."""
    rows = []
    for mode, options in MODES.items():
        calls = {"plain": lambda o=options: run(model, ids, args.new_tokens, args.samples, **o),
                 "speculative (defaults)": lambda o=options: run(
                     model, ids, args.new_tokens, args.samples, draft, 4, **o)}
        for k in args.ks:
            calls[f"k={k} every round"] = lambda o=options, k=k: run(
                model, ids, args.new_tokens, args.samples, draft, k, "constant", **o)
        if not options:
            plain = calls["plain"]()[0].sequences
            same = all(np.array_equal(fn()[0].sequences, plain) for name, fn in calls.items())
            print(f"greedy: speculative and plain generate the same {args.new_tokens} tokens: {same}")
        rates = {name: fn()[1] for name, fn in calls.items()}
        times = interleaved_medians(calls, repeats=args.repeats, pause=args.pause)
        tokens = args.new_tokens * args.samples
        for name, t in times.items():
            rate = "" if rates[name] is None else f"{rates[name]:.2f}"
            rows.append([mode, name, f"{tokens / t:,.0f}", f"{times['plain'] / t:.2f}x", rate])
    return rows


def step_times(model, draft, ids, ks, repeats=200):
    """Median seconds of a cached forward pass of T tokens after the prompt: the draft's
    with T = 1, the model's with T = 1 and T = k + 1 (a verification)."""
    def median_pass(m, T):
        w = inference.weights(m.params, m.config)
        cache = m.new_cache(1, capacity=len(ids) + T)
        prompt = np.array([ids])
        inference.forward(w, prompt, *positions_and_mask(len(ids), None, cache, m.dtype), cache)
        new = np.array([ids[:T]])
        times = []
        for _ in range(repeats):
            cache.truncate(len(ids))
            start = time.perf_counter()
            positions, mask = positions_and_mask(T, None, cache, m.dtype)
            inference.forward(w, new, positions, mask, cache, last_only=T == 1)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    out = {"draft step": median_pass(draft, 1), "model step": median_pass(model, 1)}
    for k in ks:
        out[f"verification, k={k}"] = median_pass(model, k + 1)
    return out


def predicted(times, k, a):
    """The speed-up a round of k proposals predicts at acceptance a (forward passes only)."""
    tokens = (1 - a ** (k + 1)) / (1 - a) if a < 1 else k + 1
    return tokens * times["model step"] / (k * times["draft step"] + times[f"verification, k={k}"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--samples", type=int, default=3, help="sequences a timed call")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--pause", type=float, default=0.05)
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--draft", default="shakespeare-char-draft", help="the draft (name or path)")
    args = parser.parse_args(argv)

    model, draft = npgpt.load("shakespeare-char"), npgpt.load(args.draft)
    ids = model.tokenizer.encode(PROMPT)
    if len(ids) + args.new_tokens > model.config.context_length:
        sys.exit(f"{len(ids)} + {args.new_tokens} tokens pass the context ({model.config.context_length})")
    print(f"model: {model.num_parameters():,} parameters; draft: {draft.num_parameters():,}; "
          f"{thread_note()}; load average {os.getloadavg()[0]:.2f} at the start")
    rows = speed_table(model, draft, ids, args)
    print(f"\nbatch 1, a {len(ids)}-token prompt, {args.new_tokens} new tokens, {args.samples} "
          f"sequences a call, median of {args.repeats} alternating calls:")
    print_table(rows, ["mode", "decoding", "tokens/s", "vs plain", "acceptance"])

    times = step_times(model, draft, ids, args.ks)
    print("\none forward pass with the KV cache (median):")
    print_table([[name, f"{t * 1e6:,.0f}", f"{t / times['model step']:.2f}"] for name, t in times.items()],
                ["pass", "µs", "x model step"])
    print("\nspeed-up the passes alone predict at acceptance a:")
    accept = (0.5, 0.6, 0.7, 0.8, 0.9)
    print_table([[f"k={k}"] + [f"{predicted(times, k, a):.2f}x" for a in accept] for k in args.ks],
                ["round"] + [f"a={a}" for a in accept])
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
