"""One transformer block: attention and feed-forward sublayers with residual connections.

Shapes: x (B, T, C) -> x (B, T, C).

Two residual wirings (GPTConfig.residual):

* ``"pre_norm"`` (GPT-2, nanoGPT):  x = x + attn(ln1(x));  x = x + ffn(ln2(x))
* ``"seed"`` (the seed tutorial's TransformerBlock, reproduced exactly):
  x = ln1(x);  x = x + attn(x);  x = ln2(x);  x = x + ffn(x)
  — the residual carries the *normalised* input, not the block's input.
"""

from __future__ import annotations

from .attention import attention_backward, attention_forward
from .layers import layernorm_backward, layernorm_forward
from .mlp import mlp_backward, mlp_forward


def block_forward(x, params, prefix, config, mask, kv=None, rng=None):
    """Apply block ``prefix`` (e.g. ``"blocks.0."``) to x.

    Parameters
    ----------
    x : ndarray (B, T, C)
    params : dict name -> ndarray, keyed like the seed's state_dict
        (``{prefix}ln1.weight``, ``{prefix}attn.in_proj_weight``, ``{prefix}ffn.0.weight``, ...).
    prefix : str
    config : GPTConfig (num_heads, residual, gelu, layer_norm_eps and dropout are used).
    mask, kv : the attention mask and this layer's KV cache (see :func:`attention_forward`).
    rng : numpy.random.Generator or None; with one, training-mode dropout (attention weights
        and feed-forward output) at ``config.dropout``.

    Returns
    -------
    x : ndarray (B, T, C)
    cache : dict for :func:`block_backward`.

    Examples
    --------
    >>> import npgpt
    >>> from npgpt.nn.attention import causal_mask
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=8, num_heads=2, num_layers=1))
    >>> x = np.ones((1, 3, 8), dtype=np.float32)
    >>> block_forward(x, model.params, "blocks.0.", model.config, causal_mask(3))[0].shape
    (1, 3, 8)
    """
    p, eps, drop = params, config.layer_norm_eps, config.dropout
    h1, ln1_cache = layernorm_forward(x, p[prefix + "ln1.weight"], p[prefix + "ln1.bias"], eps)
    a, attn_cache = attention_forward(
        h1, p[prefix + "attn.in_proj_weight"], p[prefix + "attn.in_proj_bias"],
        p[prefix + "attn.out_proj.weight"], p[prefix + "attn.out_proj.bias"], config.num_heads,
        mask, kv=kv, dropout=drop, rng=rng)
    x1 = (x if config.residual == "pre_norm" else h1) + a            # residual 1
    h2, ln2_cache = layernorm_forward(x1, p[prefix + "ln2.weight"], p[prefix + "ln2.bias"], eps)
    f, mlp_cache = mlp_forward(h2, p[prefix + "ffn.0.weight"], p[prefix + "ffn.0.bias"],
                               p[prefix + "ffn.2.weight"], p[prefix + "ffn.2.bias"],
                               gelu=config.gelu, dropout=drop, rng=rng)
    x2 = (x1 if config.residual == "pre_norm" else h2) + f           # residual 2
    cache = {"ln1": ln1_cache, "attn": attn_cache, "ln2": ln2_cache, "mlp": mlp_cache,
             "residual": config.residual}
    return x2, cache


def block_backward(dout, cache):
    """Gradients of one block; returns dx (B, T, C) and a dict of parameter gradients keyed
    without the block prefix (``ln1.weight``, ``attn.in_proj_weight``, ``ffn.0.bias``, ...).

    pre_norm, forward x1 = x + attn(ln1(x)); x2 = x1 + ffn(ln2(x1)):
        dx1 = dx2 + ln2ᵀ(ffnᵀ(dx2));   dx = dx1 + ln1ᵀ(attnᵀ(dx1))
    seed, forward h1 = ln1(x); x1 = h1 + attn(h1); h2 = ln2(x1); x2 = h2 + ffn(h2):
        dh2 = dx2 + ffnᵀ(dx2);  dx1 = ln2ᵀ(dh2);  dh1 = dx1 + attnᵀ(dx1);  dx = ln1ᵀ(dh1)
    (fᵀ(d) is f's backward applied to the gradient d.)

    Examples
    --------
    >>> import npgpt
    >>> from npgpt.nn.attention import causal_mask
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=8, num_heads=2, num_layers=1))
    >>> _, cache = block_forward(np.ones((1, 3, 8), dtype=np.float32), model.params, "blocks.0.",
    ...                          model.config, causal_mask(3))
    >>> dx, grads = block_backward(np.ones((1, 3, 8), dtype=np.float32), cache)
    >>> dx.shape, sorted(grads)[:3]
    ((1, 3, 8), ['attn.in_proj_bias', 'attn.in_proj_weight', 'attn.out_proj.bias'])
    """
    grads = {}
    # second sublayer: feed-forward
    df, mlp_grads = mlp_backward(dout, cache["mlp"])                  # through ffn: d at h2
    grads.update(mlp_grads)
    if cache["residual"] == "pre_norm":
        dx1, grads["ln2.weight"], grads["ln2.bias"] = layernorm_backward(df, cache["ln2"])
        dx1 += dout                                                   # residual path
    else:
        dx1, grads["ln2.weight"], grads["ln2.bias"] = layernorm_backward(df + dout, cache["ln2"])
    # first sublayer: attention
    da, *attn_grads = attention_backward(dx1, cache["attn"])          # through attn: d at h1
    for name, g in zip(("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
                        "attn.out_proj.bias"), attn_grads):
        grads[name] = g
    if cache["residual"] == "pre_norm":
        dx, grads["ln1.weight"], grads["ln1.bias"] = layernorm_backward(da, cache["ln1"])
        dx += dx1
    else:
        dx, grads["ln1.weight"], grads["ln1.bias"] = layernorm_backward(da + dx1, cache["ln1"])
    return dx, grads
