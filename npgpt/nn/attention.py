"""Causal multi-head self-attention, as ``torch.nn.MultiheadAttention`` computes it.

Shapes: x (B, T, C) -> out (B, T, C); H heads of size D = C / H; Tk = keys attended
(T, or the cached tokens plus T when decoding incrementally).
Parameters in PyTorch's layout: in_weight (3C, C) stacks W_q, W_k, W_v; in_bias (3C,);
out_weight (C, C); out_bias (C,).
"""

from __future__ import annotations

import math

import numpy as np

from .layers import dropout_mask, linear_backward, linear_forward, softmax_backward, softmax_forward
from .part import Part

# torch.nn.MultiheadAttention's names, the seed's block calling it "attn"
NAMES = {"in_weight": "attn.in_proj_weight", "in_bias": "attn.in_proj_bias",
         "out_weight": "attn.out_proj.weight", "out_bias": "attn.out_proj.bias"}


def causal_mask(T, dtype=np.float32):
    """The additive causal mask (T, T): 0 where query t may look at key s (s ≤ t), -inf
    above the diagonal, so that softmax gives the future probability 0.

    Examples
    --------
    >>> causal_mask(3, np.float64).tolist()
    [[0.0, -inf, -inf], [0.0, 0.0, -inf], [0.0, 0.0, 0.0]]
    """
    return np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)


def causal_bias(num_queries, num_keys, dtype, key_valid=None):
    """:func:`causal_mask` in its general form, for cached and left-padded decoding.

    The queries are the last ``num_queries`` of ``num_keys`` key slots: query i sits at slot
    ``num_keys - num_queries + i`` and may attend to every slot at or before it. With
    ``key_valid`` (B, Tk) bool, invalid (padding) keys are masked too — except a query's own
    slot, so that a padding query never has an empty row (its output is unused but finite).

    Returns
    -------
    ndarray (1, 1, Tq, Tk) without ``key_valid``, (B, 1, Tq, Tk) with it.

    Examples
    --------
    >>> causal_bias(2, 3, np.float64)[0, 0].tolist()
    [[0.0, 0.0, -inf], [0.0, 0.0, 0.0]]
    >>> causal_bias(1, 3, np.float64, key_valid=np.array([[False, True, True]]))[0, 0].tolist()
    [[-inf, 0.0, 0.0]]
    """
    offset = num_keys - num_queries
    query_slot = np.arange(offset, num_keys)[:, None]                 # (Tq, 1)
    key_slot = np.arange(num_keys)[None, :]                           # (1, Tk)
    allowed = key_slot <= query_slot                                  # (Tq, Tk)
    if key_valid is not None:
        # (B, Tk) -> (B, 1, Tk); a query always keeps its own slot
        allowed = allowed & (key_valid[:, None, :] | (key_slot == query_slot))  # (B, Tq, Tk)
        allowed = allowed[:, None]                                    # (B, 1, Tq, Tk)
    else:
        allowed = allowed[None, None]                                 # (1, 1, Tq, Tk)
    bias = np.zeros(allowed.shape, dtype=dtype)
    bias[~allowed] = -np.inf
    return bias


def attention_forward(x, in_weight, in_bias, out_weight, out_bias, num_heads, mask,
                      kv=None, dropout=0.0, rng=None):
    """out = concat_h(softmax(q_h k_hᵀ / √D + mask) v_h) @ out_weightᵀ + out_bias,

    with [q, k, v] = x @ in_weightᵀ + in_bias split in three along the last axis.

    Parameters
    ----------
    x : ndarray (B, T, C)
    in_weight, in_bias, out_weight, out_bias : the projection parameters (see module doc).
    num_heads : int, H.
    mask : additive mask broadcastable to (B, H, T, Tk), 0 where a query may attend to a key
        and -inf where not: :func:`causal_mask` (T, T) for a whole sequence.
    kv : the KV cache of this layer, or None
        When decoding incrementally, ``kv.append(k, v)`` stores the new keys and values after
        the cached ones and returns all of them, (B, H, Tk, D) each (see ``npgpt.KVCache``).
    dropout : float, probability of zeroing an attention weight (training only; needs rng).
    rng : numpy.random.Generator or None.

    Returns
    -------
    out : ndarray (B, T, C)
    cache : dict for :func:`attention_backward` (also holds ``probs`` (B, H, T, Tk), the
        attention maps that :mod:`npgpt.viz` draws).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, w_in, w_out = rng.normal(size=(1, 3, 4)), rng.normal(size=(12, 4)), np.eye(4)
    >>> out, cache = attention_forward(x, w_in, np.zeros(12), w_out, np.zeros(4), 2, causal_mask(3))
    >>> out.shape, cache["probs"][0, 0].round(2).tolist()[0]      # the first token sees itself only
    ((1, 3, 4), [1.0, 0.0, 0.0])
    """
    B, T, C = x.shape
    H, D = num_heads, C // num_heads
    qkv, in_cache = linear_forward(x, in_weight, in_bias)             # (B, T, C) -> (B, T, 3C)
    q, k, v = qkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)     # (B, T, 3C) -> 3 x (B, H, T, D)
    if kv is not None:
        k, v = kv.append(k, v)                                        # (B, H, Tk, D): cached, then new
    scale = 1.0 / math.sqrt(D)
    scores = (q @ k.swapaxes(-1, -2)) * scale + mask                  # (B, H, T, D) @ (B, H, D, Tk) -> (B, H, T, Tk)
    probs = softmax_forward(scores)                                   # (B, H, T, Tk)
    keep = dropout_mask(probs.shape, dropout, rng, x.dtype)
    attended = probs if keep is None else probs * keep
    y = attended @ v                                                  # (B, H, T, Tk) @ (B, H, Tk, D) -> (B, H, T, D)
    y = y.transpose(0, 2, 1, 3).reshape(B, T, C)                      # (B, H, T, D) -> (B, T, C)
    out, out_cache = linear_forward(y, out_weight, out_bias)          # (B, T, C) -> (B, T, C)
    cache = {"q": q, "k": k, "v": v, "probs": probs, "keep": keep,
             "in": in_cache, "out": out_cache}
    return out, cache


def attention_backward(dout, cache):
    """Gradients of causal self-attention (no KV cache: training runs whole sequences).

    Restating the forward lines from the end:
    out = y @ Woᵀ + bo          ⇒ dy = dout @ Wo,  dWo = Σ doutᵀ y,  dbo = Σ dout  (linear_backward)
    y_h = A_h v_h (A = probs · keep)  ⇒ dA = dy_h v_hᵀ,  dv_h = A_hᵀ dy_h
    probs = softmax(s)          ⇒ ds = probs · (dprobs - Σ dprobs · probs)
    s = q kᵀ / √D + mask        ⇒ dq = ds k / √D,  dk = dsᵀ q / √D  (masked entries have
                                   probs = 0, so they pass no gradient)
    [q k v] = x @ Winᵀ + bin    ⇒ dx = dqkv @ Win,  dWin = Σ dqkvᵀ x,  dbin = Σ dqkv  (linear_backward)

    Parameters
    ----------
    dout : ndarray (B, T, C)
    cache : from :func:`attention_forward` (called with ``kv=None``).

    Returns
    -------
    dx : ndarray (B, T, C); d_in_weight (3C, C); d_in_bias (3C,); d_out_weight (C, C);
    d_out_bias (C,).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, w_in, w_out = rng.normal(size=(1, 3, 4)), rng.normal(size=(12, 4)), np.eye(4)
    >>> _, cache = attention_forward(x, w_in, np.zeros(12), w_out, np.zeros(4), 2, causal_mask(3))
    >>> [g.shape for g in attention_backward(np.ones((1, 3, 4)), cache)]
    [(1, 3, 4), (12, 4), (12,), (4, 4), (4,)]
    """
    q, k, v, probs, keep = cache["q"], cache["k"], cache["v"], cache["probs"], cache["keep"]
    B, H, T, D = q.shape
    C = H * D
    dy, d_out_weight, d_out_bias = linear_backward(dout, cache["out"])        # (B, T, C)
    dy = dy.reshape(B, T, H, D).transpose(0, 2, 1, 3)                 # (B, T, C) -> (B, H, T, D)
    attended = probs if keep is None else probs * keep
    dv = attended.swapaxes(-1, -2) @ dy                               # (B, H, Tk, T) @ (B, H, T, D) -> (B, H, Tk, D)
    dprobs = dy @ v.swapaxes(-1, -2)                                  # (B, H, T, D) @ (B, H, D, Tk) -> (B, H, T, Tk)
    if keep is not None:
        dprobs *= keep
    dscores = softmax_backward(dprobs, probs)                         # (B, H, T, Tk)
    dscores *= 1.0 / math.sqrt(D)
    dq = dscores @ k                                                  # (B, H, T, Tk) @ (B, H, Tk, D) -> (B, H, T, D)
    dk = dscores.swapaxes(-1, -2) @ q                                 # (B, H, Tk, T) @ (B, H, T, D) -> (B, H, Tk, D)
    dqkv = np.stack([dq, dk, dv], axis=2)                             # 3 x (B, H, T, D) -> (B, H, 3, T, D)
    dqkv = dqkv.transpose(0, 3, 2, 1, 4).reshape(B, T, 3 * C)         # -> (B, T, 3, H, D) -> (B, T, 3C)
    dx, d_in_weight, d_in_bias = linear_backward(dqkv, cache["in"])   # (B, T, 3C) -> (B, T, C)
    return dx, d_in_weight, d_in_bias, d_out_weight, d_out_bias


def attention_shapes(config):
    """Name -> shape of a block's attention parameters.

    Examples
    --------
    >>> from npgpt import GPTConfig
    >>> attention_shapes(GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1))
    {'attn.in_proj_weight': (24, 8), 'attn.in_proj_bias': (24,), 'attn.out_proj.weight': (8, 8), 'attn.out_proj.bias': (8,)}
    """
    C = config.d_model
    return dict(zip(NAMES.values(), ((3 * C, C), (3 * C,), (C, C), (C,))))


def attention_of(x, params, prefix, config, mask, kv=None, rng=None, rope=None):
    """:func:`attention_forward` of x with block ``prefix``'s parameters, ``config.num_heads``
    and ``config.dropout`` (dropout only with an rng; ``rope`` unused: positions were added).

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1))
    >>> y, cache = attention_of(np.ones((1, 3, 8), np.float32), model.params, "blocks.0.", model.config, causal_mask(3))
    >>> y.shape, cache["probs"].shape
    ((1, 3, 8), (1, 2, 3, 3))
    """
    in_weight, in_bias, out_weight, out_bias = (params[prefix + name] for name in NAMES.values())
    return attention_forward(x, in_weight, in_bias, out_weight, out_bias, config.num_heads, mask,
                             kv=kv, dropout=config.dropout, rng=rng)


def attention_grads(dy, cache):
    """:func:`attention_backward` as (dx, {name: gradient}).

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1))
    >>> _, cache = attention_of(np.ones((1, 3, 8)), model.params, "blocks.0.", model.config, causal_mask(3))
    >>> dx, grads = attention_grads(np.ones((1, 3, 8)), cache)
    >>> dx.shape, sorted(grads)[0]
    ((1, 3, 8), 'attn.in_proj_bias')
    """
    dx, *grads = attention_backward(dy, cache)
    return dx, dict(zip(NAMES.values(), grads))


ATTENTION = Part("learned", NAMES, attention_shapes, attention_of, attention_grads,
                 column_major=("in_weight", "out_weight"))
