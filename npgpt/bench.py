"""``npgpt bench``: the benchmarks that need nothing but NumPy, as one table.

The comparisons against PyTorch, transformers and tiktoken live in the repository's
``benchmarks/`` scripts (they need those packages); this module times npgpt alone, with the
same shapes, so that any machine can see its own figures. Every figure is a median.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import numpy as np

SEED_SHAPE = dict(vocab_size=65, context_length=256, d_model=128, num_heads=4, num_layers=4)
BABY_SHAPE = dict(vocab_size=65, context_length=64, d_model=128, num_heads=4, num_layers=4)


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    Examples
    --------
    >>> calls = []
    >>> seconds = median_seconds(lambda: calls.append(sum(range(1000))), repeats=3, warmup=1)
    >>> len(calls), 0 < seconds < 1          # 1 warm-up run (not timed) + 3 timed runs
    (4, True)
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_average():
    """The machine's load average over the last minute (``os.getloadavg()[0]``: processes
    running or waiting for a CPU), or None where the system does not say.

    >>> load = load_average()
    >>> load is None or load >= 0
    True
    """
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def conditions(load_at_start=None) -> list:
    """The lines that say under what conditions the figures were taken: the threads npgpt's
    last call ran on and why (:mod:`npgpt.threads`: fixed by ``--threads``,
    ``NPGPT_NUM_THREADS`` or ``set_num_threads``, else chosen per call), NumPy's BLAS, and the
    1-minute load average at the start (``load_at_start``) and now. Timings on a machine whose
    load approaches its CPU count are slower.

    Examples
    --------
    >>> from npgpt import threads
    >>> threads.set_num_threads(1)
    >>> print(conditions(load_at_start=0.5)[0])                  # doctest: +ELLIPSIS
    threads: 1 (fixed: --threads, NPGPT_NUM_THREADS or set_num_threads); NumPy's BLAS: ...
    >>> threads.set_num_threads(None)
    """
    from . import threads

    info = threads.blas_info()
    why = ("fixed: --threads, NPGPT_NUM_THREADS or set_num_threads" if threads.forced() is not None
           else "chosen per call: one for small work or while other processes hold a core")
    blas = info["name"] + ("" if info["controllable"] else ", its threads not set by npgpt (its own default)")
    now = load_average()
    cpus = os.cpu_count()
    if now is None:
        load = "load average: unknown (os.getloadavg is not available here)"
    else:
        start = "" if load_at_start is None else f"{load_at_start:.2f} at the start, "
        load = f"load average (1 minute): {start}{now:.2f} at the end, on {cpus} CPUs"
    return [f"threads: {threads.get_num_threads()} ({why}); NumPy's BLAS: {blas}", load]


def run(repeats: int = 5, progress: Callable[[str], None] | None = None) -> list:
    """Run every NumPy-only benchmark; returns rows (name, shape, median, unit figure).

    The median is in seconds; :func:`format_table` shows the rows. ``progress(name)`` is
    called as each benchmark starts (``npgpt bench`` prints the name).

    Examples
    --------
    A whole run takes seconds; here ``progress`` stops it as the first benchmark starts:

    >>> class Enough(Exception):
    ...     pass
    >>> def stop(name):
    ...     raise Enough(f"about to time: {name}")
    >>> run(progress=stop)
    Traceback (most recent call last):
        ...
    npgpt.bench.Enough: about to time: greedy generation
    """
    from . import GPT, GPTConfig, generate
    from . import sampling
    from .train import TrainConfig, TrainState, get_batch, train_step

    rows = []

    def note(name):
        if progress is not None:
            progress(name)

    seed_model = GPT(GPTConfig(**SEED_SHAPE, residual="seed"), seed=0)
    prompt = np.arange(8) % 65

    note("greedy generation")
    t = median_seconds(lambda: generate(seed_model, prompt, max_new_tokens=200), repeats)
    rows.append(("greedy generate, KV cache", "seed-size model, batch 1, 200 tokens", t, f"{200 / t:,.0f} tokens/s"))

    note("sampling")
    t = median_seconds(lambda: generate(seed_model, prompt, max_new_tokens=200, do_sample=True,
                                        temperature=0.8, top_p=0.9, seed=0), repeats)
    rows.append(("sampling T=0.8, top-p 0.9", "seed-size model, batch 1, 200 tokens", t, f"{200 / t:,.0f} tokens/s"))

    note("beam search")
    t = median_seconds(lambda: generate(seed_model, prompt, max_new_tokens=100, num_beams=4), repeats)
    rows.append(("beam search, 4 beams", "seed-size model, 100 tokens", t, f"{100 / t:,.0f} steps/s"))

    note("training step")
    baby = GPT(GPTConfig(**BABY_SHAPE), seed=0)
    state = TrainState.new(baby, TrainConfig())
    data = np.random.default_rng(0).integers(0, 65, 20_000)
    x, y = get_batch(data, 12, 64, np.random.default_rng(1))
    t = median_seconds(lambda: train_step(state, x, y), max(repeats, 5), warmup=2)
    rows.append(("training step (fwd+bwd+AdamW)", "baby GPT, batch 12 x 64", t, f"{12 * 64 / t:,.0f} tokens/s"))

    logits = np.random.default_rng(0).standard_normal((32, 50257)).astype(np.float32) * 3
    for name, fn in (("top-p 0.9", lambda: sampling.top_p(logits, 0.9)),
                     ("top-k 50", lambda: sampling.top_k(logits, 50)),
                     ("min-p 0.05", lambda: sampling.min_p(logits, 0.05))):
        note(name)
        t = median_seconds(fn, repeats)
        rows.append((name, "logits (32, 50257) float32", t, f"{32 / t:,.0f} rows/s"))
    return rows


def markdown_table(rows, headers) -> str:
    """Rows (sequences of cells) under headers, as an aligned Markdown table.

    Examples
    --------
    >>> print(markdown_table([("top-k", 1.5), ("top-p", 12)], ("rule", "ms")))
    | rule  | ms  |
    |-------|-----|
    | top-k | 1.5 |
    | top-p | 12  |
    """
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def format_table(rows) -> str:
    """The rows of :func:`run` as a Markdown table (the median shown in milliseconds).

    Examples
    --------
    >>> print(format_table([("top-k 50", "logits (32, 50257)", 0.00182, "17,616 rows/s")]))
    | benchmark | shape              | median  | throughput    |
    |-----------|--------------------|---------|---------------|
    | top-k 50  | logits (32, 50257) | 1.82 ms | 17,616 rows/s |
    """
    return markdown_table([(a, b, f"{t * 1000:,.2f} ms", d) for a, b, t, d in rows],
                          ("benchmark", "shape", "median", "throughput"))


