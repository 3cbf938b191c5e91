"""The Llama-family layers (npgpt/nn/rmsnorm.py, rope.py, swiglu.py, gqa.py).

- Finite differences (float64, hypothesis over shapes, layouts, biases, rope scalings) for
  every hand-written backward.
- Parity with transformers' own modules and torch autograd: the recorded fixture
  tests/fixtures/llama_layers.npz (made by make_llama_layers_fixtures.py) everywhere, and the
  same reference functions on fresh random inputs when torch and transformers import.
- Properties: RoPE keeps each pair's norm, q·k depends on the position difference only, the
  two layouts agree up to a permutation; GQA with H = Hkv is multi-head attention, GQA equals
  MHA with its kv heads repeated (and its kv gradients are the group sums), a KV cache gives
  the same as the whole sequence; RMSNorm is scale-invariant; SwiGLU(0) = 0.
"""

import importlib.util
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npgpt.nn.attention import attention_backward, attention_forward, causal_bias, causal_mask
from npgpt.nn.gqa import gqa_backward, gqa_forward
from npgpt.nn.rmsnorm import rmsnorm_backward, rmsnorm_forward
from npgpt.nn.rope import rope_backward, rope_forward, rope_frequencies, rope_tables
from npgpt.nn.swiglu import swiglu_backward, swiglu_forward

from helpers import FIXTURES, skip_without
from properties.test_gradients import assert_grad_close, numeric_grad   # float64, ε = 1e-6, ≤ 1e-6

_spec = importlib.util.spec_from_file_location(
    "make_llama_layers_fixtures", os.path.join(FIXTURES, "make_llama_layers_fixtures.py"))
M = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(M)
RECORDED = np.load(os.path.join(FIXTURES, "llama_layers.npz"))

OUT_TOL, GRAD_TOL = 1e-5, 1e-4          # float32 parity: outputs, gradients (relative to max |ref|)



# ------------------------------------------------------------------ helpers
def rel_error(actual, expected):
    """max |actual - expected| / max |expected|."""
    return np.max(np.abs(np.asarray(actual, np.float64) - expected)) / max(np.max(np.abs(expected)), 1e-30)


def assert_rel(actual, expected, tol):
    assert np.shape(actual) == np.shape(expected)
    err = rel_error(actual, expected)
    assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


def recorded(prefix):
    return {k[len(prefix):]: RECORDED[k] for k in RECORDED.files if k.startswith(prefix)}


def npgpt_attention(inputs, spec, dtype=np.float32):
    """gqa_forward + gqa_backward on an attn_inputs() dict: (out, grads)."""
    _, _, H, Hkv, D, _, theta, scaling = spec
    cast = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in inputs.items()}
    cos, sin = rope_tables(cast["positions"], rope_frequencies(D, theta, scaling), dtype)
    biases = {k: cast[k] for k in ("q_bias", "k_bias", "v_bias", "o_bias") if k in cast}
    out, cache = gqa_forward(cast["x"], cast["q_weight"], cast["k_weight"], cast["v_weight"],
                             cast["o_weight"], H, Hkv, cos, sin, cast["mask"], **biases)
    return out, gqa_backward(cast["dy"], cache)


def assert_tables_close(positions, inv_freq, ref):
    """npgpt's float32 tables against transformers' (``ref``: its inv_freq, cos, sin). Where the
    two inv_freq agree (nearly everywhere) the float32 angles are the same numbers and cos/sin
    agree to float32 rounding; where torch's float32 pow was one ulp off, the angles differ by
    p · |Δinv_freq| plus one rounding of the angle."""
    cos, sin = rope_tables(positions, inv_freq, np.float32)
    assert cos.dtype == sin.dtype == np.float32 and cos.shape == ref["cos"].shape
    delta = np.abs(inv_freq - ref["inv_freq"])
    angle = (positions[..., None] * ref["inv_freq"]).astype(np.float32)
    bound = 2.5e-7 + np.where(delta > 0, positions[..., None] * delta + np.spacing(angle), 0.0)
    assert np.all(np.abs(cos - ref["cos"]) <= bound) and np.all(np.abs(sin - ref["sin"]) <= bound)


def npgpt_rope(q, cos, sin, layout, dy):
    y, cache = rope_forward(q, cos, sin, layout)
    return y, rope_backward(dy, cache)


seeds = st.integers(0, 2**31 - 1)
layouts = st.sampled_from(["half", "interleaved"])
scalings = st.one_of(
    st.none(), st.just({"rope_type": "default"}),
    st.builds(lambda f: {"rope_type": "linear", "factor": f}, st.floats(1.0, 8.0)),
    st.builds(lambda f, lo, gap, L: {"rope_type": "llama3", "factor": f, "low_freq_factor": lo,
                                     "high_freq_factor": lo + gap, "original_max_position_embeddings": L},
              st.floats(1.0, 32.0), st.floats(0.5, 2.0), st.floats(0.5, 4.0), st.sampled_from([16, 64, 8192])))


class ListKV:
    """A minimal KV cache: keeps every appended key and value (B, Hkv, T, D)."""

    def __init__(self):
        self.k = self.v = None

    def append(self, k, v):
        self.k = k if self.k is None else np.concatenate([self.k, k], axis=2)
        self.v = v if self.v is None else np.concatenate([self.v, v], axis=2)
        return self.k, self.v


# ------------------------------------------------------------------ recorded parity (no torch needed)
def test_rmsnorm_matches_recorded_llama_rmsnorm():
    inputs, ref = recorded("rmsnorm/"), recorded("rmsnorm/ref_")
    y, cache = rmsnorm_forward(inputs["x"], inputs["weight"], eps=1e-6)
    dx, dweight = rmsnorm_backward(inputs["dy"], cache)
    assert y.dtype == dx.dtype == np.float32
    assert_rel(y, ref["y"], OUT_TOL)
    assert_rel(dx, ref["dx"], GRAD_TOL)
    assert_rel(dweight, ref["dweight"], GRAD_TOL)


@pytest.mark.parametrize("case", list(M.FREQ_CASES))
def test_rope_frequencies_and_tables_match_recorded_llama_rotary_embedding(case):
    head_dim, theta, scaling = M.FREQ_CASES[case]
    ref = recorded(f"freq/{case}/")
    positions = RECORDED["freq/positions"]
    inv_freq = rope_frequencies(head_dim, theta, scaling)
    assert inv_freq.dtype == np.float64 and inv_freq.shape == (head_dim // 2,)
    assert np.array_equal(inv_freq, inv_freq.astype(np.float32))       # float32 values, see rope.py
    # torch's vectorised float32 pow is off by one ulp now and then (1 of 48 entries at D = 96)
    np.testing.assert_array_max_ulp(inv_freq.astype(np.float32), ref["inv_freq"], maxulp=1)
    assert np.count_nonzero(inv_freq.astype(np.float32) != ref["inv_freq"]) <= 1
    # the tables: given transformers' frequencies, cos/sin agree to float32 rounding ...
    cos, sin = rope_tables(positions, ref["inv_freq"], np.float32)
    assert cos.dtype == np.float32 and cos.shape == ref["cos"].shape
    np.testing.assert_allclose(cos, ref["cos"], rtol=0, atol=2.5e-7)
    np.testing.assert_allclose(sin, ref["sin"], rtol=0, atol=2.5e-7)
    # ... and with npgpt's own frequencies
    assert_tables_close(positions, inv_freq, ref)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rope_matches_recorded_transformers_rotation_and_gradients(layout):
    inputs, ref = recorded("rope/"), recorded("rope/ref_")
    for name in ("q", "k"):
        y, dx = npgpt_rope(inputs[name], inputs["cos"], inputs["sin"], layout, inputs[f"d{name}_out"])
        assert_rel(y, ref[f"{layout}_{name}"], OUT_TOL)
        assert_rel(dx, ref[f"{layout}_d{name}"], GRAD_TOL)


def test_swiglu_matches_recorded_llama_mlp_even_where_exp_would_overflow():
    inputs, ref = recorded("mlp/"), recorded("mlp/ref_")
    gate = inputs["x"] @ inputs["gate_weight"].T
    assert np.abs(gate).max() > 89.0                      # exp(89) overflows float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, cache = swiglu_forward(inputs["x"], inputs["gate_weight"], inputs["up_weight"], inputs["down_weight"])
        dx, dgate, dup, ddown = swiglu_backward(inputs["dy"], cache)
    assert y.dtype == dx.dtype == np.float32
    assert_rel(y, ref["y"], OUT_TOL)
    for got, name in ((dx, "dx"), (dgate, "dgate_weight"), (dup, "dup_weight"), (ddown, "ddown_weight")):
        assert_rel(got, ref[name], GRAD_TOL)


@pytest.mark.parametrize("case", list(M.ATTN_CASES))
def test_gqa_matches_recorded_transformers_attention(case):
    inputs = {k: v for k, v in recorded(f"attn/{case}/").items() if not k.startswith("ref_")}
    ref = recorded(f"attn/{case}/ref_")
    out, grads = npgpt_attention(inputs, M.ATTN_CASES[case])
    assert out.dtype == np.float32
    assert_rel(out, ref["y"], OUT_TOL)
    assert sorted("d" + k for k in grads) == sorted(k for k in ref if k != "y")
    for name, g in grads.items():
        assert g.dtype == np.float32
        assert_rel(g, ref["d" + name], GRAD_TOL)


# ------------------------------------------------------------------ live parity (torch + transformers)
def live(test):
    """A live comparison: marked torch and transformers, skipped when either does not import."""
    for mark in (pytest.mark.torch, pytest.mark.transformers, skip_without("torch"), skip_without("transformers")):
        test = mark(test)
    return test


@live
@pytest.mark.parametrize("trial", range(3))
def test_live_rmsnorm_matches_llama_rmsnorm(trial):
    rng = np.random.default_rng(100 + trial)
    shape = (int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(rng.integers(1, 65)))
    inputs = M.rmsnorm_inputs(rng, shape)
    eps = float(rng.choice([1e-6, 1e-5]))
    ref = M.reference_rmsnorm(**inputs, eps=eps)
    y, cache = rmsnorm_forward(inputs["x"], inputs["weight"], eps=eps)
    dx, dweight = rmsnorm_backward(inputs["dy"], cache)
    assert_rel(y, ref["y"], OUT_TOL)
    assert_rel(dx, ref["dx"], GRAD_TOL)
    assert_rel(dweight, ref["dweight"], GRAD_TOL)


@live
@pytest.mark.parametrize("trial", range(6))
def test_live_rope_frequencies_match_transformers(trial):
    rng = np.random.default_rng(200 + trial)
    head_dim = 2 * int(rng.integers(1, 80))
    theta = float(rng.choice([10000.0, 500000.0, 1e6, float(rng.uniform(10, 1e6))]))
    scaling = [None,
               {"rope_type": "linear", "factor": float(rng.uniform(1, 8))},
               {"rope_type": "llama3", "factor": float(rng.uniform(1, 32)), "low_freq_factor": 1.0,
                "high_freq_factor": float(rng.uniform(1.5, 8)),
                "original_max_position_embeddings": int(rng.choice([64, 1024, 8192]))}][trial % 3]
    positions = rng.integers(0, 4096, (2, 5))
    ref = M.reference_frequencies(head_dim, theta, scaling, positions)
    inv_freq = rope_frequencies(head_dim, theta, scaling)
    np.testing.assert_array_max_ulp(inv_freq.astype(np.float32), ref["inv_freq"], maxulp=1)
    assert np.count_nonzero(inv_freq != ref["inv_freq"]) <= max(1, head_dim // 16)
    assert_tables_close(positions, inv_freq, ref)


@live
@pytest.mark.parametrize("trial", range(3))
def test_live_rope_matches_transformers_and_gptj(trial):
    rng = np.random.default_rng(300 + trial)
    B, Hkv, T, D = (int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 7)),
                    2 * int(rng.integers(1, 9)))
    inputs = M.rope_inputs(rng, B=B, H=2 * Hkv, Hkv=Hkv, T=T, D=D)
    positions = rng.integers(0, 2000, (B, T))
    tables = M.reference_frequencies(D, 10000.0, M.LLAMA3_SMALL, positions)
    ref = M.reference_rope(inputs["q"], inputs["k"], inputs["dq_out"], inputs["dk_out"],
                           tables["cos"], tables["sin"])
    for layout in ("half", "interleaved"):
        for name in ("q", "k"):
            y, dx = npgpt_rope(inputs[name], tables["cos"], tables["sin"], layout, inputs[f"d{name}_out"])
            assert_rel(y, ref[f"{layout}_{name}"], OUT_TOL)
            assert_rel(dx, ref[f"{layout}_d{name}"], GRAD_TOL)


@live
@pytest.mark.parametrize("trial", range(3))
def test_live_swiglu_matches_llama_mlp(trial):
    rng = np.random.default_rng(400 + trial)
    inputs = M.mlp_inputs(rng, B=int(rng.integers(1, 3)), T=int(rng.integers(2, 5)),
                          C=int(rng.integers(2, 20)), F=int(rng.integers(1, 40)))
    ref = M.reference_mlp(**inputs)
    y, cache = swiglu_forward(inputs["x"], inputs["gate_weight"], inputs["up_weight"], inputs["down_weight"])
    grads = swiglu_backward(inputs["dy"], cache)
    assert_rel(y, ref["y"], OUT_TOL)
    for got, name in zip(grads, ("dx", "dgate_weight", "dup_weight", "ddown_weight")):
        assert_rel(got, ref[name], GRAD_TOL)


@live
@pytest.mark.parametrize("trial", range(6))
def test_live_gqa_matches_transformers_attention(trial):
    rng = np.random.default_rng(500 + trial)
    Hkv, G = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    module = ["llama", "qwen2"][trial % 2]
    # transformers wants hidden divisible by heads, even when head_dim is given (and differs)
    spec = (module, Hkv * G * int(rng.integers(1, 6)), Hkv * G, Hkv, 2 * int(rng.integers(1, 7)),
            module == "qwen2" or bool(rng.integers(2)), float(rng.choice([10000.0, 500000.0])),
            [None, M.LLAMA3_SMALL][int(rng.integers(2))])
    inputs = M.attn_inputs(rng, spec, B=int(rng.integers(1, 3)), T=int(rng.integers(1, 7)))
    ref = M.reference_attention(spec, inputs)
    out, grads = npgpt_attention(inputs, spec)
    assert_rel(out, ref["y"], OUT_TOL)
    assert sorted("d" + k for k in grads) == sorted(k for k in ref if k != "y")
    for name, g in grads.items():
        assert_rel(g, ref["d" + name], GRAD_TOL)


# ------------------------------------------------------------------ finite differences (float64)
@given(seeds, st.integers(1, 3), st.integers(1, 3), st.integers(2, 8), st.sampled_from([0.0, 1e-6, 0.5]))
def test_rmsnorm_backward_matches_finite_differences(seed, b, t, c, eps):
    # (C = 1 is degenerate: xhat = ±1 up to eps, dx ≈ 0 and the check would measure rounding only)
    rng = np.random.default_rng(seed)
    x, w, R = rng.standard_normal((b, t, c)), rng.standard_normal(c), rng.standard_normal((b, t, c))
    loss = lambda: np.sum(rmsnorm_forward(x, w, eps)[0] * R)  # noqa: E731
    dx, dw = rmsnorm_backward(R, rmsnorm_forward(x, w, eps)[1])
    assert_grad_close(dx, numeric_grad(loss, x))
    assert_grad_close(dw, numeric_grad(loss, w))


@given(seeds, st.integers(1, 2), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), layouts,
       scalings, st.booleans())
def test_rope_backward_matches_finite_differences(seed, b, h, t, half, layout, scaling, per_row):
    rng = np.random.default_rng(seed)
    D = 2 * half
    positions = rng.integers(0, 5000, (b, t) if per_row else (t,))
    cos, sin = rope_tables(positions, rope_frequencies(D, 10000.0, scaling), np.float64)
    x, R = rng.standard_normal((b, h, t, D)), rng.standard_normal((b, h, t, D))
    loss = lambda: np.sum(rope_forward(x, cos, sin, layout)[0] * R)  # noqa: E731
    dx = rope_backward(R, rope_forward(x, cos, sin, layout)[1])
    assert_grad_close(dx, numeric_grad(loss, x))


@given(seeds, st.integers(1, 5), st.integers(1, 7), st.floats(0.1, 20.0))
def test_swiglu_backward_matches_finite_differences(seed, c, f, scale):
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal((2, 3, c))
    ws = [rng.standard_normal((f, c)), rng.standard_normal((f, c)), rng.standard_normal((c, f))]
    R = rng.standard_normal((2, 3, c))
    loss = lambda: np.sum(swiglu_forward(x, *ws)[0] * R)  # noqa: E731
    dx, *dws = swiglu_backward(R, swiglu_forward(x, *ws)[1])
    assert_grad_close(dx, numeric_grad(loss, x))
    for dw, w in zip(dws, ws):
        assert_grad_close(dw, numeric_grad(loss, w))


@settings(max_examples=25)
@given(seeds, st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(1, 4), st.integers(1, 5), layouts, scalings,
       st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()), st.booleans())
def test_gqa_backward_matches_finite_differences(seed, b, kv_heads, group, half, t, c, layout,
                                                 scaling, bias, padded):
    rng = np.random.default_rng(seed)
    H, D = kv_heads * group, 2 * half
    x = rng.standard_normal((b, t, c))
    params = {"q_weight": rng.standard_normal((H * D, c)), "k_weight": rng.standard_normal((kv_heads * D, c)),
              "v_weight": rng.standard_normal((kv_heads * D, c)), "o_weight": rng.standard_normal((c, H * D))}
    for name, has, n in zip(("q_bias", "k_bias", "v_bias", "o_bias"), bias, (H * D, kv_heads * D, kv_heads * D, c)):
        if has:
            params[name] = rng.standard_normal(n)
    if padded:                                            # left padding: per-row positions and mask
        valid = np.arange(t)[None, :] >= rng.integers(0, t, (b, 1))
        positions, mask = np.maximum(np.cumsum(valid, axis=1) - 1, 0), causal_bias(t, t, np.float64, valid)
    else:
        positions, mask = np.arange(t), causal_mask(t, np.float64)
    cos, sin = rope_tables(positions, rope_frequencies(D, 10000.0, scaling), np.float64)
    R = rng.standard_normal((b, t, c))

    def run():
        return gqa_forward(x, params["q_weight"], params["k_weight"], params["v_weight"], params["o_weight"],
                           H, kv_heads, cos, sin, mask, params.get("q_bias"), params.get("k_bias"),
                           params.get("v_bias"), params.get("o_bias"), rope_layout=layout)

    loss = lambda: np.sum(run()[0] * R)  # noqa: E731
    grads = gqa_backward(R, run()[1])
    assert sorted(grads) == sorted(["x", *params])
    assert_grad_close(grads["x"], numeric_grad(loss, x))
    for name, p in params.items():
        assert_grad_close(grads[name], numeric_grad(loss, p))


# ------------------------------------------------------------------ properties: RoPE
def pairs(x, layout):
    """The rotated pairs (a, b) of x's last axis."""
    half = x.shape[-1] // 2
    return (x[..., :half], x[..., half:]) if layout == "half" else (x[..., 0::2], x[..., 1::2])


@given(seeds, st.integers(1, 8), layouts, scalings, st.sampled_from([np.float32, np.float64]))
def test_rope_preserves_the_norm_of_each_pair(seed, half, layout, scaling, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 5, 2 * half)).astype(dtype)
    cos, sin = rope_tables(rng.integers(0, 10**5, (2, 5)), rope_frequencies(2 * half, 500000.0, scaling), dtype)
    y, _ = rope_forward(x, cos, sin, layout)
    a, b = pairs(x, layout)
    a2, b2 = pairs(y, layout)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(a2**2 + b2**2, a**2 + b**2, rtol=tol, atol=tol)
    np.testing.assert_allclose(rope_backward(y, _)[0], x[0], rtol=tol, atol=tol)   # R(-φ) R(φ) = I


@given(seeds, st.integers(1, 8), layouts, scalings, st.integers(0, 3000), st.integers(0, 3000),
       st.integers(-2000, 2000))
def test_rope_dot_product_depends_only_on_the_position_difference(seed, half, layout, scaling, m, n, shift):
    rng = np.random.default_rng(seed)
    D = 2 * half
    q, k = rng.standard_normal((1, 1, 1, D)), rng.standard_normal((1, 1, 1, D))
    inv_freq = rope_frequencies(D, 10000.0, scaling)

    def dot(pm, pn):
        cq, sq = rope_tables(np.array([pm]), inv_freq, np.float64)
        ck, sk = rope_tables(np.array([pn]), inv_freq, np.float64)
        return float(np.sum(rope_forward(q, cq, sq, layout)[0] * rope_forward(k, ck, sk, layout)[0]))

    shift = max(shift, -min(m, n))                        # positions stay ≥ 0
    np.testing.assert_allclose(dot(m + shift, n + shift), dot(m, n), rtol=1e-9, atol=1e-9)
    # and it is the rotation by (m - n) · inv_freq: channel 0 against itself gives its cosine
    q[:], k[:] = 0.0, 0.0
    q[..., 0] = k[..., 0] = 1.0
    np.testing.assert_allclose(dot(m, n), np.cos((m - n) * inv_freq[0]), rtol=0, atol=1e-9)


@given(seeds, st.integers(1, 8), scalings)
def test_rope_interleaved_equals_half_after_permuting_the_head_dims(seed, half, scaling):
    rng = np.random.default_rng(seed)
    D = 2 * half
    x = rng.standard_normal((2, 2, 4, D))
    cos, sin = rope_tables(rng.integers(0, 9000, (2, 4)), rope_frequencies(D, 10000.0, scaling), np.float64)
    perm = np.concatenate([np.arange(0, D, 2), np.arange(1, D, 2)])   # interleaved -> half order
    y_interleaved, _ = rope_forward(x, cos, sin, "interleaved")
    y_half, _ = rope_forward(x[..., perm], cos, sin, "half")
    np.testing.assert_array_equal(y_half, y_interleaved[..., perm])


def test_rope_llama3_keeps_high_frequencies_divides_low_ones_and_blends_between():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    base, scaled = rope_frequencies(128, 500000.0), rope_frequencies(128, 500000.0, scaling)
    wavelen = 2 * np.pi / base
    high, low = wavelen < 8192 / 4, wavelen > 8192 / 1
    assert high.any() and low.any() and (~high & ~low).any()
    np.testing.assert_array_equal(scaled[high], base[high])
    np.testing.assert_allclose(scaled[low], base[low] / 8, rtol=1e-7)
    mid = ~high & ~low
    assert np.all(scaled[mid] < base[mid]) and np.all(scaled[mid] > base[mid] / 8)
    np.testing.assert_allclose(rope_frequencies(64, 10000.0, dict(scaling, factor=1.0)),
                               rope_frequencies(64, 10000.0), rtol=2e-7)


def test_rope_frequencies_follow_the_formula():
    # float32 steps (see rope.py): within one float32 ulp when 2i/D is exact (D a power of
    # two), within 1e-6 when 2i/D itself is rounded
    for D, theta, rtol in ((2, 10.0, 1.2e-7), (8, 10000.0, 1.2e-7), (128, 500000.0, 1.2e-7),
                           (96, 10000.0, 1e-6), (80, 1e6, 1e-6)):
        exact = theta ** (-np.arange(0, D, 2) / D)
        np.testing.assert_allclose(rope_frequencies(D, theta), exact, rtol=rtol)
        np.testing.assert_allclose(rope_frequencies(D, theta, {"rope_type": "linear", "factor": 4.0}),
                                   exact / 4, rtol=rtol + 6e-8)


# ------------------------------------------------------------------ properties: GQA
def random_gqa(rng, b, t, c, H, Hkv, D, bias):
    x = rng.standard_normal((b, t, c))
    w = {"q_weight": rng.standard_normal((H * D, c)), "k_weight": rng.standard_normal((Hkv * D, c)),
         "v_weight": rng.standard_normal((Hkv * D, c)), "o_weight": rng.standard_normal((c, H * D))}
    if bias:
        w.update(q_bias=rng.standard_normal(H * D), k_bias=rng.standard_normal(Hkv * D),
                 v_bias=rng.standard_normal(Hkv * D), o_bias=rng.standard_normal(c))
    return x, w


def run_gqa(x, w, H, Hkv, cos, sin, mask, layout="half", kv=None):
    return gqa_forward(x, w["q_weight"], w["k_weight"], w["v_weight"], w["o_weight"], H, Hkv, cos, sin,
                       mask, w.get("q_bias"), w.get("k_bias"), w.get("v_bias"), w.get("o_bias"),
                       rope_layout=layout, kv=kv)


@given(seeds, st.integers(1, 2), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.booleans())
def test_gqa_with_as_many_kv_heads_as_heads_is_multi_head_attention(seed, b, t, heads, half, bias):
    rng = np.random.default_rng(seed)
    D = 2 * half
    c = heads * D                                         # attention_forward needs D = C / H
    x, w = random_gqa(rng, b, t, c, heads, heads, D, bias)
    cos, sin = np.ones((t, half)), np.zeros((t, half))    # RoPE off
    mask = causal_mask(t, np.float64)
    out, cache = run_gqa(x, w, heads, heads, cos, sin, mask)
    in_weight = np.concatenate([w["q_weight"], w["k_weight"], w["v_weight"]])
    in_bias = np.concatenate([w["q_bias"], w["k_bias"], w["v_bias"]]) if bias else None
    expected, mha_cache = attention_forward(x, in_weight, in_bias, w["o_weight"], w.get("o_bias"), heads, mask)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    R = rng.standard_normal(out.shape)
    grads = gqa_backward(R, cache)
    dx, d_in_weight, d_in_bias, d_out_weight, d_out_bias = attention_backward(R, mha_cache)
    np.testing.assert_allclose(grads["x"], dx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.concatenate([grads["q_weight"], grads["k_weight"], grads["v_weight"]]),
                               d_in_weight, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grads["o_weight"], d_out_weight, rtol=1e-10, atol=1e-10)
    if bias:
        np.testing.assert_allclose(np.concatenate([grads["q_bias"], grads["k_bias"], grads["v_bias"]]),
                                   d_in_bias, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(grads["o_bias"], d_out_bias, rtol=1e-10, atol=1e-10)


@given(seeds, st.integers(1, 2), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 5), layouts, st.booleans())
def test_gqa_equals_mha_with_its_kv_heads_repeated_and_sums_their_gradients(seed, b, t, kv_heads, group,
                                                                             half, c, layout, bias):
    rng = np.random.default_rng(seed)
    H, D = kv_heads * group, 2 * half
    x, w = random_gqa(rng, b, t, c, H, kv_heads, D, bias)
    cos, sin = rope_tables(np.arange(t) + 7, rope_frequencies(D), np.float64)
    mask = causal_mask(t, np.float64)

    def repeat(a):                                        # kv head j -> query heads j·G .. j·G + G - 1
        return np.repeat(a.reshape(kv_heads, D, *a.shape[1:]), group, axis=0).reshape(H * D, *a.shape[1:])

    def group_sum(a):                                     # the transpose of repeat
        return a.reshape(kv_heads, group, D, *a.shape[1:]).sum(axis=1).reshape(kv_heads * D, *a.shape[1:])

    full = dict(w, **{k: repeat(w[k]) for k in ("k_weight", "v_weight", "k_bias", "v_bias") if k in w})
    out, cache = run_gqa(x, w, H, kv_heads, cos, sin, mask, layout)
    out_full, cache_full = run_gqa(x, full, H, H, cos, sin, mask, layout)
    np.testing.assert_allclose(out, out_full, rtol=1e-12, atol=1e-12)
    R = rng.standard_normal(out.shape)
    grads, grads_full = gqa_backward(R, cache), gqa_backward(R, cache_full)
    for name, g in grads.items():
        expected = group_sum(grads_full[name]) if name[0] in "kv" else grads_full[name]
        np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-10)


@given(seeds, st.integers(1, 2), st.integers(2, 6), st.integers(1, 3), st.integers(1, 2), layouts)
def test_gqa_with_a_kv_cache_equals_the_whole_sequence(seed, b, t, kv_heads, group, layout):
    rng = np.random.default_rng(seed)
    H, D, c = kv_heads * group, 4, 5
    x, w = random_gqa(rng, b, t, c, H, kv_heads, D, True)
    inv_freq = rope_frequencies(D)
    cos, sin = rope_tables(np.arange(t), inv_freq, np.float64)
    whole, _ = run_gqa(x, w, H, kv_heads, cos, sin, causal_mask(t, np.float64), layout)
    kv, split = ListKV(), int(rng.integers(1, t))
    parts = []
    for lo, hi in ((0, split), (split, t)):
        cos, sin = rope_tables(np.arange(lo, hi), inv_freq, np.float64)
        out, cache = run_gqa(x[:, lo:hi], w, H, kv_heads, cos, sin, causal_bias(hi - lo, hi, np.float64), layout, kv)
        parts.append(out)
    assert kv.k.shape == (b, kv_heads, t, D)              # only the Hkv kv heads are stored
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="without a KV cache"):
        gqa_backward(out, cache)


@given(seeds, st.integers(2, 5), st.integers(1, 2), layouts)
def test_gqa_per_row_positions_equal_each_row_alone(seed, t, kv_heads, layout):
    rng = np.random.default_rng(seed)
    H, D, c = 2 * kv_heads, 6, 4
    x, w = random_gqa(rng, 2, t, c, H, kv_heads, D, False)
    positions = rng.integers(0, 100, (2, t))
    inv_freq = rope_frequencies(D, 10000.0, {"rope_type": "linear", "factor": 2.0})
    mask = causal_mask(t, np.float64)
    out, _ = run_gqa(x, w, H, kv_heads, *rope_tables(positions, inv_freq, np.float64), mask, layout)
    for row in range(2):
        alone, _ = run_gqa(x[row:row + 1], w, H, kv_heads, *rope_tables(positions[row], inv_freq, np.float64),
                           mask, layout)
        np.testing.assert_allclose(out[row:row + 1], alone, rtol=1e-12, atol=1e-12)


def test_gqa_head_dim_may_differ_from_hidden_over_heads():
    rng = np.random.default_rng(0)
    x, w = random_gqa(rng, 1, 3, 6, 4, 2, 10, False)      # C = 6, H = 4, D = 10
    cos, sin = rope_tables(np.arange(3), rope_frequencies(10), np.float64)
    out, cache = run_gqa(x, w, 4, 2, cos, sin, causal_mask(3, np.float64))
    assert out.shape == (1, 3, 6) and cache["probs"].shape == (1, 4, 3, 3)
    np.testing.assert_allclose(cache["probs"].sum(-1), 1.0, rtol=1e-12)


# ------------------------------------------------------------------ properties: RMSNorm, SwiGLU
@given(seeds, st.integers(1, 16), st.floats(1e-3, 1e3), st.sampled_from([np.float32, np.float64]))
def test_rmsnorm_is_scale_invariant_in_x(seed, c, scale, dtype):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((3, c)).astype(dtype), rng.standard_normal(c).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    y, _ = rmsnorm_forward(x, w, eps=0.0)
    np.testing.assert_allclose(rmsnorm_forward(dtype(scale) * x, w, eps=0.0)[0], y, rtol=tol, atol=tol)
    # with eps > 0 only up to eps: the relative change is about eps / mean(x²) per row
    y_eps, _ = rmsnorm_forward(x, w, eps=1e-6)
    bound = 1e-6 / np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) * np.abs(y) + tol
    assert np.all(np.abs(y_eps - y) <= bound)


def test_rmsnorm_rows_have_unit_mean_square():
    x = np.random.default_rng(1).standard_normal((4, 7)) * 5
    y, _ = rmsnorm_forward(x, np.ones(7), eps=0.0)
    np.testing.assert_allclose(np.mean(y**2, axis=-1), 1.0, rtol=1e-12)


@given(seeds, st.integers(1, 6), st.integers(1, 9))
def test_swiglu_of_zero_is_zero(seed, c, f):
    rng = np.random.default_rng(seed)
    out, _ = swiglu_forward(np.zeros((2, 3, c)), rng.standard_normal((f, c)), rng.standard_normal((f, c)),
                            rng.standard_normal((c, f)))
    assert np.all(out == 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silu_is_stable_for_huge_gates(dtype):
    z = np.array([-1e4, -1000.0, -100.0, 0.0, 100.0, 1000.0, 1e4])   # exp(1e4) overflows either dtype
    x = np.append(z, 1.0)[None].astype(dtype)            # (1, 8): the gates, then a 1 for the up path
    gate, up = np.eye(7, 8, dtype=dtype), np.zeros((7, 8), dtype=dtype)
    up[:, 7] = 1.0                                        # u = 1, so out = silu(z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = swiglu_forward(x, gate, up, np.eye(8, 7, dtype=dtype))
        grads = swiglu_backward(np.ones_like(x), cache)
    assert out.dtype == dtype
    np.testing.assert_allclose(out[0, :7], [0, 0, 0, 0, 100, 1000, 1e4], rtol=1e-6, atol=1e-30)
    assert all(np.isfinite(g).all() for g in grads)
    dgate = grads[1]                                      # silu'(z) · x: silu' is 0 far left, 1 far right
    np.testing.assert_allclose(np.diag(dgate[:, :7]), [0, 0, 0, 0, 100, 1000, 1e4], rtol=1e-6, atol=1e-30)


# ------------------------------------------------------------------ bad input
def test_bad_inputs_raise_value_errors_naming_the_value():
    x4 = np.zeros((1, 2, 3, 4))
    with pytest.raises(ValueError, match="'yarn'"):
        rope_frequencies(8, scaling={"rope_type": "yarn", "factor": 2.0})
    with pytest.raises(ValueError, match="7"):
        rope_frequencies(7)
    with pytest.raises(ValueError, match="low_freq_factor"):
        rope_frequencies(8, scaling={"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 8192})
    with pytest.raises(ValueError, match="high_freq_factor"):
        rope_frequencies(8, scaling=dict(M.LLAMA31, high_freq_factor=1.0))
    with pytest.raises(ValueError, match="0.5"):
        rope_frequencies(8, scaling={"rope_type": "linear", "factor": 0.5})
    with pytest.raises(ValueError, match="'diagonal'"):
        rope_forward(x4, np.ones((3, 2)), np.zeros((3, 2)), layout="diagonal")
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        rope_forward(x4, np.ones((3, 4)), np.zeros((3, 4)))          # duplicated tables: not these
    with pytest.raises(ValueError, match="float64"):
        rope_tables(np.array([0.0, 1.0]), np.ones(2), np.float64)     # float positions
    with pytest.raises(ValueError, match=r"\(5,\)"):
        rmsnorm_forward(np.ones((2, 4)), np.ones(5))
    with pytest.raises(ValueError, match="num_heads \\(4\\) must be a multiple of num_kv_heads \\(3\\)"):
        gqa_forward(np.ones((1, 2, 8)), np.ones((8, 8)), np.ones((6, 8)), np.ones((6, 8)), np.ones((8, 8)),
                    4, 3, np.ones((2, 1)), np.zeros((2, 1)), 0.0)
    with pytest.raises(ValueError, match="k_weight"):
        gqa_forward(np.ones((1, 2, 8)), np.ones((8, 8)), np.ones((6, 8)), np.ones((4, 8)), np.ones((8, 8)),
                    4, 2, np.ones((2, 1)), np.zeros((2, 1)), 0.0)
    with pytest.raises(ValueError, match="gate"):
        swiglu_forward(np.ones((1, 3)), np.ones((4, 3)), np.ones((5, 3)), np.ones((3, 4)))
