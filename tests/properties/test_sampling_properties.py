"""Invariants of every npgpt.sampling transform, written with the public kit npgpt.testing
(the same checks anyone can run against their own sampler)."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from npgpt import sampling as S
from npgpt import testing as kit

TRUNCATIONS = {
    "top_k": (S.top_k, st.integers(1, 30)),
    "top_p": (S.top_p, st.floats(0.01, 1.0)),
    "min_p": (S.min_p, st.floats(0.0, 1.0)),
    "typical": (S.typical, st.floats(0.01, 1.0)),
    "epsilon": (S.epsilon, st.floats(0.001, 0.999)),
    "eta": (S.eta, st.floats(0.001, 0.999)),
}
names = st.sampled_from(sorted(TRUNCATIONS))


@given(names, kit.batched_logits(), st.data())
def test_truncations_keep_logits_unchanged_remove_to_minus_inf_and_never_mutate(name, x, data):
    fn, param = TRUNCATIONS[name]
    kit.check_transform_contract(fn, x, data.draw(param))


@given(names, kit.logits(), st.data())
def test_truncations_are_shift_invariant(name, x, data):
    fn, param = TRUNCATIONS[name]
    shift = 0.75
    assume(np.array_equal((x + shift) - shift, x))      # the shift itself must not round
    kit.check_shift_invariance(fn, x, data.draw(param), shift=shift)


@given(names, kit.logits(), st.data(), st.integers(0, 100))
def test_truncations_are_permutation_equivariant_and_keep_ties_together(name, x, data, seed):
    fn, param = TRUNCATIONS[name]
    p = data.draw(param)
    kit.check_permutation_equivariance(fn, x, p, seed=seed)
    kit.check_tie_symmetry(fn, x, p)


@given(kit.logits(), st.lists(st.integers(1, 30), min_size=2, max_size=5))
def test_top_k_kept_set_grows_with_k(x, ks):
    kit.check_monotone(S.top_k, x, ks, increasing=True)


@given(kit.logits(), st.lists(st.floats(0.01, 1.0), min_size=2, max_size=5))
def test_top_p_kept_set_grows_with_p(x, ps):
    kit.check_monotone(S.top_p, x, ps, increasing=True)


@given(kit.logits(), st.lists(st.floats(0.0, 1.0), min_size=2, max_size=5))
def test_min_p_kept_set_shrinks_as_min_p_grows(x, ps):
    kit.check_monotone(S.min_p, x, ps, increasing=False)


@given(kit.logits(), st.lists(st.floats(0.001, 0.999), min_size=2, max_size=5))
def test_epsilon_and_eta_kept_sets_shrink_as_the_cutoff_grows(x, eps):
    kit.check_monotone(S.epsilon, x, eps, increasing=False)
    kit.check_monotone(S.eta, x, eps, increasing=False)


@given(kit.logits(), st.integers(1, 30))
def test_top_k_keeps_exactly_the_logits_at_or_above_the_kth_largest(x, k):
    kit.check_top_k_rule(S.top_k, x, k)


@given(kit.logits(), st.floats(0.01, 1.0))
def test_top_p_kept_mass_reaches_p_and_is_minimal_up_to_ties(x, p):
    kit.check_top_p_rule(S.top_p, x, p)


@given(kit.dyadic_logits(), st.data())
def test_top_p_exact_dyadic_boundary_keeps_the_prefix_whose_mass_is_exactly_p(case, data):
    x, q = case
    order = np.argsort(-q[0], kind="stable")
    n = data.draw(st.integers(1, q.shape[1]))
    p = float(q[0, order[:n]].sum())                 # a boundary hit exactly (dyadic sums)
    kept = np.isfinite(S.top_p(x, p))[0]
    expected = q[0] >= q[0, order[n - 1]]            # the prefix plus ties with its last token
    np.testing.assert_array_equal(kept, expected)
    kit.check_top_p_rule(S.top_p, x, p)


@given(kit.logits(), st.floats(0.0, 1.0))
def test_min_p_keeps_exactly_tokens_above_the_scaled_top_probability(x, p):
    kit.check_min_p_rule(S.min_p, x, p)


@given(kit.logits(), st.integers(1, 30), st.floats(0.0, 1.0))
def test_min_p_and_top_k_commute(x, k, p):
    a = S.min_p(S.top_k(x, k), p)
    b = S.top_k(S.min_p(x, p), k)
    np.testing.assert_array_equal(a, b)


@given(kit.logits(extremes=False))
def test_temperature_one_is_identity_argmax_invariant_entropy_grows_and_small_t_is_greedy(x):
    kit.check_temperature(S.temperature, x)


@given(kit.logits())
def test_temperature_zero_is_greedy_with_the_lowest_id_on_ties(x):
    out = S.temperature(x, 0)
    kept = np.isfinite(out)
    assert (kept.sum(axis=-1) == 1).all()
    np.testing.assert_array_equal(np.argmax(kept, axis=-1), np.argmax(x, axis=-1))
    probs = S.distribution(x, temperature=0)
    np.testing.assert_array_equal(np.argmax(probs, axis=-1), np.argmax(x, axis=-1))
    np.testing.assert_array_equal(probs.max(axis=-1), 1.0)


@given(kit.logits(extremes=False), st.floats(1.0, 5.0), st.data())
def test_repetition_penalty_never_raises_a_seen_token_and_leaves_unseen_ones(x, penalty, data):
    ids = data.draw(st.lists(st.integers(0, x.shape[1] - 1), min_size=1, max_size=8))
    kit.check_repetition_penalty(S.repetition_penalty, x, np.array(ids), penalty)


@given(kit.logits(), st.data())
def test_distribution_is_nonnegative_sums_to_one_and_zero_exactly_where_removed(x, data):
    kw = dict(top_k=data.draw(st.none() | st.integers(1, 10)),
              top_p=data.draw(st.none() | st.floats(0.05, 1.0)),
              min_p=data.draw(st.none() | st.floats(0.0, 0.9)),
              temperature=data.draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])))
    probs = S.distribution(x, **kw)
    kit.check_distribution(probs, removed=np.isneginf(S.process(x, **kw)))


@settings(max_examples=10)
@given(kit.logits(max_rows=1, max_vocab=12, extremes=False), st.integers(1, 6), st.floats(0.3, 1.0))
def test_sampling_frequencies_match_distribution_chi_square(x, k, p):
    probs = S.distribution(x[0], top_k=k, top_p=p)

    def draw(rng, n):
        return S.draw(np.broadcast_to(probs, (n, probs.size)), rng)
    kit.check_sample_frequencies(draw, probs, n=3000, seed=0)
    # and sample() itself only ever draws kept tokens
    got = {int(S.sample(x[0], np.random.default_rng(i), top_k=k, top_p=p)) for i in range(50)}
    assert all(probs[g] > 0 for g in got)
