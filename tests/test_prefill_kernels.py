"""The long-prompt kernels (npgpt/_prefill.py) equal the plain steps of npgpt/inference.py up to
float32 rounding: the blocked, head-parallel attention equals one dense softmax(q kᵀ/√D + mask) v
(with cache prefixes, left padding, grouped heads, any block size); the cache-sized tanh GELU
equals ``_gelu``; a mask's blocks are marked clear exactly when nothing left of their diagonal
is hidden; and a whole forward pass over a prompt longer than ``LONG_PROMPT`` stays within a
few ulps of ``gpt_forward``'s logits, with the same greedy choices."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import _prefill, inference
from npgpt.nn.attention import causal_bias

#: the attention's output is a convex mix of v's rows: its error is measured in ulps of max|v|
ATTENTION_ULPS = 16
#: GELU's error in ulps of max(|x|, 1) (tanh's own rounding, near 0, is relative to 1)
GELU_ULPS = 4
#: logits after a whole forward pass, in ulps of each row's largest (tests/test_blocked_attention.py)
LOGIT_ULPS = 8


def _ulp32(a):
    return np.spacing(np.float32(a))


@st.composite
def attention_cases(draw):
    """q (B, H, T, D), k, v (B, Hkv, Tk, D) float32, a causal mask over Tk - T cached keys,
    some rows left-padded, and a block size."""
    B, Hkv, G = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 3]))
    T, prefix, D = draw(st.integers(1, 40)), draw(st.integers(0, 12)), draw(st.sampled_from([2, 8, 16]))
    Tk, block = T + prefix, draw(st.integers(1, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    q = rng.standard_normal((B, Hkv * G, T, D)).astype(np.float32) * draw(st.sampled_from([0.5, 3.0]))
    k, v = (rng.standard_normal((B, Hkv, Tk, D)).astype(np.float32) for _ in range(2))
    key_valid = None
    if draw(st.booleans()):
        key_valid = np.ones((B, Tk), dtype=bool)
        key_valid[0, :draw(st.integers(0, Tk - 1))] = False
    return q, k, v, causal_bias(T, Tk, np.float32, key_valid=key_valid), block


@settings(max_examples=80, deadline=None)
@given(attention_cases())
def test_blocked_head_parallel_attention_equals_the_dense_softmax_within_float32_ulps(case):
    q, k, v, mask, block = case
    expected = inference._attend_dense(q, k, v, mask).transpose(0, 2, 1, 3)     # (B, T, H, D)
    got = _prefill.attend_blocks(q, k, v, _prefill.blocked_mask(mask, block))
    assert got.shape == expected.shape and got.dtype == np.float32
    bound = ATTENTION_ULPS * _ulp32(np.abs(v).max())
    assert np.abs(got - expected).max() <= bound, np.abs(got - expected).max() / _ulp32(np.abs(v).max())


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 30), Tk_extra=st.integers(0, 10), block=st.integers(1, 12), seed=st.integers(0, 10**6))
def test_a_block_is_clear_exactly_when_no_key_left_of_its_diagonal_is_hidden(T, Tk_extra, block, seed):
    rng = np.random.default_rng(seed)
    Tk = T + Tk_extra
    mask = causal_bias(T, Tk, np.float32)[0, 0].copy()
    if rng.random() < 0.5:
        mask[rng.integers(0, T), rng.integers(0, Tk)] = -np.inf                # hide one more key
    clear = _prefill.blocked_mask(mask, block).clear
    starts = list(range(0, T, block))
    assert len(clear) == len(starts)
    for flag, i0 in zip(clear, starts):
        left = mask[i0:i0 + block, :Tk - T + i0]
        assert flag == bool((left == 0).all())


@settings(max_examples=60, deadline=None)
@given(N=st.integers(1, 70), F=st.integers(1, 300), scale=st.sampled_from([0.1, 1.0, 4.0, 30.0]),
       seed=st.integers(0, 10**6))
def test_cache_sized_tanh_gelu_equals_the_plain_gelu_within_float32_ulps(N, F, scale, seed):
    rng = np.random.default_rng(seed)
    f = (rng.standard_normal((N, F)) * scale).astype(np.float32)
    bias = rng.standard_normal(F).astype(np.float32)
    expected = f + bias
    inference._gelu(expected, "tanh")
    got = f.copy()
    _prefill.bias_gelu_rows(got, bias)
    bound = GELU_ULPS * _ulp32(np.maximum(np.abs(f + bias), 1.0))
    assert (np.abs(got - expected) <= bound).all()


@settings(max_examples=6, deadline=None)
@given(llama=st.booleans(), T=st.integers(inference.LONG_PROMPT + 1, 150), seed=st.integers(0, 999))
def test_a_long_prompts_forward_stays_within_float32_ulps_of_gpt_forward(llama, T, seed):
    with npgpt.threads.using(2):                                           # the threaded kernels
        _check_long_prompt(llama, T, seed)


def _check_long_prompt(llama, T, seed):
    switches = dict(norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=1) if llama else {}
    cfg = npgpt.GPTConfig(vocab_size=37, context_length=160, d_model=32, num_heads=4, num_layers=2,
                          gelu="tanh", **switches)
    model = npgpt.GPT(cfg, seed=seed, init="torch")
    ids = np.random.default_rng(seed).integers(0, 37, (1, T))
    expected = model(ids)                                                  # gpt_forward
    got = inference.forward(inference.weights(model.params, cfg), ids)
    scale = _ulp32(np.abs(expected).max(axis=-1, keepdims=True))
    assert (np.abs(got - expected) <= LOGIT_ULPS * scale).all()
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))



def test_a_long_prompt_making_one_token_takes_the_blocked_kernels_and_the_same_token():
    # generate(max_new_tokens=1) needs no cache: it runs inference.last_logits, whose blocks
    # must take the long-prompt attention too (they did not, before this test)
    cfg = npgpt.GPTConfig(vocab_size=37, context_length=300, d_model=32, num_heads=4, num_layers=2, gelu="tanh")
    model = npgpt.GPT(cfg, seed=1, init="torch")
    ids = np.random.default_rng(1).integers(0, 37, (1, 200))
    calls = []
    original = inference.attend_blocks

    def counted(*args):
        calls.append(1)
        return original(*args)
    inference.attend_blocks = counted
    try:
        got = inference.last_logits(inference.weights(model.params, cfg), ids)
        out = npgpt.generate(model, ids[0], max_new_tokens=1)
    finally:
        inference.attend_blocks = original
    assert len(calls) == 2 * (cfg.num_layers - 1)                          # all blocks but the last, twice
    expected = model(ids, last_only=True)
    assert (np.abs(got - expected) <= LOGIT_ULPS * _ulp32(np.abs(expected).max())).all()
    assert out.sequences[0, -1] == expected[0].argmax()
