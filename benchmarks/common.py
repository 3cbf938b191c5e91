"""Timing helpers shared by the benchmark scripts.

These machines are noisy: every figure is the median of several repeats, and npgpt and the
reference are timed in the same run, alternately, so that the ratio is what to quote.
"""

import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from npgpt.bench import load_average, markdown_table  # noqa: E402


def has(module):
    return importlib.util.find_spec(module) is not None


def thread_note():
    """One line saying how many threads each side used: npgpt's last call (``npgpt.threads``
    chooses per call; NPGPT_NUM_THREADS=1 fixes it) and torch's setting (OMP_NUM_THREADS=1 for
    a single-threaded comparison)."""
    from npgpt import threads

    note = f"threads: npgpt {threads.get_num_threads()} (its last call; {os.cpu_count()} cores)"
    if "torch" in sys.modules:
        note += f", torch {sys.modules['torch'].get_num_threads()}"
    load = load_average()
    return note + (f"; load average {load:.2f} (1 minute, {os.cpu_count()} CPUs)" if load is not None else "")


def interleaved_medians(fns, repeats=5, warmup=1, pause=0.0):
    """Median times of several callables, run round-robin so drift hits all of them alike.

    ``pause`` seconds of sleep before each timed call let the previous call's worker threads
    go idle: OpenBLAS's and torch's threads keep spinning on the cores for a while after
    their work, and would otherwise slow whatever runs next."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(pause)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def print_table(rows, headers):
    """Print rows (lists of cells) as a Markdown table."""
    print(markdown_table(rows, headers))
