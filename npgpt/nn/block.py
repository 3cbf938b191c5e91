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

from .attention import ATTENTION
from .gqa import GQA
from .layers import LAYERNORM
from .mlp import MLP
from .rmsnorm import RMSNORM
from .swiglu import SWIGLU

NORMS = {part.kind: part for part in (LAYERNORM, RMSNORM)}            # GPTConfig.norm
ATTENTIONS = {part.kind: part for part in (ATTENTION, GQA)}           # GPTConfig.positions
MLPS = {part.kind: part for part in (MLP, SWIGLU)}                    # GPTConfig.mlp


def block_parts(config):
    """The block's three layer families (:class:`npgpt.nn.part.Part`), as the config's
    switches say: (norm, attention, mlp).

    Examples
    --------
    >>> import npgpt
    >>> cfg = npgpt.GPTConfig(vocab_size=5, context_length=4, d_model=8, num_heads=2, num_layers=1)
    >>> [part.kind for part in block_parts(cfg)]
    ['layernorm', 'learned', 'gelu']
    """
    return NORMS[config.norm], ATTENTIONS[config.positions], MLPS[config.mlp]


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
    return NORMS[config.norm].names


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
    y, cache = NORMS[config.norm].forward(x, params, name, config)
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
    return NORMS[kind].backward(dy, inner)


def block_forward(x, params, prefix, config, mask, kv=None, rng=None, rope=None, parts=None):
    """Apply block ``prefix`` (e.g. ``"blocks.0."``) to x.

    pre_norm: x1 = x + attn(norm1(x)); x2 = x1 + mlp(norm2(x1)).
    seed:     h1 = norm1(x); x1 = h1 + attn(h1); h2 = norm2(x1); x2 = h2 + mlp(h2).

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
    parts : (norm, attention, mlp), default :func:`block_parts` of the config.

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
    norm, attention, mlp = parts or block_parts(config)
    n1, n2, _ = norm.names
    pre_norm = config.residual == "pre_norm"
    h1, norm1 = norm.forward(x, params, prefix + n1, config)                      # (B, T, C)
    a, attn = attention.forward(h1, params, prefix, config, mask, kv, rng, rope)
    x1 = (x if pre_norm else h1) + a                                             # residual 1
    h2, norm2 = norm.forward(x1, params, prefix + n2, config)
    f, ffn = mlp.forward(h2, params, prefix, config, rng)
    x2 = (x1 if pre_norm else h2) + f                                            # residual 2
    return x2, {"parts": (norm, attention, mlp), "pre_norm": pre_norm,
                "attn_norm": norm1, "attn": attn, "mlp_norm": norm2, "mlp": ffn}


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
    norm, attention, mlp = cache["parts"]
    n1, n2, _ = norm.names
    pre_norm = cache["pre_norm"]
    df, grads = mlp.backward(dout, cache["mlp"])                  # through the MLP: d at h2
    dx1, norm_grads = norm.backward(df if pre_norm else df + dout, cache["mlp_norm"])
    if pre_norm:
        dx1 += dout                                               # the residual path
    grads.update({f"{n2}.{name}": g for name, g in norm_grads.items()})
    da, attn_grads = attention.backward(dx1, cache["attn"])       # through attention: d at h1
    grads.update(attn_grads)
    dx, norm_grads = norm.backward(da if pre_norm else da + dx1, cache["attn_norm"])
    if pre_norm:
        dx += dx1
    grads.update({f"{n1}.{name}": g for name, g in norm_grads.items()})
    return dx, grads
