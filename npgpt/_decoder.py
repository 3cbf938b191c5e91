"""Feeding tokens to the model while generating, and the check that the model's logits can be
chosen from. Used by ``npgpt.generate`` and ``npgpt.beam_search``.

While a row's tokens fit in the context, each step feeds only the new token: the keys and
values of the earlier ones wait in a KV cache. Past ``context_length`` the model's learned
absolute positions rule a sliding cache out (every token's position changes when the window
moves), and ``GenerationConfig.context_overflow`` chooses what the model sees:

- ``"exact"`` (default): the last ``context_length`` tokens, as nanoGPT's loop crops them, at
  positions 0..context_length-1; each step recomputes that window
  (:func:`npgpt.inference.last_logits`: the last block only for the last position).
- ``"chunk"``: a chunk of the newest tokens, at positions from 0, decoded with the cache.
  When a new token would not fit, the chunk restarts with the newest ``context_length // 2``
  tokens (the oldest half dropped), re-encoded once, and the cache fills again: the cost of a
  step stays close to one cached step, but the model sees between half a context and a whole
  one of history, not always a whole one, so its predictions are an approximation of the
  exact mode's (``benchmarks/measure_chunk_loss.py`` measures the loss it costs).

Rows are independent either way: a left-padded row sees the same tokens as alone.

Shapes: R rows decoded together, V vocabulary.
"""

from __future__ import annotations

import numpy as np

from . import inference
from .model import positions_and_mask
from .nn.attention import causal_mask


class Decoder:
    """Holds every row's tokens and feeds them to the model (see the module doc).

    ``seq`` (R, width) holds every row's tokens, ``length`` columns filled; ``mask`` (R, width)
    bool marks real tokens (None: no padding). The buffers grow as tokens come (doubling), so
    memory follows the tokens produced, not ``max_new_tokens``. ``overflow`` is ``"exact"`` or
    ``"chunk"``; in chunk mode ``start`` (R,) is the column where each row's chunk begins and
    ``count`` (R,) the real tokens in it.

    Examples
    --------
    >>> import npgpt
    >>> model = npgpt.GPT(npgpt.GPTConfig(vocab_size=10, context_length=4, d_model=8,
    ...                                   num_heads=2, num_layers=1), seed=0)
    >>> decoder = Decoder(model, np.array([[1, 2, 3]]), None, max_new=4, pad=0, overflow="chunk")
    >>> decoder.first().shape                              # logits after the prompt, (R, V)
    (1, 10)
    >>> for token in (4, 5):
    ...     decoder.append(np.array([token]))
    ...     logits = decoder.step()
    >>> decoder.start.tolist(), decoder.count.tolist()     # restarted at the newest 2 of 5
    ([3], [2])
    """

    def __init__(self, model, seq, mask, max_new, pad, overflow="exact"):
        self.model, self.length, self.pad = model, seq.shape[1], pad
        self.weights = inference.weights(model.params, model.config)   # looked up once
        self.seq, self.mask = seq, mask
        self._make_room(min(max_new, 256))
        self.C = C = model.config.context_length
        self.final_length = self.length + max_new - 1   # the length when the last step runs
        self.chunk = overflow == "chunk"
        real = np.full(len(seq), self.length) if mask is None else mask.sum(axis=1)   # (R,)
        if self.chunk:
            self.count = np.minimum(real, C)          # each row's last real tokens that fit
            self.start = self.length - self.count
            self.keep = max(1, C // 2)
        room = C - int(real.max())                    # new tokens whose positions still fit
        self.cache = None
        if not self.chunk and self.length <= C and room > 0 and max_new > 1:
            self.cache = model.new_cache(len(seq), capacity=self.length + min(max_new - 1, room))
        self._window_mask = None

    def _make_room(self, n):
        """Widen the buffers to hold at least n more tokens."""
        width = self.length + n
        if width > self.seq.shape[1]:
            self.seq = widened(self.seq, width, self.pad)
            if self.mask is not None:
                self.mask = widened(self.mask, width, True)

    def append(self, tokens):
        """Write tokens (R,) after the last filled column."""
        if self.length == self.seq.shape[1]:
            self._make_room(max(256, self.length))    # doubling: O(1) per token on average
        self.seq[:, self.length] = tokens
        self.length += 1
        if self.chunk:
            self.count += 1

    def first(self):
        """Logits (R, V) after the prompt."""
        if self.chunk:
            return self._encode()
        if self.cache is None:
            return self._window()
        return self._run(0, self.cache, self._real(0))

    def step(self):
        """Logits (R, V) after the last appended tokens."""
        cache = self.cache
        if self.chunk:
            full = self.count > self.C
            if full.any() or cache.length == cache.capacity:
                self.start[full] = self.length - self.keep             # the newest keep tokens
                self.count[full] = self.keep
                return self._encode()
            return self._run(self.length - 1, cache, None)
        if cache is not None and cache.length < cache.capacity:
            return self._run(self.length - 1, cache, self._real(self.length - 1))
        self.cache = None
        return self._window()

    def _window(self):
        """Exact mode past the cache: logits (R, V) of the last ``context_length`` columns."""
        lo = max(0, self.length - self.C)
        real = self._real(lo)
        if real is not None:
            return self._run(lo, None, real)
        T = self.length - lo                              # no padding: the causal mask, built once
        if self._window_mask is None or len(self._window_mask) != T:
            self._window_mask = causal_mask(T, self.model.dtype)
        return inference.last_logits(self.weights, self.seq[:, lo:self.length], None, self._window_mask)

    def _encode(self):
        """Chunk mode: logits (R, V) after re-encoding each row's chunk (columns start..length,
        left-padded to the longest) into a new cache with room until the next restart."""
        lo = int(self.start.min())
        real = np.arange(lo, self.length) >= self.start[:, None]     # (R, length - lo)
        room = max(0, min(self.C - int(self.count.max()), self.final_length - self.length))
        self.cache = self.model.new_cache(len(self.seq), capacity=self.length - lo + room)
        return self._run(lo, self.cache, real)

    def _real(self, lo):
        """The padding mask of columns lo..length, (R, length - lo), or None."""
        return None if self.mask is None else self.mask[:, lo:self.length]

    def _run(self, lo, cache, real):
        """Logits (R, V) of the last position, feeding columns lo..length (with the cache: the
        columns not yet in it), ``real`` their padding mask or None."""
        if real is not None and real.all():
            real = None
        positions, mask = positions_and_mask(self.length - lo, real, cache, self.model.dtype)
        ids = self.seq[:, lo:self.length]
        if cache is None:
            return inference.last_logits(self.weights, ids, positions, mask)
        return inference.forward(self.weights, ids, positions, mask, cache, last_only=True)

    def reorder(self, rows):
        """Keep rows (R_new,) in that order (beam search)."""
        self.seq = self.seq[rows]
        if self.mask is not None:
            self.mask = self.mask[rows]
        if self.chunk:
            self.start, self.count = self.start[rows], self.count[rows]
        if self.cache is not None:
            self.cache.reorder(rows)


def widened(a, width, fill):
    """a (..., L) widened to ``width`` along the last axis, the new entries ``fill``."""
    out = np.full(a.shape[:-1] + (width,), fill, dtype=a.dtype)
    out[..., :a.shape[-1]] = a
    return out


def check_logits(logits, step):
    """The maximum of each row of the model's logits (R, V), which must be finite: NaN (which
    propagates through max), +inf or a row of -inf mean the model broke (NaN weights,
    overflow), and no token can be chosen from them."""
    top = logits.max(axis=1)
    if not np.isfinite(top).all():
        row = int(np.flatnonzero(~np.isfinite(top))[0])
        what = "NaN" if np.isnan(logits[row]).any() else "infinite"
        raise ValueError(f"the model produced {what} logits at step {step} (row {row}); "
                         f"check the weights (e.g. for NaN or overflow)")
    return top


