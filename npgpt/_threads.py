"""Both cores for large row-wise work.

NumPy lets go of Python's global lock inside its ufuncs, reductions and sorts, so two
threads, each given its own rows of a large array, run at the same time. BLAS already uses
every core for matrix products; this does the same for the elementwise steps between them
(softmax, GELU, LayerNorm on a long prompt; top-p on a batch of GPT-2-sized rows). Each row's
arithmetic is exactly what one thread would do, so results are bit-identical.

Small arrays run in the calling thread: handing work to another thread costs tens of
microseconds. So does work asked for from inside a part (nested calls never wait on the
pool they run in), and all work while the call's thread count (:mod:`npgpt.threads`: one
on a busy machine or for small work) is one.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from . import threads

WORKERS = max(1, min(threads.CORES, 8))
MIN_ELEMENTS = 1 << 17          # below this many elements, one thread is as fast
_pool = None


def by_rows(function, n_rows, n_elements):
    """Call ``function(start, stop)`` over row ranges covering ``range(n_rows)``: in
    ``WORKERS`` threads when there are at least ``MIN_ELEMENTS`` elements and two rows, else
    once. ``function`` must only read and write its own rows.

    Examples
    --------
    >>> x = np.arange(12.0).reshape(4, 3)
    >>> def double(start, stop):
    ...     x[start:stop] *= 2
    >>> by_rows(double, len(x), x.size)
    >>> x[:, 0].tolist()
    [0.0, 6.0, 12.0, 18.0]
    """
    global _pool
    parts = row_parts(n_rows, n_elements)
    if parts < 2:
        function(0, n_rows)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="npgpt")
    bounds = [n_rows * i // parts for i in range(parts + 1)]
    futures = [_pool.submit(function, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    for future in futures:
        future.result()                 # re-raises an exception of a part


def row_parts(n_rows, n_elements):
    """How many threads :func:`by_rows` would split ``n_rows`` rows of ``n_elements`` elements
    between (1: the calling thread alone).

    >>> row_parts(1, 10**9), row_parts(4, 10)
    (1, 1)
    """
    if n_elements < MIN_ELEMENTS or threading.current_thread().name.startswith("npgpt"):
        return 1
    return max(1, min(WORKERS, threads.get_num_threads(), n_rows))


def each(function, items, sizes):
    """Call ``function(item)`` for every item: those of at least ``MIN_ELEMENTS`` elements
    (``sizes``) in the worker threads, the rest in the calling thread. The calls must not
    share what they write.

    Examples
    --------
    >>> arrays = [np.ones(3), np.ones(4)]
    >>> def halve(a):
    ...     a /= 2
    >>> each(halve, arrays, [a.size for a in arrays])
    >>> [float(a.sum()) for a in arrays]
    [1.5, 2.0]
    """
    global _pool
    big = [item for item, size in zip(items, sizes) if size >= MIN_ELEMENTS]
    if min(WORKERS, threads.get_num_threads()) < 2 or len(big) < 2 or threading.current_thread().name.startswith("npgpt"):
        for item in items:
            function(item)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="npgpt")
    futures = [_pool.submit(function, item) for item in big]
    for item, size in zip(items, sizes):
        if size < MIN_ELEMENTS:
            function(item)
    for future in futures:
        future.result()


def together(calls):
    """Call every zero-argument callable of ``calls`` and return their results in order: in
    the worker threads when the call's thread count (:mod:`npgpt.threads`) is two or more, else
    one after another in the calling thread. Work asked for from inside a call runs in that
    call's thread.

    Examples
    --------
    >>> together([lambda: 1 + 1, lambda: 2 * 3])
    [2, 6]
    """
    global _pool
    if min(WORKERS, threads.get_num_threads()) < 2 or len(calls) < 2 or threading.current_thread().name.startswith("npgpt"):
        return [call() for call in calls]
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="npgpt")
    return [future.result() for future in [_pool.submit(call) for call in calls]]
