"""The inference forward (npgpt.inference) on the Llama-family block and every mix of the
switches (norm, positions, mlp, grouped-query heads, head_dim, q/k/v biases, rope scaling and
layout, tied embeddings) equals the learner's gpt_forward (GPT.forward) up to rounding: over
whole sequences, their last positions, left-padded batches, and step by step through a KV
cache that holds the key/value heads only; greedy generation picks the tokens a plain
gpt_forward loop picks.

"Up to rounding": float64 to 1e-10 and float32 to 1e-4 of the largest logit. (The fast path
repeats gpt_forward's operations in order, and is bit-identical as long as BLAS sums the same
products alike, which tests/properties/test_inference.py asserts; these tests state what the
math promises, and cover what that file does not draw: six heads sharing three kv heads,
llama3 rope scaling, wider feed-forwards, last_logits, the cache contents, a greedy loop.)
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt import inference
from npgpt.model import gpt_forward, positions_and_mask

from properties.test_inference import batches

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8}


@st.composite
def models(draw, dtypes=(np.float32, np.float64)):
    """Models over every switch of GPTConfig, the Llama family's block most often."""
    heads = draw(st.sampled_from([1, 2, 4, 6]))
    llama = draw(st.booleans())                           # all three Llama parts, else a mix
    positions = "rope" if llama else draw(st.sampled_from(["learned", "rope"]))
    rope = {}
    if positions == "rope":
        rope = dict(num_kv_heads=draw(st.sampled_from([h for h in (1, 2, 3, 4, 6) if heads % h == 0])),
                    head_dim=draw(st.sampled_from([None, 2, 6])),
                    attention_bias=draw(st.booleans()),
                    rope_theta=draw(st.sampled_from([10000.0, 500000.0])),
                    rope_scaling=draw(st.sampled_from([None, {"rope_type": "linear", "factor": 2.0},
                                                       LLAMA3_SCALING])),
                    rope_layout=draw(st.sampled_from(["half", "interleaved"])))
    cfg = npgpt.GPTConfig(
        vocab_size=draw(st.integers(2, 40)), context_length=draw(st.integers(4, 12)),
        d_model=heads * draw(st.sampled_from([2, 4, 8])), num_heads=heads,
        num_layers=draw(st.integers(1, 3)),
        residual="pre_norm" if llama else draw(st.sampled_from(["pre_norm", "seed"])),
        gelu=draw(st.sampled_from(["exact", "tanh"])),
        tie_embeddings=draw(st.booleans()), output_bias=draw(st.booleans()),
        norm="rmsnorm" if llama else draw(st.sampled_from(["layernorm", "rmsnorm"])),
        mlp="swiglu" if llama else draw(st.sampled_from(["gelu", "swiglu"])),
        ffn_dim=draw(st.sampled_from([None, 6, 20])), positions=positions, **rope)
    dtype = draw(st.sampled_from(dtypes))
    return npgpt.GPT(cfg, seed=draw(st.integers(0, 1000)), dtype=dtype, init="torch")


def assert_close(got, expected):
    """Equal up to rounding: 1e-10 (float64) or 1e-4 (float32) of the largest value."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    tol = 1e-10 if expected.dtype == np.float64 else 1e-4
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale)


def fast(model, ids, real, cache=None, last_only=False):
    real = None if real is None or real.all() else real
    positions, mask = positions_and_mask(ids.shape[1], real, cache, model.dtype)
    w = inference.weights(model.params, model.config)
    return inference.forward(w, ids, positions, mask, cache, last_only=last_only)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_forward_and_last_logits_equal_gpt_forward_up_to_rounding(data):
    model = data.draw(models())
    ids, real = data.draw(batches(model))
    before = model.state_dict()
    for last_only in (False, True):
        assert_close(fast(model, ids, real, last_only=last_only),
                     model(ids, attention_mask=real, last_only=last_only))
    real = None if real is None or real.all() else real
    positions, mask = positions_and_mask(ids.shape[1], real, None, model.dtype)
    w = inference.weights(model.params, model.config)
    assert_close(inference.last_logits(w, ids, positions, mask),
                 gpt_forward(model.params, ids, model.config, positions, mask, last_only=True))
    for name, value in model.state_dict().items():          # the weights are only read
        np.testing.assert_array_equal(value, before[name])


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_prefill_then_token_by_token_through_a_cache_equals_gpt_forward(data):
    model = data.draw(models())
    cfg = model.config
    ids, real = data.draw(batches(model, max_T=cfg.context_length - 1))
    B, T = ids.shape
    steps = data.draw(st.integers(1, cfg.context_length - T))
    ours, theirs = model.new_cache(B, T + steps), model.new_cache(B, T + steps)
    assert ours.k.shape == (cfg.num_layers, B, cfg.kv_heads, T + steps, cfg.head_size)
    assert_close(fast(model, ids, real, ours, last_only=True),
                 model(ids, attention_mask=real, cache=theirs, last_only=True))
    for _ in range(steps):
        tokens = np.array(data.draw(st.lists(st.integers(0, cfg.vocab_size - 1),
                                             min_size=B, max_size=B)))[:, None]
        assert_close(fast(model, tokens, None, ours), model(tokens, cache=theirs))
    assert ours.length == theirs.length == T + steps
    assert_close(ours.k, theirs.k)
    assert_close(ours.v, theirs.v)


def greedy_loop(model, prompt, n):
    """The plainest greedy decoding: gpt_forward on the last context_length tokens, argmax."""
    ids = list(prompt)
    for _ in range(n):
        window = np.array([ids[-model.config.context_length:]])
        logits = gpt_forward(model.params, window, model.config)[0, -1]
        ids.append(int(np.argmax(logits)))
    return ids


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_greedy_generate_picks_the_tokens_of_a_plain_gpt_forward_loop(data):
    model = data.draw(models(dtypes=(np.float64,)))           # no near-ties left to rounding
    ids, real = data.draw(batches(model))
    n = data.draw(st.integers(1, 2 * model.config.context_length))   # past the context too
    out = npgpt.generate(model, ids, attention_mask=real, max_new_tokens=n)
    for row in range(len(ids)):
        prompt = ids[row] if real is None else ids[row][real[row]]
        assert out.sequences[row, ids.shape[1]:].tolist() == greedy_loop(model, prompt, n)[len(prompt):]


def test_a_float32_llama_model_decodes_in_float32_like_gpt_forward():
    cfg = npgpt.GPTConfig(vocab_size=50, context_length=32, d_model=48, num_heads=6, num_layers=2,
                          norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=2,
                          ffn_dim=96, tie_embeddings=True, output_bias=False, rope_theta=100000.0)
    model = npgpt.GPT(cfg, seed=3, init="torch")
    prompt = np.array([[5, 9, 2, 41, 7]])
    w = inference.weights(model.params, cfg)
    block = w["blocks"][0]
    arrays = [*block.norm1[1:], *block.norm2[1:], *block.attn.out, *block.mlp.weights]
    arrays += [a for pair in block.attn.qkv for a in pair]
    assert all(a.dtype == np.float32 for a in arrays if a is not None) and len(arrays) == 12
    assert block.attn.kind == "stacked" and block.mlp.weights[3].shape == (48, 192)   # [q|k|v], [gate|up]
    cache = model.new_cache(1, 20)
    logits = fast(model, prompt, None, cache, last_only=True)
    assert logits.dtype == np.float32 and cache.k.dtype == np.float32
    out = npgpt.generate(model, prompt, max_new_tokens=12)
    assert out.sequences[0].tolist() == greedy_loop(model, prompt[0], 12)


def test_grouped_query_attention_equals_attention_with_each_kv_head_repeated():
    """Hkv = 2 kv heads serving 6 query heads give the logits of a model with 6 kv heads,
    each kv head's weights copied to the 3 query heads of its group."""
    small = npgpt.GPTConfig(vocab_size=30, context_length=16, d_model=24, num_heads=6, num_layers=2,
                            norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=2,
                            attention_bias=True, output_bias=False)
    model = npgpt.GPT(small, seed=1, dtype=np.float64, init="torch")
    full = npgpt.GPT(small.replace(num_kv_heads=6), dtype=np.float64)
    D = small.head_size
    params = dict(model.params)
    for name in list(params):
        if name.endswith(("k_proj.weight", "v_proj.weight", "k_proj.bias", "v_proj.bias")):
            heads = params[name].reshape(2, D, *params[name].shape[1:])     # (Hkv, D, ...)
            params[name] = np.repeat(heads, 3, axis=0).reshape(6 * D, *params[name].shape[1:])
    full.load_state_dict(params)
    ids = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])
    grouped = inference.forward(inference.weights(model.params, small), ids)
    repeated = inference.forward(inference.weights(full.params, full.config), ids)
    np.testing.assert_allclose(grouped, repeated, rtol=1e-12, atol=1e-12)
    assert not np.allclose(grouped[0, 1:], grouped[0, :1])   # the logits depend on the tokens


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_the_rotation_in_place_equals_rope_forward(layout):
    from npgpt.nn.rope import rope_forward, rope_frequencies, rope_tables
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 5, 8))                                 # (B, heads, T, D)
    cos, sin = rope_tables(rng.integers(0, 100, (2, 5)), rope_frequencies(8), np.float64)
    expected, _ = rope_forward(x, cos, sin, layout)
    rows = x.transpose(0, 2, 1, 3).reshape(10, 3, 8)                 # (B·T, heads, D), a copy
    inference._rotate(rows, cos.reshape(10, 1, 4), sin.reshape(10, 1, 4), layout)
    np.testing.assert_array_equal(rows.reshape(2, 5, 3, 8).transpose(0, 2, 1, 3), expected)
