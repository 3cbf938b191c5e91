"""npgpt.testing: the checks catch broken samplers (so they can fail), npgpt passes them,
and transformers' warpers are surveyed with the same kit when transformers imports."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt import sampling as S
from npgpt import testing as kit

from helpers import skip_without

X = np.array([[3.0, 1.0, 2.0, 2.0, 0.0, -np.inf]])


# --------------------------------------------------- broken samplers are caught
def top_k_dropping_ties(x, k):                      # argsort-based: keeps exactly k
    out = np.full_like(x, -np.inf)
    idx = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    np.put_along_axis(out, idx, np.take_along_axis(x, idx, -1), -1)
    return out


def mutating_top_k(x, k):
    x[..., 0] = 0.0
    return S.top_k(x, k)


def top_p_one_too_many(x, p):                        # keeps the next token as well
    out = S.top_p(x, p)
    kept = np.isfinite(out)
    nxt = np.argmax(np.where(kept, -np.inf, x), axis=-1)
    out[np.arange(x.shape[0]), nxt] = x[np.arange(x.shape[0]), nxt]
    return out


def test_check_top_k_rule_catches_a_top_k_that_drops_ties():
    kit.check_top_k_rule(S.top_k, X, 2)
    with pytest.raises(AssertionError, match="k=2: row \\[0\\] keeps"):
        kit.check_top_k_rule(top_k_dropping_ties, X, 2)
    with pytest.raises(AssertionError, match="tied at 2.0"):
        kit.check_tie_symmetry(top_k_dropping_ties, X, 2)


def test_check_contract_catches_mutation_and_changed_values():
    with pytest.raises(AssertionError, match="modified its input"):
        kit.check_transform_contract(mutating_top_k, X.copy(), 2)
    with pytest.raises(AssertionError, match="kept token .* changed"):
        kit.check_transform_contract(lambda x, t: x / t, X, 2.0)
    with pytest.raises(AssertionError, match="keeps no token"):
        kit.check_transform_contract(lambda x, k: np.full_like(x, -np.inf), X, 1)


def test_check_top_p_rule_catches_a_non_minimal_set_and_shift_dependence():
    x = np.log(np.array([[0.5, 0.25, 0.125, 0.0625, 0.0625]]))
    kit.check_top_p_rule(S.top_p, x, 0.6)
    with pytest.raises(AssertionError, match="not minimal"):
        kit.check_top_p_rule(top_p_one_too_many, x, 0.6)
    with pytest.raises(AssertionError, match="changes when the logits shift"):
        kit.check_shift_invariance(lambda x, k: np.where(x > 1.0, x, -np.inf), X, 1)


def test_check_monotone_and_min_p_rule_catch_wrong_direction():
    with pytest.raises(AssertionError, match="not nested"):
        kit.check_monotone(S.min_p, X, [0.1, 0.9], increasing=True)
    with pytest.raises(AssertionError, match="min_p=0.5"):
        kit.check_min_p_rule(lambda x, p: S.min_p(x, p / 4), np.log([[0.5, 0.3, 0.2]]), 0.5)


def test_check_temperature_and_repetition_penalty_catch_wrong_formulas():
    x = np.array([[1.0, 2.0, 0.5]])
    kit.check_temperature(S.temperature, x)
    with pytest.raises(AssertionError, match="entropy decreases|argmax"):
        kit.check_temperature(lambda x, t: x * t, x)
    kit.check_repetition_penalty(S.repetition_penalty, np.array([[1.0, -1.0, 2.0]]), np.array([0, 1]), 1.5)
    with pytest.raises(AssertionError, match="moved the wrong way|not x\\*penalty"):
        kit.check_repetition_penalty(lambda x, ids, p: S.repetition_penalty(x, ids, 1 / p),
                                     np.array([[1.0, -1.0, 2.0]]), np.array([0, 1]), 1.5)


def test_check_sample_frequencies_catches_a_biased_sampler():
    probs = np.array([0.5, 0.3, 0.2, 0.0])
    kit.check_sample_frequencies(lambda rng, n: rng.choice(4, size=n, p=probs), probs)
    with pytest.raises(AssertionError, match="chi-square"):
        kit.check_sample_frequencies(lambda rng, n: rng.choice(4, size=n, p=[0.45, 0.35, 0.2, 0]), probs)
    with pytest.raises(AssertionError, match="zero-probability"):
        kit.check_sample_frequencies(lambda rng, n: rng.choice(4, size=n, p=[0.5, 0.3, 0.1, 0.1]), probs)


def test_check_distribution_catches_bad_rows():
    kit.check_distribution(np.array([[0.25, 0.75]]))
    with pytest.raises(AssertionError, match="sum to 1"):
        kit.check_distribution(np.array([[0.25, 0.5]]))
    with pytest.raises(AssertionError, match="removed token"):
        kit.check_distribution(np.array([[0.25, 0.75]]), removed=np.array([[True, False]]))


@pytest.mark.parametrize("kind", ["top_k", "top_p", "min_p", "typical", "epsilon", "eta", "temperature"])
def test_survey_of_npgpt_passes_everything_except_single_token_minimality_of_top_p(kind):
    fn = getattr(S, kind)
    result = kit.survey(fn, kind)
    failed = {name for name, message in result.items() if message}
    # npgpt keeps whole tie groups, so dropping one tied token could still reach p (by design)
    assert failed == ({"minimal_ignoring_ties"} if kind == "top_p" else set()), result


@given(kit.batched_logits(max_dims=3))
def test_strategies_draw_valid_logits_of_every_batch_shape(x):
    assert x.ndim in (1, 2, 3)
    assert not np.isnan(x).any() and not np.isposinf(x).any()
    assert np.isfinite(x).any(axis=-1).all()


@given(kit.dyadic_logits())
def test_dyadic_strategy_gives_exact_powers_of_two_summing_to_one(case):
    x, q = case
    assert q.sum() == 1.0
    assert np.all(np.log2(q) == np.round(np.log2(q)))


# ---------------------------------------------------------- transformers' warpers
def hf_transform(kind):
    import torch
    from transformers.generation import logits_process as L

    make = {"top_k": lambda p: L.TopKLogitsWarper(int(p)), "top_p": lambda p: L.TopPLogitsWarper(p),
            "min_p": lambda p: L.MinPLogitsWarper(p), "typical": lambda p: L.TypicalLogitsWarper(mass=p),
            "epsilon": lambda p: L.EpsilonLogitsWarper(p), "eta": lambda p: L.EtaLogitsWarper(p),
            "temperature": lambda p: L.TemperatureLogitsWarper(float(p))}[kind]

    def transform(x, p):
        x = np.asarray(x, dtype=np.float64)
        flat = torch.from_numpy(x.reshape(-1, x.shape[-1]).copy())
        return make(p)(None, flat).numpy().reshape(x.shape)
    return transform


# what the kit finds for transformers' warpers: failures that follow from documented
# semantics (TopP cuts inside a group of tied tokens, in sort order) are expected
EXPECTED_TRANSFORMERS_FAILURES = {
    "top_k": set(), "min_p": set(), "typical": set(), "epsilon": set(), "eta": set(),
    "temperature": set(),
    "top_p": {"permutation_equivariance", "tie_symmetry", "exact_rule"},
}


@pytest.mark.transformers
@skip_without("transformers")
@pytest.mark.parametrize("kind", sorted(EXPECTED_TRANSFORMERS_FAILURES))
def test_survey_of_transformers_warpers(kind):
    result = kit.survey(hf_transform(kind), kind)
    failed = {name for name, message in result.items() if message}
    assert failed == EXPECTED_TRANSFORMERS_FAILURES[kind], result


@pytest.mark.transformers
@skip_without("transformers")
@settings(max_examples=25)
@given(kit.logits(ties=False, allow_neg_inf=False, extremes=False), st.integers(1, 8),
       st.floats(0.05, 0.95))
def test_transformers_warpers_satisfy_the_rules_on_tie_free_logits(x, k, p):
    kit.check_top_k_rule(hf_transform("top_k"), x, k)
    kit.check_top_p_rule(hf_transform("top_p"), x, p, ties=False)
    kit.check_min_p_rule(hf_transform("min_p"), x, p)
    kit.check_monotone(hf_transform("top_p"), x, [p / 2, p], increasing=True)


@pytest.mark.transformers
@skip_without("transformers")
def test_transformers_repetition_penalty_passes_and_temperature_zero_is_refused():
    import torch
    from transformers.generation import logits_process as L

    def rep(x, ids, penalty):
        return L.RepetitionPenaltyLogitsProcessor(float(penalty))(
            torch.from_numpy(np.atleast_2d(ids)), torch.from_numpy(x.copy())).numpy()
    kit.check_repetition_penalty(rep, np.array([[1.0, -1.0, 2.0, 0.5]]), np.array([[0, 1, 1]]), 1.5)
    with pytest.raises(ValueError):          # npgpt: temperature 0 means greedy
        L.TemperatureLogitsWarper(0.0)


# ------------------------- every rule check also holds the transform to the contract
def in_place(transform):                     # the right values, written into its input
    def broken(x, *args):
        x[...] = transform(x.copy(), *args)
        return x
    return broken


def wrong_shape(transform):                  # the right values, an extra trailing axis
    return lambda x, *args: transform(x, *args)[..., None]


def wrong_dtype(transform):                  # the right kept set, float32 values
    return lambda x, *args: transform(x, *args).astype(np.float32)


RULE_CHECKS = {
    "check_top_k_rule": lambda f: kit.check_top_k_rule(f, X, 2),
    "check_top_p_rule": lambda f: kit.check_top_p_rule(f, np.log([[0.5, 0.25, 0.125, 0.125]]), 0.7),
    "check_min_p_rule": lambda f: kit.check_min_p_rule(f, np.log([[0.5, 0.3, 0.15, 0.05]]), 0.25),
    "check_temperature": lambda f: kit.check_temperature(f, np.array([[1.0, 2.0, 0.5]])),
    "check_repetition_penalty": lambda f: kit.check_repetition_penalty(
        f, np.array([[1.0, -1.0, 2.0]]), np.array([0, 1]), 1.5),
}
TRANSFORMS = {"check_top_k_rule": S.top_k, "check_top_p_rule": S.top_p, "check_min_p_rule": S.min_p,
              "check_temperature": S.temperature, "check_repetition_penalty": S.repetition_penalty}


def test_every_rule_check_is_listed_here():
    checks = {name for name in kit.__all__ if name.startswith("check_")}
    transform_checks = checks - {"check_distribution", "check_sample_frequencies",
                                 "check_transform_contract", "check_shift_invariance",
                                 "check_permutation_equivariance", "check_tie_symmetry",
                                 "check_monotone"}
    assert transform_checks == set(RULE_CHECKS)


@pytest.mark.parametrize("check", sorted(RULE_CHECKS))
@pytest.mark.parametrize("breakage, message", [(in_place, "modified its input"),
                                               (wrong_shape, "output shape"),
                                               (wrong_dtype, "output dtype float32 != input dtype float64")])
def test_every_rule_check_catches_a_transform_that_breaks_the_contract(check, breakage, message):
    RULE_CHECKS[check](TRANSFORMS[check])                      # the unbroken transform passes
    with pytest.raises(AssertionError, match=message):
        RULE_CHECKS[check](breakage(TRANSFORMS[check]))


def test_a_check_never_lets_a_transform_change_the_caller_s_array():
    x = X.copy()
    with pytest.raises(AssertionError, match="modified its input"):
        kit.check_top_k_rule(mutating_top_k, x, 2)
    np.testing.assert_array_equal(x, X)


@settings(max_examples=30)
@given(kit.logits(max_vocab=8), st.integers(1, 4))
def test_check_top_k_rule_catches_an_in_place_top_k_on_any_logits_it_changes(x, k):
    if np.array_equal(S.top_k(x, k), x):
        return                                   # keeps every token: writing it back changes nothing
    with pytest.raises(AssertionError, match=f"k={k}: the transform modified its input"):
        kit.check_top_k_rule(in_place(S.top_k), x, k)
