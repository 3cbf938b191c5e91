"""The fast variants beside the plain layers compute the same math: each property is that a
``*_fast`` function equals its plain counterpart, bit for bit where the fast one only
reorders exact steps (GELU's Φ), else up to float rounding at a stated tolerance (float64:
1e-12 relative to the largest entry; float32: a few units of float32 resolution, ~1.2e-7,
times the number of terms summed).
"""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from npgpt.nn.erf import erf, normal_cdf
from npgpt.nn.layers import (embedding_backward, embedding_backward_fast, embedding_forward,
                             gelu_forward, gelu_forward_fast, layernorm_backward,
                             layernorm_backward_fast, layernorm_forward, scatter_add_rows)

seeds = st.integers(0, 2**31 - 1)
dtypes = st.sampled_from([np.float32, np.float64])
# float rounding of sums of up to ~100 terms of size ~1: float32 resolution times a margin
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def assert_close_scaled(fast, plain, tol):
    scale = max(float(np.max(np.abs(plain))) if plain.size else 0.0, 1.0)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=tol * scale)


@given(seeds, st.integers(1, 3), st.integers(1, 9), st.integers(1, 64), dtypes, st.floats(0.1, 100.0))
def test_layernorm_backward_fast_equals_plain(seed, b, t, c, dtype, spread):
    rng = np.random.default_rng(seed)
    x = (spread * rng.standard_normal((b, t, c)) + rng.standard_normal()).astype(dtype)
    w, bias = (1 + 0.3 * rng.standard_normal(c)).astype(dtype), rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal((b, t, c)).astype(dtype)
    _, cache = layernorm_forward(x, w, bias)
    for fast, plain in zip(layernorm_backward_fast(dy, cache), layernorm_backward(dy, cache)):
        assert fast.dtype == plain.dtype and fast.shape == plain.shape
        assert_close_scaled(fast, plain, TOL[dtype] * max(1.0, b * t / 16))


@given(seeds, st.integers(1, 200), dtypes, st.floats(1e-30, 1e3))
def test_gelu_forward_fast_is_bit_identical_to_plain(seed, n, dtype, spread):
    x = (spread * np.random.default_rng(seed).standard_normal((2, n))).astype(dtype)
    out, cache = gelu_forward(x)
    fast, fast_cache = gelu_forward_fast(x)
    assert fast.dtype == out.dtype
    np.testing.assert_array_equal(fast, out)
    np.testing.assert_array_equal(fast_cache[2], cache[2])
    tanh, _ = gelu_forward(x, "tanh")
    np.testing.assert_array_equal(gelu_forward_fast(x, "tanh")[0], tanh)


def test_normal_cdf_is_the_plain_formula_bit_for_bit_on_every_kind_of_float32():
    # every 4099th bit pattern: normal, subnormal, zero, inf and NaN, both signs
    x = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    with np.errstate(invalid="ignore"):
        plain = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
        cdf = normal_cdf(x)
    assert cdf.dtype == np.float32
    np.testing.assert_array_equal(cdf, plain)


def test_normal_cdf_is_within_5e_7_of_math_erf_in_float32():
    x = np.linspace(-12.0, 12.0, 200_001).astype(np.float32)
    ref = np.array([0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.astype(np.float64)])
    cdf = normal_cdf(x)
    np.testing.assert_allclose(cdf, ref, rtol=0, atol=5e-7)
    np.testing.assert_allclose(normal_cdf(x.astype(np.float64)), ref, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(normal_cdf(np.float32([-np.inf, np.inf])), [0.0, 1.0])


@given(seeds, st.integers(1, 300), st.integers(1, 50), st.integers(1, 8), dtypes)
def test_scatter_add_rows_equals_np_add_at(seed, n, v, c, dtype):
    rng = np.random.default_rng(seed)
    index = rng.integers(0, v, n)
    rows = rng.standard_normal((n, c)).astype(dtype)
    start = rng.standard_normal((v, c)).astype(dtype)
    plain, fast = start.copy(), start.copy()
    np.add.at(plain, index, rows)
    scatter_add_rows(fast, index, rows)
    assert_close_scaled(fast, plain, TOL[dtype] * max(1.0, n / 16))


@given(seeds, st.integers(1, 4), st.integers(1, 8), st.integers(1, 12), st.booleans(), st.booleans(), dtypes)
def test_embedding_backward_fast_equals_plain(seed, b, t, v, batch_positions, tied, dtype):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, v, (b, t))
    positions = rng.integers(0, t, (b, t)) if batch_positions else np.arange(t)
    token, position = rng.standard_normal((v, 4)).astype(dtype), rng.standard_normal((t, 4)).astype(dtype)
    _, cache = embedding_forward(ids, token, position, positions)
    dx = rng.standard_normal((b, t, 4)).astype(dtype)
    start = rng.standard_normal((v, 4)).astype(dtype) if tied else None
    plain = embedding_backward(dx, cache, None if start is None else start.copy())
    fast = embedding_backward_fast(dx, cache, None if start is None else start.copy())
    for f, p in zip(fast, plain):
        assert f.dtype == p.dtype and f.shape == p.shape
        assert_close_scaled(f, p, TOL[dtype])


def test_erf_float32_keeps_odd_symmetry_and_limits_after_the_clip_clamp():
    x = np.float32([0.0, 1e-30, 0.3, 3.9, 4.0, 4.1, 50.0, np.inf])
    y = erf(x)
    np.testing.assert_array_equal(erf(-x), -y)
    assert y[-1] == 1.0 and y[0] == 0.0
