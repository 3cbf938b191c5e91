"""npgpt.sampling: each transform's rule, validation, and parity with transformers'
logits processors (recorded in tests/fixtures/decoding_warpers.npz by
tests/fixtures/make_decoding_fixtures.py, plus a live comparison when transformers imports)."""

import importlib.util
import os

import numpy as np
import pytest

from npgpt import _fast_sampling
from npgpt import sampling as S

from helpers import FIXTURES, skip_without

_spec = importlib.util.spec_from_file_location(
    "make_decoding_fixtures", os.path.join(FIXTURES, "make_decoding_fixtures.py"))
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)


def npgpt_call(spec, logits, ids):
    name, *rest = spec
    fn = getattr(S, name)
    if rest[0] == "ids":
        return fn(logits, ids, *rest[1])
    return fn(logits, *rest[0])


def assert_same_processing(got, expected, what):
    assert got.dtype == expected.dtype, what
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected), err_msg=f"{what}: kept sets differ")
    kept = ~np.isneginf(expected)
    np.testing.assert_allclose(got[kept], expected[kept], rtol=0, atol=1e-6, err_msg=what)


# ------------------------------------------------------------------------ parity
@pytest.mark.parametrize("name", sorted(F.WARPERS))
def test_transform_matches_recorded_transformers_processor(name):
    data = np.load(os.path.join(FIXTURES, "decoding_warpers.npz"))
    logits, ids = data["logits"], data["ids"]
    got = npgpt_call(F.WARPERS[name][2], logits, ids)
    assert_same_processing(got, data[name], name)
    assert np.isneginf(data[name]).any() or name.startswith(("temperature", "repetition")), \
        f"{name}: the fixture removes nothing, so it would not test the kept set"


@pytest.mark.transformers
@skip_without("transformers")
@pytest.mark.parametrize("seed", range(3))
def test_transforms_match_live_transformers_processors(seed):
    rng = np.random.default_rng(100 + seed)
    logits = (rng.normal(size=(5, 64)) * rng.uniform(0.5, 4)).astype(np.float32)
    ids = rng.integers(0, 32, size=(5, 20))
    for name, (cls, kwargs, spec) in F.WARPERS.items():
        expected = F.run_transformers_warper(cls, kwargs, logits, ids)
        assert_same_processing(npgpt_call(spec, logits, ids), expected, f"{name} seed {seed}")


# ----------------------------------------------------------------------- softmax
def test_softmax_is_stable_with_huge_and_minus_inf_logits():
    x = np.array([[1e4, 1e4 - np.log(3.0), -np.inf], [-1e4, -1e4, -1e4]])
    np.testing.assert_allclose(S.softmax(x), [[0.75, 0.25, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-12)
    np.testing.assert_allclose(S.log_softmax(x)[0, :2], np.log([0.75, 0.25]), atol=1e-9)
    assert S.log_softmax(x)[0, 2] == -np.inf
    np.testing.assert_allclose(S.softmax(x.T, axis=0), S.softmax(x).T, atol=1e-15)


@pytest.mark.parametrize("fn", [S.softmax, S.log_softmax])
def test_softmax_rejects_nan_and_all_minus_inf_rows(fn):
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="row \\(1,\\) is all -inf"):
        fn(np.array([[0.0, 1.0], [-np.inf, -np.inf]]))
    with pytest.raises(ValueError, match=r"\+inf"):
        fn(np.array([0.0, np.inf]))


# -------------------------------------------------------------------- transforms
def test_temperature_scales_and_zero_is_greedy_with_lowest_id_on_ties():
    x = np.array([1.0, 3.0, 3.0, -2.0], dtype=np.float32)
    np.testing.assert_array_equal(S.temperature(x, 2.0), x / 2)
    assert S.temperature(x, 2.0).dtype == np.float32
    np.testing.assert_array_equal(S.temperature(x, 0), [-np.inf, 3.0, -np.inf, -np.inf])
    np.testing.assert_array_equal(S.temperature(x, 1.0), x)


def test_top_k_keeps_ties_at_the_boundary():
    x = np.array([[3.0, 1.0, 2.0, 2.0, 0.0]])
    np.testing.assert_array_equal(S.top_k(x, 2), [[3.0, -np.inf, 2.0, 2.0, -np.inf]])
    np.testing.assert_array_equal(S.top_k(x, 1), [[3.0, -np.inf, -np.inf, -np.inf, -np.inf]])
    np.testing.assert_array_equal(S.top_k(x, 9), x)
    np.testing.assert_array_equal(S.top_k(x, 1, min_tokens_to_keep=4), S.top_k(x, 4))


def test_top_k_fast_path_matches_a_full_sort_on_a_large_vocabulary():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8192)).astype(np.float32)
    x[0, :50] = x[0, 100]            # a tie group around the boundary
    for k in (2, 40, 300):
        kth = -np.sort(-x, axis=-1)[:, k - 1:k]
        np.testing.assert_array_equal(S.top_k(x, k), np.where(x >= kth, x, -np.inf))


@pytest.mark.parametrize("p, kept", [(0.5, [0]), (0.5 + 1e-9, [0, 1]), (0.75, [0, 1]),
                                     (0.75 + 1e-9, [0, 1, 2, 3]), (0.875, [0, 1, 2, 3]),
                                     (1.0, [0, 1, 2, 3]), (1e-9, [0])])
def test_top_p_dyadic_boundaries_are_exact(p, kept):
    # probabilities 1/2, 1/4, 1/8, 1/8: mass reaching exactly p stops there; ties kept
    x = np.log(np.array([0.5, 0.25, 0.125, 0.125]))
    got = S.top_p(x, p)
    np.testing.assert_array_equal(np.flatnonzero(np.isfinite(got)), kept)


def test_top_p_keeps_ties_with_the_least_probable_kept_token_and_min_tokens():
    x = np.log(np.array([0.5, 0.25, 0.25]))
    np.testing.assert_array_equal(np.isfinite(S.top_p(x, 0.75)), [True, True, True])
    np.testing.assert_array_equal(np.isfinite(S.top_p(x, 0.4, min_tokens_to_keep=2)), [True, True, True])
    np.testing.assert_array_equal(np.isfinite(S.top_p(np.log([0.7, 0.2, 0.1]), 0.1, 2)), [True, True, False])


def test_top_p_bucketed_form_equals_the_plain_rule():
    rng = np.random.default_rng(1)
    for scale in (0.3, 2.0, 8.0):
        x = (rng.normal(size=(4, 6000)) * scale).astype(np.float32)
        x[1, ::7] = -np.inf
        x[2, :300] = np.float32(1.5)
        for p in (0.05, 0.5, 0.9, 0.999):
            fast = _fast_sampling.top_p(x, x.max(axis=-1, keepdims=True), p)
            np.testing.assert_array_equal(fast, S.top_p.__wrapped__(x, p), err_msg=f"{scale} {p}")


def test_min_p_keeps_tokens_above_a_fraction_of_the_top_probability():
    x = np.log(np.array([0.5, 0.3, 0.2]))
    np.testing.assert_array_equal(np.isfinite(S.min_p(x, 0.5)), [True, True, False])
    np.testing.assert_array_equal(S.min_p(x, 0.0), x)
    np.testing.assert_array_equal(np.isfinite(S.min_p(x, 1.0)), [True, False, False])
    np.testing.assert_array_equal(np.isfinite(S.min_p(x, 1.0, min_tokens_to_keep=2)), [True, True, False])


def test_typical_keeps_tokens_closest_to_the_entropy():
    q = np.array([0.4, 0.3, 0.2, 0.1])
    H = -(q * np.log(q)).sum()
    order = np.argsort(np.abs(-np.log(q) - H), kind="stable")
    cum = np.cumsum(q[order])
    n = int((cum < 0.6).sum()) + 1
    got = np.isfinite(S.typical(np.log(q), 0.6))
    np.testing.assert_array_equal(np.flatnonzero(got), np.sort(order[:n]))


def test_epsilon_and_eta_cut_low_probabilities_but_keep_the_top_tokens():
    x = np.log(np.array([0.6, 0.39, 0.01]))
    np.testing.assert_array_equal(np.isfinite(S.epsilon(x, 0.05)), [True, True, False])
    np.testing.assert_array_equal(np.isfinite(S.epsilon(x, 0.9)), [True, False, False])
    np.testing.assert_array_equal(np.isfinite(S.epsilon(x, 0.9, min_tokens_to_keep=2)), [True, True, False])
    q = np.array([0.6, 0.39, 0.01])
    H = -(q * np.log(q)).sum()
    cut = min(0.2, np.sqrt(0.2) * np.exp(-H))
    np.testing.assert_array_equal(np.isfinite(S.eta(x, 0.2)), q >= cut)


def test_repetition_penalty_divides_positive_multiplies_negative_once_per_token():
    x = np.array([[2.0, -2.0, 2.0, -1.0]])
    got = S.repetition_penalty(x, [[0, 1, 1, 1]], 2.0)
    np.testing.assert_array_equal(got, [[1.0, -4.0, 2.0, -1.0]])
    np.testing.assert_array_equal(S.repetition_penalty(x, [3], 0.5), [[2.0, -2.0, 2.0, -0.5]])


def test_presence_frequency_penalty_counts_occurrences():
    got = S.presence_frequency_penalty(np.zeros((2, 3)), [[0, 1, 1], [2, 2, 2]], 0.5, 1.0)
    np.testing.assert_allclose(got, [[-1.5, -2.5, 0.0], [0.0, 0.0, -3.5]], atol=0)


def test_no_repeat_ngram_bans_completions_of_seen_ngrams():
    x = np.zeros(6)
    np.testing.assert_array_equal(np.isfinite(S.no_repeat_ngram(x, [1, 2, 3, 1], 2)), [1, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(np.isfinite(S.no_repeat_ngram(x, [1, 2, 3, 1, 2], 3)), [1, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(np.isfinite(S.no_repeat_ngram(x, [4, 5], 1)), [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(S.no_repeat_ngram(x, [1, 2], 3), x)      # no full n-gram yet


def test_transforms_never_modify_their_input_and_keep_float32():
    x = np.random.default_rng(0).normal(size=(3, 10)).astype(np.float32)
    before = x.copy()
    ids = np.array([[1, 2, 3]] * 3)
    outs = [S.temperature(x, 0.5), S.top_k(x, 3), S.top_p(x, 0.5), S.min_p(x, 0.2),
            S.typical(x, 0.5), S.epsilon(x, 0.05), S.eta(x, 0.05),
            S.repetition_penalty(x, ids, 1.3), S.presence_frequency_penalty(x, ids, 0.1, 0.2),
            S.no_repeat_ngram(x, ids, 1)]
    np.testing.assert_array_equal(x, before)
    assert all(o.dtype == np.float32 and o.shape == x.shape for o in outs)


@pytest.mark.parametrize("call, message", [
    (lambda x: S.top_p(x, 1.5), "top_p must be in \\(0, 1\\], got 1.5"),
    (lambda x: S.top_p(x, 0), "top_p must be in \\(0, 1\\], got 0"),
    (lambda x: S.top_k(x, 0), "top_k must be a positive integer, got 0"),
    (lambda x: S.top_k(x, 2.5), "top_k must be a positive integer, got 2.5"),
    (lambda x: S.temperature(x, -1), "temperature must be in \\[0, inf\\), got -1"),
    (lambda x: S.temperature(x, float("nan")), "temperature must be finite, got nan"),
    (lambda x: S.min_p(x, 2), "min_p must be in \\[0, 1\\], got 2"),
    (lambda x: S.typical(x, -0.1), "typical_p must be in"),
    (lambda x: S.epsilon(x, 1.0), "epsilon_cutoff must be in \\(0, 1\\), got 1.0"),
    (lambda x: S.eta(x, 0.0), "eta_cutoff must be in"),
    (lambda x: S.repetition_penalty(x, [0], 0), "repetition_penalty must be in \\(0, inf\\), got 0"),
    (lambda x: S.repetition_penalty(x, [9], 1.2), "ids out of range \\[0, 4\\): 9"),
    (lambda x: S.no_repeat_ngram(x, [1], 0), "no_repeat_ngram_size must be a positive integer, got 0"),
    (lambda x: S.top_k(x, 2, min_tokens_to_keep=0), "min_tokens_to_keep must be a positive integer"),
    (lambda x: S.top_k(np.array([np.nan, 1, 2, 3]), 2), "NaN"),
    (lambda x: S.top_p(np.full(4, -np.inf), 0.5), "all -inf"),
    (lambda x: S.distribution(x, repetition_penalty=1.2), "need ids"),
    (lambda x: S.sample(x, 3), "rng must be a numpy.random.Generator"),
])
def test_bad_input_raises_value_error_naming_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call(np.array([0.0, 1.0, 2.0, 3.0]))


# ------------------------------------------------------------------------- chain
def test_distribution_applies_the_chain_in_transformers_order():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 30)) * 2
    ids = rng.integers(0, 30, size=(4, 9))
    kw = dict(temperature=0.7, top_k=12, top_p=0.8, min_p=0.05, typical_p=0.95,
              epsilon_cutoff=0.001, eta_cutoff=0.002, repetition_penalty=1.3,
              presence_penalty=0.2, frequency_penalty=0.1, no_repeat_ngram_size=2)
    y = S.repetition_penalty(x, ids, 1.3)
    y = S.presence_frequency_penalty(y, ids, 0.2, 0.1)
    y = S.no_repeat_ngram(y, ids, 2)
    y = S.temperature(y, 0.7)
    y = S.top_k(y, 12)
    y = S.top_p(y, 0.8)
    y = S.min_p(y, 0.05)
    y = S.typical(y, 0.95)
    y = S.epsilon(y, 0.001)
    y = S.eta(y, 0.002)
    np.testing.assert_array_equal(S.process(x, ids, **kw), y)
    np.testing.assert_allclose(S.distribution(x, ids, **kw), S.softmax(y), atol=1e-15)


def test_sample_draws_only_kept_tokens_and_temperature_zero_is_argmax():
    x = np.array([[0.0, 5.0, 5.0, 1.0], [2.0, 0.0, -1.0, 3.0]])
    assert S.sample(x, np.random.default_rng(0), temperature=0).tolist() == [1, 3]
    rng = np.random.default_rng(0)
    draws = np.array([S.sample(x, rng, top_k=2) for _ in range(300)])
    assert set(draws[:, 0]) == {1, 2} and set(draws[:, 1]) == {0, 3}
    one = S.sample(np.array([0.0, 5.0, 4.0]), [np.random.default_rng(1)], top_k=1)
    assert one.shape == () and int(one) == 1
