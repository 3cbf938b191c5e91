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
- GELU (:func:`bias_gelu_rows`): the bias added and the tanh approximation computed on slices
  of rows that fit in a core's cache, so that its nine passes read the cache, not memory.

Each differs from the plain step by rounding only (other operation orders, the same
formulas); ``tests/test_prefill_kernels.py`` states the bounds in float32 ulps, and
``inference.forward`` uses these kernels only for prompts longer than ``LONG_PROMPT`` tokens,
so short inputs stay bit-identical to ``gpt_forward``.

Shapes: q (B, H, T, D), k and v (B, Hkv, Tk, D); G = H / Hkv query heads per key/value head;
the mask (B or 1, 1, T, Tk), additive (0 or -inf); n queries in a block.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

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

    Per block of queries i0..i1 (which meets keys 0..Tk - T + i1 only): the scale folded into
    the block's queries; s = q kᵀ for every head (the G query heads of a kv head stacked along
    the rows; the BLAS's threads); per head, in npgpt's threads, and in slices of rows of
    about :data:`CHUNK` numbers: the mask (its diagonal part alone where
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
    m = mask.mask                                                     # (B or 1, 1 or H, T, Tk)
    for index, i0 in enumerate(range(0, T, mask.block)):
        i1 = min(T, i0 + mask.block)
        n, seen = i1 - i0, Tk - T + i1
        first = Tk - T + i0 if mask.clear[index] else 0               # the mask from this key on
        qb = np.multiply(q[:, :, i0:i1], scale)                       # (B, H, n, D), a copy
        s = qb.reshape(B, Hkv, G * n, D) @ k[:, :, :seen].swapaxes(-1, -2)  # (B, Hkv, G·n, seen)
        heads = s.reshape(B * H, n, seen)
        sums = np.empty((B * H, n, 1), dtype=s.dtype)

        def rows(lo, hi, heads=heads, sums=sums, i0=i0, i1=i1, seen=seen, first=first):
            for h0 in range(lo, hi):                                  # runs of heads sharing a mask
                if h0 > lo and m.shape[1] == 1 and h0 % H:
                    continue
                h1 = h0 + 1 if m.shape[1] > 1 else min(hi, (h0 // H + 1) * H)
                b, head = divmod(h0, H)
                hm = m[b if m.shape[0] > 1 else 0, head if m.shape[1] > 1 else 0]   # (T, Tk)
                _softmax_numerators(heads[h0:h1], hm[i0:i1, :seen], first, sums[h0:h1])
        by_rows(rows, B * H, s.size)
        y = s @ v[:, :, :seen]                                        # (B, Hkv, G·n, D)
        y /= sums.reshape(B, Hkv, G * n, 1)
        out[:, i0:i1] = y.reshape(B, H, n, D).transpose(0, 2, 1, 3)   # (B, H, n, D) -> (B, n, H, D)
    return out


def _softmax_numerators(s, mask, first, sums):
    """s (h, n, seen) <- exp(s + mask - rowmax) in place, ``mask`` (n, seen) (shared by the h
    heads) added from column ``first`` on, in slices of rows of about :data:`CHUNK` numbers (the
    passes stay in a core's cache); the row sums into ``sums`` (h, n, 1)."""
    h, n, seen = s.shape
    step = max(1, CHUNK // (seen * h))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        c = s[:, r0:r1]
        c[..., first:] += mask[r0:r1, first:]
        c -= c.max(axis=-1, keepdims=True)
        np.exp(c, out=c)
        _add_reduce(c, axis=-1, keepdims=True, out=sums[:, r0:r1])


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
