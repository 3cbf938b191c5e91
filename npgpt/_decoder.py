"""Feeding tokens to the model while generating, and the check that the model's logits can be
chosen from. Used by the decoding strategies (``npgpt.greedy``, ``npgpt.beam_search``,
``npgpt.speculative``).

While a row's tokens fit in the context, each step feeds only the new token: the keys and
values of the earlier ones wait in a KV cache. Past ``context_length`` learned absolute
positions rule a sliding cache out (every token's position changes when the window moves),
and ``GenerationConfig.context_overflow`` chooses what the model sees:

- ``"exact"`` (default): the last ``context_length`` tokens, as nanoGPT's loop crops them, at
  positions 0..context_length-1; each step recomputes that window
  (:func:`npgpt.inference.last_logits`: the last block only for the last position).
- ``"chunk"``: a chunk of the newest tokens, at positions from 0, decoded with the cache.
  When a new token would not fit, the chunk restarts with the newest ``context_length // 2``
  tokens (the oldest half dropped), re-encoded once, and the cache fills again: the cost of a
  step stays close to one cached step, but the model sees between half a context and a whole
  one of history, not always a whole one, so its predictions are an approximation of the
  exact mode's (``benchmarks/measure_chunk_loss.py`` measures the loss it costs).
- ``"slide"`` (rotary positions only, ``config.positions == "rope"``): one KV cache of
  ``context_length`` slots for the whole run. When it is full, the oldest slot is dropped
  before each new token (:meth:`npgpt.model.KVCache.drop_oldest`), so the new token attends
  to the last ``context_length - 1`` cached tokens and itself: the same ``context_length``
  tokens as exact mode, for the cost of a cached step (plus moving the cache by one slot).
  Position ids keep counting past ``context_length``; a rotary model has no position table,
  and its attention scores depend only on the distance between query and key, so the
  positions that moved on do not matter. It is still an approximation: a cached key or
  value of layer 2 and up was computed when its token could see tokens that have left the
  window since, whereas exact mode recomputes every layer from the window alone. With one
  layer the two agree (up to rounding, ``tests/test_slide.py``); deeper, they differ
  (``benchmarks/slide_loss.py`` measures the loss it costs).

Rows are independent either way: a left-padded row sees the same tokens as alone.

Shapes: R rows decoded together, V vocabulary.
"""

from __future__ import annotations

import numpy as np

from . import inference
from .kv_cache import positions_and_mask
from .nn.attention import causal_mask

OVERFLOW_MODES = ("exact", "chunk", "slide")
ROOM = 256     # token slots a buffer or a cache starts with past the prompt; then it doubles


def check_overflow(config, overflow):
    """A ValueError unless ``overflow`` is a context-overflow mode the model of ``config`` can
    use: ``"slide"`` needs rotary positions, as a learned position table has no row past
    ``context_length``.

    Examples
    --------
    >>> import npgpt
    >>> check_overflow(npgpt.GPTConfig(vocab_size=10, context_length=4, d_model=8, num_heads=2,
    ...                                num_layers=1), "slide")
    Traceback (most recent call last):
    ...
    ValueError: context_overflow='slide' needs rotary positions (config.positions='rope'); this model has config.positions='learned' (use 'exact' or 'chunk')
    """
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"context_overflow must be one of {OVERFLOW_MODES}, got {overflow!r}")
    if overflow == "slide" and config.positions != "rope":
        raise ValueError(f"context_overflow='slide' needs rotary positions (config.positions="
                         f"'rope'); this model has config.positions={config.positions!r} "
                         f"(use 'exact' or 'chunk')")


class Decoder:
    """Holds every row's tokens and feeds them to the model (see the module doc).

    ``seq`` (R, width) holds every row's tokens, ``length`` columns filled; ``mask`` (R, width)
    bool marks real tokens (None: no padding). The buffers grow as tokens come (doubling), and
    so does the KV cache (:class:`npgpt.model.KVCache`: its ``capacity`` is the most it may
    need, min(context, prompt + max_new) in exact mode, its allocation starts at the prompt
    plus ``ROOM``), so memory follows the tokens produced, not ``max_new_tokens`` or
    ``context_length``. ``overflow`` is ``"exact"``,
    ``"chunk"`` or ``"slide"``; in chunk mode ``start`` (R,) is the column where each row's
    chunk begins and ``count`` (R,) the real tokens in it; in slide mode the cache holds the
    last (up to) ``context_length`` columns.

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

    Slide mode, on a rotary model: the cache keeps the last 4 tokens, positions go on.

    >>> rotary = npgpt.GPT(model.config.replace(norm="rmsnorm", positions="rope", mlp="swiglu"))
    >>> decoder = Decoder(rotary, np.array([[1, 2, 3]]), None, max_new=4, pad=0, overflow="slide")
    >>> _ = decoder.first()
    >>> for token in (4, 5, 6):
    ...     decoder.append(np.array([token]))
    ...     _ = decoder.step()
    >>> decoder.cache.length, decoder.cache.next_position.tolist()
    (4, [6])
    """

    def __init__(self, model, seq, mask, max_new, pad, overflow="exact", cache=None):
        check_overflow(model.config, overflow)
        self.model, self.length, self.pad = model, seq.shape[1], pad
        self.weights = inference.weights(model.params, model.config)   # looked up once
        self.seq, self.mask = seq, mask
        self._make_room(min(max_new, ROOM))
        self.C = C = model.config.context_length
        self.final_length = self.length + max_new - 1   # the length when the last step runs
        self.chunk, self.slide = overflow == "chunk", overflow == "slide"
        real = np.full(len(seq), self.length) if mask is None else mask.sum(axis=1)   # (R,)
        if self.chunk:
            self.count = np.minimum(real, C)          # each row's last real tokens that fit
            self.start = self.length - self.count
            self.keep = max(1, C // 2)
        room = C - int(real.max())                    # new tokens whose positions still fit
        self.cache = None
        if self.slide:                                # every column fed, at most C at a time
            _check_slide_angles(model.config, self.weights["inv_freq"], self.final_length)
            self.cache = model.new_cache(len(seq), capacity=min(C, max(self.length, self.final_length)),
                                         reserve=min(C, self.length) + ROOM)
        elif not self.chunk and self.length <= C and room > 0 and max_new > 1:
            self.cache = model.new_cache(len(seq), capacity=self.length + min(max_new - 1, room),
                                         reserve=self.length + ROOM)
        self.fed = 0                                  # columns already in the cache
        if cache is not None and not (self.chunk or self.slide) and self.length <= C:
            self.cache, self.fed = cache, cache.length   # a prefix kept from an earlier call
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
            self._make_room(max(ROOM, self.length))   # doubling: O(1) per token on average
        self.seq[:, self.length] = tokens
        self.length += 1
        if self.chunk:
            self.count += 1

    def first(self):
        """Logits (R, V) after the prompt."""
        if self.chunk:
            return self._encode()
        if self.slide:                                # the last C columns at positions from 0
            lo = max(0, self.length - self.C)
            return self._run(lo, self.cache, self._real(lo))
        if self.cache is None:
            return self._window()
        return self._run(self.fed, self.cache, self._real(self.fed))

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
        if self.slide:
            if cache.length == cache.capacity:
                cache.drop_oldest(1)                  # keep the last C - 1: with the new one, C
            return self._run(self.length - 1, cache, self._real(self.length - 1))
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
        self.cache = self.model.new_cache(len(self.seq), capacity=self.length - lo + room,
                                          reserve=self.length - lo + ROOM)
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


def _check_slide_angles(config, inv_freq, last):
    """Slide mode's positions go on past ``context_length``, up to ``last``; their rotary
    angles (float32: position · inv_freq, :func:`npgpt.nn.rope.rope_tables`) must stay finite,
    as GPTConfig checks them within the context, or every logit would be NaN."""
    with np.errstate(over="ignore"):
        top = np.float32(last) * np.float32(inv_freq.max())
    if not np.isfinite(top):
        raise ValueError(f"context_overflow='slide' turns rotary positions up to {last}, where "
                         f"the angles of rope_theta={config.rope_theta!r} overflow float32 "
                         f"(inv_freq up to {float(inv_freq.max()):.3g}); use fewer "
                         f"max_new_tokens or context_overflow='exact'")


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


