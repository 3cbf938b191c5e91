"""Grouped-query attention (GQA) with rotary positions, as the Llama family computes it.

Shapes: x (B, T, C) -> out (B, T, C_out); H query heads and Hkv ≤ H key/value heads of size D;
each key/value head serves a group of G = H / Hkv consecutive query heads (query head h uses
kv head h // G, like transformers' ``repeat_kv``). Tk = keys attended (T, or the cached tokens
plus T when decoding incrementally). H = Hkv is multi-head attention, Hkv = 1 multi-query.

Parameters in PyTorch's layout (``LlamaAttention``): q_weight (H·D, C), k_weight and v_weight
(Hkv·D, C), o_weight (C_out, H·D), optional biases of the matching output sizes (Qwen2 has q,
k and v biases; Llama none). D = q_weight.shape[0] / H need not be C / H (Qwen3, Gemma).
"""

from __future__ import annotations

import math

import numpy as np

from .layers import linear_backward, linear_forward, softmax_backward, softmax_forward
from .part import Part
from .rope import rope_backward, rope_forward

# transformers' LlamaAttention's names (q, k and v biases only with ``attention_bias``)
NAMES = {"q_weight": "attn.q_proj.weight", "k_weight": "attn.k_proj.weight",
         "v_weight": "attn.v_proj.weight", "out_weight": "attn.o_proj.weight",
         "q_bias": "attn.q_proj.bias", "k_bias": "attn.k_proj.bias", "v_bias": "attn.v_proj.bias"}


def gqa_forward(x, q_weight, k_weight, v_weight, o_weight, num_heads, num_kv_heads, cos, sin,
                mask, q_bias=None, k_bias=None, v_bias=None, o_bias=None, rope_layout="half",
                kv=None):
    """out = concat_h(softmax(q_h k_jᵀ / √D + mask) v_j) @ o_weightᵀ + o_bias, j = h // G,

    with q = RoPE(x @ q_weightᵀ + q_bias) split in H heads, k = RoPE(x @ k_weightᵀ + k_bias)
    and v = x @ v_weightᵀ + v_bias split in Hkv heads. The kv heads are never copied G times:
    the G query heads of a group are stacked along the token axis, (B, H, T, D) ->
    (B, Hkv, G·T, D) (a reshape, free), and multiplied with their one kv head.

    Parameters
    ----------
    x : ndarray (B, T, C)
    q_weight, k_weight, v_weight, o_weight : the projections (see the module doc).
    num_heads, num_kv_heads : int, H and Hkv; H must be a multiple of Hkv.
    cos, sin : ndarray (T, D/2) or (B, T, D/2), :func:`npgpt.nn.rope.rope_tables` of the T new
        tokens' positions (cos = 1, sin = 0 turns RoPE off).
    mask : additive mask broadcastable to (B, H, T, Tk): 0 where a query may attend to a key,
        -inf where not, e.g. ``causal_mask(T)`` (T, T) or ``causal_bias(...)`` (B, 1, T, Tk).
    q_bias, k_bias, v_bias, o_bias : ndarray or None.
    rope_layout : {"half", "interleaved"}, see :mod:`npgpt.nn.rope`.
    kv : the KV cache of this layer, or None
        When decoding incrementally, ``kv.append(k, v)`` stores the new (rotated) keys and
        the values, (B, Hkv, T, D) each, after the cached ones and returns all of them,
        (B, Hkv, Tk, D). Such a call has no backward.

    Returns
    -------
    out : ndarray (B, T, C_out)
    cache : dict for :func:`gqa_backward` (also holds ``probs`` (B, H, T, Tk), the attention maps).

    Examples
    --------
    >>> from npgpt.nn.attention import causal_mask
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1, 3, 8))
    >>> wq, wk, wv, wo = rng.normal(size=(8, 8)), rng.normal(size=(4, 8)), rng.normal(size=(4, 8)), np.eye(8)
    >>> cos, sin = np.ones((3, 2)), np.zeros((3, 2))              # RoPE off; D = 8 / 2 heads = 4
    >>> out, cache = gqa_forward(x, wq, wk, wv, wo, 2, 1, cos, sin, causal_mask(3))
    >>> out.shape, cache["probs"].shape, cache["probs"][0, 1, 0].round(2).tolist()
    ((1, 3, 8), (1, 2, 3, 3), [1.0, 0.0, 0.0])
    """
    H, Hkv, D = _check_shapes(x, q_weight, k_weight, v_weight, o_weight, num_heads, num_kv_heads)
    B, T, C = x.shape
    G = H // Hkv                                                      # query heads per kv head
    q, q_cache = linear_forward(x, q_weight, q_bias)                  # (B, T, C) -> (B, T, H·D)
    k, k_cache = linear_forward(x, k_weight, k_bias)                  # (B, T, C) -> (B, T, Hkv·D)
    v, v_cache = linear_forward(x, v_weight, v_bias)                  # (B, T, C) -> (B, T, Hkv·D)
    q = q.reshape(B, T, H, D).transpose(0, 2, 1, 3)                   # (B, T, H·D) -> (B, H, T, D)
    k = k.reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)                 # (B, T, Hkv·D) -> (B, Hkv, T, D)
    v = v.reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)                 # (B, T, Hkv·D) -> (B, Hkv, T, D)
    q, q_rope = rope_forward(q, cos, sin, rope_layout)                # rotate by position
    k, k_rope = rope_forward(k, cos, sin, rope_layout)
    if kv is not None:
        k, v = kv.append(k, v)                                        # (B, Hkv, Tk, D): cached, then new
    Tk = k.shape[2]
    q = q.reshape(B, Hkv, G * T, D)                                   # (B, H, T, D) -> (B, Hkv, G·T, D), a view
    scale = 1.0 / math.sqrt(D)
    scores = (q @ k.swapaxes(-1, -2)) * scale                         # (B, Hkv, G·T, D) @ (B, Hkv, D, Tk) -> (B, Hkv, G·T, Tk)
    scores = scores.reshape(B, H, T, Tk) + mask                       # -> (B, H, T, Tk)
    probs = softmax_forward(scores)                                   # (B, H, T, Tk)
    y = probs.reshape(B, Hkv, G * T, Tk) @ v                          # (B, Hkv, G·T, Tk) @ (B, Hkv, Tk, D) -> (B, Hkv, G·T, D)
    y = y.reshape(B, H, T, D).transpose(0, 2, 1, 3).reshape(B, T, H * D)   # -> (B, H, T, D) -> (B, T, H·D)
    out, o_cache = linear_forward(y, o_weight, o_bias)                # (B, T, H·D) -> (B, T, C_out)
    cache = {"q": q, "k": k, "v": v, "probs": probs, "heads": (H, Hkv), "cached": kv is not None,
             "q_rope": q_rope, "k_rope": k_rope,
             "linear": {"q": q_cache, "k": k_cache, "v": v_cache, "o": o_cache}}
    return out, cache


def _check_shapes(x, q_weight, k_weight, v_weight, o_weight, num_heads, num_kv_heads):
    """Validate :func:`gqa_forward`'s shapes and head counts; return (H, Hkv, D)."""
    if x.ndim != 3:
        raise ValueError(f"x must be (B, T, C), got shape {x.shape}")
    C = x.shape[2]
    for name, value in (("num_heads", num_heads), ("num_kv_heads", num_kv_heads)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
    H, Hkv = num_heads, num_kv_heads
    if q_weight.ndim != 2 or q_weight.shape[0] % H or q_weight.shape[1] != C:
        raise ValueError(f"q_weight must be (num_heads · head_dim, {C}) with num_heads = {H}, "
                         f"got shape {q_weight.shape}")
    D = q_weight.shape[0] // H
    for name, w in (("k_weight", k_weight), ("v_weight", v_weight)):
        if w.shape != (Hkv * D, C):
            raise ValueError(f"{name} must be ({Hkv * D}, {C}) for {Hkv} kv heads of size {D}, "
                             f"got shape {w.shape}")
    if o_weight.ndim != 2 or o_weight.shape[1] != H * D:
        raise ValueError(f"o_weight must be (C_out, {H * D}), got shape {o_weight.shape}")

    return H, Hkv, D


def gqa_backward(dout, cache):
    """Gradients of grouped-query attention (no KV cache: training runs whole sequences).

    Restating the forward lines from the end (q_h stacked per group as in the forward):
    out = y @ Woᵀ + bo            ⇒ dy = dout @ Wo, dWo = Σ doutᵀ y, dbo = Σ dout (linear_backward)
    y_h = P_h v_j (j = h // G)    ⇒ dP_h = dy_h v_jᵀ,  dv_j = Σ_{h in group j} P_hᵀ dy_h
    P = softmax(s)                ⇒ ds = P · (dP - Σ dP · P)
    s_h = q_h k_jᵀ / √D + mask    ⇒ dq_h = ds_h k_j / √D,  dk_j = Σ_{h in group j} ds_hᵀ q_h / √D
    q = RoPE(q₀), k = RoPE(k₀)    ⇒ dq₀ = RoPE⁻¹(dq), dk₀ = RoPE⁻¹(dk)  (rope_backward)
    q₀ = x Wqᵀ + bq, etc.          ⇒ dx = dq₀ Wq + dk₀ Wk + dv Wv, dW = Σ dᵀ x  (linear_backward)

    A kv head is used by its G query heads, so its gradients are sums over the group: the
    stacked (B, Hkv, G·T, ·) products above sum over the G·T rows by themselves.

    Parameters
    ----------
    dout : ndarray (B, T, C_out)
    cache : from :func:`gqa_forward` called with ``kv=None``.

    Returns
    -------
    grads : dict of ndarrays keyed "x", "q_weight", "k_weight", "v_weight", "o_weight", and
        "q_bias", "k_bias", "v_bias", "o_bias" for the biases the forward was given.

    Examples
    --------
    >>> from npgpt.nn.attention import causal_mask
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1, 3, 8))
    >>> wq, wk, wv, wo = rng.normal(size=(8, 8)), rng.normal(size=(4, 8)), rng.normal(size=(4, 8)), np.eye(8)
    >>> _, cache = gqa_forward(x, wq, wk, wv, wo, 2, 1, np.ones((3, 2)), np.zeros((3, 2)),
    ...                        causal_mask(3), v_bias=np.zeros(4))
    >>> {name: g.shape for name, g in gqa_backward(np.ones((1, 3, 8)), cache).items()}
    {'x': (1, 3, 8), 'q_weight': (8, 8), 'k_weight': (4, 8), 'v_weight': (4, 8), 'o_weight': (8, 8), 'v_bias': (4,)}
    """
    if cache["cached"]:
        raise ValueError("gqa_backward needs a forward pass without a KV cache (kv=None)")
    q, k, v, probs = cache["q"], cache["k"], cache["v"], cache["probs"]
    H, Hkv = cache["heads"]
    B, _, GT, D = q.shape
    T, Tk = GT // (H // Hkv), k.shape[2]
    linear = cache["linear"]
    dy, d_o_weight, d_o_bias = linear_backward(dout, linear["o"])    # (B, T, C_out) -> (B, T, H·D)
    dy = dy.reshape(B, T, H, D).transpose(0, 2, 1, 3).reshape(B, Hkv, GT, D)   # -> (B, H, T, D) -> (B, Hkv, G·T, D)
    probs = probs.reshape(B, Hkv, GT, Tk)                             # (B, H, T, Tk) -> (B, Hkv, G·T, Tk)
    dv = probs.swapaxes(-1, -2) @ dy                                  # (B, Hkv, Tk, G·T) @ (B, Hkv, G·T, D) -> (B, Hkv, Tk, D)
    dprobs = dy @ v.swapaxes(-1, -2)                                  # (B, Hkv, G·T, D) @ (B, Hkv, D, Tk) -> (B, Hkv, G·T, Tk)
    dscores = softmax_backward(dprobs, probs)                         # (B, Hkv, G·T, Tk)
    dscores *= 1.0 / math.sqrt(D)
    dq = (dscores @ k).reshape(B, H, T, D)                            # (B, Hkv, G·T, Tk) @ (B, Hkv, Tk, D) -> (B, H, T, D)
    dk = dscores.swapaxes(-1, -2) @ q                                 # (B, Hkv, Tk, G·T) @ (B, Hkv, G·T, D) -> (B, Hkv, Tk, D)
    dq = rope_backward(dq, cache["q_rope"])                           # rotate back
    dk = rope_backward(dk, cache["k_rope"])
    dx_q, d_q_weight, d_q_bias = linear_backward(_merge_heads(dq), linear["q"])   # (B, T, H·D) -> (B, T, C)
    dx_k, d_k_weight, d_k_bias = linear_backward(_merge_heads(dk), linear["k"])   # (B, T, Hkv·D) -> (B, T, C)
    dx_v, d_v_weight, d_v_bias = linear_backward(_merge_heads(dv), linear["v"])   # (B, T, Hkv·D) -> (B, T, C)
    grads = {"x": dx_q + dx_k + dx_v,                                 # x feeds q, k and v
             "q_weight": d_q_weight, "k_weight": d_k_weight, "v_weight": d_v_weight,
             "o_weight": d_o_weight}
    for name, d in (("q_bias", d_q_bias), ("k_bias", d_k_bias), ("v_bias", d_v_bias), ("o_bias", d_o_bias)):
        if d is not None:                                             # only the biases the forward had
            grads[name] = d
    return grads


def _merge_heads(d):
    """(B, heads, T, D) -> (B, T, heads·D), the inverse of the split after each projection."""
    B, heads, T, D = d.shape
    return d.transpose(0, 2, 1, 3).reshape(B, T, heads * D)


def gqa_shapes(config):
    """Name -> shape of a block's grouped-query attention parameters, in the order of
    transformers' state_dict (q, k, v each with its bias when ``config.attention_bias``, o).

    Examples
    --------
    >>> from npgpt import GPTConfig
    >>> gqa_shapes(GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1,
    ...                      positions="rope", num_kv_heads=1))
    {'attn.q_proj.weight': (8, 8), 'attn.k_proj.weight': (4, 8), 'attn.v_proj.weight': (4, 8), 'attn.o_proj.weight': (8, 8)}
    """
    C, H, Hkv, D = config.d_model, config.num_heads, config.kv_heads, config.head_size
    shapes = {}
    for role, rows in (("q", H * D), ("k", Hkv * D), ("v", Hkv * D)):
        shapes[NAMES[role + "_weight"]] = (rows, C)
        if config.attention_bias:
            shapes[NAMES[role + "_bias"]] = (rows,)
    shapes[NAMES["out_weight"]] = (C, H * D)
    return shapes


def gqa_of(x, params, prefix, config, mask, kv=None, rng=None, rope=None):
    """:func:`gqa_forward` of x with block ``prefix``'s parameters, the config's heads and
    rotary layout, and ``rope`` = (cos, sin) (no dropout: ``rng`` unused).

    Examples
    --------
    >>> from npgpt.nn.attention import causal_mask
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1,
    ...                                   norm="rmsnorm", positions="rope", mlp="swiglu", num_kv_heads=1, ffn_dim=12))
    >>> rope = np.ones((3, 2)), np.zeros((3, 2))                   # cos, sin: RoPE off
    >>> y, cache = gqa_of(np.ones((1, 3, 8)), model.params, "blocks.0.", model.config, causal_mask(3), rope=rope)
    >>> y.shape, cache["probs"].shape
    ((1, 3, 8), (1, 2, 3, 3))
    """
    q, k, v, o, q_bias, k_bias, v_bias = (params.get(prefix + name) for name in NAMES.values())
    return gqa_forward(x, q, k, v, o, config.num_heads, config.kv_heads, rope[0], rope[1], mask,
                       q_bias, k_bias, v_bias, rope_layout=config.rope_layout, kv=kv)


def gqa_grads(dy, cache):
    """:func:`gqa_backward` as (dx, {name: gradient}).

    Examples
    --------
    >>> from npgpt.nn.attention import causal_mask
    >>> rng = np.random.default_rng(0)
    >>> x, wq, wkv = rng.normal(size=(1, 3, 8)), rng.normal(size=(8, 8)), rng.normal(size=(4, 8))
    >>> _, cache = gqa_forward(x, wq, wkv, wkv, np.eye(8), 2, 1, np.ones((3, 2)), np.zeros((3, 2)), causal_mask(3))
    >>> dx, grads = gqa_grads(np.ones((1, 3, 8)), cache)
    >>> dx.shape, sorted(grads)
    ((1, 3, 8), ['attn.k_proj.weight', 'attn.o_proj.weight', 'attn.q_proj.weight', 'attn.v_proj.weight'])
    """
    grads = gqa_backward(dy, cache)
    grads["out_weight"] = grads.pop("o_weight")
    return grads.pop("x"), {NAMES[role]: g for role, g in grads.items()}


GQA = Part("rope", NAMES, gqa_shapes, gqa_of, gqa_grads, column_major=("out_weight",),
           stacked=(("q_weight", "k_weight", "v_weight"),))
