"""The error function erf(x) = 2/√π ∫₀ˣ exp(-t²) dt, which the exact GELU needs.

Shapes: any; elementwise.

NumPy has no ``erf``, so :func:`erf` evaluates W. J. Cody's rational Chebyshev
approximations ("Rational Chebyshev approximations for the error function",
Mathematics of Computation 23 (1969) 631-637), the scheme behind netlib's CALERF.
Three intervals of |x|:

* |x| ≤ 0.46875:     erf(x)  = x · P₄(x²) / Q₄(x²)
* 0.46875 < |x| ≤ 4: erfc(|x|) = exp(-x²) · P₈(|x|) / Q₈(|x|)
* |x| > 4:           erfc(|x|) = exp(-x²) / |x| · (1/√π - z · P₅(z) / Q₅(z)),  z = 1/x²

and erf(x) = sign(x) · (1 - erfc(|x|)). In float64 the absolute error against ``math.erf``
is below 1e-15 on the whole real line (tested to 1e-14).

float32 arrays, where three intervals and degree-8 rationals would cost more than float32
can show, use the single-interval odd rational of Eigen and XLA's float ``erf``:
erf(x) = x · α(x²) / β(x²) with x clamped to [-4, 4] (erf(4) rounds to 1 in float32),
α of degree 6 and β of degree 4 in x²; its absolute error is below 5e-7 (tested).
"""

from __future__ import annotations

import numpy as np

from .._threads import by_rows, row_parts

# Cody (1969), the coefficient tables as published (CALERF's A, B, C, D, P, Q), highest
# power first so that Horner's rule reads left to right.
_A = (1.85777706184603153e-1, 3.16112374387056560e00, 1.13864154151050156e02,
      3.77485237685302021e02, 3.20937758913846947e03)
_B = (1.0, 2.36012909523441209e01, 2.44024637934444173e02,
      1.28261652607737228e03, 2.84423683343917062e03)
_C = (2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e00,
      6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02,
      1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03)
_D = (1.0, 1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
      1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4)
_Q = (1.0, 2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
# Eigen / XLA float32 erf: numerator α and denominator β in x², highest power first.
_ALPHA32 = tuple(np.float32(c) for c in (
    -2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
    -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02))
_BETA32 = tuple(np.float32(c) for c in (
    -1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
    -7.37332916720468e-03, -1.42647390514189e-02))
_INV_SQRT_PI = 0.56418958354775628695


def _polynomial(coefficients, z):
    """Σ cᵢ z^(n-i) for c₀..c_n (highest power first) by Horner's rule, elementwise."""
    acc = z * coefficients[0]
    acc += coefficients[1]
    for c in coefficients[2:]:
        acc *= z
        acc += c
    return acc


def _erf_float32(x):
    """Eigen / XLA's float32 erf: x · α(x²) / β(x²) on x clamped to [-4, 4]."""
    x = np.clip(x, np.float32(-4.0), np.float32(4.0))  # NaN stays NaN; 3x faster than np.minimum/maximum
    z = x * x
    out = _polynomial(_ALPHA32, z)
    out *= x
    out /= _polynomial(_BETA32, z)
    return np.clip(out, -1.0, 1.0, out=out)


def _by_rows32(function, x):
    """function(x) for a float32 array, a large one split by rows between the cores (on one
    thread computed directly: no copy into a shared output)."""
    flat = x.reshape(-1, x.shape[-1]) if x.ndim > 1 and x.size else x.reshape(1, -1)
    if row_parts(len(flat), flat.size) < 2:
        return function(flat).reshape(x.shape)     # one thread: no copy into a shared output
    out = np.empty(flat.shape, dtype=np.float32)

    def rows(lo, hi):
        out[lo:hi] = function(flat[lo:hi])
    by_rows(rows, len(flat), flat.size)
    return out.reshape(x.shape)


def erf(x):
    """The error function erf(x) = 2/√π ∫₀ˣ exp(-t²) dt, elementwise.

    Parameters
    ----------
    x : array_like of float
        Any shape. float32 is computed in float32 (Eigen's rational), anything else in
        float64 (Cody's three intervals).

    Returns
    -------
    ndarray, same shape; odd (erf(-x) = -erf(x)), erf(±inf) = ±1, NaN stays NaN.

    Examples
    --------
    >>> float(erf(0.5))
    0.5204998778130465
    """
    x = np.asarray(x)
    if x.dtype == np.float32:
        return _by_rows32(_erf_float32, x)
    x = x.astype(np.float64)
    y = np.abs(x)
    out = np.array(x, copy=True)  # NaN entries fall in no interval and stay NaN

    small = y <= 0.46875
    if small.any():
        xs = x[small]
        z = xs * xs
        out[small] = xs * _polynomial(_A, z) / _polynomial(_B, z)

    middle = (y > 0.46875) & (y <= 4.0)
    if middle.any():
        ym = y[middle]
        erfc = np.exp(-(ym * ym)) * _polynomial(_C, ym) / _polynomial(_D, ym)
        out[middle] = np.copysign(1.0 - erfc, x[middle])

    large = y > 4.0
    if large.any():
        yl = np.minimum(y[large], 27.0)  # erfc(27) < 1e-300: the result is ±1 from here on
        z = 1.0 / (yl * yl)
        erfc = np.exp(-(yl * yl)) * (_INV_SQRT_PI - z * _polynomial(_P, z) / _polynomial(_Q, z)) / yl
        out[large] = np.copysign(1.0 - erfc, x[large])
    return out
