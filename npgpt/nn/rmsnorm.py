"""RMSNorm, the Llama family's normalisation: LayerNorm without the mean and without the bias.

Shapes: x (..., C) -> y (..., C); weight (C,), ``LlamaRMSNorm.weight``.

transformers' ``LlamaRMSNorm`` upcasts x to float32, normalises, casts back to x's dtype and
only then multiplies by the weight. npgpt computes in x's own dtype, which for float32 (and
float64) inputs is the same computation.
"""

from __future__ import annotations

import numpy as np

from .part import Part


def rmsnorm_forward(x, weight, eps=1e-6):
    """y = x / sqrt(mean(x²) + eps) · weight, the mean over the last axis.

    Parameters
    ----------
    x : ndarray (..., C), float32 or float64.
    weight : ndarray (C,)
    eps : float, added to the mean square (``rms_norm_eps``).

    Returns
    -------
    y : ndarray (..., C)
    cache : (xhat, rstd, weight) for :func:`rmsnorm_backward`; xhat = x · rstd (..., C) has
        mean square 1 per row (up to eps), rstd (..., 1) = 1/sqrt(mean(x²) + eps).

    Examples
    --------
    >>> y, _ = rmsnorm_forward(np.array([[3.0, 4.0]]), np.array([1.0, 2.0]), eps=0.0)
    >>> y.round(4).tolist()                   # rms of (3, 4) is sqrt(12.5)
    [[0.8485, 2.2627]]
    """
    C = x.shape[-1]
    if np.shape(weight) != (C,):
        raise ValueError(f"weight must have shape ({C},) to match x's last axis, got {np.shape(weight)}")
    mean_square = (x * x).sum(axis=-1, keepdims=True) / C           # (..., C) -> (..., 1)
    rstd = 1.0 / np.sqrt(mean_square + eps)                           # (..., 1)
    xhat = x * rstd                                                   # (..., C), mean square 1
    y = xhat * weight                                                 # scale each channel
    return y, (xhat, rstd, weight)


def rmsnorm_backward(dy, cache):
    """Gradients of RMSNorm.

    forward: r = (mean(x²) + ε)^(-1/2), xhat = x · r, y = xhat · w.
    So dw = Σ dy · xhat (summed over every leading axis). With g = dy · w (the gradient at
    xhat): ∂r/∂x_j = -r³ x_j / C, hence
    dx_j = g_j r + Σ_i g_i x_i (-r³ x_j / C) = r · (g_j - xhat_j · mean(g · xhat))
    — LayerNorm's formula without the path through the mean.

    Parameters
    ----------
    dy : ndarray (..., C)
    cache : from :func:`rmsnorm_forward`.

    Returns
    -------
    dx : ndarray (..., C); dweight : ndarray (C,).

    Examples
    --------
    >>> _, cache = rmsnorm_forward(np.array([[3.0, 4.0]]), np.ones(2), eps=0.0)
    >>> dx, dweight = rmsnorm_backward(np.array([[3.0, 4.0]]), cache)
    >>> dx.round(6).tolist(), dweight.round(4).tolist()   # growing x along itself changes nothing
    ([[0.0, 0.0]], [2.5456, 4.5255])
    """
    xhat, rstd, weight = cache
    C = xhat.shape[-1]
    dweight = (dy * xhat).reshape(-1, C).sum(axis=0)                  # (..., C) -> (C,)
    g = dy * weight                                                   # the gradient at xhat
    mean_gx = (g * xhat).sum(axis=-1, keepdims=True) / C              # (..., 1)
    dx = (g - xhat * mean_gx) * rstd
    return dx, dweight


def rmsnorm_of(x, params, name, config):
    """:func:`rmsnorm_forward` of x with ``params[name + ".weight"]`` and ε = ``config.layer_norm_eps``.

    Examples
    --------
    >>> from npgpt import GPTConfig
    >>> cfg = GPTConfig(vocab_size=10, context_length=8, d_model=2, num_heads=1, num_layers=1,
    ...                 norm="rmsnorm", layer_norm_eps=1e-6)
    >>> rmsnorm_of(np.array([[3.0, 4.0]]), {"norm1.weight": np.ones(2)}, "norm1", cfg)[0].round(4).tolist()
    [[0.8485, 1.1314]]
    """
    return rmsnorm_forward(x, params[name + ".weight"], config.layer_norm_eps)


def rmsnorm_grads(dy, cache):
    """:func:`rmsnorm_backward` as (dx, {"weight": dweight}).

    Examples
    --------
    >>> _, cache = rmsnorm_forward(np.array([[3.0, 4.0]]), np.ones(2), eps=0.0)
    >>> dx, grads = rmsnorm_grads(np.array([[3.0, 4.0]]), cache)
    >>> dx.round(6).tolist(), sorted(grads)
    ([[0.0, 0.0]], ['weight'])
    """
    dx, dweight = rmsnorm_backward(dy, cache)
    return dx, {"weight": dweight}


RMSNORM = Part("rmsnorm", ("norm1", "norm2", "norm_final"),        # a block's two, the final one
               lambda config: {"weight": (config.d_model,)}, rmsnorm_of, rmsnorm_grads)
