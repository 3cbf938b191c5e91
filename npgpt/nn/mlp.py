"""The position-wise feed-forward network: Linear(C, 4C) → GELU → Linear(4C, C) → Dropout.

Shapes: x (B, T, C) -> h (B, T, F) -> out (B, T, C), F = 4C; weights in PyTorch's layout:
fc_weight (F, C), fc_bias (F,), proj_weight (C, F), proj_bias (C,).
"""

from __future__ import annotations

from .gelu import gelu_forward
from .linear import linear_forward


def mlp_forward(x, fc_weight, fc_bias, proj_weight, proj_bias, gelu="exact",
                dropout=0.0, rng=None):
    """out = dropout(GELU(x @ fc_weightᵀ + fc_bias) @ proj_weightᵀ + proj_bias).

    Parameters
    ----------
    x : ndarray (B, T, C)
    fc_weight, fc_bias, proj_weight, proj_bias : see the module doc (the seed's
        ``ffn.0`` and ``ffn.2``).
    gelu : {"exact", "tanh"}
    dropout : float, rng : numpy.random.Generator or None (dropout only with both).

    Returns
    -------
    out : ndarray (B, T, C)
    cache : tuple for :func:`mlp_backward`.
    """
    h, fc_cache = linear_forward(x, fc_weight, fc_bias)               # (B, T, C) -> (B, T, F)
    a, gelu_cache = gelu_forward(h, gelu)                             # (B, T, F)
    out, proj_cache = linear_forward(a, proj_weight, proj_bias)       # (B, T, F) -> (B, T, C)
    keep = None
    if dropout > 0.0 and rng is not None:
        keep = (rng.random(out.shape) >= dropout).astype(out.dtype) / out.dtype.type(1.0 - dropout)
        out = out * keep
    return out, (fc_cache, gelu_cache, proj_cache, keep)
