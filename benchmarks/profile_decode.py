"""Where a decoding step's time goes, on a quiet and on a busy machine.

    python benchmarks/profile_decode.py [--new-tokens 24] [--repeats 3] [--conditions quiet,busy]
                                        [--threads default,1,2]

SmolLM2-135M-Instruct from its GGUF (``tests/fixtures/fetch_models.py``), or, without the file,
a model of its shape with random weights (the same work per token). A 37-token chat prompt and
``--new-tokens`` greedy tokens. "busy": one pure-Python busy loop per core, as in
``bench_busy.py``. Threads: ``default`` is npgpt's own choice per call (:mod:`npgpt.threads`),
``1`` and ``2`` force that many.

Each of :mod:`npgpt.inference`'s steps is wrapped in a timer that keeps its own time apart from
the steps it calls (exclusive time), over a run making ``n + 1`` tokens less one making 1, per
decoded token; "outside the forward pass" is the rest of ``generate``'s step (choosing the
token, the stop checks, the streaming bookkeeping). The timers add about a microsecond per call
(some 400 calls a step); the step's total is also timed without them. Medians of ``--repeats``.
"""

import argparse
import collections
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import npgpt  # noqa: E402
from npgpt import inference, kv_cache, threads  # noqa: E402
from bench_busy import PROMPT_37, _busy_loops, smollm2_path  # noqa: E402

#: the steps timed, with the name each is shown under
STEPS = {"_embed": "embedding lookup, rotary tables", "_norm": "RMSNorm / LayerNorm",
         "_project_qkv": "q, k, v split", "_linear": "q/k/v and output projections (x @ W)",
         "_rotate": "rotary turn of q and k", "_attention": "attention: reshapes",
         "_attend": "attention: query blocks", "_attend_dense": "attention: softmax(q kᵀ) v",
         "_feed_forward": "residual adds", "_swiglu": "SwiGLU (gate/up, SiLU, down)",
         "_mlp": "MLP (fc, GELU, proj)", "_logits": "output layer (x @ W_out)",
         "append": "KV cache append", "_block": "block bookkeeping"}


class Timers:
    """Exclusive time per wrapped function: a call's time less its wrapped callees'."""

    def __init__(self):
        self.own = collections.Counter()
        self.calls = collections.Counter()
        self.stack = []

    def wrap(self, owner, name):
        original = getattr(owner, name)
        timers = self

        def timed(*args, **kwargs):
            start = time.perf_counter()
            timers.stack.append(0.0)
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = timers.stack.pop()
                timers.own[name] += elapsed - inner
                timers.calls[name] += 1
                if timers.stack:
                    timers.stack[-1] += elapsed
        setattr(owner, name, timed)
        return original


def load_model():
    path = smollm2_path()
    if os.path.exists(path):
        return npgpt.load(path), "SmolLM2-135M-Instruct (real weights)"
    cfg = npgpt.GPTConfig(vocab_size=49152, context_length=2048, d_model=576, num_heads=9, num_kv_heads=3,
                          num_layers=30, ffn_dim=1536, norm="rmsnorm", positions="rope", mlp="swiglu",
                          tie_embeddings=True, output_bias=False, layer_norm_eps=1e-5)
    return npgpt.GPT(cfg, seed=0), "SmolLM2-135M's shape, random weights (the GGUF is not cached)"


def profile(model, prompt, n, repeats):
    """(ms per decoded token untimed, {step: ms per token}, {step: calls per token}) medians."""
    def run(tokens):
        return npgpt.generate(model, prompt, max_new_tokens=tokens)

    run(n + 1)
    totals, owns, calls = [], collections.defaultdict(list), collections.defaultdict(list)
    for _ in range(repeats):
        time.sleep(0.5)
        start = time.perf_counter()
        run(n + 1)
        long = time.perf_counter() - start
        time.sleep(0.5)
        start = time.perf_counter()
        run(1)
        totals.append((long - (time.perf_counter() - start)) / n)
        timers = Timers()
        originals = [(inference, name, timers.wrap(inference, name)) for name in STEPS if hasattr(inference, name)]
        originals.append((kv_cache._LayerKV, "append", timers.wrap(kv_cache._LayerKV, "append")))
        try:
            time.sleep(0.5)
            start = time.perf_counter()
            run(n + 1)
            long = time.perf_counter() - start
            big, big_calls = timers.own.copy(), timers.calls.copy()
            timers.own.clear()
            timers.calls.clear()
            time.sleep(0.5)
            start = time.perf_counter()
            run(1)
            short = time.perf_counter() - start
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)
        step = (long - short) / n
        inside = 0.0
        for name in big:
            per = (big[name] - timers.own[name]) / n
            owns[name].append(per)
            calls[name].append((big_calls[name] - timers.calls[name]) / n)
            inside += per
        owns["(outside the forward pass)"].append(step - inside)
    return (statistics.median(totals) * 1e3, {k: statistics.median(v) * 1e3 for k, v in owns.items()},
            {k: statistics.median(v) for k, v in calls.items()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--conditions", default="quiet,busy")
    parser.add_argument("--threads", default="default,1,2")
    args = parser.parse_args(argv)
    model, name = load_model()
    prompt = (model.tokenizer.encode(PROMPT_37, add_special_tokens=False) if getattr(model, "tokenizer", None) is not None
              else np.arange(37) + 100)
    print(f"{name}: {len(prompt)}-token prompt, {args.new_tokens} greedy tokens; {threads.CORES} cores; "
          f"weights {sum(a.nbytes for a in model.params.values()) / 1e6:,.0f} MB; medians of {args.repeats}")
    for condition in args.conditions.split(","):
        loops = _busy_loops(threads.CORES) if condition == "busy" else []
        try:
            time.sleep(1.0 if loops else 0.0)
            for setting in args.threads.split(","):
                forced = None if setting == "default" else int(setting)
                with threads.using(forced):
                    total, owns, calls = profile(model, prompt, args.new_tokens, args.repeats)
                    used = threads.get_num_threads()
                print(f"\n{condition} (load {os.getloadavg()[0]:.2f}), threads {setting} "
                      f"(last call used {used}): {total:.1f} ms per token untimed, "
                      f"{sum(owns.values()):.1f} timed")
                for step, ms in sorted(owns.items(), key=lambda kv: -kv[1]):
                    label = STEPS.get(step, step)
                    count = f"{calls[step]:5.0f}" if step in calls else "     "
                    print(f"  {label:<42} {ms:7.2f} ms {100 * ms / sum(owns.values()):5.1f}%  calls {count}")
        finally:
            for loop in loops:
                loop.kill()


if __name__ == "__main__":
    main()
