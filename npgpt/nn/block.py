"""One transformer block: attention and feed-forward sublayers with residual connections.

Shapes: x (B, T, C) -> x (B, T, C).

Two residual wirings (GPTConfig.residual):

* ``"pre_norm"`` (GPT-2, nanoGPT):  x = x + attn(ln1(x));  x = x + ffn(ln2(x))
* ``"seed"`` (the seed tutorial's TransformerBlock, reproduced exactly):
  x = ln1(x);  x = x + attn(x);  x = ln2(x);  x = x + ffn(x)
  — the residual carries the *normalised* input, not the block's input.

Three switches swap the parts for the Llama family's (GPTConfig.norm, .positions, .mlp):
``ln1``/``ln2`` LayerNorm or ``norm1``/``norm2`` RMSNorm; GPT's attention (``attn.in_proj_weight``)
or grouped-query attention with rotary positions (``attn.q_proj``, ``k_proj``, ``v_proj``,
``o_proj``); the GELU MLP (``ffn.0``, ``ffn.2``) or SwiGLU (``mlp.gate``, ``mlp.up``,
``mlp.down``). Llama's block is pre_norm with all three:
x = x + gqa(rmsnorm(x), RoPE);  x = x + swiglu(rmsnorm(x)).
"""

from __future__ import annotations

from .attention import attention_backward, attention_forward
from .gqa import gqa_backward, gqa_forward
from .layers import layernorm_backward, layernorm_forward
from .mlp import mlp_backward, mlp_forward
from .rmsnorm import rmsnorm_backward, rmsnorm_forward
from .swiglu import swiglu_backward, swiglu_forward

_GQA_NAMES = {"q_weight": "attn.q_proj.weight", "k_weight": "attn.k_proj.weight",
              "v_weight": "attn.v_proj.weight", "o_weight": "attn.o_proj.weight",
              "q_bias": "attn.q_proj.bias", "k_bias": "attn.k_proj.bias",
              "v_bias": "attn.v_proj.bias"}


def norm_names(config):
    """The names of a block's two norms and the final one: ``("ln1", "ln2", "ln_final")`` for
    LayerNorm, ``("norm1", "norm2", "norm_final")`` for RMSNorm.

    Examples
    --------
    >>> import npgpt
    >>> norm_names(npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=8, num_heads=2,
    ...                            num_layers=1, norm="rmsnorm"))
    ('norm1', 'norm2', 'norm_final')
    """
    return ("ln1", "ln2", "ln_final") if config.norm == "layernorm" else ("norm1", "norm2", "norm_final")


def norm_forward(x, params, name, config):
    """LayerNorm (``{name}.weight``, ``{name}.bias``) or RMSNorm (``{name}.weight``) of x
    (..., C), as ``config.norm`` says, with ε = ``config.layer_norm_eps``.

    Returns
    -------
    y : ndarray (..., C); cache : for :func:`norm_backward`.

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=2, num_heads=1, num_layers=1,
    ...                       norm="rmsnorm", layer_norm_eps=1e-6)
    >>> y, _ = norm_forward(np.array([[3.0, 4.0]]), {"n.weight": np.ones(2)}, "n", cfg)
    >>> y.round(4).tolist()
    [[0.8485, 1.1314]]
    """
    if config.norm == "layernorm":
        y, cache = layernorm_forward(x, params[name + ".weight"], params[name + ".bias"],
                                     config.layer_norm_eps)
    else:
        y, cache = rmsnorm_forward(x, params[name + ".weight"], config.layer_norm_eps)
    return y, (config.norm, cache)


def norm_backward(dy, cache):
    """dx and a dict of the norm's gradients, ``{"weight": ...}`` (and ``"bias"`` for LayerNorm).

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=2, num_heads=1, num_layers=1)
    >>> _, cache = norm_forward(np.array([[3.0, 4.0]]), {"n.weight": np.ones(2), "n.bias": np.zeros(2)}, "n", cfg)
    >>> sorted(norm_backward(np.ones((1, 2)), cache)[1])
    ['bias', 'weight']
    """
    kind, inner = cache
    if kind == "layernorm":
        dx, dweight, dbias = layernorm_backward(dy, inner)
        return dx, {"weight": dweight, "bias": dbias}
    dx, dweight = rmsnorm_backward(dy, inner)
    return dx, {"weight": dweight}


def block_forward(x, params, prefix, config, mask, kv=None, rng=None, rope=None):
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
    rope : (cos, sin) or None, the rotary tables of the tokens' positions
        (:func:`npgpt.nn.rope.rope_tables`); needed with ``config.positions == "rope"``.

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
    p, drop = params, config.dropout
    n1, n2, _ = norm_names(config)
    h1, ln1_cache = norm_forward(x, p, prefix + n1, config)
    if config.positions == "learned":
        a, attn_cache = attention_forward(
            h1, p[prefix + "attn.in_proj_weight"], p[prefix + "attn.in_proj_bias"],
            p[prefix + "attn.out_proj.weight"], p[prefix + "attn.out_proj.bias"], config.num_heads,
            mask, kv=kv, dropout=drop, rng=rng)
    else:
        a, attn_cache = gqa_forward(
            h1, *(p[prefix + _GQA_NAMES[n]] for n in ("q_weight", "k_weight", "v_weight", "o_weight")),
            config.num_heads, config.kv_heads, rope[0], rope[1], mask,
            **{n: p.get(prefix + _GQA_NAMES[n]) for n in ("q_bias", "k_bias", "v_bias")},
            rope_layout=config.rope_layout, kv=kv)
    x1 = (x if config.residual == "pre_norm" else h1) + a            # residual 1
    h2, ln2_cache = norm_forward(x1, p, prefix + n2, config)
    if config.mlp == "gelu":
        f, mlp_cache = mlp_forward(h2, p[prefix + "ffn.0.weight"], p[prefix + "ffn.0.bias"],
                                   p[prefix + "ffn.2.weight"], p[prefix + "ffn.2.bias"],
                                   gelu=config.gelu, dropout=drop, rng=rng)
    else:
        f, mlp_cache = swiglu_forward(h2, p[prefix + "mlp.gate.weight"], p[prefix + "mlp.up.weight"],
                                      p[prefix + "mlp.down.weight"])
    x2 = (x1 if config.residual == "pre_norm" else h2) + f           # residual 2
    cache = {"ln1": ln1_cache, "attn": attn_cache, "ln2": ln2_cache, "mlp": mlp_cache,
             "residual": config.residual, "names": (n1, n2), "positions": config.positions,
             "kind_mlp": config.mlp}
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
    n1, n2 = cache["names"]
    # second sublayer: feed-forward
    if cache["kind_mlp"] == "gelu":
        df, mlp_grads = mlp_backward(dout, cache["mlp"])              # through ffn: d at h2
        grads.update(mlp_grads)
    else:
        df, *swiglu_grads = swiglu_backward(dout, cache["mlp"])
        grads.update(zip(("mlp.gate.weight", "mlp.up.weight", "mlp.down.weight"), swiglu_grads))
    if cache["residual"] == "pre_norm":
        dx1, norm_grads = norm_backward(df, cache["ln2"])
        dx1 += dout                                                   # residual path
    else:
        dx1, norm_grads = norm_backward(df + dout, cache["ln2"])
    grads.update({f"{n2}.{name}": g for name, g in norm_grads.items()})
    # first sublayer: attention
    if cache["positions"] == "learned":
        da, *attn_grads = attention_backward(dx1, cache["attn"])      # through attn: d at h1
        for name, g in zip(("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
                            "attn.out_proj.bias"), attn_grads):
            grads[name] = g
    else:
        gqa_grads = gqa_backward(dx1, cache["attn"])
        da = gqa_grads.pop("x")
        grads.update({_GQA_NAMES[name]: g for name, g in gqa_grads.items()})
    if cache["residual"] == "pre_norm":
        dx, norm_grads = norm_backward(da, cache["ln1"])
        dx += dx1
    else:
        dx, norm_grads = norm_backward(da + dx1, cache["ln1"])
    grads.update({f"{n1}.{name}": g for name, g in norm_grads.items()})
    return dx, grads
