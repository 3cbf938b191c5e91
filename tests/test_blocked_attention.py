"""A long prompt's attention in query blocks (npgpt/inference.py, ``_attend``) equals one dense
pass up to rounding: within 8 float32 ulps of each row's largest logit, with the same greedy
choices; with and without padding, a cache prefix, grouped heads and rotary positions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import inference
from npgpt.model import positions_and_mask

ULPS = 8


def _forward_with_block(monkeypatch, block, w, ids, positions=None, mask=None, cache=None):
    monkeypatch.setattr(inference, "QUERY_BLOCK", block)
    return inference.forward(w, ids, positions, mask, cache)


def _assert_rounding_apart(a, b):
    scale = np.spacing(np.abs(a).max(axis=-1, keepdims=True).astype(np.float32))
    assert (np.abs(a - b) <= ULPS * scale).all(), (np.abs(a - b) / scale).max()
    np.testing.assert_array_equal(a.argmax(-1), b.argmax(-1))


@settings(max_examples=25, deadline=None)
@given(T=st.integers(2, 90), block=st.integers(1, 40), llama=st.booleans(), batch=st.integers(1, 3),
       pad=st.integers(0, 5), seed=st.integers(0, 2**31 - 1))
def test_blocked_attention_equals_the_dense_pass_up_to_rounding(T, block, llama, batch, pad, seed):
    switches = dict(norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=1) if llama else {}
    cfg = npgpt.GPTConfig(vocab_size=31, context_length=128, d_model=16, num_heads=2, num_layers=2, **switches)
    model = npgpt.GPT(cfg, seed=seed % 1000)
    w = inference.weights(model.params, cfg)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 31, (batch, T))
    real = np.ones((batch, T), dtype=bool)
    real[0, :min(pad, T - 1)] = False                                 # left padding in row 0
    positions, mask = positions_and_mask(T, None if real.all() else real, None, model.dtype)
    with pytest.MonkeyPatch.context() as mp:
        dense = _forward_with_block(mp, 10**9, w, ids, positions, mask)
        blocked = _forward_with_block(mp, block, w, ids, positions, mask)
    _assert_rounding_apart(dense[real], blocked[real])


def test_a_prompt_fed_after_a_cached_prefix_is_blocked_from_the_right_keys(monkeypatch):
    cfg = npgpt.GPTConfig(vocab_size=31, context_length=256, d_model=16, num_heads=2, num_layers=2)
    model = npgpt.GPT(cfg, seed=3)
    w = inference.weights(model.params, cfg)
    ids = np.random.default_rng(0).integers(0, 31, (1, 150))
    results = []
    for block in (10**9, 16):
        cache = model.new_cache(1, capacity=150)
        positions, mask = positions_and_mask(40, None, cache, model.dtype)
        _forward_with_block(monkeypatch, block, w, ids[:, :40], positions, mask, cache)
        positions, mask = positions_and_mask(110, None, cache, model.dtype)
        results.append(_forward_with_block(monkeypatch, block, w, ids[:, 40:], positions, mask, cache))
    _assert_rounding_apart(*results)
    full = inference.forward(w, ids)[:, 40:]
    _assert_rounding_apart(full, results[1])


def test_a_long_prompts_greedy_tokens_are_unchanged_by_blocking(monkeypatch):
    model = npgpt.load("shakespeare-char")
    ids = np.array(model.tokenizer.encode(("ROMEO: the night is long and so are the prompts " * 3)[:120]))
    out = []
    for block in (10**9, 16):
        monkeypatch.setattr(inference, "QUERY_BLOCK", block)
        out.append(npgpt.generate(model, ids, max_new_tokens=30).sequences)
    np.testing.assert_array_equal(*out)
