"""The forward pass once more, for generation: the math of ``npgpt.model.gpt_forward``,
written without what training needs.

``gpt_forward`` is the forward pass to read: each layer a function that returns its output and
the cache its backward pass needs, every step a fresh array. Generating text, those are waste:
a decode step of a small model spends most of its time in NumPy's per-call overhead, and a
1,000-token prompt keeps every layer's attention map alive until the logits are out. Here:

- each layer's weights are looked up, transposed for ``x @ W``, once per ``generate()``
  call (:func:`weights`), not once per token, and a step checks nothing (``generate``
  checked the prompts once);
- activations stay 2-D, (B·T, C), and are updated in place where ``gpt_forward`` makes a new
  array (the residual sums, the norms' steps, GELU, SiLU, the rotary turn of q and k) — the
  same operations in the same order, so :func:`forward`'s logits are bit-identical to
  ``GPT.forward``'s for GPT's block (``tests/properties/test_inference.py`` proves it over
  configurations, dtypes, padding and caches; ``tests/test_llama_inference.py`` checks the
  Llama family's mixes);
- the Llama family's q, k, v are one product, and gate, up another, when the model keeps each
  group side by side in one matrix (as it does: ``npgpt.params.stack_groups``): a product of
  another width may sum in another order, so those logits equal ``GPT.forward``'s within a few
  ulps of each row's largest, not bit for bit;
- rotary positions: the cos/sin tables of the tokens' positions are made once per call, for
  every block;
- grouped-query attention never copies a key/value head: the G = H / Hkv query heads of a
  group are stacked along the token axis, (B, H, T, D) -> (B, Hkv, G·T, D), and multiplied
  with their one kv head; the KV cache holds the Hkv heads only;
- nothing is kept for a backward pass: memory follows the layer being computed;
- on a long prompt the elementwise steps (the norms, the softmax, the activations) run on
  both cores, each thread on its own rows (``npgpt._threads``), as BLAS does for the matrix
  products.

Past the context, every step reruns a whole window of ``context_length`` tokens for the
logits of its last position alone; :func:`last_logits` computes the last block for that one
position (its keys and values still for all), about a fifth less work for a 4-layer model.
A one-row matrix product may sum in another order than the same row of a larger one, so these
logits equal ``GPT.forward``'s up to rounding, not bit for bit
(``tests/test_context_overflow.py``).

Shapes: ids (B, T); x (N, C) with N = B·T; H query heads and Hkv key/value heads of size D
(GPT: Hkv = H, D = C / H), G = H / Hkv; F the feed-forward width; V vocabulary.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import threads
from ._prefill import BlockedMask, attend_blocks, bias_gelu_rows, blocked_mask
from ._threads import by_rows
from .nn.attention import causal_mask
from .nn.block import block_parts
from .nn.erf import erf
from .nn.layers import POSITION_TABLE, SQRT_2, SQRT_2_OVER_PI, TOKEN_TABLE
from .nn.rope import rope_inv_freq, rope_tables
from .params import output_layer, stacked

_add_reduce = np.add.reduce


class Norm(NamedTuple):
    """A norm's weights: ``kind`` "layernorm" (weight and bias (C,)) or "rmsnorm" (bias None).

    Examples
    --------
    >>> Norm("rmsnorm", np.ones(2, dtype=np.float32), None).kind
    'rmsnorm'
    """
    kind: str
    weight: np.ndarray
    bias: np.ndarray | None


class Attention(NamedTuple):
    """An attention layer's weights, each matrix (in, out) for ``x @ W``: ``kind`` "stacked"
    (``qkv`` = [(W_qkv (C, H·D + 2·Hkv·D), b_qkv)]: GPT's, and the Llama family's q, k, v side
    by side) or "separate" (``qkv`` = [(W_q (C, H·D), b_q), (W_k (C, Hkv·D), b_k), (W_v, b_v)]);
    biases None without ``attention_bias``; ``out`` = (W_out, b_out or None).

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1))
    >>> attn = weights(model.params, model.config)["blocks"][0].attn
    >>> attn.kind, attn.qkv[0][0].shape, attn.out[0].shape
    ('stacked', (8, 24), (8, 8))
    """
    kind: str
    qkv: list
    out: tuple


class MLP(NamedTuple):
    """A feed-forward layer's weights: ``kind`` "gelu" (W_fc (C, F), b_fc, W_proj (F, C),
    b_proj) or "swiglu" (W_gate (C, F), W_up (C, F), W_down (F, C), and [W_gate | W_up]
    (C, 2F) when the two are side by side in one matrix, else None).

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=8, num_heads=2, num_layers=1))
    >>> mlp = weights(model.params, model.config)["blocks"][0].mlp
    >>> mlp.kind, [a.shape for a in mlp.weights]
    ('gelu', [(8, 32), (32,), (32, 8), (8,)])
    """
    kind: str
    weights: tuple


class Block(NamedTuple):
    """One block's weights, in the order :func:`forward` uses them.

    Examples
    --------
    >>> Block._fields
    ('norm1', 'attn', 'norm2', 'mlp')
    """
    norm1: Norm
    attn: Attention
    norm2: Norm
    mlp: MLP


def weights(params, config):
    """The parameters in the order :func:`forward` uses them, each matrix transposed to
    (in, out) for ``x @ W`` — views of ``params``, nothing copied.

    ``blocks``: a :class:`Block` per layer (its norms, attention and MLP, each a small named
    tuple whose ``kind`` says which architecture it is). Then the token table, the position
    table (None with rotary positions) and the rotary frequencies (else None), the final norm,
    the output projection and its bias. The names come from the layers (:mod:`npgpt.nn`'s
    parts), as in ``gpt_forward``.

    The Llama family's q, k, v (and gate, up) are one product each when the model keeps them
    side by side in one matrix (``npgpt.params.stack_groups``, as every GPT does once made or
    loaded; found here with ``npgpt.params.stacked``, nothing copied): fewer and larger
    matrix-vector products, about 13% less time in them for SmolLM2-135M's decoding on one
    thread. Parameters replaced one by one (no longer side by side) take three (two) products.

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16,
    ...                                   num_heads=2, num_layers=1))
    >>> w = weights(model.params, model.config)
    >>> len(w["blocks"]), w["blocks"][0].attn.kind, w["blocks"][0].attn.qkv[0][0].shape   # W_qkvᵀ: (C, 3C)
    (1, 'stacked', (16, 48))

    Llama's block, 4 query heads sharing 2 key/value heads of size 4, SwiGLU of width 40:

    >>> llama = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=8, d_model=16, num_heads=4,
    ...                                   num_layers=1, norm="rmsnorm", positions="rope", mlp="swiglu",
    ...                                   num_kv_heads=2, ffn_dim=40))
    >>> block = weights(llama.params, llama.config)["blocks"][0]
    >>> block.attn.kind, [W.shape for W, _ in block.attn.qkv], block.norm1.kind   # [W_q | W_k | W_v]
    ('stacked', [(16, 32)], 'rmsnorm')
    >>> [W.shape for W in block.mlp.weights]                           # gate, up, down, [gate | up]
    [(16, 40), (16, 40), (40, 16), (16, 80)]
    """
    p = params
    norm, attention, mlp = block_parts(config)
    n1, n2, nf = norm.names

    def norm_weights(name):
        return Norm(norm.kind, p[name + ".weight"], p.get(name + ".bias"))

    def matrices(prefix, part):                       # role -> its array (W transposed), or None
        arrays = {role: p.get(prefix + name) for role, name in part.names.items()}
        return {role: a.T if a is not None and a.ndim == 2 else a for role, a in arrays.items()}

    blocks = []
    for i in range(config.num_layers):
        b = f"blocks.{i}."
        a = matrices(b, attention)
        if attention.kind == "learned":
            attn = Attention("stacked", [(a["in_weight"], a["in_bias"])], (a["out_weight"], a["out_bias"]))
        elif (qkv := stacked([a[n + "_weight"].T for n in "qkv"])) is not None:   # side by side: one product
            biases = [a[n + "_bias"] for n in "qkv"]
            attn = Attention("stacked", [(qkv, None if biases[0] is None else np.concatenate(biases))],
                             (a["out_weight"], None))
        else:
            attn = Attention("separate", [(a[n + "_weight"], a[n + "_bias"]) for n in "qkv"],
                             (a["out_weight"], None))
        f = tuple(matrices(b, mlp).values())
        if mlp.kind == "swiglu":                                      # gate and up as one, if stacked
            f += (stacked([f[0].T, f[1].T]),)
        blocks.append(Block(norm_weights(b + n1), attn, norm_weights(b + n2), MLP(mlp.kind, f)))
    out, out_bias = output_layer(p, config)
    dtype = p[TOKEN_TABLE].dtype
    rope = config.positions == "rope"
    return {"blocks": blocks, "tokens": p[TOKEN_TABLE], "positions": None if rope else p[POSITION_TABLE],
            "inv_freq": rope_inv_freq(config) if rope else None,
            "final_norm": norm_weights(nf), "out": out.T, "out_bias": out_bias,
            "config": config, "heads": (config.num_heads, config.kv_heads, config.head_size),
            "eps": dtype.type(config.layer_norm_eps),
            "flops_per_token": sum(a.size for a in p.values())}          # ~ one multiply-add per weight


def forward(w, ids, positions=None, mask=None, kv_cache=None, last_only=False):
    """logits = norm_final(blocks(embed(ids, positions))) @ W_outᵀ + b_out, as
    ``gpt_forward(params, ids, config, positions, mask, kv_cache, last_only)``.

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

    The Llama family's block, two query heads sharing one key/value head:

    >>> llama = npgpt.GPT(model.config.replace(norm="rmsnorm", positions="rope", mlp="swiglu",
    ...                                        num_kv_heads=1), init="torch")
    >>> np.array_equal(forward(weights(llama.params, llama.config), ids), llama(ids))
    True
    """
    threads.for_work(ids.size * w["flops_per_token"])                 # BLAS threads for this call
    x, B, T, mask, rope = _embed(w, ids, positions, mask)             # x (N, C)
    for i, layer in enumerate(w["blocks"]):
        x = _block(x, layer, w, B, T, mask, None if kv_cache is None else kv_cache.layer(i), rope)
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
    threads.for_work(ids.size * w["flops_per_token"])
    x, B, T, mask, rope = _embed(w, ids, positions, mask)
    *blocks, last = w["blocks"]
    for layer in blocks:
        x = _block(x, layer, w, B, T, mask, None, rope)
    C, (H, Hkv, D), cfg = x.shape[-1], w["heads"], w["config"]
    h = _norm(x, last.norm1, w["eps"])
    q, k, v = _project_qkv(h, last.attn, w["heads"], last=(B, T))    # (B, H·D), 2 x (N, Hkv·D)
    x, h = x.reshape(B, T, C)[:, -1], h.reshape(B, T, C)[:, -1]       # (B, C): the last rows
    if rope is not None:
        cos, sin = rope
        _rotate(k.reshape(B * T, Hkv, D), cos, sin, cfg.rope_layout)
        rows = np.arange(T - 1, B * T, T)                             # the last positions' rows
        _rotate(q.reshape(B, H, D), cos[rows], sin[rows], cfg.rope_layout)
    k = k.reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)                 # (N, Hkv·D) -> (B, Hkv, T, D)
    v = v.reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)
    y = _attend(q.reshape(B, H, 1, D), k, v, last_row)                # (B, H, 1, D)
    a = _linear(y.reshape(B, H * D), *last.attn.out)
    return _logits(w, _feed_forward(x, h, a, last, w))


def _project_qkv(x, attn, heads, last=None):
    """q, k, v = x @ W_q + b_q, x @ W_k + b_k, x @ W_v + b_v of x (N, C): (N, H·D), (N, Hkv·D),
    (N, Hkv·D), from GPT's stacked matrix or the Llama family's three. With ``last`` = (B, T),
    the queries of each row's last position only, (B, H·D) (all :func:`last_logits` needs)."""
    H, Hkv, D = heads
    if attn.kind == "stacked":                                        # GPT's (C, 3C) projection
        (W, bias), = attn.qkv
        if last is None:
            qkv = _linear(x, W, bias)                                 # (N, C) @ (C, 3C)
            return qkv[:, :H * D], qkv[:, H * D:(H + Hkv) * D], qkv[:, (H + Hkv) * D:]
        kv = _linear(x, W[:, H * D:], None if bias is None else bias[H * D:])  # (N, 2·Hkv·D)
        k, v = kv[:, :Hkv * D], kv[:, Hkv * D:]
        q_proj = W[:, :H * D], None if bias is None else bias[:H * D]
    else:
        if last is None:
            return tuple(_linear(x, *proj) for proj in attn.qkv)      # (N, H·D), 2 x (N, Hkv·D)
        q_proj, k_proj, v_proj = attn.qkv
        k, v = _linear(x, *k_proj), _linear(x, *v_proj)               # (N, Hkv·D) each
    B, T = last
    return _linear(x.reshape(B, T, -1)[:, -1], *q_proj), k, v         # (B, C) -> (B, H·D)


def _embed(w, ids, positions, mask):
    """The block input x (B·T, C) (token_embedding[ids], plus position_encoding[positions]
    with learned positions), B, T, the mask (the causal one by default; a
    :class:`npgpt._prefill.BlockedMask` for more than ``LONG_PROMPT`` tokens) and, with rotary
    positions, their cos and sin tables (B·T, 1, D/2), else None."""
    B, T = ids.shape
    if mask is None:
        mask = causal_mask(T, w["tokens"].dtype)
    if T > LONG_PROMPT and not isinstance(mask, float):
        mask = blocked_mask(mask, QUERY_BLOCK)                        # a long prompt: npgpt._prefill
    if w["positions"] is not None:
        pos = w["positions"][:T] if positions is None else w["positions"][positions]  # 0..T-1 by default
        x = w["tokens"][ids] + pos                                    # (B, T, C)
        return x.reshape(B * T, -1), B, T, mask, None
    x = w["tokens"][ids]                                              # (B, T, C)
    if positions is None:
        positions = np.arange(T)
    cos, sin = rope_tables(positions, w["inv_freq"], x.dtype)         # (T or (B, T), D/2)
    half = cos.shape[-1]
    if cos.ndim == 2 and B > 1:                                       # the same for every row
        cos, sin = np.broadcast_to(cos, (B, T, half)), np.broadcast_to(sin, (B, T, half))
    rope = cos.reshape(B * T, 1, half), sin.reshape(B * T, 1, half)   # (N, 1, D/2): one per row
    return x.reshape(B * T, -1), B, T, mask, rope


def _block(x, layer, w, B, T, mask, kv, rope):
    """One block on x (N, C): attention (its keys and values added to ``kv``, a cache's
    layer, if given), then the feed-forward, each with its residual."""
    h = _norm(x, layer.norm1, w["eps"])
    a = _attention(h, layer.attn, w, B, T, mask, kv, rope)
    return _feed_forward(x, h, a, layer, w)


def _feed_forward(x, h, a, layer, w):
    """The rest of a block after attention a = attn(h), h = norm1(x), each (N, C), x updated
    in place: pre-norm x = x + a; x = x + mlp(norm2(x)), or the seed's x = h + a;
    x = norm2(x); x = x + mlp(x)."""
    cfg = w["config"]
    pre_norm = cfg.residual == "pre_norm"
    if not pre_norm:
        x = h
    x += a
    h = _norm(x, layer.norm2, w["eps"])
    if layer.mlp.kind == "gelu":
        f = _mlp(h, *layer.mlp.weights, cfg.gelu)
    else:
        f = _swiglu(h, *layer.mlp.weights)
    if not pre_norm:
        x = h
    x += f
    return x


def _linear(x, W, bias):
    """x @ W + bias (bias None: none), x (n, in), W (in, out) -> (n, out)."""
    y = x @ W
    if bias is not None:
        y += bias
    return y


def _logits(w, x):
    """norm_final(x) @ W_outᵀ + b_out for x (..., C) -> (..., V)."""
    C = x.shape[-1]
    x = _norm(x, w["final_norm"], w["eps"])
    logits = x.reshape(-1, C) @ w["out"]                              # (N, V)
    if w["out_bias"] is not None:
        logits += w["out_bias"]
    return logits.reshape(*x.shape[:-1], logits.shape[-1])


def _norm(x, norm, eps):
    """LayerNorm or RMSNorm of x (N, C), as ``norm.kind`` says."""
    if norm.kind == "rmsnorm":
        return _rmsnorm(x, norm.weight, eps)
    return _layernorm(x, norm.weight, norm.bias, eps)


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


def _rmsnorm(x, weight, eps):
    """rmsnorm_forward's steps on one new array, in place: x / sqrt(mean(x²) + eps) · weight,
    row by row."""
    C = x.shape[-1]
    out = np.empty(x.shape, dtype=x.dtype)

    def rows(lo, hi):
        y = out[lo:hi]
        np.multiply(x[lo:hi], x[lo:hi], out=y)                        # x²
        rstd = _add_reduce(y, axis=-1, keepdims=True)                 # (n, 1)
        rstd /= C
        rstd += eps
        np.sqrt(rstd, out=rstd)
        np.divide(1.0, rstd, out=rstd)
        np.multiply(x[lo:hi], rstd, out=y)
        y *= weight
    by_rows(rows, len(x), x.size)
    return out


def _attention(x, attn, w, B, T, mask, kv, rope):
    """attention_forward's (gqa_forward's) math on x (N, C) -> (N, C): the projections, the
    rotation of q and k in place, the new keys and values into the cache."""
    (H, Hkv, D), cfg = w["heads"], w["config"]
    N = B * T
    q, k, v = _project_qkv(x, attn, w["heads"])                       # (N, H·D), 2 x (N, Hkv·D)
    if rope is not None:
        _rotate(q.reshape(N, H, D), *rope, cfg.rope_layout)           # turn q and k by position
        _rotate(k.reshape(N, Hkv, D), *rope, cfg.rope_layout)
    q = q.reshape(B, T, H, D).transpose(0, 2, 1, 3)                   # (N, H·D) -> (B, H, T, D)
    k = k.reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)                 # (N, Hkv·D) -> (B, Hkv, T, D)
    v = v.reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)
    if kv is not None:
        k, v = kv.append(k, v)                                        # (B, Hkv, Tk, D)
    if isinstance(mask, BlockedMask):                                 # a long prompt, (B, T, H, D)
        return _linear(attend_blocks(q, k, v, mask).reshape(N, H * D), *attn.out)
    y = _attend(q, k, v, mask).transpose(0, 2, 1, 3).reshape(N, H * D)  # (B, H, T, D) -> (N, H·D)
    return _linear(y, *attn.out)


def _rotate(x, cos, sin, layout):
    """rope_forward's rotation of x (n, heads, D) in place: each pair (a, b) becomes
    (a cos - b sin, b cos + a sin); cos and sin (n, 1, D/2), one row per row of x."""
    if layout == "half":
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]                           # pairs (i, i + D/2)
    else:
        a, b = x[..., 0::2], x[..., 1::2]                             # pairs (2i, 2i + 1)
    b_sin = b * sin
    a_sin = a * sin
    a *= cos
    a -= b_sin
    b *= cos
    b += a_sin


#: queries per block of a long prompt's attention (see :func:`_attend`)
QUERY_BLOCK = 256
#: prompts (and MLP inputs) of more tokens than this take :mod:`npgpt._prefill`'s kernels:
#: the same math in another order, equal to the plain steps here up to rounding
LONG_PROMPT = 64


def _attend(q, k, v, mask):
    """softmax(q kᵀ / √D + mask) v per head: q (B, H, T, D), k and v (B, Hkv, Tk, D) ->
    (B, H, T, D), ``mask`` causal (the scalar 0.0 when nothing is hidden).

    A long prompt's queries go in blocks of ``QUERY_BLOCK``: a block of queries ending at
    query i1 meets only the keys up to i1 (the causal mask hides the rest), so the masked half
    of q kᵀ is never computed, and a head's scores never hold more than QUERY_BLOCK x Tk
    numbers (not T x T). Each score is the same dot product; only the softmax's sums run over
    fewer (exactly zero) terms, so the result differs from one dense pass by rounding."""
    T, Tk = q.shape[2], k.shape[2]
    if T <= QUERY_BLOCK or (isinstance(mask, float) and mask == 0.0):
        return _attend_dense(q, k, v, mask)
    out = np.empty(q.shape, dtype=q.dtype)
    for i0 in range(0, T, QUERY_BLOCK):
        i1 = min(T, i0 + QUERY_BLOCK)
        seen = Tk - T + i1                                            # keys the block may see
        out[:, :, i0:i1] = _attend_dense(q[:, :, i0:i1], k[:, :, :seen], v[:, :, :seen],
                                         mask[..., i0:i1, :seen])
    return out


def _attend_dense(q, k, v, mask):
    """softmax(q kᵀ / √D + mask) v per head, the softmax in place: q (B, H, T, D), k and v
    (B, Hkv, Tk, D) -> (B, H, T, D); query head h reads kv head h // G, the G query heads
    of a group stacked along the token axis; ``mask`` the scalar 0.0 when nothing is hidden."""
    B, H, T, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    G = H // Hkv
    masked = not (isinstance(mask, float) and mask == 0.0)
    if G > 1:
        q = q.reshape(B, Hkv, G * T, D)                               # (B, H, T, D) -> (B, Hkv, G·T, D)
        if masked and mask.ndim == 4:
            mask = mask[:, :, None]                                   # (B, 1, T, Tk) -> (B, 1, 1, T, Tk)
    scores = q @ k.swapaxes(-1, -2)                                   # (B, Hkv, G·T, Tk)
    grouped = scores.reshape(B, Hkv, G, T, Tk) if G > 1 else scores   # the mask per query head

    def heads(lo, hi):                                                # softmax(s / √D + mask)
        s = grouped[:, lo:hi]
        s *= 1.0 / math.sqrt(D)
        if masked:
            s += mask
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= _add_reduce(s, axis=-1, keepdims=True)
    by_rows(heads, Hkv, scores.size)
    return (scores @ v).reshape(B, H, T, D)                           # (B, Hkv, G·T, D) -> (B, H, T, D)


def _mlp(x, fc_w, fc_b, proj_w, proj_b, gelu):
    """mlp_forward's math on x (N, C) -> (N, C), GELU in place (more than ``LONG_PROMPT``
    rows of the tanh GELU: :func:`npgpt._prefill.bias_gelu_rows`, equal up to rounding)."""
    f = x @ fc_w                                                      # (N, C) @ (C, 4C)
    if gelu == "tanh" and len(f) > LONG_PROMPT:
        bias_gelu_rows(f, fc_b)
    else:
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


def _swiglu(x, gate_w, up_w, down_w, gate_up=None):
    """swiglu_forward's math on x (N, C) -> (N, C), in place: g = x @ W_gate, u = x @ W_up
    (one product [g | u] = x @ [W_gate | W_up] when ``gate_up`` is that (C, 2F) matrix),
    silu(g) · u = g · σ(g) · u with σ(g) = 1 / (1 + e) for g ≥ 0 and e / (1 + e) below,
    e = exp(-|g|) ≤ 1 (no overflow, however large |g|); then @ W_down. The numerator, 1 or
    e, is max(e, [g ≥ 0]) (e ≤ 1), the same numbers as a select and much faster; the rows go
    64 at a time, so that the temporaries stay in the cache."""
    if gate_up is not None:
        F = gate_w.shape[1]
        gu = x @ gate_up                                              # (N, C) @ (C, 2F)
        g, u = gu[:, :F], gu[:, F:]
    else:
        g = x @ gate_w                                                # (N, C) @ (C, F)
        u = x @ up_w                                                  # (N, C) @ (C, F)

    def rows(lo, hi):
        for start in range(lo, hi, 64):
            gr = g[start:min(hi, start + 64)]
            e = np.abs(gr)
            np.negative(e, out=e)
            np.exp(e, out=e)                                          # e = exp(-|g|)
            d = e + 1.0                                               # 1 + e
            np.maximum(e, gr >= 0, out=e)                             # the numerator: 1 or e
            e /= d                                                    # σ(g)
            gr *= e                                                   # silu(g)
            gr *= u[start:min(hi, start + 64)]
    by_rows(rows, len(g), g.size)
    return g @ down_w                                                 # (N, F) @ (F, C)
