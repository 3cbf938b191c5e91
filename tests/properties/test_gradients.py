"""Finite-difference checks (float64) of every hand-written backward pass.

Each layer is checked on random small shapes: the loss is L = Σ out · R for a fixed random R,
so dL/dout = R; the analytic gradients must match central differences to a relative error
≤ 1e-6 (‖analytic - numeric‖∞ / max(‖analytic‖∞, ‖numeric‖∞, 1e-2): tiny gradients are
compared absolutely, to 1e-8, above the differences' rounding noise).
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import npgpt
from npgpt.nn.attention import attention_backward, attention_forward, causal_mask
from npgpt.nn.block import block_backward, block_forward
from npgpt.nn.crossentropy import cross_entropy_backward, cross_entropy_forward
from npgpt.nn.layers import (embedding_backward, embedding_forward, gelu_backward, gelu_forward,
                             layernorm_backward, layernorm_forward, linear_backward,
                             linear_forward, softmax_backward, softmax_forward)
from npgpt.nn.mlp import mlp_backward, mlp_forward

EPS = 1e-6


def numeric_grad(f, x):
    """Central differences of the scalar f() with respect to every entry of x (in place)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):                     # x itself, whatever its layout (a view of a
        old = x[i]                                    # stacked matrix has no flat view)
        x[i] = old + EPS
        plus = f()
        x[i] = old - EPS
        minus = f()
        x[i] = old
        g[i] = (plus - minus) / (2 * EPS)
    return g


# Central differences carry rounding noise of about eps64 * |terms of L| / EPS ≈ 2e-10 per unit
# of the loss's terms, whatever the gradient's size: a gradient block smaller than this
# floor (a saturated softmax gives ~1e-6) is compared absolutely, to tol * GRAD_FLOOR = 1e-8.
GRAD_FLOOR = 1e-2


def assert_grad_close(analytic, numeric, tol=1e-6):
    scale = max(np.max(np.abs(analytic)), np.max(np.abs(numeric)), GRAD_FLOOR)
    rel = np.max(np.abs(analytic - numeric)) / scale
    assert rel <= tol, f"relative error {rel:.2e} > {tol:.0e} (of {scale:.1e})"


def rand(rng, *shape):
    return rng.standard_normal(shape)


seeds = st.integers(0, 2**31 - 1)


@given(seeds, st.integers(1, 3), st.integers(1, 5), st.integers(1, 6), st.booleans())
def test_linear_backward_matches_finite_differences(seed, b, n_in, n_out, bias):
    rng = np.random.default_rng(seed)
    x, w = rand(rng, b, 2, n_in), rand(rng, n_out, n_in)
    bvec = rand(rng, n_out) if bias else None
    R = rand(rng, b, 2, n_out)
    loss = lambda: np.sum(linear_forward(x, w, bvec)[0] * R)  # noqa: E731
    dx, dw, db = linear_backward(R, linear_forward(x, w, bvec)[1])
    assert_grad_close(dx, numeric_grad(loss, x))
    assert_grad_close(dw, numeric_grad(loss, w))
    if bias:
        assert_grad_close(db, numeric_grad(loss, bvec))
    else:
        assert db is None


@given(seeds, st.integers(3, 8))   # C = 2 is degenerate: xhat = ±1 whatever x is
def test_layernorm_backward_matches_finite_differences(seed, c):
    rng = np.random.default_rng(seed)
    x, w, b, R = rand(rng, 2, 3, c), rand(rng, c), rand(rng, c), rand(rng, 2, 3, c)
    loss = lambda: np.sum(layernorm_forward(x, w, b)[0] * R)  # noqa: E731
    dx, dw, db = layernorm_backward(R, layernorm_forward(x, w, b)[1])
    assert_grad_close(dx, numeric_grad(loss, x))
    assert_grad_close(dw, numeric_grad(loss, w))
    assert_grad_close(db, numeric_grad(loss, b))


@given(seeds, st.sampled_from(["exact", "tanh"]), st.floats(0.1, 6.0))
def test_gelu_backward_matches_finite_differences(seed, kind, scale):
    rng = np.random.default_rng(seed)
    x, R = scale * rand(rng, 3, 7), rand(rng, 3, 7)
    loss = lambda: np.sum(gelu_forward(x, kind)[0] * R)  # noqa: E731
    assert_grad_close(gelu_backward(R, gelu_forward(x, kind)[1]), numeric_grad(loss, x))


@given(seeds, st.integers(1, 9))
def test_softmax_backward_matches_finite_differences(seed, n):
    rng = np.random.default_rng(seed)
    x, R = rand(rng, 2, n), rand(rng, 2, n)
    loss = lambda: np.sum(softmax_forward(x) * R)  # noqa: E731
    assert_grad_close(softmax_backward(R, softmax_forward(x)), numeric_grad(loss, x))


@given(seeds, st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.booleans())
def test_attention_backward_matches_finite_differences(seed, heads, head_size, t, dropout):
    rng = np.random.default_rng(seed)
    c = heads * head_size
    x = rand(rng, 2, t, c)
    params = [rand(rng, 3 * c, c), rand(rng, 3 * c), rand(rng, c, c), rand(rng, c)]
    R = rand(rng, 2, t, c)
    mask = causal_mask(t, np.float64)
    mask_seed = int(rng.integers(2**31))
    drop = 0.3 if dropout else 0.0

    def run():   # the same dropout mask on every call: a fixed function of the inputs
        return attention_forward(x, *params, heads, mask, dropout=drop,
                                 rng=np.random.default_rng(mask_seed))

    loss = lambda: np.sum(run()[0] * R)  # noqa: E731
    grads = attention_backward(R, run()[1])
    assert_grad_close(grads[0], numeric_grad(loss, x))
    for g, p in zip(grads[1:], params):
        assert_grad_close(g, numeric_grad(loss, p))


@given(seeds, st.sampled_from(["exact", "tanh"]), st.booleans())
def test_mlp_backward_matches_finite_differences(seed, kind, dropout):
    rng = np.random.default_rng(seed)
    c = 3
    x = rand(rng, 2, 2, c)
    params = {"ffn.0.weight": rand(rng, 4 * c, c), "ffn.0.bias": rand(rng, 4 * c),
              "ffn.2.weight": rand(rng, c, 4 * c), "ffn.2.bias": rand(rng, c)}
    R = rand(rng, 2, 2, c)
    mask_seed = int(rng.integers(2**31))

    def run():
        return mlp_forward(x, *params.values(), gelu=kind, dropout=0.4 if dropout else 0.0,
                           rng=np.random.default_rng(mask_seed))

    loss = lambda: np.sum(run()[0] * R)  # noqa: E731
    dx, grads = mlp_backward(R, run()[1])
    assert_grad_close(dx, numeric_grad(loss, x))
    for name, p in params.items():
        assert_grad_close(grads[name], numeric_grad(loss, p))


@settings(max_examples=16)
@given(seeds, st.sampled_from(["pre_norm", "seed"]), st.sampled_from(["exact", "tanh"]))
def test_block_backward_matches_finite_differences_for_both_residuals(seed, residual, kind):
    rng = np.random.default_rng(seed)
    c, heads, t = 4, 2, 3
    names = {"ln1.weight": (c,), "ln1.bias": (c,), "ln2.weight": (c,), "ln2.bias": (c,),
             "attn.in_proj_weight": (3 * c, c), "attn.in_proj_bias": (3 * c,),
             "attn.out_proj.weight": (c, c), "attn.out_proj.bias": (c,),
             "ffn.0.weight": (4 * c, c), "ffn.0.bias": (4 * c,), "ffn.2.weight": (c, 4 * c),
             "ffn.2.bias": (c,)}
    params = {"b." + k: rand(rng, *shape) for k, shape in names.items()}
    x, R = rand(rng, 2, t, c), rand(rng, 2, t, c)
    config = npgpt.GPTConfig(vocab_size=2, context_length=t, d_model=c, num_heads=heads,
                             num_layers=1, residual=residual, gelu=kind)
    run = lambda: block_forward(x, params, "b.", config, causal_mask(t, np.float64))  # noqa: E731
    loss = lambda: np.sum(run()[0] * R)  # noqa: E731
    dx, grads = block_backward(R, run()[1])
    assert_grad_close(dx, numeric_grad(loss, x))
    for name in names:
        assert_grad_close(grads[name], numeric_grad(loss, params["b." + name]))


@given(seeds)
def test_embedding_backward_scatter_adds_repeated_ids(seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 3, (2, 4))          # 3 ids over 8 places: repeats guaranteed
    tok, pos, R = rand(rng, 3, 2), rand(rng, 5, 2), rand(rng, 2, 4, 2)
    loss = lambda: np.sum(embedding_forward(ids, tok, pos, np.arange(4))[0] * R)  # noqa: E731
    dtok, dpos = embedding_backward(R, embedding_forward(ids, tok, pos, np.arange(4))[1])
    assert_grad_close(dtok, numeric_grad(loss, tok))
    assert_grad_close(dpos, numeric_grad(loss, pos))


@given(seeds, st.integers(2, 7))
def test_cross_entropy_backward_matches_finite_differences(seed, v):
    rng = np.random.default_rng(seed)
    logits, targets = 3 * rand(rng, 2, 3, v), rng.integers(0, v, (2, 3))
    loss = lambda: cross_entropy_forward(logits, targets)[0]  # noqa: E731
    assert_grad_close(cross_entropy_backward(cross_entropy_forward(logits, targets)[1]),
                      numeric_grad(loss, logits))


@settings(max_examples=12)
@given(seeds, st.sampled_from(["pre_norm", "seed"]), st.sampled_from(["exact", "tanh"]),
       st.booleans(), st.booleans())
def test_whole_model_gradients_match_finite_differences(seed, residual, kind, tie, out_bias):
    cfg = npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=4, num_heads=2, num_layers=2,
                          residual=residual, gelu=kind, tie_embeddings=tie, output_bias=out_bias)
    assert_model_gradients_match_finite_differences(cfg, seed)


def assert_model_gradients_match_finite_differences(cfg, seed):
    """Every parameter's gradient of the mean loss of a float64 model of ``cfg`` (a batch of
    2 × 4 tokens with a repeated id) against central differences."""
    model = npgpt.GPT(cfg, seed=seed % 1000, dtype=np.float64, init="torch")
    rng = np.random.default_rng(seed)
    ids, targets = rng.integers(0, 5, (2, 4)), rng.integers(0, 5, (2, 4))
    ids[0, :2] = 3                                               # a repeated id
    _, grads = model.loss_and_grads(ids, targets)
    assert list(grads) == list(model.state_dict())
    loss = lambda: model.loss_and_grads(ids, targets)[0]  # noqa: E731
    for name, p in model.params.items():
        assert grads[name].shape == p.shape and grads[name].dtype == p.dtype
        assert_grad_close(grads[name], numeric_grad(loss, p))


@settings(max_examples=12)
@given(seeds, st.sampled_from(["layernorm", "rmsnorm"]), st.sampled_from(["gelu", "swiglu"]),
       st.sampled_from([(2, 1, None), (4, 2, 2), (4, 1, 2), (2, 2, None)]), st.booleans(), st.booleans(),
       st.sampled_from(["half", "interleaved"]))
def test_rope_model_gradients_match_finite_differences(seed, norm, mlp, heads, bias, tie, layout):
    H, Hkv, head_dim = heads
    cfg = npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=4, num_heads=H, num_layers=2,
                          norm=norm, mlp=mlp, positions="rope", num_kv_heads=Hkv,
                          head_dim=head_dim, attention_bias=bias, tie_embeddings=tie,
                          output_bias=False, ffn_dim=6, rope_layout=layout, rope_theta=3.0)
    assert "position_encoding.weight" not in npgpt.model.parameter_shapes(cfg)
    assert_model_gradients_match_finite_differences(cfg, seed)
