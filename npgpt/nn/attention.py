"""Causal multi-head self-attention, as ``torch.nn.MultiheadAttention`` computes it.

Shapes: x (B, T, C) -> out (B, T, C); H heads of size D = C / H; Tk = keys attended
(T, or the cached prefix plus T when decoding incrementally).
Parameters in PyTorch's layout: in_weight (3C, C) stacks W_q, W_k, W_v; in_bias (3C,);
out_weight (C, C); out_bias (C,).
"""

from __future__ import annotations

import numpy as np

from .linear import linear_backward, linear_forward
from .softmax import softmax_backward, softmax_forward


def causal_bias(num_queries, num_keys, dtype, key_valid=None):
    """The additive attention mask: 0 where a query may look at a key, -inf where not.

    Query i (0-based among the last ``num_queries`` positions) sits at key slot
    ``num_keys - num_queries + i`` and may attend to every key slot at or before it. With
    ``key_valid`` (B, Tk) bool, invalid (padding) keys are masked too — except a query's own
    slot, so that a padding query never has an empty row (its output is unused but finite).

    Returns
    -------
    ndarray (1, 1, Tq, Tk) without ``key_valid``, (B, 1, Tq, Tk) with it.

    Examples
    --------
    >>> causal_bias(2, 3, np.float64)[0, 0].tolist()
    [[0.0, 0.0, -inf], [0.0, 0.0, 0.0]]
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


def attention_forward(x, in_weight, in_bias, out_weight, out_bias, num_heads,
                      bias=None, kv=None, dropout=0.0, rng=None):
    """out = concat_h(softmax(q_h k_hᵀ / √D + bias) v_h) @ out_weightᵀ + out_bias.

    with [q, k, v] = x @ in_weightᵀ + in_bias split in three along the last axis.

    Parameters
    ----------
    x : ndarray (B, T, C)
    in_weight, in_bias, out_weight, out_bias : the projection parameters (see module doc).
    num_heads : int, H.
    bias : ndarray broadcastable to (B, H, T, Tk) or None
        Additive mask from :func:`causal_bias`. ``None`` means no mask at all, which is
        correct only when every query may see every key (one new token, no padding).
    kv : (k_buffer, v_buffer, start) or None
        Incremental decoding: buffers (B, H, capacity, D) holding the keys and values of
        slots [0, start); this call writes slots [start, start + T) and attends over
        [0, start + T).
    dropout : float, probability of zeroing an attention weight (training only; needs rng).
    rng : numpy.random.Generator or None.

    Returns
    -------
    out : ndarray (B, T, C)
    cache : dict for :func:`attention_backward` (also holds ``probs`` (B, H, T, Tk), the
        attention maps that :mod:`npgpt.viz` draws).
    """
    B, T, C = x.shape
    H = num_heads
    D = C // H
    qkv, in_cache = linear_forward(x, in_weight, in_bias)             # (B, T, C) -> (B, T, 3C)
    q, k, v = qkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)     # (B, T, 3C) -> 3 x (B, H, T, D)
    if kv is not None:
        k_buffer, v_buffer, start = kv
        k_buffer[:, :, start:start + T] = k
        v_buffer[:, :, start:start + T] = v
        k = k_buffer[:, :, :start + T]                                # (B, H, Tk, D)
        v = v_buffer[:, :, :start + T]
    scores = q @ k.swapaxes(-1, -2)                                   # (B, H, T, D) @ (B, H, D, Tk) -> (B, H, T, Tk)
    scores *= x.dtype.type(1.0 / np.sqrt(D))
    if bias is not None:
        scores += bias
    probs = softmax_forward(scores)                                   # (B, H, T, Tk)
    keep = None
    attended = probs
    if dropout > 0.0 and rng is not None:
        keep = (rng.random(probs.shape) >= dropout).astype(x.dtype) / x.dtype.type(1.0 - dropout)
        attended = probs * keep
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
    dscores *= dscores.dtype.type(1.0 / np.sqrt(D))
    dq = dscores @ k                                                  # (B, H, T, Tk) @ (B, H, Tk, D) -> (B, H, T, D)
    dk = dscores.swapaxes(-1, -2) @ q                                 # (B, H, Tk, T) @ (B, H, T, D) -> (B, H, Tk, D)
    dqkv = np.stack([dq, dk, dv], axis=2)                             # 3 x (B, H, T, D) -> (B, H, 3, T, D)
    dqkv = dqkv.transpose(0, 3, 2, 1, 4).reshape(B, T, 3 * C)         # -> (B, T, 3, H, D) -> (B, T, 3C)
    dx, d_in_weight, d_in_bias = linear_backward(dqkv, cache["in"])   # (B, T, 3C) -> (B, T, C)
    return dx, d_in_weight, d_in_bias, d_out_weight, d_out_bias
