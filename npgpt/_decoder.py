"""Feeding tokens to the model while generating: the KV cache while everything fits in the
context, then a recomputed window of the last ``context_length`` tokens; and the check that
the model's logits can be chosen from. Used by ``npgpt.generate`` and ``npgpt.beam_search``.

Shapes: R rows decoded together, V vocabulary.
"""

from __future__ import annotations

import numpy as np

from . import inference
from .model import positions_and_mask


class Decoder:
    """Holds every row's tokens and feeds them to the model: the KV cache while everything
    fits in the context, then a recomputed window of the last ``context_length`` tokens (see
    the module doc).

    ``seq`` (R, width) holds every row's tokens, ``length`` columns filled; ``mask`` (R, width)
    bool marks real tokens (None: no padding). The buffers grow as tokens come (doubling), so
    memory follows the tokens produced, not ``max_new_tokens``.
    """

    def __init__(self, model, seq, mask, max_new, pad):
        self.model, self.length, self.pad = model, seq.shape[1], pad
        self.weights = inference.weights(model.params, model.config)   # looked up once
        self.seq, self.mask = seq, mask
        self._make_room(min(max_new, 256))
        self.C = model.config.context_length
        real = self.length if mask is None else int(mask.sum(axis=1).max())
        room = self.C - real                          # new tokens whose positions still fit
        self.cache = None
        if self.length <= self.C and room > 0 and max_new > 1:
            self.cache = model.new_cache(seq.shape[0], capacity=self.length + min(max_new - 1, room))

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

    def _run(self, lo, cache):
        """Logits (R, V) of the last position, feeding columns lo..length to the inference
        forward (with the cache: the columns not yet in it)."""
        real = None if self.mask is None else self.mask[:, lo:self.length]
        if real is not None and real.all():
            real = None
        T = self.length - lo
        positions, mask = positions_and_mask(T, real, cache, self.model.dtype)
        return inference.forward(self.weights, self.seq[:, lo:self.length], positions, mask,
                                 cache, last_only=True)

    def first(self):
        """Logits (R, V) after the prompt."""
        if self.cache is None:
            return self._run(max(0, self.length - self.C), None)
        return self._run(0, self.cache)

    def step(self):
        """Logits (R, V) after the last appended tokens."""
        cache = self.cache
        if cache is not None and cache.length < cache.capacity:
            return self._run(self.length - 1, cache)
        self.cache = None
        return self._run(max(0, self.length - self.C), None)

    def reorder(self, rows):
        """Keep rows (R_new,) in that order (beam search)."""
        self.seq = self.seq[rows]
        if self.mask is not None:
            self.mask = self.mask[rows]
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


