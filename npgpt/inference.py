"""The forward pass once more, for generation: the math of ``npgpt.model.gpt_forward``,
written without what training needs.

``gpt_forward`` is the forward pass to read: each layer a function that returns its output and
the cache its backward pass needs, every step a fresh array. Generating text, those are waste:
a decode step of a small model spends most of its time in NumPy's per-call overhead, and a
1,000-token prompt keeps every layer's attention map alive until the logits are out. Here:

- each layer's weights are looked up once per ``generate()`` call (:func:`weights`), not once
  per token, and a step checks nothing (``generate`` checked the prompts once);
- activations stay 2-D, (B·T, C), and are updated in place where ``gpt_forward`` makes a new
  array (the residual sums, LayerNorm's steps, GELU) — the same operations in the same order,
  so :func:`forward`'s logits are bit-identical to ``GPT.forward``'s
  (``tests/properties/test_inference.py`` proves it over configurations, dtypes, padding and
  caches);
- nothing is kept for a backward pass: memory follows the layer being computed;
- on a long prompt the elementwise steps (LayerNorm, the softmax, GELU) run on both cores,
  each thread on its own rows (``npgpt._threads``), as BLAS does for the matrix products.

Past the context, every step reruns a whole window of ``context_length`` tokens for the
logits of its last position alone; :func:`last_logits` computes the last block for that one
position (its keys and values still for all), about a fifth less work for a 4-layer model.
A one-row matrix product may sum in another order than the same row of a larger one, so these
logits equal ``GPT.forward``'s up to rounding, not bit for bit
(``tests/test_context_overflow.py``).

Shapes: ids (B, T); x (N, C) with N = B·T; H heads of size D = C / H; V vocabulary.
"""

from __future__ import annotations

import math

import numpy as np

from ._threads import by_rows
from .nn.attention import causal_mask
from .nn.erf import erf
from .nn.layers import SQRT_2, SQRT_2_OVER_PI

_add_reduce = np.add.reduce


def weights(params, config):
    """The parameters in the order :func:`forward` uses them: per block (ln1 weight and bias,
    the q/k/v projection transposed and its bias, the output projection transposed and its
    bias, ln2, the two feed-forward layers transposed), then the tables, the final
    LayerNorm, the output projection transposed and its bias (or None).

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1))
    >>> w = weights(model.params, model.config)
    >>> len(w["blocks"]), w["blocks"][0][2].shape                 # W_qkvᵀ: (C, 3C)
    (1, (16, 48))
    """
    p = params
    blocks = []
    for i in range(config.num_layers):
        b = f"blocks.{i}."
        blocks.append((p[b + "ln1.weight"], p[b + "ln1.bias"],
                       p[b + "attn.in_proj_weight"].T, p[b + "attn.in_proj_bias"],
                       p[b + "attn.out_proj.weight"].T, p[b + "attn.out_proj.bias"],
                       p[b + "ln2.weight"], p[b + "ln2.bias"],
                       p[b + "ffn.0.weight"].T, p[b + "ffn.0.bias"],
                       p[b + "ffn.2.weight"].T, p[b + "ffn.2.bias"]))
    out = p["token_embedding.weight"] if config.tie_embeddings else p["output_layer.weight"]
    dtype = p["token_embedding.weight"].dtype
    return {"blocks": blocks, "tokens": p["token_embedding.weight"],
            "positions": p["position_encoding.weight"], "ln_final": (p["ln_final.weight"], p["ln_final.bias"]),
            "out": out.T, "out_bias": p.get("output_layer.bias"), "config": config,
            "eps": dtype.type(config.layer_norm_eps)}


def forward(w, ids, positions=None, mask=None, kv_cache=None, last_only=False):
    """logits = ln_final(blocks(token_embedding[ids] + position_encoding[positions])) @ W_outᵀ
    + b_out, as ``gpt_forward(params, ids, config, positions, mask, kv_cache, last_only)``.

    Parameters
    ----------
    w : from :func:`weights`.
    ids, positions, mask, kv_cache, last_only : as :func:`npgpt.model.gpt_forward` (ids
        already checked; ``mask`` may be the scalar 0.0 when nothing is hidden).

    Returns
    -------
    logits : ndarray (B, T, V), or (B, V) with ``last_only``.

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1))
    >>> ids = np.array([[1, 2, 3]])
    >>> np.array_equal(forward(weights(model.params, model.config), ids), model(ids))
    True
    """
    x, B, T, mask = _embed(w, ids, positions, mask)                   # x (N, C)
    for i, layer in enumerate(w["blocks"]):
        x = _block(x, layer, w, B, T, mask, None if kv_cache is None else kv_cache.layer(i))
    x = x.reshape(B, T, -1)
    return _logits(w, x[:, -1] if last_only else x)


def last_logits(w, ids, positions=None, mask=None):
    """The logits of each row's last position, (B, V), computing only what they depend on:
    :func:`forward` with ``last_only=True``, but the last block computes the keys and values
    of every position and the rest (its query, attention output and feed-forward) for the
    last position alone. Used past the context, where every step reruns the whole window.

    Parameters
    ----------
    w : from :func:`weights`.
    ids, positions, mask : as :func:`forward` (no cache).

    Returns
    -------
    logits : ndarray (B, V); equal to ``forward(w, ids, positions, mask, last_only=True)`` up
        to rounding (a one-row matrix product may sum in another order than a row of a
        larger one).

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=2))
    >>> w, ids = weights(model.params, model.config), np.array([[1, 2, 3], [4, 5, 6]])
    >>> np.allclose(last_logits(w, ids), forward(w, ids, last_only=True), rtol=0, atol=1e-5)
    True
    """
    last_row = 0.0 if mask is None else mask[..., -1:, :]             # causal: nothing hidden
    x, B, T, mask = _embed(w, ids, positions, mask)
    *blocks, last = w["blocks"]
    for layer in blocks:
        x = _block(x, layer, w, B, T, mask, None)
    ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b = last[:6]
    C, H = x.shape[-1], w["config"].num_heads
    h = _layernorm(x, ln1_w, ln1_b, w["eps"])
    kv = h @ qkv_w[:, C:]                                             # (N, 2C): every k and v
    kv += qkv_b[C:]
    k, v = kv.reshape(B, T, 2, H, C // H).transpose(2, 0, 3, 1, 4)    # 2 x (B, H, T, D)
    x, h = x.reshape(B, T, C)[:, -1], h.reshape(B, T, C)[:, -1]       # (B, C): the last rows
    q = h @ qkv_w[:, :C]                                              # (B, C): their queries
    q += qkv_b[:C]
    y = _attend(q.reshape(B, H, 1, C // H), k, v, last_row)           # (B, H, 1, D)
    a = y.reshape(B, C) @ out_w
    a += out_b
    return _logits(w, _feed_forward(x, h, a, last, w))


def _embed(w, ids, positions, mask):
    """token_embedding[ids] + position_encoding[positions] as (B·T, C), B, T, and the mask
    (the causal one by default)."""
    B, T = ids.shape
    if mask is None:
        mask = causal_mask(T, w["tokens"].dtype)
    pos = w["positions"][:T] if positions is None else w["positions"][positions]  # 0..T-1 by default
    x = w["tokens"][ids] + pos                                        # (B, T, C)
    return x.reshape(B * T, -1), B, T, mask


def _block(x, layer, w, B, T, mask, kv):
    """One block on x (N, C): attention (its keys and values added to ``kv``, a cache's
    layer, if given), then the feed-forward, each with its residual."""
    h = _layernorm(x, layer[0], layer[1], w["eps"])
    a = _attention(h, *layer[2:6], w["config"].num_heads, B, T, mask, kv)
    return _feed_forward(x, h, a, layer, w)


def _feed_forward(x, h, a, layer, w):
    """The rest of a block after attention a = attn(h), h = ln1(x), each (N, C), x updated in
    place: pre-norm x = x + a; x = x + mlp(ln2(x)), or the seed's x = h + a; x = ln2(x);
    x = x + mlp(x)."""
    ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b = layer[6:]
    pre_norm = w["config"].residual == "pre_norm"
    if not pre_norm:
        x = h
    x += a
    h = _layernorm(x, ln2_w, ln2_b, w["eps"])
    f = _mlp(h, fc_w, fc_b, proj_w, proj_b, w["config"].gelu)
    if not pre_norm:
        x = h
    x += f
    return x


def _logits(w, x):
    """ln_final(x) @ W_outᵀ + b_out for x (..., C) -> (..., V)."""
    C = x.shape[-1]
    x = _layernorm(x, *w["ln_final"], w["eps"])
    logits = x.reshape(-1, C) @ w["out"]                              # (N, V)
    if w["out_bias"] is not None:
        logits += w["out_bias"]
    return logits.reshape(*x.shape[:-1], logits.shape[-1])


def _layernorm(x, weight, bias, eps):
    """layernorm_forward's steps on one new array, in place: (x - mean) / sqrt(var + eps)
    · weight + bias, row by row."""
    C = x.shape[-1]
    out = np.empty(x.shape, dtype=x.dtype)

    def rows(lo, hi):
        xc = out[lo:hi]
        mean = _add_reduce(x[lo:hi], axis=-1, keepdims=True)
        mean /= C
        np.subtract(x[lo:hi], mean, out=xc)
        var = _add_reduce(xc * xc, axis=-1, keepdims=True)
        var /= C
        var += eps
        np.sqrt(var, out=var)
        np.divide(1.0, var, out=var)                                  # rstd
        xc *= var
        xc *= weight
        xc += bias
    by_rows(rows, len(x), x.size)
    return out


def _attention(x, qkv_w, qkv_b, out_w, out_b, H, B, T, mask, kv):
    """attention_forward's math on x (N, C) -> (N, C)."""
    C = x.shape[-1]
    qkv = x @ qkv_w                                                   # (N, C) @ (C, 3C)
    qkv += qkv_b
    q, k, v = qkv.reshape(B, T, 3, H, C // H).transpose(2, 0, 3, 1, 4)  # 3 x (B, H, T, D)
    if kv is not None:
        k, v = kv.append(k, v)                                        # (B, H, Tk, D)
    y = _attend(q, k, v, mask).transpose(0, 2, 1, 3).reshape(B * T, C)  # (B, H, T, D) -> (N, C)
    out = y @ out_w
    out += out_b
    return out


def _attend(q, k, v, mask):
    """softmax(q kᵀ / √D + mask) v per head, the softmax in place: q (B, H, T, D), k and v
    (B, H, Tk, D) -> (B, H, T, D); ``mask`` the scalar 0.0 when nothing is hidden."""
    H, D = q.shape[1], q.shape[-1]
    scores = q @ k.swapaxes(-1, -2)                                   # (B, H, T, Tk)
    masked = not (isinstance(mask, float) and mask == 0.0)

    def heads(lo, hi):                                                # softmax(s / √D + mask)
        s = scores[:, lo:hi]
        s *= 1.0 / math.sqrt(D)
        if masked:
            s += mask
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= _add_reduce(s, axis=-1, keepdims=True)
    by_rows(heads, H, scores.size)
    return scores @ v


def _mlp(x, fc_w, fc_b, proj_w, proj_b, gelu):
    """mlp_forward's math on x (N, C) -> (N, C), GELU in place."""
    f = x @ fc_w                                                      # (N, C) @ (C, 4C)
    f += fc_b
    by_rows(lambda lo, hi: _gelu(f[lo:hi], gelu), len(f), f.size)
    out = f @ proj_w
    out += proj_b
    return out


def _gelu(f, kind):
    """GELU of f, in place."""
    if kind == "tanh":                                                # ½ f (1 + tanh(√(2/π)(f + 0.044715 f³)))
        t = 0.044715 * f
        t *= f
        t *= f
        t += f
        t *= SQRT_2_OVER_PI
        np.tanh(t, out=t)
        t += 1.0
        f *= 0.5
        f *= t
    else:                                                             # f · ½ (1 + erf(f / √2))
        cdf = erf(f / SQRT_2)
        cdf += 1.0
        cdf *= 0.5
        f *= cdf
