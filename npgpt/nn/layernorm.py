"""LayerNorm over the last axis.

Shapes: x (..., C) -> y (..., C); weight, bias (C,).
"""

from __future__ import annotations

import numpy as np


def layernorm_forward(x, weight, bias, eps=1e-5):
    """y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias, statistics over the last axis.

    The variance is the biased one (divide by C), as in ``torch.nn.LayerNorm``.

    Parameters
    ----------
    x : ndarray (..., C)
    weight, bias : ndarray (C,)
    eps : float

    Returns
    -------
    y : ndarray (..., C), the dtype of x.
    cache : (xhat, rstd, weight) for :func:`layernorm_backward`; xhat (..., C) is the
        normalised input (mean 0, variance 1 per row up to eps), rstd (..., 1) = 1/sqrt(var+eps).

    Examples
    --------
    >>> y, _ = layernorm_forward(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2))
    >>> y.round(3).tolist()
    [[-1.0, 1.0]]
    """
    inv_c = x.dtype.type(1.0 / x.shape[-1])
    xc = x - x.sum(axis=-1, keepdims=True) * inv_c        # x - mean, mean (..., C) -> (..., 1)
    var = np.square(xc).sum(axis=-1, keepdims=True)       # (..., C) -> (..., 1)
    var *= inv_c
    var += eps
    rstd = 1.0 / np.sqrt(var)
    xhat = xc * rstd
    y = xhat * weight
    y += bias
    return y, (xhat, rstd, weight)


def layernorm_backward(dy, cache):
    """Gradients of LayerNorm.

    forward: xhat = (x - μ) · rstd, y = xhat · w + b, with μ and rstd = 1/√(σ² + ε) per row.
    So db = Σ dy, dw = Σ dy · xhat (sums over rows), and with g = dy · w (the gradient at xhat),
    dx = rstd · (g - mean(g) - xhat · mean(g · xhat))   (means over the last axis)
    — the two subtracted terms are the paths through μ and through σ².

    Parameters
    ----------
    dy : ndarray (..., C)
    cache : from :func:`layernorm_forward`.

    Returns
    -------
    dx : ndarray (..., C); dweight, dbias : ndarray (C,).
    """
    xhat, rstd, weight = cache
    C = xhat.shape[-1]
    dbias = dy.reshape(-1, C).sum(axis=0)                                  # (..., C) -> (C,)
    dweight = (dy * xhat).reshape(-1, C).sum(axis=0)                       # (..., C) -> (C,)
    g = dy * weight
    inv_c = xhat.dtype.type(1.0 / C)
    mean_g = g.sum(axis=-1, keepdims=True) * inv_c                         # (..., 1)
    mean_gx = (g * xhat).sum(axis=-1, keepdims=True) * inv_c               # (..., 1)
    dx = g - mean_g
    dx -= xhat * mean_gx
    dx *= rstd
    return dx, dweight, dbias
