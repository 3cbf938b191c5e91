"""The Llama family's feed-forward network, SwiGLU: a SiLU-gated linear unit.

Shapes: x (..., C) -> gate, up (..., F) -> out (..., C), F = ``intermediate_size``.
Weights in PyTorch's layout and without biases (``LlamaMLP``): gate_weight (F, C),
up_weight (F, C), down_weight (C, F).
"""

from __future__ import annotations

import numpy as np

from .layers import linear_backward, linear_forward
from .part import Part

NAMES = {"gate_weight": "mlp.gate.weight", "up_weight": "mlp.up.weight",
         "out_weight": "mlp.down.weight"}


def _sigmoid(z):
    """σ(z) = 1 / (1 + exp(-z)), evaluated without overflow: with e = exp(-|z|) ≤ 1,
    σ(z) = 1 / (1 + e) for z ≥ 0 and e / (1 + e) for z < 0."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def swiglu_forward(x, gate_weight, up_weight, down_weight):
    """out = down(silu(gate(x)) · up(x)), silu(z) = z · σ(z):

        g = x @ gate_weightᵀ,  u = x @ up_weightᵀ,  out = (silu(g) · u) @ down_weightᵀ.

    σ is evaluated so that no exp overflows, however large |g| is.

    Parameters
    ----------
    x : ndarray (..., C)
    gate_weight, up_weight : ndarray (F, C), ``gate_proj.weight``, ``up_proj.weight``.
    down_weight : ndarray (C, F), ``down_proj.weight``.

    Returns
    -------
    out : ndarray (..., C)
    cache : tuple for :func:`swiglu_backward`.

    Examples
    --------
    >>> x = np.array([[1.0, -1.0]])
    >>> out, _ = swiglu_forward(x, np.eye(2), 2 * np.eye(2), np.eye(2))
    >>> out.round(4).tolist()                        # silu(1) · 2, silu(-1) · (-2)
    [[1.4621, 0.5379]]
    """
    F, C = np.shape(gate_weight)
    if np.shape(up_weight) != (F, C) or np.shape(down_weight)[1:] != (F,) or x.shape[-1] != C:
        raise ValueError(f"shapes must be x (..., C), gate and up (F, C), down (C, F); got x "
                         f"{x.shape}, gate {np.shape(gate_weight)}, up {np.shape(up_weight)}, "
                         f"down {np.shape(down_weight)}")
    g, gate_cache = linear_forward(x, gate_weight)                    # (..., C) -> (..., F)
    u, up_cache = linear_forward(x, up_weight)                        # (..., C) -> (..., F)
    s = _sigmoid(g)                                                   # σ(g)
    h = g * s * u                                                     # silu(g) · u
    out, down_cache = linear_forward(h, down_weight)                  # (..., F) -> (..., C)
    return out, (gate_cache, up_cache, down_cache, g, s, u)


def swiglu_backward(dout, cache):
    """Gradients of SwiGLU.

    forward: g = x Wgᵀ, u = x Wuᵀ, h = silu(g) · u, out = h Wdᵀ. So
    dh = dout Wd, dWd = Σ doutᵀ h                       (linear_backward)
    du = dh · silu(g)
    dg = dh · u · silu'(g), silu'(g) = σ(g) + g σ(g)(1 - σ(g)) = σ(g) (1 + g (1 - σ(g)))
    dx = dg Wg + du Wu, dWg = Σ dgᵀ x, dWu = Σ duᵀ x    (linear_backward, x feeds both)

    Parameters
    ----------
    dout : ndarray (..., C); cache : from :func:`swiglu_forward`.

    Returns
    -------
    dx : ndarray (..., C); dgate_weight, dup_weight : ndarray (F, C); ddown_weight : (C, F).

    Examples
    --------
    >>> one = np.ones((1, 1))                        # x = 1, every weight 1: g = u = 1
    >>> _, cache = swiglu_forward(one, one, one, one)
    >>> [round(float(d[0, 0]), 4) for d in swiglu_backward(one, cache)]   # silu'(1) + silu(1), silu'(1), silu(1), silu(1)
    [1.6587, 0.9277, 0.7311, 0.7311]
    """
    gate_cache, up_cache, down_cache, g, s, u = cache
    dh, ddown_weight, _ = linear_backward(dout, down_cache)           # (..., C) -> (..., F)
    du = dh * (g * s)                                                 # dh · silu(g)
    dg = dh * u * (s * (1.0 + g * (1.0 - s)))                         # dh · u · silu'(g)
    dx_gate, dgate_weight, _ = linear_backward(dg, gate_cache)        # (..., F) -> (..., C)
    dx_up, dup_weight, _ = linear_backward(du, up_cache)              # (..., F) -> (..., C)
    return dx_gate + dx_up, dgate_weight, dup_weight, ddown_weight


def swiglu_shapes(config):
    """Name -> shape of a block's SwiGLU parameters (F = ``config.ffn_size``).

    Examples
    --------
    >>> from npgpt import GPTConfig
    >>> swiglu_shapes(GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1,
    ...                         mlp="swiglu", ffn_dim=12))
    {'mlp.gate.weight': (12, 8), 'mlp.up.weight': (12, 8), 'mlp.down.weight': (8, 12)}
    """
    C, F = config.d_model, config.ffn_size
    return dict(zip(NAMES.values(), ((F, C), (F, C), (C, F))))


def swiglu_of(x, params, prefix, config, rng=None):
    """:func:`swiglu_forward` of x with block ``prefix``'s parameters (no dropout: ``rng`` unused).

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1,
    ...                                   norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=1, ffn_dim=12))
    >>> swiglu_of(np.ones((1, 3, 8), np.float32), model.params, "blocks.0.", model.config)[0].shape
    (1, 3, 8)
    """
    return swiglu_forward(x, *(params[prefix + name] for name in NAMES.values()))


def swiglu_grads(dy, cache):
    """:func:`swiglu_backward` as (dx, {name: gradient}).

    Examples
    --------
    >>> one = np.ones((1, 1))
    >>> _, cache = swiglu_forward(one, one, one, one)
    >>> dx, grads = swiglu_grads(one, cache)
    >>> sorted(grads)
    ['mlp.down.weight', 'mlp.gate.weight', 'mlp.up.weight']
    """
    dx, *grads = swiglu_backward(dy, cache)
    return dx, dict(zip(NAMES.values(), grads))


SWIGLU = Part("swiglu", NAMES, swiglu_shapes, swiglu_of, swiglu_grads,
              stacked=(("gate_weight", "up_weight"),))
