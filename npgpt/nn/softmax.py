"""Numerically stable softmax over the last axis (used by attention and the loss).

Shapes: any (..., N) -> (..., N).
"""

from __future__ import annotations

import numpy as np


def softmax_forward(x):
    """p = exp(x - max x) / Σ exp(x - max x) along the last axis.

    Subtracting the row maximum changes nothing mathematically (softmax is shift-invariant)
    and keeps exp() from overflowing; -inf entries get probability exactly 0. A row whose
    entries are all -inf has no distribution: the caller must not produce one.

    Parameters
    ----------
    x : ndarray (..., N), float.

    Returns
    -------
    p : ndarray (..., N), rows sum to 1.

    Examples
    --------
    >>> softmax_forward(np.array([0.0, np.log(3.0)])).round(2).tolist()
    [0.25, 0.75]
    """
    p = x - x.max(axis=-1, keepdims=True)                 # (..., N), row max is 0
    np.exp(p, out=p)
    p /= p.sum(axis=-1, keepdims=True)                    # (..., N) / (..., 1)
    return p


def softmax_backward(dp, p):
    """Gradient of p = softmax(x) along the last axis.

    forward: p_i = exp(x_i) / Σ_j exp(x_j), so ∂p_i/∂x_k = p_i (δ_ik - p_k) and
    dx = p · (dp - Σ_i dp_i p_i).

    Parameters
    ----------
    dp : ndarray (..., N), the gradient at p; p : ndarray (..., N), softmax's output.

    Returns
    -------
    dx : ndarray (..., N)
    """
    dx = dp - (dp * p).sum(axis=-1, keepdims=True)        # (..., N) - (..., 1)
    dx *= p
    return dx
