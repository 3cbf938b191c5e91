"""Timing helpers shared by the benchmark scripts.

These machines are noisy: every figure is the median of several repeats, and npgpt and the
reference are timed in the same run, alternately, so that the ratio is what to quote.
"""

import importlib.util
import statistics
import time


def has(module):
    return importlib.util.find_spec(module) is not None


def median_time(fn, repeats=5, warmup=1):
    """Median wall time of fn() in seconds over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns, repeats=5, warmup=1):
    """Median times of several callables, run round-robin so drift hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def print_table(rows, headers):
    """Print rows (lists of cells) as a Markdown table."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print(line(r))
