"""The fast variants beside the plain layers compute the same math: each property is that a
``*_fast`` function equals its plain counterpart up to float rounding, at a stated tolerance
(float64: 1e-12 relative to the largest entry; float32: a few units of float32 resolution,
~1.2e-7, times the number of terms summed).
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from npgpt import threads
from npgpt.nn.erf import _ALPHA32, _BETA32, _polynomial, erf
from npgpt.nn.layers import (embedding_backward, embedding_backward_fast, embedding_forward,
                             layernorm_backward, layernorm_backward_fast, layernorm_forward,
                             scatter_add_rows)

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


def _erf_float32_clamped_by_min_max(x):
    """The float32 erf as it clamped before (np.minimum / np.maximum), for the test below."""
    x = np.minimum(np.maximum(x, np.float32(-4.0)), np.float32(4.0))
    z = x * x
    out = _polynomial(_ALPHA32, z)
    out *= x
    out /= _polynomial(_BETA32, z)
    return np.clip(out, -1.0, 1.0, out=out)


def test_erf_float32_clamped_by_clip_is_bit_identical_on_every_kind_of_float32():
    # every 4099th bit pattern but the NaNs (signalling ones would raise "invalid"): normal,
    # subnormal, zero and inf, both signs; on one thread (computed directly) and split by
    # rows between two, the same numbers
    x = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = x[~np.isnan(x)][:1_000_000]
    expected = _erf_float32_clamped_by_min_max(x)
    for n in (1, 2):
        with threads.using(n):
            np.testing.assert_array_equal(erf(x), expected)
            np.testing.assert_array_equal(erf(x.reshape(-1, 8)), expected.reshape(-1, 8))
    assert np.isnan(erf(np.float32([np.nan])))[0]
    y = erf(np.float32([0.0, 1e-30, 4.0, 50.0, np.inf]))
    np.testing.assert_array_equal(erf(-np.float32([0.0, 1e-30, 4.0, 50.0, np.inf])), -y)
    assert y[-1] == 1.0 and y[0] == 0.0
