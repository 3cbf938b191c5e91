"""Invariants the forward pass promises, checked on random small models (hypothesis)."""

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import npgpt
from npgpt.nn.layers import layernorm_forward, softmax_forward


@st.composite
def models(draw, dtype=np.float64):
    heads = draw(st.integers(1, 3))
    cfg = npgpt.GPTConfig(
        vocab_size=draw(st.integers(2, 20)), context_length=draw(st.integers(2, 10)),
        d_model=heads * draw(st.integers(1, 6)), num_heads=heads, num_layers=draw(st.integers(1, 2)),
        gelu=draw(st.sampled_from(["exact", "tanh"])), residual=draw(st.sampled_from(["pre_norm", "seed"])),
        tie_embeddings=draw(st.booleans()), output_bias=draw(st.booleans()))
    return npgpt.GPT(cfg, seed=draw(st.integers(0, 2**16)), dtype=dtype,
                     init=draw(st.sampled_from(["gpt2", "torch"])))


def token_rows(model, batch=None, min_len=1):
    cfg = model.config
    b = batch if batch is not None else st.integers(1, 3)
    return st.tuples(b, st.integers(min_len, cfg.context_length)).flatmap(
        lambda shape: hnp.arrays(np.int64, shape, elements=st.integers(0, cfg.vocab_size - 1)))


@given(st.data())
def test_causality_changing_later_tokens_leaves_earlier_logits_unchanged(data):
    model = data.draw(models())
    ids = data.draw(token_rows(model, min_len=2))
    t = data.draw(st.integers(0, ids.shape[1] - 2))
    changed = ids.copy()
    changed[:, t + 1:] = data.draw(hnp.arrays(np.int64, changed[:, t + 1:].shape,
                                              elements=st.integers(0, model.config.vocab_size - 1)))
    np.testing.assert_allclose(model(changed)[:, :t + 1], model(ids)[:, :t + 1], rtol=0, atol=1e-12)


@given(st.data())
def test_batch_independence_each_row_equals_the_row_alone(data):
    model = data.draw(models())
    ids = data.draw(token_rows(model))
    out = model(ids)
    for b in range(ids.shape[0]):
        np.testing.assert_allclose(out[b], model(ids[b]), rtol=0, atol=1e-12)


@given(st.data())
def test_padding_invariance_left_padded_rows_equal_the_rows_alone(data):
    model = data.draw(models())
    cfg = model.config
    lengths = data.draw(st.lists(st.integers(1, cfg.context_length), min_size=1, max_size=3))
    T = max(lengths)
    rows = [data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, cfg.vocab_size - 1))) for n in lengths]
    pad_value = data.draw(st.integers(0, cfg.vocab_size - 1))   # what sits under the mask is irrelevant
    ids = np.full((len(rows), T), pad_value)
    mask = np.zeros((len(rows), T), dtype=int)
    for b, row in enumerate(rows):
        ids[b, T - len(row):] = row
        mask[b, T - len(row):] = 1
    out = model(ids, attention_mask=mask)
    assert np.all(np.isfinite(out))
    for b, row in enumerate(rows):
        np.testing.assert_allclose(out[b, T - len(row):], model(row), rtol=0, atol=1e-12)


@given(st.data())
def test_kv_cache_prompt_then_one_token_at_a_time_equals_the_full_forward(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    model = data.draw(models(dtype=dtype))
    ids = data.draw(token_rows(model))
    split = data.draw(st.integers(1, ids.shape[1]))
    cache = model.new_cache(ids.shape[0])
    pieces = [model(ids[:, :split], cache=cache)]
    pieces += [model(ids[:, t:t + 1], cache=cache) for t in range(split, ids.shape[1])]
    atol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), model(ids), rtol=0, atol=atol)
    assert cache.length == ids.shape[1]


@given(st.data())
def test_kv_cache_with_left_padding_equals_each_row_alone(data):
    model = data.draw(models())
    cfg = model.config
    assume(cfg.context_length >= 3)
    short = data.draw(hnp.arrays(np.int64, 1, elements=st.integers(0, cfg.vocab_size - 1)))
    long = data.draw(hnp.arrays(np.int64, 2, elements=st.integers(0, cfg.vocab_size - 1)))
    nxt = data.draw(hnp.arrays(np.int64, (2, 1), elements=st.integers(0, cfg.vocab_size - 1)))
    cache = model.new_cache(2)
    model(np.array([[0, short[0]], long]), attention_mask=[[0, 1], [1, 1]], cache=cache)
    step = model(nxt, cache=cache)
    np.testing.assert_allclose(step[0, 0], model(np.r_[short, nxt[0]])[-1], atol=1e-12)
    np.testing.assert_allclose(step[1, 0], model(np.r_[long, nxt[1]])[-1], atol=1e-12)


finite_rows = hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 30)),
                         elements=st.floats(-1e4, 1e4))


@given(finite_rows, st.floats(-1e3, 1e3))
def test_softmax_rows_sum_to_one_and_are_shift_invariant(x, shift):
    p = softmax_forward(x)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(softmax_forward(x + shift), p, atol=1e-12)


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 40)),
                  elements=st.floats(-1e3, 1e3)))
def test_layernorm_output_has_mean_0_and_variance_1_before_the_affine(x):
    assume(np.all(x.std(axis=-1) > 1e-3))
    C = x.shape[-1]
    y, (xhat, _, _) = layernorm_forward(x, np.ones(C), np.zeros(C), eps=1e-12)
    np.testing.assert_allclose(y, xhat)
    np.testing.assert_allclose(xhat.mean(axis=-1), 0.0, atol=1e-9)
    np.testing.assert_allclose(xhat.var(axis=-1), 1.0, atol=1e-6)
    w, b = np.linspace(0.5, 2, C), np.linspace(-1, 1, C)
    y2, _ = layernorm_forward(x, w, b, eps=1e-12)
    np.testing.assert_allclose(y2, xhat * w + b, atol=1e-9)
