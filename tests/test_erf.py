"""The hand-written erf against math.erf: accuracy, symmetry, limits."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from npgpt.nn.erf import erf
from npgpt.nn.layers import gelu_forward

REF = np.vectorize(math.erf, otypes=[np.float64])


def test_erf_float64_within_1e_14_on_a_dense_grid_of_the_whole_line():
    x = np.concatenate([
        np.linspace(-30.0, 30.0, 600_001),
        np.geomspace(1e-300, 40.0, 20_000), -np.geomspace(1e-300, 40.0, 20_000),
        # the interval edges of the rational approximations and their neighbours
        [0.46875, 4.0, 26.543, 27.0, -0.46875, -4.0, -26.543, -27.0],
        np.nextafter([0.46875, 4.0], 0.0), np.nextafter([0.46875, 4.0], 10.0),
        [1e10, 1e300, np.finfo(np.float64).max],
    ])
    np.testing.assert_allclose(erf(x), REF(x), rtol=0, atol=1e-14)


@given(st.floats(allow_nan=False, allow_infinity=True, width=64))
def test_erf_within_1e_14_for_any_double(x):
    assert abs(float(erf(np.float64(x))) - math.erf(x)) <= 1e-14


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_erf_is_odd(x):
    assert float(erf(np.float64(-x))) == -float(erf(np.float64(x)))


def test_erf_limits_and_special_values():
    out = erf(np.array([-np.inf, np.inf, 0.0, -0.0, 6.0, -6.0, 1e308]))
    assert out.tolist() == [-1.0, 1.0, 0.0, -0.0, 1.0, -1.0, 1.0]
    assert np.signbit(out[3])
    assert np.isnan(erf(np.array([np.nan])))[0]


def test_erf_is_monotone_and_bounded():
    x = np.linspace(-8, 8, 200_001)
    y = erf(x)
    assert np.all(np.diff(y) >= 0) and np.all(np.abs(y) <= 1.0)


def test_erf_float32_stays_float32_and_is_within_5e_7():
    x = np.concatenate([np.linspace(-10, 10, 400_001), [np.inf, -np.inf, 1e30, -1e-30]]).astype(np.float32)
    y = erf(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, REF(x.astype(np.float64)), rtol=0, atol=5e-7)
    assert np.all(np.abs(y) <= 1.0)
    np.testing.assert_array_equal(erf(-x), -y)
    assert np.isnan(erf(np.float32([np.nan])))[0]


def test_gelu_exact_and_tanh_against_their_formulas():
    x = np.linspace(-12, 12, 10_001)
    exact, _ = gelu_forward(x, "exact")
    np.testing.assert_allclose(exact, x * 0.5 * (1 + REF(x / math.sqrt(2))), rtol=0, atol=1e-14)
    tanh, _ = gelu_forward(x, "tanh")
    ref = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(tanh, ref, rtol=0, atol=1e-14)
    assert np.max(np.abs(exact - tanh)) < 1e-3   # the approximation is close, not equal
    assert np.max(np.abs(exact - tanh)) > 1e-5
