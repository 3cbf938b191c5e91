"""The position-wise feed-forward network: Linear(C, 4C) → GELU → Linear(4C, C) → Dropout.

Shapes: x (B, T, C) -> h (B, T, F) -> out (B, T, C), F = 4C; weights in PyTorch's layout:
fc_weight (F, C), fc_bias (F,), proj_weight (C, F), proj_bias (C,).
"""

from __future__ import annotations

from .layers import dropout_mask, gelu_backward, gelu_forward, linear_backward, linear_forward
from .part import Part

# the seed's nn.Sequential(Linear, GELU, Linear, Dropout): its layers 0 and 2
NAMES = {"fc_weight": "ffn.0.weight", "fc_bias": "ffn.0.bias",
         "out_weight": "ffn.2.weight", "out_bias": "ffn.2.bias"}


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

    Examples
    --------
    >>> x = np.array([[[1.0, -1.0]]])
    >>> out, _ = mlp_forward(x, np.eye(8, 2), np.zeros(8), np.eye(2, 8), np.zeros(2))
    >>> out.round(4).tolist()                        # GELU(1), GELU(-1)
    [[[0.8413, -0.1587]]]
    """
    h, fc_cache = linear_forward(x, fc_weight, fc_bias)               # (B, T, C) -> (B, T, F)
    a, gelu_cache = gelu_forward(h, gelu)                             # (B, T, F)
    out, proj_cache = linear_forward(a, proj_weight, proj_bias)       # (B, T, F) -> (B, T, C)
    keep = dropout_mask(out.shape, dropout, rng, out.dtype)
    if keep is not None:
        out = out * keep
    return out, (fc_cache, gelu_cache, proj_cache, keep)


def mlp_backward(dout, cache):
    """Gradients of the feed-forward network.

    forward: h = x W1ᵀ + b1; a = GELU(h); o = a W2ᵀ + b2; out = o · keep (dropout mask).
    So do = dout · keep, then each layer's backward in reverse order.

    Returns
    -------
    dx : ndarray (B, T, C); grads : dict with "ffn.0.weight", "ffn.0.bias", "ffn.2.weight",
    "ffn.2.bias" (the seed's names, without the block prefix).

    Examples
    --------
    >>> _, cache = mlp_forward(np.array([[[1.0, -1.0]]]), np.eye(8, 2), np.zeros(8), np.eye(2, 8), np.zeros(2))
    >>> dx, grads = mlp_backward(np.ones((1, 1, 2)), cache)
    >>> dx.round(4).tolist(), sorted(grads)          # GELU'(1), GELU'(-1)
    ([[[1.0833, -0.0833]]], ['ffn.0.bias', 'ffn.0.weight', 'ffn.2.bias', 'ffn.2.weight'])
    """
    fc_cache, gelu_cache, proj_cache, keep = cache
    if keep is not None:
        dout = dout * keep
    da, dw2, db2 = linear_backward(dout, proj_cache)                  # (B, T, C) -> (B, T, F)
    dh = gelu_backward(da, gelu_cache)                                # (B, T, F)
    dx, dw1, db1 = linear_backward(dh, fc_cache)                      # (B, T, F) -> (B, T, C)
    return dx, dict(zip(NAMES.values(), (dw1, db1, dw2, db2)))


def mlp_shapes(config):
    """Name -> shape of a block's feed-forward parameters (F = ``config.ffn_size``).

    Examples
    --------
    >>> from npgpt import GPTConfig
    >>> mlp_shapes(GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1))
    {'ffn.0.weight': (32, 8), 'ffn.0.bias': (32,), 'ffn.2.weight': (8, 32), 'ffn.2.bias': (8,)}
    """
    C, F = config.d_model, config.ffn_size
    return dict(zip(NAMES.values(), ((F, C), (F,), (C, F), (C,))))


def mlp_of(x, params, prefix, config, rng=None):
    """:func:`mlp_forward` of x with block ``prefix``'s parameters, ``config.gelu`` and
    ``config.dropout`` (dropout only with an rng).

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1))
    >>> mlp_of(np.ones((1, 3, 8), np.float32), model.params, "blocks.0.", model.config)[0].shape
    (1, 3, 8)
    """
    fc_weight, fc_bias, out_weight, out_bias = (params[prefix + name] for name in NAMES.values())
    return mlp_forward(x, fc_weight, fc_bias, out_weight, out_bias, config.gelu, config.dropout, rng)


MLP = Part("gelu", NAMES, mlp_shapes, mlp_of, mlp_backward, column_major=("fc_weight",))
