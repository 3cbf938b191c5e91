"""Long-prompt kernels: the same math as :mod:`npgpt.inference`'s plain steps, arranged so that
a prompt of hundreds or thousands of tokens makes fewer passes over memory.

A 2,048-token prompt's attention scores are 12 heads x 2,048 x 2,048 float32 numbers per
layer (200 MB at once, 100 MB once the masked half is skipped), its GELU input 2,048 x 3,072
(25 MB): every elementwise step over them is a trip to main memory, and the plain softmax and
GELU make seven to nine such trips. Here:

- attention (:func:`attend_blocks`): the queries go in blocks (as ``inference._attend``), the
  scale 1/√D is folded into the block's queries (n x D numbers, not n x Tk scores), the mask
  is added only where it hides something (:func:`blocked_mask` checks once per forward pass
  which blocks' keys before the diagonal are all visible), the softmax runs on slices of rows
  that fit in a core's cache (:data:`CHUNK` numbers), and its division waits for the product
  with v: softmax(s) v = (exp(s - max) v) / Σ exp(s - max), a division of n x D numbers
  instead of n x Tk; the heads' outputs are written straight into the (B, T, H, D) layout
  that the output projection reads as (N, H·D), no transpose copied;
- matrix products (:func:`matmul_rows`): the rows of x split between npgpt's threads, each
  product on one core, instead of the BLAS's own threads, which spin while they wait for each
  other and, on a machine whose other processes hold a core, burn the time the work needed;
- GELU (:func:`bias_gelu_rows`): the bias added and the tanh approximation computed on slices
  of rows that fit in a core's cache, so that its nine passes read the cache, not memory.

Each differs from the plain step by rounding only (other operation orders, the same
formulas); ``tests/test_prefill_kernels.py`` states the bounds in float32 ulps, and
``inference.forward`` uses these kernels only for prompts longer than ``QUERY_BLOCK`` tokens,
so short inputs stay bit-identical to ``gpt_forward``.

Shapes: q (B, H, T, D), k and v (B, Hkv, Tk, D); G = H / Hkv query heads per key/value head;
the mask (B or 1, 1, T, Tk), additive (0 or -inf); n queries in a block.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import threads
from ._threads import by_rows

#: float32 numbers per slice of rows that the softmax and GELU work on (512 KB: a core's L2)
CHUNK = 1 << 17

_add_reduce = np.add.reduce


class BlockedMask(NamedTuple):
    """An additive mask (…, T, Tk) cut for query blocks of ``block`` queries: ``clear[i]`` is
    True when no key before block i's diagonal (keys ``< Tk - T + i·block``) is hidden from any
    of its queries, so that only the block's diagonal part needs adding.

    Examples
    --------
    >>> from npgpt.nn.attention import causal_mask
    >>> blocked_mask(causal_mask(4), 2).clear
    (True, True)
    """
    mask: np.ndarray
    block: int
    clear: tuple


def blocked_mask(mask, block):
    """The :class:`BlockedMask` of ``mask`` (…, T, Tk) for blocks of ``block`` queries (one pass
    over the mask's part left of the diagonal, once per forward pass rather than per layer).

    Examples
    --------
    >>> m = np.zeros((1, 1, 4, 6), dtype=np.float32)
    >>> m[0, 0, 2:, 0] = -np.inf                                    # queries 2, 3 never see key 0
    >>> blocked_mask(m, 2).clear
    (True, False)
    """
    mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)          # (…, T, Tk) -> 4-D
    T, Tk = mask.shape[-2], mask.shape[-1]
    clear = tuple(not mask[..., i0:i0 + block, :Tk - T + i0].any() for i0 in range(0, T, block))
    return BlockedMask(mask, block, clear)


def attend_blocks(q, k, v, mask):
    """softmax(q kᵀ / √D + mask) v per head for a long prompt: q (B, H, T, D), k and v
    (B, Hkv, Tk, D), ``mask`` a :class:`BlockedMask` -> (B, T, H, D) (the layout the output
    projection reads as (B·T, H·D)).

    The key/value heads are shared between the threads, each thread's matrix products on one
    core (a head's products are too small to split well). Per head and block of queries
    i0..i1 (which meets keys 0..Tk - T + i1 only): the scale folded into the block's
    queries; s = q kᵀ for the G query heads of the kv head at once; in slices of rows of about
    :data:`CHUNK` numbers, the mask (its diagonal part alone where
    :attr:`BlockedMask.clear`), the row's max subtracted, exp, the row sums; then
    (exp(s) v) / sums.

    Examples
    --------
    >>> from npgpt.nn.attention import causal_mask
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = (rng.standard_normal((1, 2, 5, 4)).astype(np.float32) for _ in range(3))
    >>> y = attend_blocks(q, k, v, blocked_mask(causal_mask(5), 2))   # (B, T, H, D)
    >>> s = q @ k.swapaxes(-1, -2) / 2 + causal_mask(5)
    >>> p = np.exp(s - s.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
    >>> np.allclose(y, (p @ v).transpose(0, 2, 1, 3), rtol=1e-5, atol=1e-6)
    True
    """
    B, H, T, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    G = H // Hkv
    scale = q.dtype.type(1.0 / math.sqrt(D))
    out = np.empty((B, T, H, D), dtype=q.dtype)
    m = mask.mask

    def kv_heads(lo, hi):
        for j in range(lo, hi):
            b, g = divmod(j, Hkv)
            heads = slice(g * G, (g + 1) * G)                         # its query heads
            masks = m[b if m.shape[0] > 1 else 0]                     # (1 or H, T, Tk)
            if len(masks) > 1:
                masks = masks[heads]                                  # (G, T, Tk)
            else:
                masks = np.broadcast_to(masks, (G,) + masks.shape[1:])  # (G, T, Tk), a view
            for index, i0 in enumerate(range(0, T, mask.block)):
                i1 = min(T, i0 + mask.block)
                n, seen = i1 - i0, Tk - T + i1
                first = Tk - T + i0 if mask.clear[index] else 0       # the mask from this key on
                qb = np.multiply(q[b, heads, i0:i1], scale)           # (G, n, D), a copy
                s = qb.reshape(G * n, D) @ k[b, g, :seen].T           # (G·n, seen)
                sums = _softmax_numerators(s.reshape(G, n, seen), masks[:, i0:i1, :seen], first)
                y = s @ v[b, g, :seen]                                # (G·n, D)
                y /= sums
                out[b, i0:i1, heads] = y.reshape(G, n, D).transpose(1, 0, 2)  # -> (n, G, D)

    split = min(threads.get_num_threads(), B * Hkv) > 1                # heads shared between threads
    with threads.blas_threads(1 if split else threads.get_num_threads()):
        by_rows(kv_heads, B * Hkv, q.size * Tk // D)
    return out


def _softmax_numerators(s, mask, first):
    """s (G, n, seen) <- exp(s + mask - rowmax) in place, ``mask`` (G, n, seen) added from
    column ``first`` on, in slices of rows of about :data:`CHUNK` numbers (the passes stay in
    cache); returns the row sums (G·n, 1)."""
    G, n, seen = s.shape
    sums = np.empty((G, n, 1), dtype=s.dtype)
    step = max(1, CHUNK // seen)
    for h in range(G):
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            c = s[h, r0:r1]
            c[:, first:] += mask[h, r0:r1, first:]
            c -= c.max(axis=1, keepdims=True)
            np.exp(c, out=c)
            _add_reduce(c, axis=1, keepdims=True, out=sums[h, r0:r1])
    return sums.reshape(G * n, 1)


def matmul_rows(x, W):
    """x @ W, x (N, in), W (in, out) -> (N, out): with two threads or more, each thread
    multiplies its own rows of x with a one-thread BLAS (each output row is the same dot
    products as in one product; the BLAS may sum them in another order).

    Examples
    --------
    >>> x, W = np.ones((4, 3), dtype=np.float32), np.ones((3, 2), dtype=np.float32)
    >>> matmul_rows(x, W).tolist()
    [[3.0, 3.0], [3.0, 3.0], [3.0, 3.0], [3.0, 3.0]]
    """
    out = np.empty((len(x), W.shape[1]), dtype=np.result_type(x, W))
    if threads.get_num_threads() < 2:
        return np.matmul(x, W, out=out)
    with threads.blas_threads(1):
        by_rows(lambda lo, hi: np.matmul(x[lo:hi], W, out=out[lo:hi]), len(x), x.shape[0] * W.size)
    return out


def bias_gelu_rows(f, bias):
    """f <- GELU_tanh(f + bias) in place, f (N, F): ½ x (1 + tanh(√(2/π)(x + 0.044715 x³)))
    with x = f + bias, the tanh's argument as √(2/π) x (1 + 0.044715 x²), on slices of rows of about
    :data:`CHUNK` numbers (in both threads when large).

    Examples
    --------
    >>> f = np.array([[-1.0, 0.0, 2.0]], dtype=np.float32)
    >>> bias_gelu_rows(f, np.zeros(3, dtype=np.float32))
    >>> [round(float(a), 4) for a in f[0]]
    [-0.1588, 0.0, 1.9546]
    """
    F = f.shape[-1]
    step = max(1, CHUNK // F)
    c0 = f.dtype.type(math.sqrt(2.0 / math.pi))
    c1 = f.dtype.type(math.sqrt(2.0 / math.pi) * 0.044715)

    def rows(lo, hi):
        t = np.empty((min(step, hi - lo), F), dtype=f.dtype)
        for r0 in range(lo, hi, step):
            x, u = f[r0:min(hi, r0 + step)], t[:min(hi, r0 + step) - r0]
            x += bias
            np.multiply(x, x, out=u)                                   # x²
            u *= c1
            u += c0                                                    # √(2/π)(1 + 0.044715 x²)
            u *= x
            np.tanh(u, out=u)
            u += 1.0
            x *= 0.5
            x *= u
    by_rows(rows, len(f), f.size)
