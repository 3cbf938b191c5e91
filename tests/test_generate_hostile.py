"""Hostile and careless decoding options: integers beyond int64, None where ids belong, text
that UTF-8 cannot encode, biases and penalties that push a logit past float32, length penalties
whose powers overflow. Each is a ValueError naming the option and the value, or a correct
result: never NumPy's OverflowError, a TypeError from deep inside, a RuntimeWarning, or a
token drawn from a NaN distribution."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import beam_search as bs
from npgpt import sampling as S

V = 9


def tiny(seed=0):
    cfg = npgpt.GPTConfig(vocab_size=V, context_length=16, d_model=8, num_heads=2, num_layers=1)
    return npgpt.GPT(cfg, seed=seed, init="torch")


MODEL, DRAFT = tiny(0), tiny(1)


@pytest.fixture(autouse=True)
def warnings_are_errors():
    """A RuntimeWarning (overflow in a cast, NaN in a subtraction) is a failure here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------ every int option, any value
def _setting(option, value):
    """GenerationConfig keywords putting ``value`` into ``option``, with what it needs."""
    return {
        "max_new_tokens": dict(max_new_tokens=value),
        "min_new_tokens": dict(min_new_tokens=value),
        "num_beams": dict(num_beams=value),
        "num_return_sequences": dict(num_return_sequences=value, do_sample=True),
        "top_k": dict(top_k=value, do_sample=True),
        "no_repeat_ngram_size": dict(no_repeat_ngram_size=value),
        "min_tokens_to_keep": dict(min_tokens_to_keep=value, do_sample=True, top_p=0.5),
        "eos_token_id": dict(eos_token_id=value),
        "pad_token_id": dict(pad_token_id=value),
        "forced_eos_token_id": dict(forced_eos_token_id=value),
        "suppress_tokens": dict(suppress_tokens=[value]),
        "begin_suppress_tokens": dict(begin_suppress_tokens=[value]),
        "bad_words_ids": dict(bad_words_ids=[[value]]),
        "logit_bias": dict(logit_bias={value: 1.0}),
        "seed": dict(seed=value, do_sample=True),
        "num_draft_tokens": dict(num_draft_tokens=value, draft_model=DRAFT),
    }[option]


INT_OPTIONS = ("max_new_tokens", "min_new_tokens", "num_beams", "num_return_sequences", "top_k",
               "no_repeat_ngram_size", "min_tokens_to_keep", "eos_token_id", "pad_token_id",
               "forced_eos_token_id", "suppress_tokens", "begin_suppress_tokens", "bad_words_ids",
               "logit_bias", "seed", "num_draft_tokens")
# options whose accepted values cost memory or time in proportion (checked by the config only)
SIZES = ("max_new_tokens", "min_new_tokens", "num_beams", "num_return_sequences")

HOSTILE = st.one_of(
    st.integers(-3, 40),
    st.integers(-2 ** 200, 2 ** 200),
    st.sampled_from([2 ** 63 - 1, 2 ** 63, 2 ** 64, 2 ** 70, -2 ** 63, -2 ** 70, 10 ** 400, 10 ** 5000]),
    st.sampled_from([True, False, np.bool_(True), 2.0, 1e30, float("nan"), np.float32(3.0)]),
    st.sampled_from([np.int64(3), np.int8(-1), np.uint64(2 ** 64 - 1), np.uint64(2 ** 63),
                     np.int64(2 ** 63 - 1)]),
)


def names_value(message, value):
    """Does the message show the value (as given, as the int it is, or, beyond 256 bits, as
    its size: Python prints no int of over 4300 digits)?"""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        bits = abs(int(value)).bit_length()
        if bits > 256:
            return f"<int of {bits} bits>" in message
        return repr(value) in message or str(int(value)) in message
    return repr(value) in message or str(value) in message


def test_every_int_option_of_generation_config_is_covered():
    """The list above is every option whose value is an int or holds ints."""
    import dataclasses
    fields = {f.name: f.type for f in dataclasses.fields(npgpt.GenerationConfig)}
    with_ints = {name for name, kind in fields.items() if "int" in str(kind) or "tuple" in str(kind)
                 or name == "logit_bias"}
    assert with_ints - {"stop_strings"} == set(INT_OPTIONS)


@settings(max_examples=300)
@given(st.sampled_from(INT_OPTIONS), HOSTILE)
def test_every_int_option_takes_any_value_or_names_it_in_a_value_error(option, value):
    kwargs = _setting(option, value)
    try:
        config = npgpt.GenerationConfig(**kwargs)
    except ValueError as err:
        message = str(err)
        assert option in message and names_value(message, value), message
        return
    # accepted: an integer that NumPy's int64 holds, and nothing else
    assert not isinstance(value, (bool, np.bool_, float, np.floating))
    if option != "seed":                      # (a SeedSequence takes any int >= 0)
        assert -2 ** 63 <= int(value) < 2 ** 63
    if option in SIZES and int(value) > 40:
        return
    run = {} if option == "max_new_tokens" else dict(max_new_tokens=max(3, config.min_new_tokens))
    try:
        out = npgpt.generate(MODEL, [1, 2, 3], config, **run)
    except ValueError as err:                 # a token id beyond the vocabulary
        assert option in str(err) and names_value(str(err), value), str(err)
        return
    assert ((out.sequences >= 0) & (out.sequences < V)).all()


INT_PARAMETERS = [
    ("top_k", lambda x, v: S.top_k(x, v)),
    ("min_tokens_to_keep", lambda x, v: S.top_k(x, 2, v)),
    ("min_tokens_to_keep", lambda x, v: S.top_p(x, 0.5, v)),
    ("min_tokens_to_keep", lambda x, v: S.min_p(x, 0.5, v)),
    ("min_tokens_to_keep", lambda x, v: S.typical(x, 0.5, v)),
    ("min_tokens_to_keep", lambda x, v: S.epsilon(x, 0.1, v)),
    ("min_tokens_to_keep", lambda x, v: S.eta(x, 0.1, v)),
    ("no_repeat_ngram_size", lambda x, v: S.no_repeat_ngram(x, [1, 2, 1], v)),
    ("suppress_tokens", lambda x, v: S.suppress_tokens(x, [v])),
    ("forced_eos_token_id", lambda x, v: S.forced_eos(x, v)),
    ("bad_words_ids", lambda x, v: S.bad_words(x, [1, 2], [[2, v]])),
    ("logit_bias", lambda x, v: S.logit_bias(x, {v: 1.0})),
    ("top_k", lambda x, v: S.sample(x, np.random.default_rng(0), top_k=v)),
    ("no_repeat_ngram_size", lambda x, v: S.distribution(x, [1, 2, 1], no_repeat_ngram_size=v)),
]


@settings(max_examples=200)
@given(st.sampled_from(range(len(INT_PARAMETERS))), HOSTILE)
def test_every_int_parameter_of_the_sampling_functions_takes_any_value_or_names_it(which, value):
    option, call = INT_PARAMETERS[which]
    x = np.array([[0.5, 2.0, -1.0, 0.0, 1.0]], dtype=np.float32)
    try:
        out = np.asarray(call(x, value))
    except ValueError as err:
        assert option in str(err) and names_value(str(err), value), str(err)
        return
    assert not isinstance(value, (bool, np.bool_, float, np.floating))
    assert not np.isnan(out).any()


def test_token_mask_refuses_ids_beyond_int64_by_name():
    with pytest.raises(ValueError, match=r"suppress_tokens must be token ids in \[0, 5\), got \[1180591620717411303424\]"):
        S.token_mask([2 ** 70], 5, "suppress_tokens")


@pytest.mark.parametrize("option, value", [
    ("bad_words_ids", [[2 ** 70]]), ("suppress_tokens", [2 ** 64]), ("logit_bias", {2 ** 70: 1}),
    ("forced_eos_token_id", 2 ** 70), ("max_new_tokens", 2 ** 64), ("eos_token_id", 2 ** 70),
    ("pad_token_id", 2 ** 70), ("begin_suppress_tokens", [2 ** 70]), ("num_beams", 2 ** 70),
    ("num_return_sequences", 2 ** 70), ("num_draft_tokens", 2 ** 64)])
def test_the_reported_huge_ints_are_value_errors_naming_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        npgpt.generate(MODEL, [1, 2], **{option: value, "do_sample": True})


# ------------------------------------------------------------------ None, surrogates
@pytest.mark.parametrize("value, where", [([None], r"bad_words_ids\[0\]"), ([[1], None], r"bad_words_ids\[1\]"),
                                          (["ab"], r"bad_words_ids\[0\]")])
def test_bad_words_that_are_not_lists_of_ids_are_refused_by_position(value, where):
    with pytest.raises(ValueError, match=where):
        npgpt.GenerationConfig(bad_words_ids=value)


@pytest.mark.parametrize("text", ["\ud800", "ok\udcff", "\udfff"])
def test_stop_strings_utf8_cannot_encode_are_refused_by_name(text):
    with pytest.raises(ValueError, match=r"^stop_strings: .* lone surrogate"):
        npgpt.GenerationConfig(stop_strings=["fine", text])


# ------------------------------------------------------- logits pushed past float32
PATHS = {"greedy": dict(), "sampling": dict(do_sample=True, seed=0), "beam": dict(num_beams=2),
         "beam sampling": dict(num_beams=2, do_sample=True, seed=0),
         "speculative": dict(draft_model=DRAFT), "speculative sampling": dict(draft_model=DRAFT, do_sample=True)}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bias", [1e39, -1e39, 1e300])
def test_a_bias_beyond_float32_is_refused_by_name_on_every_path(path, bias):
    with pytest.raises(ValueError, match=r"^logit_bias: the bias .* of token 5 is beyond the range of the float32"):
        npgpt.generate(MODEL, [1, 2, 3], max_new_tokens=4, logit_bias={5: bias}, **PATHS[path])


@settings(max_examples=30)
@given(st.sampled_from(sorted(PATHS)), st.floats(1e3, 3e38), st.integers(0, V - 1))
def test_a_huge_finite_bias_makes_its_token_certain_on_every_path(path, bias, token):
    """A bias that float32 holds but that leaves every other token no chance gives that token
    at every step, or (beam search, whose scores sum the biased log-probabilities) a
    ValueError naming logit_bias: never another token."""
    try:
        out = npgpt.generate(MODEL, [1, 2, 3], max_new_tokens=5, logit_bias={token: bias}, **PATHS[path])
    except ValueError as err:
        assert "beam" in path and "logit_bias={" in str(err) and "overflows float32" in str(err), err
        return
    assert (out.sequences[:, 3:] == token).all(), out.sequences


def test_a_biased_logit_that_overflows_names_logit_bias():
    x = np.array([1e38, 0.0], dtype=np.float32)
    with pytest.raises(ValueError, match=r"^logit_bias=\{0: 3e\+38\} pushes a logit past the range of float32 \(to inf\)"):
        S.logit_bias(x, {0: 3e38})
    with pytest.raises(ValueError, match="logit_bias"):
        S.distribution(x, logit_bias={0: 3e38})


@pytest.mark.parametrize("path", [p for p in PATHS if "beam" not in p])
def test_a_repetition_penalty_so_small_that_logits_overflow_is_refused_by_name(path):
    """(Beam search penalises log-probabilities, which are <= 0: they only shrink.)"""
    with pytest.raises(ValueError, match=r"^repetition_penalty=1e-40 pushes a logit past"):
        npgpt.generate(MODEL, [1, 2, 3, 4, 5, 6, 7, 8, 0], max_new_tokens=3,
                       repetition_penalty=1e-40, **PATHS[path])


def test_penalties_that_overflow_name_themselves_in_the_sampling_functions():
    x = np.array([1.0, 2.0, -3.0], dtype=np.float32)
    with pytest.raises(ValueError, match="repetition_penalty=1e-45"):
        S.repetition_penalty(x, [0, 1], 1e-45)
    with pytest.raises(ValueError, match="presence_penalty and frequency_penalty"):
        S.presence_frequency_penalty(x, [0, 0, 1], 0.0, -1e39)


# ---------------------------------------------------------------- length penalties
@pytest.mark.parametrize("alpha", [300.0, -300.0, 60.0, -8.0, 1e6, -1e6])
@pytest.mark.parametrize("early", [True, False, "never"])
def test_extreme_length_penalties_return_beams_best_first(alpha, early):
    """No OverflowError from n ** alpha, no search that stops with no finished hypothesis
    (length_penalty=-8 after 12 tokens put a live beam below transformers' -1e9 placeholder)."""
    out = npgpt.generate(MODEL, [[1, 2, 3], [4, 5, 6]], max_new_tokens=12, num_beams=3,
                         num_return_sequences=3, length_penalty=alpha, early_stopping=early,
                         eos_token_id=4, pad_token_id=0)
    assert out.sequences.shape[0] == 6 and (out.num_new_tokens >= 1).all()
    assert not np.isnan(out.scores).any()
    sums, n = _sums(out, 3), out.num_new_tokens.reshape(2, 3)
    sign, size = bs._rank(sums, n, alpha)
    for b in range(2):                      # best first, in the order of sum / n ** alpha
        for i in range(2):
            if n[b, i] == n[b, i + 1] and abs(sums[b, i] - sums[b, i + 1]) < 1e-4:
                continue                    # a tie within float32 rounding of the sums
            assert (sign[b, i], size[b, i]) >= (sign[b, i + 1], size[b, i + 1]), (sums[b], n[b])


def _sums(out, P):
    """Each returned hypothesis's sum of log p, recomputed from the model in float64."""
    rows = []
    for seq, n in zip(out.sequences, out.num_new_tokens):
        logits = MODEL(seq[:P + n - 1])[P - 1:]                                # (n, V)
        logp = S.log_softmax(logits.astype(np.float64))
        rows.append(logp[np.arange(n), seq[P:P + n]].sum())
    return np.array(rows).reshape(-1, 3)


def test_length_penalty_extremes_order_by_the_true_score():
    """sum / n ** alpha compared exactly where the powers are beyond float64."""
    sums, n = np.array([-2.0, -3.0, -1.0, 0.5, 0.0]), np.array([1, 13, 12, 2, 5])
    sign, size = bs._rank(sums, n, 300.0)
    # 0.5 / 2**300 > 0 > -3 / 13**300 > -1 / 12**300 > -2
    assert np.lexsort((-size, -sign)).tolist() == [3, 4, 1, 2, 0]
    sign, size = bs._rank(sums, n, -300.0)
    assert np.lexsort((-size, -sign)).tolist() == [3, 4, 0, 2, 1]


@given(st.floats(-1e3, -1e-3), st.integers(1, 50), st.floats(-20, 20))
def test_penalised_scores_are_sum_over_n_to_the_alpha(s, n, alpha):
    np.testing.assert_allclose(bs._penalised_scores(np.array([s]), np.array([n]), alpha),
                               [s / float(n) ** alpha], rtol=1e-12)


def test_penalised_scores_beyond_float64_are_zero_or_infinite_not_errors():
    got = bs._penalised_scores(np.array([-3.0, -3.0]), np.array([13, 13]), np.array([300.0, -300.0]))
    assert got[0] == 0.0 and np.signbit(got[0]) and got[1] == -np.inf
