"""npgpt._threads.each deals its items into groups of about equal total size: every item is
called exactly once, whatever the thread count, and no group exceeds another by more than the
largest item."""

import threading

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from npgpt import threads
from npgpt._threads import MIN_ELEMENTS, deal_by_size, each

sizes_lists = st.lists(st.integers(0, 10**6), min_size=1, max_size=60)


@given(sizes_lists, st.integers(1, 8))
def test_deal_by_size_uses_every_index_once_and_balances_to_the_largest_item(sizes, parts):
    groups = deal_by_size(sizes, parts)
    assert sorted(i for g in groups for i in g) == list(range(len(sizes)))
    assert len(groups) <= parts and all(g == sorted(g) for g in groups)
    totals = [sum(sizes[i] for i in g) for g in groups]
    if len(groups) == parts:
        assert max(totals) - min(totals) <= max(sizes)


@given(st.lists(st.integers(1, MIN_ELEMENTS // 4), min_size=1, max_size=40), st.sampled_from([1, 2, 4]))
def test_each_calls_every_item_once_on_any_thread_count(sizes, n_threads):
    seen, names, lock = [], set(), threading.Lock()

    def call(item):
        with lock:
            seen.append(item)
            names.add(threading.current_thread().name)
    with threads.using(n_threads):
        each(call, list(range(len(sizes))), sizes)
    assert sorted(seen) == list(range(len(sizes)))
    if n_threads == 1 or sum(sizes) < MIN_ELEMENTS:
        assert names == {threading.current_thread().name}


def test_each_spreads_many_small_items_over_the_threads():
    arrays = [np.zeros(MIN_ELEMENTS // 8, np.float32) for _ in range(16)]   # none large alone
    names = {}

    def mark(i):
        arrays[i] += 1
        names[i] = threading.current_thread().name
    with threads.using(2):
        each(mark, list(range(16)), [a.size for a in arrays])
    assert all(float(a.min()) == 1.0 for a in arrays)
    assert len(set(names.values())) == 2                       # the caller and one worker
