"""The faster forms of npgpt._fast_sampling equal the plain rules of npgpt.sampling exactly,
for any vocabulary size (each fast form is called directly, also below the size where the
transforms would choose it), spread, ties, -inf entries, parameter and min_tokens_to_keep."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt import _fast_sampling as fast
from npgpt import sampling as S
from npgpt import testing as kit


def random_logits(seed, rows, V, ties):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, V)) * rng.uniform(0.05, 12.0)).astype(np.float32)
    if ties:
        x = np.round(x * 4) / 4
    x[:, rng.integers(0, V, max(1, V // 100))] = -np.inf
    return x


def row_max(x):
    return x.max(axis=-1, keepdims=True)


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(2048, 5000), st.integers(1, 4), st.booleans())
def test_kth_largest_by_chunk_bound_equals_a_full_partition(seed, V, N, ties):
    x = random_logits(seed, N, V, ties)
    rng = np.random.default_rng(seed)
    for k in (1, 2, int(rng.integers(2, V // 8 + 1)), V // 8, V // 2):
        np.testing.assert_array_equal(fast.kth_largest(x, k), S.kth_largest(x, k))


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(2048, 5000), st.booleans(), st.integers(1, 256),
       st.integers(1, 3))
def test_fast_top_k_equals_the_plain_rule(seed, V, ties, k, keep):
    x = random_logits(seed, 3, V, ties)
    got = fast.top_k(x, row_max(x), k, keep)
    assert got is not None                     # k <= 2048 / 8 <= V / 8: it applies
    np.testing.assert_array_equal(got, S.top_k.__wrapped__(x, k, keep))


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1), st.integers(4096, 6000), st.floats(0.01, 0.9999),
       st.booleans(), st.integers(1, 3))
def test_bucketed_top_p_equals_the_plain_rule_for_any_spread_and_p(seed, V, p, ties, keep):
    x = random_logits(seed, 3, V, ties)
    np.testing.assert_array_equal(fast.top_p(x, row_max(x), p, keep), S.top_p.__wrapped__(x, p, keep))


@given(kit.logits(min_vocab=4096 // 16, max_vocab=300), st.floats(0.01, 0.999))
def test_bucketed_top_p_equals_the_plain_rule_with_ties_across_tiles(x, p):
    big = np.tile(x, (1, 4096 // x.shape[1] + 1))[:, :4100]
    np.testing.assert_array_equal(fast.top_p(big, row_max(big), p), S.top_p.__wrapped__(big, p))


@given(kit.logits(), st.floats(0.0, 1.0))
def test_min_p_from_the_known_row_maxima_equals_the_plain_rule(x, p):
    got = fast.min_p(x, row_max(x), p)
    expected = S.min_p.__wrapped__(x, p)
    if got is None:
        assert p == 0.0
    else:
        np.testing.assert_array_equal(got, expected)


@given(kit.logits(), st.integers(1, 30), st.floats(0.01, 1.0), st.floats(0.0, 1.0))
def test_the_transforms_give_the_plain_rule_whichever_form_they_choose(x, k, p, q):
    big = np.tile(x, (1, 5000 // x.shape[1] + 1))
    for logits in (x, big):
        np.testing.assert_array_equal(S.top_k(logits, k), S.top_k.__wrapped__(logits, k))
        np.testing.assert_array_equal(S.top_p(logits, p), S.top_p.__wrapped__(logits, p))
        np.testing.assert_array_equal(S.min_p(logits, q), S.min_p.__wrapped__(logits, q))


@given(kit.logits(), st.floats(-5.0, 5.0))
def test_the_masked_copy_removes_exactly_what_the_plain_where_removes(x, threshold):
    np.testing.assert_array_equal(fast.remove_below(x, threshold), S.remove_below(x, threshold))
    assert fast.remove_below(x, threshold).dtype == x.dtype


def test_threaded_rows_give_the_single_thread_result_and_never_deadlock_when_nested():
    from npgpt import _threads
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 50257)) * 3).astype(np.float32)       # large: split over cores
    threads = S.top_p(x, 0.9), S.top_k(x, 50), S.min_p(x, 0.1)
    old, _threads.MIN_ELEMENTS = _threads.MIN_ELEMENTS, 10 ** 12         # one thread only
    try:
        single = S.top_p(x, 0.9), S.top_k(x, 50), S.min_p(x, 0.1)
    finally:
        _threads.MIN_ELEMENTS = old
    for a, b in zip(threads, single):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=40)
@given(st.integers(0, 2**32 - 1), st.sampled_from([7, 65, 5000]), st.integers(1, 3), st.booleans(),
       st.sampled_from([0.7, 1.0, 1.3]), st.sampled_from([0, 1, 5, 40]), st.sampled_from([None, 0.5, 0.95]),
       st.sampled_from([None, 0.05]), st.sampled_from([None, 0.9]), st.sampled_from([0.0, 3e-4]),
       st.sampled_from([0.0, 3e-4]), st.integers(1, 3))
def test_the_unchecked_chain_generate_runs_equals_the_checked_one(
        seed, V, rows, ties, t, k, p, min_p, typical, eps, eta, keep):
    """generate checks each step's logits once and then calls the warpers with check=False
    (sampling.warped_probs): the same arrays as the checked chain, fast forms included."""
    from npgpt import GenerationConfig
    x = random_logits(seed, rows, V, ties)
    o = GenerationConfig(temperature=t, top_k=k, top_p=p, min_p=min_p, typical_p=typical,
                         epsilon_cutoff=eps, eta_cutoff=eta, min_tokens_to_keep=keep)
    checked = S.warp(x, o)
    np.testing.assert_array_equal(S.warp(x, o, check=False), checked)
    np.testing.assert_array_equal(S.warped_probs(x, o), S.softmax(checked))
